# SPDX-License-Identifier: EUPL-1.2
"""dnsmasq wrapper serving fixed DNS records to the end-to-end tests.

``DnsServer(workdir, records).start()`` runs ``/usr/sbin/dnsmasq -k
--conf-file=FILE`` listening on 127.0.0.1 only, on a free port (UDP and
TCP), with no upstream servers, no /etc/hosts and no cache.  Point libunbound
at ``server.address`` ("127.0.0.1@PORT"), dnspython at ``server.resolver()``.

Records map a name to a dict of record types, or to one of the special
values NXDOMAIN, REFUSED, SERVFAIL::

    {
        "example.test": {
            "MX": [(10, "mx1.example.test"), (20, "mx2.example.test")],
            "TXT": ["v=spf1 ip4:127.0.0.1 -all"],
        },
        "mx1.example.test": {"A": ["127.0.0.2", "127.0.0.3"], "AAAA": ["::1"]},
        "www.example.test": {"CNAME": "mx1.example.test"},
        "nomail.test": {"MX": NULL_MX},     # RFC 7505 null MX: "MX 0 ."
        "gone.test": NXDOMAIN,
        "refused.test": REFUSED,
        "broken.test": SERVFAIL,
    }

What is served, and how:

- MX (``mx-host``): any preference, any target, including "." (so null MX
  is served natively); A and AAAA (``host-record``; several addresses per
  name are fine); TXT (``txt-record``; one string per record); CNAME
  (``cname``; dnsmasq only serves it when the target is itself a name given
  here).  All TTLs are 0.
- NODATA (NOERROR, empty answer): a listed name queried for a type it lacks.
- NXDOMAIN: every name under ``.test`` that is not listed (``local=/test/``),
  and NXDOMAIN names together with all their subdomains (``address=/name/``).
- REFUSED: REFUSED names and their subdomains (``server=/name/#``: "use the
  upstream servers", of which there are none), and every name outside
  ``.test``.
- SERVFAIL: dnsmasq cannot produce it from its own data; it only relays an
  upstream's SERVFAIL.  So SERVFAIL names (and subdomains) are forwarded
  to a stub in this Python process, on 127.0.0.1, that answers SERVFAIL to
  every query (UDP and TCP).  That is the only forwarding ever configured,
  and only while some SERVFAIL name is listed.  (libunbound, used as a
  forwarding client, reports REFUSED from its forwarder as SERVFAIL too.)

Names may be given with or without a trailing dot, in any case.
"""

import ipaddress
import os
import re
import signal
import socket
import socketserver
import subprocess
import threading
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.resolver

DNSMASQ = "/usr/sbin/dnsmasq"
HOST = "127.0.0.1"

NULL_MX = [(0, ".")]
NXDOMAIN = "NXDOMAIN"
REFUSED = "REFUSED"
SERVFAIL = "SERVFAIL"

_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$")


def _name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"bad DNS name {name!r}")
    return name.rstrip(".").lower()


