# SPDX-License-Identifier: EUPL-1.2
"""Relay throughput of one MTA (items 1 and 2): smtp-source in, smtp-sink out.

    throughput.py --port P --messages N --size BYTES --sessions S \
                  --sink-log FILE --label NAME --results FILE [--timeout SEC]

Runs `smtp-source -s S -m N -l BYTES` against 127.0.0.1:P and times

- ingest: from the start of smtp-source until it exits (every message
  acknowledged by the MTA, which only acknowledges what is on disk), and
- end to end: from the same start until smtp-sink has counted N more
  messages than before (read from its `-c` counter file).

Appends NAME.ingest_s, NAME.ingest_rate, NAME.e2e_s and NAME.e2e_rate to
the results file.  Exits 1 when smtp-source fails or the sink does not get
every message within the timeout.
"""
import argparse
import subprocess
import sys
import time

from common import sink_count, wait_sink, write_result

SMTP_SOURCE = "/usr/sbin/smtp-source"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--sink-log", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--rcpt", default="rcpt@sink.bench.test")
    args = ap.parse_args()

    base = sink_count(args.sink_log)
    cmd = [SMTP_SOURCE, "-s", str(args.sessions), "-m", str(args.messages),
           "-l", str(args.size), "-M", "client.bench.test",
           "-f", "sender@bench.test", "-t", args.rcpt, f"127.0.0.1:{args.port}"]
    t0 = time.monotonic()
    try:
        src = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"{args.label}: smtp-source did not finish within {args.timeout:.0f} s",
              file=sys.stderr)
        return 1
    t1 = time.monotonic()
    if src.returncode != 0:
        print(f"{args.label}: smtp-source failed (exit {src.returncode}): "
              f"{src.stderr.strip()}", file=sys.stderr)
        return 1
    t2 = wait_sink(args.sink_log, base + args.messages, args.timeout - (t1 - t0))
    if t2 is None:
        got = sink_count(args.sink_log) - base
        print(f"{args.label}: the sink got {got} of {args.messages} messages within "
              f"{args.timeout:.0f} s", file=sys.stderr)
        return 1
    ingest, e2e = t1 - t0, t2 - t0
    write_result(args.results, **{
        f"{args.label}.ingest_s": f"{ingest:.3f}",
        f"{args.label}.ingest_rate": f"{args.messages / ingest:.1f}",
        f"{args.label}.e2e_s": f"{e2e:.3f}",
        f"{args.label}.e2e_rate": f"{args.messages / e2e:.1f}",
    })
    print(f"  {args.label}: {args.messages} x {args.size} B: ingest {ingest:.2f} s "
          f"({args.messages / ingest:.0f} msgs/s), end to end {e2e:.2f} s "
          f"({args.messages / e2e:.0f} msgs/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
