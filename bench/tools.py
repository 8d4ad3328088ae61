# SPDX-License-Identifier: EUPL-1.2
"""Small command-line helpers for bench/run.sh.

    tools.py free-ports N               N ports free on 127.0.0.1 (TCP and UDP)
    tools.py wait-http URL TIMEOUT [PID]
                                        waits until URL answers 200 (fails at
                                        once when process PID is gone)
    tools.py wait-sink FILE COUNT TIMEOUT
                                        waits until smtp-sink counted COUNT messages
    tools.py sink-count FILE            messages smtp-sink has counted so far
    tools.py queue-api URL CALLS LABEL RESULTS
                                        GETs URL CALLS times; records p50/max (ms)
                                        and the queued/deferred totals it shows
    tools.py wait-smtp PORT TIMEOUT     waits until an SMTP greeting arrives
    tools.py wait-dns PORT NAME TIMEOUT waits until 127.0.0.1@PORT answers NAME's MX

Exit status 1 on a timeout or error, with a message on stderr.
"""
import socket
import sys
import time

from common import (HOST, free_ports, http_get, percentile, sink_count, wait_sink,
                    write_result)


def alive(pid):
    """Whether process pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_http(url, timeout, pid=None):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if http_get(url, timeout=2)[0] == 200:
                return 0
        except OSError:
            pass
        if pid and not alive(pid):
            print(f"process {pid} exited before {url} answered", file=sys.stderr)
            return 1
        time.sleep(0.02)
    print(f"{url} did not answer within {timeout} s", file=sys.stderr)
    return 1


def wait_smtp(port, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return 0
        except OSError:
            pass
        time.sleep(0.05)
    print(f"no SMTP greeting on {HOST}:{port} within {timeout} s", file=sys.stderr)
    return 1


def wait_dns(port, name, timeout):
    import dns.exception
    import dns.message
    import dns.query
    import dns.rdatatype

    query = dns.message.make_query(name, "MX")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            answer = dns.query.udp(query, HOST, port=port, timeout=0.3)
            if any(rrset.rdtype == dns.rdatatype.MX for rrset in answer.answer):
                return 0
        except (dns.exception.Timeout, OSError):
            pass
        time.sleep(0.05)
    print(f"no MX answer for {name} from {HOST}@{port} within {timeout} s", file=sys.stderr)
    return 1


def queue_api(url, calls, label, results):
    times, body = [], None
    for _ in range(calls):
        t0 = time.monotonic()
        status, body = http_get(url, timeout=60)
        times.append((time.monotonic() - t0) * 1000)
        if status != 200:
            print(f"GET {url}: HTTP {status}", file=sys.stderr)
            return 1
    p50 = percentile(times, 50)
    write_result(results, **{f"{label}.api_p50_ms": f"{p50:.2f}",
                             f"{label}.api_max_ms": f"{max(times):.2f}",
                             f"{label}.api_queued": body.get("queued"),
                             f"{label}.api_deferred": body.get("deferred")})
    print(f"  {label}: GET /queue/default x{calls}: p50 {p50:.2f} ms, max {max(times):.2f} ms "
          f"(queued {body.get('queued')}, deferred {body.get('deferred')}, "
          f"{len(body.get('domains') or [])} domains)")
    return 0


def main(argv):
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "free-ports":
        print(" ".join(str(p) for p in free_ports(int(args[0]))))
        return 0
    if cmd == "wait-http":
        return wait_http(args[0], float(args[1]), int(args[2]) if len(args) > 2 else None)
    if cmd == "wait-smtp":
        return wait_smtp(int(args[0]), float(args[1]))
    if cmd == "wait-dns":
        return wait_dns(int(args[0]), args[1], float(args[2]))
    if cmd == "sink-count":
        print(sink_count(args[0]))
        return 0
    if cmd == "wait-sink":
        if wait_sink(args[0], int(args[1]), float(args[2])) is None:
            print(f"the sink did not reach {args[1]} messages within {args[2]} s "
                  f"(it has {sink_count(args[0])})", file=sys.stderr)
            return 1
        return 0
    if cmd == "queue-api":
        return queue_api(args[0], int(args[1]), args[2], args[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