def _quote(text: str) -> str:
    """A dnsmasq config string: quoted, with backslash escapes."""
    if "\n" in text or "\r" in text:
        raise ValueError(f"line break in TXT record {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def free_port() -> int:
    """A port that is free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no port free for both UDP and TCP")


class _ServfailUdp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(_servfail(data), self.client_address)


class _ServfailTcp(socketserver.StreamRequestHandler):
    def handle(self):
        while len(head := self.rfile.read(2)) == 2:
            reply = _servfail(self.rfile.read(int.from_bytes(head, "big")))
            self.wfile.write(len(reply).to_bytes(2, "big") + reply)


def _servfail(wire: bytes) -> bytes:
    response = dns.message.make_response(dns.message.from_wire(wire))
    response.set_rcode(dns.rcode.SERVFAIL)
    return response.to_wire()


class _ServfailStub:
    """Answers SERVFAIL to every query, over UDP and TCP, on 127.0.0.1."""

    def __init__(self):
        for _ in range(20):
            udp = socketserver.ThreadingUDPServer((HOST, 0), _ServfailUdp)
            try:
                tcp = socketserver.ThreadingTCPServer(
                    (HOST, udp.server_address[1]), _ServfailTcp)
                break
            except OSError:
                udp.server_close()
        else:
            raise RuntimeError("no port free for the SERVFAIL stub")
        self.port = udp.server_address[1]
        self.servers = (udp, tcp)
        for server in self.servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, args=(0.05,),
                             daemon=True).start()

    def close(self):
        for server in self.servers:
            server.shutdown()
            server.server_close()


class DnsServer:
    """One dnsmasq process serving ``records`` (see the module docstring)."""

    def __init__(self, workdir, records=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.workdir / "dnsmasq.conf"
        self.log_path = self.workdir / "dnsmasq.log"
        self.records = dict(records or {})
        self.host = HOST
        self.port = None
        self.proc = None
        self._stub = None

    @property
    def address(self) -> str:
        """The server as libunbound's ub_ctx_set_fwd() wants it."""
        return f"{HOST}@{self.port}"

    def start(self) -> "DnsServer":
        """Start on a free port; try another if dnsmasq loses the race
        for it."""
        for _ in range(5):
            self.port = free_port()
            if self._launch(self._config(self.records)):
                return self
        raise RuntimeError(f"dnsmasq could not bind a port; log:\n{self.log()}")

    def set_records(self, records) -> None:
        """Serve ``records`` instead: restarts dnsmasq on the same port.

        Invalid records raise ValueError and leave the server as it was."""
        config = self._config(records)
        self._kill()
        self.records = dict(records)
        deadline = time.monotonic() + 15
        while not self._launch(config):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"dnsmasq could not bind {self.address} again; "
                    f"log:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        self._kill()
        if self._stub:
            self._stub.close()
            self._stub = None

    def log(self, since: int = 0) -> str:
        """dnsmasq's log (its stderr, with every query) over all restarts,
        from byte offset ``since``."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return data[since:].decode(errors="replace")

    def resolver(self, lifetime: float = 10.0) -> dns.resolver.Resolver:
        """A dnspython resolver that asks this server only."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [HOST]
        resolver.port = self.port
        resolver.lifetime = lifetime
        return resolver

    def query(self, name: str, rdtype: str, tcp: bool = False,
              timeout: float = 10.0) -> dns.message.Message:
        """Ask one question; the raw response, whatever its rcode."""
        ask = dns.query.tcp if tcp else dns.query.udp
        return ask(dns.message.make_query(name, rdtype), HOST,
                   port=self.port, timeout=timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _config(self, records) -> str:
        lines = [
            "# Generated by tests/e2e/peers/dns.py",
            f"port={self.port}",
            f"listen-address={HOST}",
            "bind-interfaces",
            "no-resolv",
            "no-hosts",
            "cache-size=0",
            f"pid-file={self.workdir / 'dnsmasq.pid'}",
            "log-facility=-",
            "log-queries",
            "local=/test/",
        ]
        if os.geteuid() == 0:
            lines.append("user=root")  # no privilege drop: keeps file access
        for raw, spec in records.items():
            lines += self._record_lines(_name(raw), spec)
        return "\n".join(lines) + "\n"

    def _record_lines(self, name: str, spec) -> list[str]:
        if spec == NXDOMAIN:
            return [f"address=/{name}/"]
        if spec == REFUSED:
            return [f"server=/{name}/#"]
        if spec == SERVFAIL:
            if self._stub is None:
                self._stub = _ServfailStub()
            return [f"server=/{name}/{HOST}#{self._stub.port}"]
        if not isinstance(spec, dict):
            raise ValueError(f"{name}: records must be a dict or one of "
                             f"NXDOMAIN, REFUSED, SERVFAIL, not {spec!r}")
        lines = []
        for rtype, values in spec.items():
            rtype = rtype.upper()
            if rtype == "MX":
                for preference, target in values:
                    if not 0 <= int(preference) <= 65535:
                        raise ValueError(f"{name}: MX preference {preference}")
                    target = "." if target == "." else _name(target)
                    lines.append(f"mx-host={name},{target},{int(preference)}")
            elif rtype in ("A", "AAAA"):
                for address in values:
                    ip = ipaddress.ip_address(address)
                    if ip.version != (4 if rtype == "A" else 6):
                        raise ValueError(f"{name}: {address} in {rtype}")
                    lines.append(f"host-record={name},{ip}")
            elif rtype == "TXT":
                lines += [f"txt-record={name},{_quote(t)}" for t in values]
            elif rtype == "CNAME":
                lines.append(f"cname={name},{_name(values)}")
            else:
                raise ValueError(f"{name}: unsupported record type {rtype}")
        return lines

    def _launch(self, config: str) -> bool:
        """Write the config, run dnsmasq and wait until it answers.

        Returns False when dnsmasq exits because its port is taken."""
        self.conf_path.write_text(config)
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [DNSMASQ, "-k", f"--conf-file={self.conf_path}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            # A fresh query each time: a late answer to an earlier probe must
            # not be taken for (or trip up) this one.
            probe = dns.message.make_query("probe.test", "A")
            if self.proc.poll() is not None:
                self.proc = None
                output = self.log(since=log_start)
                if "Address already in use" in output:
                    return False
                raise RuntimeError(f"dnsmasq failed to start:\n{output}")
            try:
                dns.query.udp(probe, HOST, port=self.port, timeout=0.2)
                return True
            except (dns.exception.Timeout, dns.query.BadResponse, OSError):
                time.sleep(0.05)
        self._kill()
        raise RuntimeError(f"dnsmasq did not answer on {self.address} "
                           f"within 15 s; log:\n{self.log()}")

    def _kill(self) -> None:
        """Stop dnsmasq by its pid and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
