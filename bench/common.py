# SPDX-License-Identifier: EUPL-1.2
"""Shared helpers of the benchmark scripts (bench/*.py).

Everything here talks to loopback only: free ports on 127.0.0.1, the
smtp-sink counter file, zone-mta's HTTP API, /proc for memory figures, and
a small SMTP client that never asks DNS for anything (numeric addresses,
fixed EHLO name).

Importing this module makes SIGTERM raise SystemExit, so that a script
stopped by run.sh's cleanup unwinds (subprocess.run then kills its child,
e.g. smtp-source) instead of vanishing and leaving that child behind.
"""
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"
EHLO_NAME = "client.bench.test"  # fixed: smtplib would look up our FQDN

_MESG = re.compile(rb"mesg=(\d+)")

signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def free_ports(count):
    """`count` distinct ports free for TCP and UDP on 127.0.0.1 a moment ago."""
    ports, held = [], []
    try:
        while len(ports) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.bind((HOST, 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind((HOST, port))
            except OSError:
                tcp.close()
                udp.close()
                continue
            held += [tcp, udp]
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def sink_count(path):
    """Messages smtp-sink has received so far, read from its `-c` output.

    smtp-sink -c rewrites one status line ("sess=N quit=N mesg=N", separated
    by carriage returns) each time a session ends or a message's final dot
    arrives; the last complete one is at the end of the file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 512))
            tail = f.read()
    except FileNotFoundError:
        return 0
    found = _MESG.findall(tail)
    return int(found[-1]) if found else 0


def wait_sink(path, target, timeout, interval=0.01):
    """Polls until smtp-sink has `target` messages; returns the monotonic
    time it saw them, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if sink_count(path) >= target:
            return now
        if now > deadline:
            return None
        time.sleep(interval)


def http_get(url, timeout=30, raw=False):
    """(status, parsed JSON, or the text with raw) of a GET; HTTP errors are
    returned too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read()
            return resp.status, data.decode() if raw else json.loads(data or b"null")
    except urllib.error.HTTPError as err:
        return err.code, None


def proc_status(pid, field):
    """A /proc/PID/status figure in KiB (VmRSS, VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values, p):
    """The p-th percentile (nearest rank) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(p / 100.0 * len(ordered) + 0.5))))
    return ordered[rank - 1]


class Smtp:
    """A minimal blocking SMTP client over one socket (no DNS, pipelining)."""

    def __init__(self, port, timeout=120):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")
        self.expect(220)
        self.send(f"EHLO {EHLO_NAME}\r\n".encode())
        self.expect(250)

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        """(code, text) of the next reply, multi-line replies joined."""
        lines = []
        while True:
            line = self.rfile.readline()
            if not line:
                raise ConnectionError("connection closed by the server")
            lines.append(line.decode(errors="replace").rstrip("\r\n"))
            if len(line) < 4 or line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    def expect(self, code):
        got, text = self.reply()
        if got != code:
            raise RuntimeError(f"expected {code}, got: {text}")
        return text

    def close(self):
        try:
            self.send(b"QUIT\r\n")
            self.reply()
        except OSError:
            pass
        self.rfile.close()
        self.sock.close()


def write_result(path, **values):
    """Appends key=value lines to the results file read by report.py."""
    with open(path, "a") as f:
        for key, value in values.items():
            f.write(f"{key}={value}\n")


async def expect(reader, code):
    """Reads the next (possibly multi-line) reply from an asyncio stream;
    raises unless its code is `code`."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed by the server")
        if len(line) < 4 or line[3:4] != b"-":
            break
    if int(line[:3]) != code:
        raise RuntimeError(f"expected {code}, got {line!r}")
