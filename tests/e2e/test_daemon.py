# SPDX-License-Identifier: EUPL-1.2
"""The daemon's lifecycle: listeners, /health, signals, reload, pid file, privileges."""
import os
import pwd
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ZMTA_BIN, Daemon, free_port, run_cli, wait_until


def test_builtin_defaults_like_make_run(tmp_path):
    """`make run` runs zone-mta with no app folder: built-in defaults, queue in ./data."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("port 8080 is in use on this machine")
    d = Daemon([ZMTA_BIN, "run"], tmp_path / "zmta.log", 8080, cwd=tmp_path)
    try:
        d.wait_ready()
        d.wait_log(r"info event=listen service=api proto=http addr=127\.0\.0\.1:8080$")
        d.wait_log(r"event=ready version=\S+ pid=%d" % d.pid)
        assert (tmp_path / "data").is_dir()
    finally:
        assert d.stop() == 0


def test_health(zmta):
    d = zmta()
    status, body = d.get("/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["version"] == run_cli("--version").stdout.split()[1]
    assert 0 <= body["uptime"] < 60
    time.sleep(0.3)
    assert d.get("/health")[1]["uptime"] >= body["uptime"] + 0.25


def test_unknown_path_and_method_get_json_errors(zmta):
    d = zmta()
    assert d.get("/nope") == (404, {"error": "no such endpoint"})
    assert d.get("/health/extra") == (404, {"error": "no such endpoint"})
    assert d.get("/health", method="DELETE") == (405, {"error": "method not allowed"})


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_0_within_5s(zmta, sig):
    d = zmta()
    start = time.monotonic()
    d.signal(sig)
    assert d.wait_exit(timeout=5) == 0
    assert time.monotonic() - start < 5
    assert "event=stopped code=0" in d.log()


def test_listener_busy_exits_1(app, zmta):
    with socket.socket() as s:
        s.bind(("127.0.0.1", app.api_port))
        s.listen()
        d = zmta(wait=False)
        assert d.wait_exit(timeout=10) == 1
    assert f"cannot listen on 127.0.0.1:{app.api_port}" in d.log()


def test_reload_applies_log_level_and_reports_restart_only_options(app, zmta):
    d = zmta()
    assert "level=debug" not in d.log()
    app.write_config("development", {"api": {"port": free_port()}, "log": {"level": "debug"}})
    d.signal(signal.SIGHUP)
    d.wait_log(r"event=reload status=ok level=debug")
    d.wait_log(r"warn event=reload option=api\.port action=ignored")
    # Still serving on the old port, and debug lines (the access log) now show.
    assert d.get("/health")[0] == 200
    d.wait_log(r"debug event=http method=GET uri=\"/health\" status=200")


def test_reload_keeps_running_config_when_new_one_is_invalid(app, zmta):
    d = zmta()
    app.write_config("development",
                     f"api:\n  port: {app.api_port}\nlog:\n  level: debug\n  bogus: 1\n")
    d.signal(signal.SIGHUP)
    d.wait_log(r"event=reload status=rejected problem=\"\S+/config/development\.yaml:5: "
               r"unknown option log\.bogus\"")
    d.wait_log(r"event=reload status=rejected action=")
    # The old level (info) is still in force: no debug access-log line.
    assert d.get("/health")[0] == 200
    app.write_config("development", {"api": {"port": app.api_port}})
    d.signal(signal.SIGHUP)
    d.wait_log(r"info event=reload status=ok level=info")
    assert "debug event=http" not in d.log()


def test_log_file_and_reopen_on_sighup(app, zmta):
    log = app.path / "zmta-file.log"
    d = zmta(extra_config={"log": {"file": str(log)}})
    wait_until(lambda: log.exists() and "event=ready" in log.read_text(), 10, what="log file")
    assert "event=ready" not in d.log()  # not on stderr
    rotated = app.path / "zmta-file.log.1"
    log.rename(rotated)
    d.signal(signal.SIGHUP)
    wait_until(lambda: log.exists() and "event=reload status=ok" in log.read_text(), 10,
               what="reopened log file")
    assert "event=reload" not in rotated.read_text()
    assert d.stop() == 0
    assert "event=stopped code=0" in log.read_text()


def test_pidfile_locks_and_is_removed(app, zmta):
    d = zmta(extra_config={"pidfile": "zmta.pid"})
    pidfile = app.path / "zmta.pid"
    assert pidfile.read_text() == f"{d.pid}\n"
    # A second instance on the same pid file refuses (its API port differs).
    other = zmta(extra_config={"pidfile": "zmta.pid", "api": {"port": free_port()}}, wait=False)
    assert other.wait_exit(timeout=10) == 1
    assert f"another zone-mta (pid {d.pid}) holds {pidfile}" in other.log()
    assert d.get("/health")[0] == 200
    assert d.stop() == 0
    assert not pidfile.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_drops_privileges_after_binding(app, zmta):
    nobody = pwd.getpwnam("nobody")
    # A queue folder that nobody can reach (pytest's tmp folders are 0700).
    queue_dir = Path(tempfile.mkdtemp(prefix="zmta-privs-"))
    os.chmod(queue_dir, 0o755)
    # The API binds a port below 1024 as root, then the process runs as nobody.
    low = next(p for p in range(900, 1000) if _port_free(p))
    try:
        d = zmta(extra_config={"user": "nobody", "api": {"port": low},
                               "queue": {"dir": str(queue_dir / "data")}})
        _check_dropped(d, nobody, queue_dir / "data")
    finally:
        shutil.rmtree(queue_dir)


def _check_dropped(d, nobody, data):
    status = open(f"/proc/{d.pid}/status").read()
    uids = next(l for l in status.splitlines() if l.startswith("Uid:")).split()[1:]
    gids = next(l for l in status.splitlines() if l.startswith("Gid:")).split()[1:]
    assert uids == [str(nobody.pw_uid)] * 4
    assert gids == [str(nobody.pw_gid)] * 4
    # The queue was opened after the switch: its files belong to nobody.
    assert os.stat(data).st_uid == nobody.pw_uid
    assert os.stat(data / "CURRENT").st_uid == nobody.pw_uid
    d.wait_log(r"event=privileges action=dropped user=nobody")
    assert d.get("/health")[0] == 200
    with d.smtp() as client:  # the queue is writable as nobody
        client.sendmail("a@example.test", ["b@example.test"], b"Subject: x\r\n\r\nhi\r\n")
    assert d.stop() == 0


def _port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_unknown_user_fails_start(app, zmta):
    if os.geteuid() != 0:
        pytest.skip("the user option is only used when started as root")
    d = zmta(extra_config={"user": "no-such-user-zmta"}, wait=False)
    assert d.wait_exit(timeout=10) == 1
    assert "unknown user no-such-user-zmta (option user)" in d.log()
