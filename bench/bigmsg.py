# SPDX-License-Identifier: EUPL-1.2
"""One very large message through an MTA (item 3): SMTP in, SMTP out.

    bigmsg.py --port P --size BYTES --sink-log FILE --label NAME \
              --results FILE [--pid PID] [--timeout SEC]

The message is generated as a stream: a 1 MiB block of 78-character lines
is built once and sent again and again (then a shorter tail) until the
body has BYTES bytes, so this client never holds the message in memory.
Times

- in: from DATA's 354 until the MTA's 250 (the whole message on disk),
- total: from connecting until smtp-sink has counted the message.

With --pid (zone-mta's pid) it also records the process's peak RSS
(VmHWM from /proc/PID/status) before and after.  Appends NAME.in_s,
NAME.total_s, NAME.mb_s and, with --pid, NAME.hwm_kb / NAME.hwm_before_kb
to the results file.
"""
import argparse
import sys
import time

from common import Smtp, proc_status, sink_count, wait_sink, write_result

LINE = 78  # characters per body line, CRLF not counted


def body_block(size):
    """`size` bytes (a multiple of LINE + 2) of numbered text lines."""
    lines, total, n = [], 0, 0
    while total + LINE + 2 <= size:
        text = f"{n:08d} " + "x" * (LINE - 9)
        lines.append(text.encode() + b"\r\n")
        total += LINE + 2
        n += 1
    return b"".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--sink-log", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()

    hwm_before = proc_status(args.pid, "VmHWM") if args.pid else None
    base = sink_count(args.sink_log)
    header = (b"From: <sender@bench.test>\r\nTo: <big@sink.bench.test>\r\n"
              b"Subject: one big message\r\n\r\n")
    block = body_block(1 << 20)
    t0 = time.monotonic()
    smtp = Smtp(args.port, timeout=args.timeout)
    total = len(header) + args.size
    smtp.send(f"MAIL FROM:<sender@bench.test> SIZE={total}\r\n"
              "RCPT TO:<big@sink.bench.test>\r\nDATA\r\n".encode())
    smtp.expect(250)
    smtp.expect(250)
    smtp.expect(354)
    t_data = time.monotonic()
    smtp.send(header)
    left = args.size
    while left >= len(block):
        smtp.send(block)
        left -= len(block)
    if left:
        smtp.send(body_block(left) + b"x" * (left % (LINE + 2)))  # exact size
    smtp.send(b"\r\n.\r\n")
    code, text = smtp.reply()
    t_in = time.monotonic()
    smtp.close()
    if code != 250:
        print(f"{args.label}: the MTA refused the message: {text}", file=sys.stderr)
        return 1
    t_out = wait_sink(args.sink_log, base + 1, args.timeout - (t_in - t0), interval=0.05)
    if t_out is None:
        print(f"{args.label}: the sink did not get the message within {args.timeout:.0f} s",
              file=sys.stderr)
        return 1
    mb = total / (1 << 20)
    values = {
        f"{args.label}.in_s": f"{t_in - t_data:.2f}",
        f"{args.label}.total_s": f"{t_out - t0:.2f}",
        f"{args.label}.mb_s": f"{mb / (t_out - t0):.1f}",
    }
    line = (f"  {args.label}: {mb:.0f} MiB: in {t_in - t_data:.2f} s, "
            f"in and out {t_out - t0:.2f} s ({mb / (t_out - t0):.0f} MiB/s)")
    if args.pid:
        hwm = proc_status(args.pid, "VmHWM")
        values[f"{args.label}.hwm_kb"] = hwm
        values[f"{args.label}.hwm_before_kb"] = hwm_before
        line += f", zone-mta peak RSS {hwm / 1024:.1f} MiB (before: {hwm_before / 1024:.1f} MiB)"
    write_result(args.results, **values)
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
