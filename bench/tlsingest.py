# SPDX-License-Identifier: EUPL-1.2
"""Ingest throughput over STARTTLS (item 6).

    tlsingest.py --port P --messages N --size BYTES --sessions S \
                 --sink-log FILE --label NAME --results FILE [--timeout SEC]

S clients in parallel, one session per message, as smtp-source does (it
has no TLS): connect, EHLO, STARTTLS, a full TLS handshake (no session
resumption: each message is a new client, the costly case), EHLO again,
MAIL, RCPT, DATA, QUIT.  Times

- ingest: from the first connect until the last message is acknowledged
  (the MTA acknowledges only what is on disk), and
- end to end: until smtp-sink has counted N more messages.

Appends NAME.ingest_s, NAME.ingest_rate, NAME.e2e_s, NAME.e2e_rate,
NAME.tls (the protocol negotiated) and NAME.client_cpu_s (this client's
own CPU time: it shares the machine with the MTA) to the results file.
"""
import argparse
import asyncio
import resource
import ssl
import sys
import time

from common import EHLO_NAME, HOST, expect, sink_count, wait_sink, write_result


async def one_message(port, ctx, body, versions):
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        await expect(reader, 220)
        writer.write(f"EHLO {EHLO_NAME}\r\n".encode())
        await expect(reader, 250)
        writer.write(b"STARTTLS\r\n")
        await expect(reader, 220)
        await writer.start_tls(ctx)
        versions.add(writer.get_extra_info("ssl_object").version())
        writer.write(f"EHLO {EHLO_NAME}\r\n".encode())
        await expect(reader, 250)
        writer.write(b"MAIL FROM:<sender@bench.test>\r\n")
        await expect(reader, 250)
        writer.write(b"RCPT TO:<rcpt@sink.bench.test>\r\n")
        await expect(reader, 250)
        writer.write(b"DATA\r\n")
        await expect(reader, 354)
        writer.write(body)
        await expect(reader, 250)
        writer.write(b"QUIT\r\n")
        await expect(reader, 221)
    finally:
        writer.close()


async def run(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    body = (b"From: <sender@bench.test>\r\nTo: <rcpt@sink.bench.test>\r\n"
            b"Subject: tls ingest\r\n\r\n")
    while len(body) < args.size:
        body += b"x" * 76 + b"\r\n"
    body += b".\r\n"
    todo = list(range(args.messages))
    versions = set()

    async def client():
        while todo:
            todo.pop()
            await one_message(args.port, ctx, body, versions)

    await asyncio.gather(*(client() for _ in range(args.sessions)))
    return versions


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--sink-log", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    base = sink_count(args.sink_log)
    t0 = time.monotonic()
    try:
        versions = asyncio.run(asyncio.wait_for(run(args), args.timeout))
    except Exception as err:
        print(f"{args.label}: {err!r}", file=sys.stderr)
        return 1
    t1 = time.monotonic()
    t2 = wait_sink(args.sink_log, base + args.messages, args.timeout - (t1 - t0))
    if t2 is None:
        got = sink_count(args.sink_log) - base
        print(f"{args.label}: the sink got {got} of {args.messages} messages within "
              f"{args.timeout:.0f} s", file=sys.stderr)
        return 1
    ingest, e2e = t1 - t0, t2 - t0
    # The client shares the machine with the MTA: its own CPU time says how
    # much of the machine the MTA had.
    use = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = use.ru_utime + use.ru_stime
    write_result(args.results, **{
        f"{args.label}.ingest_s": f"{ingest:.3f}",
        f"{args.label}.ingest_rate": f"{args.messages / ingest:.1f}",
        f"{args.label}.e2e_s": f"{e2e:.3f}",
        f"{args.label}.e2e_rate": f"{args.messages / e2e:.1f}",
        f"{args.label}.tls": ",".join(sorted(versions)),
        f"{args.label}.client_cpu_s": f"{client_cpu:.2f}",
    })
    print(f"  {args.label}: {args.messages} x {args.size} B over STARTTLS "
          f"({', '.join(sorted(versions))}): ingest {ingest:.2f} s "
          f"({args.messages / ingest:.0f} msgs/s), end to end {e2e:.2f} s "
          f"({args.messages / e2e:.0f} msgs/s); the client used {client_cpu:.2f} s of CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
