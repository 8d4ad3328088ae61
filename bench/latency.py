# SPDX-License-Identifier: EUPL-1.2
"""Ingest latency at a fixed offered load (item 5).

    latency.py --port P --rate MSGS_PER_S --seconds S --label NAME \
               --results FILE [--conns C] [--size BYTES]

An open-loop load: message i is due at start + i/rate, whatever happened to
the ones before.  C persistent SMTP connections take due messages in turn;
each sends MAIL, RCPT and DATA pipelined, waits for 354, then writes the
body with its final dot in one write.  The latency of a message is the time
from that write to the server's reply (250: the message is durably queued).
Also reports how late messages started against their schedule (when the
client cannot keep up with the rate, the offered load was not met).
Appends NAME.p50_ms, NAME.p99_ms, NAME.max_ms, NAME.sent,
NAME.rate and NAME.lag_p99_ms to the results file.
"""
import argparse
import asyncio
import sys
import time

from common import EHLO_NAME, HOST, expect, percentile, write_result


async def worker(port, due, latencies, lags, body):
    reader, writer = await asyncio.open_connection(HOST, port)
    await expect(reader, 220)
    writer.write(f"EHLO {EHLO_NAME}\r\n".encode())
    await expect(reader, 250)
    envelope = b"MAIL FROM:<sender@bench.test>\r\nRCPT TO:<rcpt@sink.bench.test>\r\nDATA\r\n"
    while True:
        when = await due.get()
        if when is None:
            break
        lags.append(time.monotonic() - when)
        writer.write(envelope)
        await expect(reader, 250)
        await expect(reader, 250)
        await expect(reader, 354)
        writer.write(body)
        t0 = time.monotonic()
        await expect(reader, 250)
        latencies.append(time.monotonic() - t0)
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


async def run(args):
    body = (b"From: <sender@bench.test>\r\nTo: <rcpt@sink.bench.test>\r\n"
            b"Subject: latency\r\n\r\n")
    while len(body) < args.size:
        body += b"x" * 76 + b"\r\n"
    body += b".\r\n"
    due = asyncio.Queue()
    latencies, lags = [], []
    workers = [asyncio.create_task(worker(args.port, due, latencies, lags, body))
               for _ in range(args.conns)]
    total = int(args.rate * args.seconds)
    start = time.monotonic() + 0.2  # let the connections open first
    for i in range(total):
        when = start + i / args.rate
        delay = when - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait(when)
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    return latencies, lags, time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--conns", type=int, default=20)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--label", required=True)
    ap.add_argument("--results", required=True)
    args = ap.parse_args()
    try:
        latencies, lags, elapsed = asyncio.run(run(args))
    except Exception as err:
        print(f"{args.label}: {err!r}", file=sys.stderr)
        return 1
    ms = [x * 1000 for x in latencies]
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    lag99 = percentile([x * 1000 for x in lags], 99)
    write_result(args.results, **{
        f"{args.label}.p50_ms": f"{p50:.2f}", f"{args.label}.p99_ms": f"{p99:.2f}",
        f"{args.label}.max_ms": f"{max(ms):.2f}", f"{args.label}.sent": len(ms),
        f"{args.label}.rate": f"{len(ms) / elapsed:.1f}",
        f"{args.label}.lag_p99_ms": f"{lag99:.1f}",
    })
    print(f"  {args.label}: {len(ms)} messages at {args.rate:.0f}/s offered "
          f"({len(ms) / elapsed:.0f}/s achieved): end-of-DATA to 250 p50 {p50:.2f} ms, "
          f"p99 {p99:.2f} ms, max {max(ms):.2f} ms (start lag p99 {lag99:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
