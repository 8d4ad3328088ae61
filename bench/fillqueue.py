# SPDX-License-Identifier: EUPL-1.2
"""Fills zone-mta's queue with many recipients (item 4), over SMTP.

    fillqueue.py --port P --messages M --rcpts R --label NAME --results FILE \
                 [--conns C]

Sends M small messages with R recipients each (R <= the listener's
maxRecipients), over C parallel connections; every RCPT TO of a message is
pipelined in one write.  Recipients are unique (m<message>-r<n>@...) and
spread over ten recipient domains.  The zone they go to is disabled in the
benchmark's configuration, so they all stay queued.  Appends NAME.fill_s
and NAME.rcpts to the results file.
"""
import argparse
import sys
import threading
import time

from common import Smtp, write_result

DOMAINS = [f"d{i}.sink.bench.test" for i in range(10)]


def send_range(port, first, last, rcpts, errors):
    try:
        smtp = Smtp(port)
        body = (b"From: <sender@bench.test>\r\nTo: <list@bench.test>\r\n"
                b"Subject: queued\r\n\r\n" + b"body line\r\n" * 50 + b".\r\n")
        for m in range(first, last):
            cmds = [b"MAIL FROM:<sender@bench.test>\r\n"]
            cmds += [f"RCPT TO:<m{m}-r{r}@{DOMAINS[r % len(DOMAINS)]}>\r\n".encode()
                     for r in range(rcpts)]
            cmds.append(b"DATA\r\n")
            smtp.send(b"".join(cmds))
            smtp.expect(250)
            for _ in range(rcpts):
                smtp.expect(250)
            smtp.expect(354)
            smtp.send(body)
            smtp.expect(250)
        smtp.close()
    except Exception as err:  # reported by the main thread
        errors.append(f"messages {first}..{last - 1}: {err}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--rcpts", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--label", required=True)
    ap.add_argument("--results", required=True)
    args = ap.parse_args()

    errors, threads = [], []
    per = -(-args.messages // args.conns)
    t0 = time.monotonic()
    for first in range(0, args.messages, per):
        t = threading.Thread(target=send_range, args=(
            args.port, first, min(first + per, args.messages), args.rcpts, errors))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    if errors:
        print(f"{args.label}: " + "; ".join(errors), file=sys.stderr)
        return 1
    total = args.messages * args.rcpts
    write_result(args.results, **{f"{args.label}.fill_s": f"{elapsed:.2f}",
                                  f"{args.label}.rcpts": total})
    print(f"  {args.label}: queued {args.messages} messages x {args.rcpts} recipients "
          f"= {total} in {elapsed:.1f} s ({total / elapsed:.0f} recipients/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
