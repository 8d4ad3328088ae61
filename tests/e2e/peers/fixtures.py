# SPDX-License-Identifier: EUPL-1.2
"""pytest fixtures for the end-to-end test peers.

Load them with ``pytest_plugins = ["peers.fixtures"]`` (in conftest.py or a
test module).  Loading this module as a plugin also registers the hook that
appends the peers' logs to the report of a failing test.

``dns_server``
    A started :class:`peers.dns.DnsServer` with no records yet; call
    ``dns_server.set_records({...})``.  Stopped (by pid) at teardown.
``smtp_sink``
    A factory ``smtp_sink(host="127.0.0.2", script=None, tls=False, port=0, auth=None)``
    returning a started :class:`Sink`; every sink it made is stopped (by
    pid) at teardown.  ``port=0`` takes a free port; pass another sink's
    port to put several sinks (e.g. mx1 and mx2 on 127.0.0.2 and 127.0.0.3)
    on one port number.
``socks_proxy``
    A factory ``socks_proxy(kind, **options)``: ``"microsocks"`` (hosts=
    {name: address}, user, password) or ``"dante"`` (block=[cidr, ...]),
    see :mod:`peers.socks`; stopped at teardown.
``rspamd``
    One started :class:`peers.rspamd.Rspamd` per test module (it takes a
    while to start); ``rspamd.url`` is its /checkv2.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peers.dns import DnsServer
from peers.sink import check_script
from peers.rspamd import Rspamd
from peers.socks import Dante, Microsocks

SINK_SCRIPT = Path(__file__).with_name("sink.py")

# Per test item: (section title, function returning the log text).
_LOGS = pytest.StashKey[list]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for title, read in item.stash.get(_LOGS, []):
            report.sections.append((title, read()))


def show_log_on_failure(request, title: str, read) -> None:
    request.node.stash.setdefault(_LOGS, []).append((title, read))


def _write_json_atomic(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def _make_certificate(workdir: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for sink.test and the IP address ``host``:
    usable as its own CA, so clients can verify it."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=sink.test",
         "-addext", f"subjectAltName=DNS:sink.test,IP:{host}"],
        check=True, capture_output=True, timeout=60)
    return cert, key


class Sink:
    """A ``sink.py`` subprocess; see sink.py for the script and spool
    formats."""

    def __init__(self, workdir: Path, host: str = "127.0.0.2", script=None,
                 tls: bool = False, port: int = 0, auth: str | None = None):
        self.workdir = workdir
        self.auth = auth
        self.host = host
        self.port = port
        self.tls = tls
        self.spool = workdir / "spool"
        self.script_path = workdir / "script.json"
        self.log_path = workdir / "sink.log"
        self.tls_cert = self.tls_key = None
        self.proc = None
        workdir.mkdir(parents=True)
        self.set_script(script or {})

    def start(self, timeout: float = 30.0) -> "Sink":
        cmd = [sys.executable, str(SINK_SCRIPT), "--host", self.host,
               "--port", str(self.port), "--spool", str(self.spool),
               "--script", str(self.script_path)]
        if self.tls:
            self.tls_cert, self.tls_key = _make_certificate(self.workdir,
                                                            self.host)
            cmd += ["--tls-cert", str(self.tls_cert),
                    "--tls-key", str(self.tls_key)]
            if self.tls == "broken":
                cmd.append("--tls-broken")
            elif self.tls == "tls1":
                cmd.append("--tls-v1")
            elif self.tls == "implicit":
                cmd.append("--implicit-tls")
        if self.auth:
            cmd += ["--auth", self.auth]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        ready = self._wait(self._read_ready, timeout, "to listen")
        self.port = ready["port"]
        return self

    def set_script(self, script: dict) -> None:
        """Replace the script; the sink applies it from its next command."""
        _write_json_atomic(self.script_path, check_script(script))

    def messages(self) -> list[dict]:
        """Accepted messages in arrival order: each ``<n>.json`` with
        ``"data"``, the bytes of ``<n>.eml``, added."""
        messages = []
        for meta in sorted(self.spool.glob("*.json"), key=lambda p: int(p.stem)):
            message = json.loads(meta.read_text())
            message["data"] = meta.with_suffix(".eml").read_bytes()
            messages.append(message)
        return messages

    def wait_for(self, n: int, timeout: float = 15.0) -> list[dict]:
        """Wait until at least ``n`` messages are in; return them all."""
        def enough():
            messages = self.messages()
            return messages if len(messages) >= n else None
        return self._wait(enough, timeout, f"for {n} message(s)")

    def events(self) -> list[dict]:
        """The lines of sessions.jsonl (see sink.py)."""
        try:
            text = (self.spool / "sessions.jsonl").read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines(keepends=True)
                if line.endswith("\n")]

    def sessions(self) -> list[dict]:
        """One dict per session, in connection order: ``session``,
        ``peer_ip``, ``peer_port``, ``connected`` and ``disconnected``
        (times; None while open), ``helo``, ``tls``, ``messages`` (how many
        were accepted in it)."""
        sessions = {}
        for event in self.events():
            kind = event["event"]
            if kind == "connect":
                sessions[event["session"]] = {
                    "session": event["session"],
                    "peer_ip": event["peer_ip"],
                    "peer_port": event["peer_port"],
                    "connected": event["time"], "disconnected": None,
                    "helo": None, "tls": False, "messages": 0}
                continue
            session = sessions[event["session"]]
            if kind == "disconnect":
                session["disconnected"] = event["time"]
            elif kind == "helo":
                session["helo"] = event["name"]
            elif kind == "starttls":
                session["tls"] = True
            elif kind == "data" and event["message"] is not None:
                session["messages"] += 1
        return list(sessions.values())

    def wait_for_sessions(self, n: int, timeout: float = 15.0) -> list[dict]:
        """Wait until there are at least ``n`` sessions and all are closed;
        return them."""
        def closed():
            sessions = self.sessions()
            done = len(sessions) >= n and all(s["disconnected"]
                                              for s in sessions)
            return sessions if done else None
        return self._wait(closed, timeout, f"for {n} closed session(s)")

    def max_concurrent_sessions(self) -> int:
        """The most sessions that were open at once."""
        current = peak = 0
        for event in self.events():
            if event["event"] == "connect":
                current += 1
                peak = max(peak, current)
            elif event["event"] == "disconnect":
                current -= 1
        return peak

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Stop the sink by its pid and reap it."""
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

    def _read_ready(self):
        try:
            return json.loads((self.spool / "ready").read_text())
        except FileNotFoundError:
            return None

    def _wait(self, check, timeout: float, what: str):
        """Poll ``check`` until it returns something other than None, and
        return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result is not None:
                return result
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"sink {self.host}:{self.port} is not "
                                   f"running; log:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"sink {self.host}:{self.port}: waited "
                                     f"{timeout} s {what}")
            time.sleep(0.05)


@pytest.fixture
def dns_server(request, tmp_path):
    server = DnsServer(tmp_path / "dns")
    show_log_on_failure(request, "dnsmasq log", server.log)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def smtp_sink(request, tmp_path):
    sinks = []

    def start(host: str = "127.0.0.2", script: dict | None = None,
              tls: bool | str = False, port: int = 0, auth: str | None = None) -> Sink:
        """tls: True offers STARTTLS; "broken" offers it and fails every
        handshake; "tls1" offers TLS 1.0 only; "implicit" speaks TLS from
        the first byte.  auth: "user:password" the sink requires."""
        name = f"sink{len(sinks) + 1}"
        sink = Sink(tmp_path / name, host, script, tls, port, auth)
        sinks.append(sink)
        show_log_on_failure(request, f"{name} ({host}) log", sink.log)
        return sink.start()

    try:
        yield start
    finally:
        for sink in sinks:
            sink.stop()


HTTPD_SCRIPT = Path(__file__).with_name("httpd.py")


class HttpServer:
    """An ``httpd.py`` subprocess on loopback; see httpd.py for its paths."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1", tls: bool = False,
                 cert_host: str | None = None):
        self.workdir = workdir
        self.host = host
        self.tls = tls
        self.log_path = workdir / "httpd.log"
        self.ca_file = None
        workdir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(HTTPD_SCRIPT), "--host", host]
        if tls:
            cert, key = _make_certificate(workdir, cert_host or host)
            self.ca_file = cert
            cmd += ["--tls-cert", str(cert), "--tls-key", str(key)]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.log)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("READY "), f"httpd did not start: {line!r}"
        self.port = int(line.split()[1])

    def url(self, path: str) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def http_server(request, tmp_path):
    servers = []

    def start(host: str = "127.0.0.1", tls: bool = False,
              cert_host: str | None = None) -> HttpServer:
        """cert_host: the address the TLS certificate names (default host)."""
        s = HttpServer(tmp_path / f"httpd{len(servers) + 1}", host, tls, cert_host)
        servers.append(s)
        show_log_on_failure(request, f"httpd{len(servers)} ({host}) log", s.read_log)
        return s

    try:
        yield start
    finally:
        for s in servers:
            s.stop()


@pytest.fixture
def socks_proxy(request, tmp_path):
    proxies = []

    def start(kind: str, **options):
        if os.geteuid() != 0:
            pytest.skip("the SOCKS5 peers need root (a mount namespace, danted)")
        workdir = tmp_path / f"socks{len(proxies) + 1}"
        proxy = (Microsocks if kind == "microsocks" else Dante)(workdir, **options)
        proxies.append(proxy)
        show_log_on_failure(request, f"{kind} log", proxy.log)
        return proxy

    try:
        yield start
    finally:
        for proxy in proxies:
            proxy.stop()


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory):
    server = Rspamd(tmp_path_factory.mktemp("rspamd"))
    try:
        yield server.start()
    finally:
        server.stop()
