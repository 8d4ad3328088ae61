# SPDX-License-Identifier: EUPL-1.2
"""The source layout's rules (docs/architecture.md), checked on the tree."""
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def calls(folder, pattern):
    found = []
    for path in sorted((SRC / folder).glob("*.[ch]")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    return found


def test_scheduler_never_writes_the_store():
    # Only the outcome stage persists what a delivery came to.
    assert calls("sched", r"\bqueue_delivery_\w+\s*\(") == []


def test_delivery_reports_only_to_the_outcome_stage():
    assert calls("mta", r"\bqueue_delivery_\w+\s*\(|\bbounce_rules_classify\s*\(") == []


def test_nothing_below_the_api_includes_it():
    # Counters live in core/stats.h; the API only renders them.  Every
    # folder but api/ is below it (main.c and daemon.c sit at the top).
    below = sorted(p.name for p in SRC.iterdir() if p.is_dir() and p.name != "api")
    assert {"core", "hook", "net", "sched", "queue"} <= set(below)
    assert [hit for d in below for hit in calls(d, r'#include\s+"api/')] == []


def test_the_hook_bus_and_http_client_know_no_feature():
    # They are seams: features plug into them, never the other way round.
    for folder in ("hook", "net"):
        assert calls(folder, r'#include\s+"(smtp|msg|queue|sched|mta|outcome|api)/') == [], folder


def test_the_queue_knows_no_scheduler():
    # The queue is below the scheduler: its administration state (pauses)
    # reaches the scheduler through a callback the daemon wires.
    assert calls("queue", r'#include\s+"(sched|mta|outcome)/') == []
