# SPDX-License-Identifier: EUPL-1.2
"""Fixtures for end-to-end tests: the real zone-mta binary in a temp app folder.

`app` makes an app folder with `zone-mta create`; `zmta` starts the daemon on
free loopback ports, waits until /health answers, and stops it by pid at the
end.  When a test fails, the log of every daemon it started is attached to
the report.  Peers (DNS, SMTP sinks) come from peers/fixtures.py.
"""
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

# The peers' helpers assert too: have pytest rewrite them before import.
pytest.register_assert_rewrite("peers")
from peers.fixtures import show_log_on_failure  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ZMTA_BIN = os.environ.get("ZMTA_BIN", str(REPO / "build" / "zone-mta"))
# The same daemon with the tests' C plugin compiled in (tests/plugins/).
ZMTA_PLUGIN_BIN = str(Path(ZMTA_BIN).parent / "tests" / "plugins" / "zone-mta-test-plugin")

pytest_plugins = ["peers.fixtures"]


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago on host."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def run_cli(*args, env=None, cwd=None, timeout=30, input=None):
    """Runs `zone-mta ARGS` to completion; returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.pop("ZONEMTA_ENV", None)
    full_env.pop("NODE_ENV", None)
    full_env.update(env or {})
    return subprocess.run([ZMTA_BIN, *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout, input=input)


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_get(url, method="GET", timeout=10):
    """(status, parsed JSON body) of a request; HTTP errors are returned too."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        body = err.read()
        return err.code, json.loads(body) if body else None


class App:
    """An app folder made by `zone-mta create`."""

    def __init__(self, path):
        self.path = Path(path)

    def write_config(self, name, content):
        """Writes config/NAME.yaml from a dict (dumped as YAML) or raw text."""
        text = content if isinstance(content, str) else yaml.safe_dump(content)
        (self.path / "config" / f"{name}.yaml").write_text(text)

    def check_config(self, env=None):
        return run_cli("check-config", "-d", str(self.path), env=env)


class Daemon:
    """A running `zone-mta run`, its log file and its API port."""

    def __init__(self, argv, log_path, api_port, env=None, cwd=None, smtp_port=None):
        self.log_path = Path(log_path)
        self.api_port = api_port
        self.smtp_port = smtp_port
        full_env = dict(os.environ)
        full_env.pop("ZONEMTA_ENV", None)
        full_env.pop("NODE_ENV", None)
        full_env.update(env or {})
        self.logfile = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.logfile, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=cwd)
        self.pid = self.proc.pid

    def url(self, path):
        return f"http://127.0.0.1:{self.api_port}{path}"

    def get(self, path, method="GET"):
        return http_get(self.url(path), method=method)

    def smtp(self, timeout=30):
        """An smtplib client connected to the feeder interface."""
        return smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=timeout)

    def fetch(self, queue_id):
        """The stored message bytes from GET /fetch/:id."""
        with urllib.request.urlopen(self.url(f"/fetch/{queue_id}"), timeout=30) as resp:
            assert resp.headers["Content-Type"] == "message/rfc822"
            return resp.read()

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, pattern, timeout=10):
        """Waits until the log matches the regex; returns the match."""
        return wait_until(lambda: re.search(pattern, self.log(), re.M), timeout,
                          what=f"log line matching {pattern!r}")

    def wait_ready(self, timeout=20):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"zone-mta exited with {self.proc.returncode} at start:\n"
                                     + self.log())
            try:
                return self.get("/health")[0] == 200
            except OSError:
                return False
        wait_until(ready, timeout, what="/health")

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=10):
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL if it will not go; returns the exit code."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfile.close()
        return self.proc.returncode


@pytest.fixture
def app(tmp_path):
    """A fresh app folder whose API and SMTP feeder listen on free ports."""
    path = tmp_path / "app"
    res = run_cli("create", str(path))
    assert res.returncode == 0, res.stderr
    a = App(path)
    a.api_port = free_port()
    a.smtp_port = free_port()
    a.write_config("development", {
        "api": {"port": a.api_port},
        "smtpInterfaces": {"feeder": {"port": a.smtp_port}},
        # Accepted mail stays queued unless a test delivers it on purpose,
        # and no DNS query ever leaves loopback (port 9: nothing answers).
        "zones": {"default": {"disabled": True}, "bounces": {"disabled": True}},
        "dns": {"nameservers": ["127.0.0.1@9"]},
    })
    return a


@pytest.fixture
def zmta(request, app):
    """Starts zone-mta on `app`: zmta(extra_config=None, env=None, wait=True).

    extra_config (a dict) is written to config/test.yaml and passed with -c;
    binary replaces the daemon (e.g. ZMTA_PLUGIN_BIN).
    """
    started = []

    def start(extra_config=None, env=None, wait=True, args=(), binary=ZMTA_BIN):
        argv = [binary, "run", "-d", str(app.path), *args]
        if extra_config is not None:
            app.write_config("test", extra_config)
            argv += ["-c", str(app.path / "config" / "test.yaml")]
        extra = extra_config or {}
        port = extra.get("api", {}).get("port", app.api_port)
        smtp_port = (extra.get("smtpInterfaces", {}).get("feeder", {})
                     .get("port", app.smtp_port))
        d = Daemon(argv, app.path / f"zone-mta-{len(started)}.log", port, env=env,
                   smtp_port=smtp_port)
        started.append(d)
        show_log_on_failure(request, f"zone-mta log #{len(started)} (pid {d.pid})", d.log)
        if wait:
            d.wait_ready()
        return d

    yield start
    for d in started:
        d.stop()
