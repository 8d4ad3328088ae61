#!/usr/bin/env bash
# Benchmarks against Postfix (make bench).  They measure relaying, which
# needs SMTP ingest, the queue and the delivery engine; until those land
# there is nothing honest to measure, so this says so and fails.
echo "make bench: no benchmarks yet: they need SMTP ingest, the queue and delivery." >&2
exit 1
