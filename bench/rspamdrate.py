# SPDX-License-Identifier: EUPL-1.2
"""Rspamd's own limit (item 9): how many messages per second it checks.

    rspamdrate.py --url URL --messages N --size BYTES --sessions S \
                  --label NAME --results FILE

POSTs N messages of about BYTES (headers like smtp-source's, a body of
filler lines) to Rspamd's /checkv2 from S client threads, each on its own
keep-alive connection, with the request headers a relay sends (IP, From,
Rcpt, Queue-Id).  Appends NAME.rate (checks per second) and NAME.s.
Exits 1 when a check fails.
"""
import argparse
import http.client
import sys
import threading
import time
import urllib.parse

from common import write_result


def message(i, size):
    head = (f"From: <sender@bench.test>\r\nTo: <rcpt@sink.bench.test>\r\n"
            f"Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-Id: <{i}.bench@bench.test>\r\n"
            f"Subject: bench {i}\r\n\r\n").encode()
    line = b"La de da de da 1.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--label", required=True)
    ap.add_argument("--results", required=True)
    args = ap.parse_args()
    u = urllib.parse.urlsplit(args.url)
    bodies = [message(i, args.size) for i in range(64)]
    todo = list(range(args.messages))
    lock = threading.Lock()
    errors = []

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        while True:
            with lock:
                if not todo or errors:
                    return
                i = todo.pop()
            try:
                conn.request("POST", u.path, body=bodies[i % len(bodies)], headers={
                    "IP": "127.0.0.1", "From": "<sender@bench.test>",
                    "Rcpt": "<rcpt@sink.bench.test>", "Queue-Id": f"bench{i}"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200 or b'"action"' not in data:
                    raise RuntimeError(f"status {resp.status}: {data[:200]!r}")
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(repr(e))
                return

    threads = [threading.Thread(target=worker) for _ in range(args.sessions)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    if errors:
        print(f"{args.label}: a check failed: {errors[0]}", file=sys.stderr)
        return 1
    rate = args.messages / took
    write_result(args.results, **{f"{args.label}.s": f"{took:.3f}",
                                  f"{args.label}.rate": f"{rate:.1f}"})
    print(f"  {args.label}: {args.messages} checks of {args.size} B from {args.sessions} "
          f"clients in {took:.2f} s: {rate:.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
