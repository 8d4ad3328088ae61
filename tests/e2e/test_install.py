# SPDX-License-Identifier: EUPL-1.2
"""Installing as a service: `make install DESTDIR=...` lays out the binary,
the man pages, the systemd unit and its helpers; systemd-analyze accepts
the unit; man renders both pages; the daemon speaks systemd's notify
protocol (READY, RELOADING, STOPPING) on a real NOTIFY_SOCKET."""
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, ZMTA_BIN, wait_until

BUILD = Path(ZMTA_BIN).resolve().parent
PREFIX = "/usr/local"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("dest")
    res = subprocess.run(["make", "-C", str(REPO), "install", f"BUILD={BUILD}",
                          f"PREFIX={PREFIX}", f"DESTDIR={dest}"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    return dest


def test_make_install_lays_out_the_files(installed):
    root = installed / PREFIX.lstrip("/")
    files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    for f in ("bin/zone-mta", "share/man/man8/zone-mta.8", "share/man/man5/zone-mta.yaml.5",
              "share/zone-mta/default.yaml", "share/zone-mta/bounces.txt",
              "share/zone-mta/service.yaml", "lib/systemd/system/zone-mta.service",
              "lib/sysusers.d/zone-mta.conf", "etc/logrotate.d/zone-mta",
              "share/doc/zone-mta/migrating-from-zonemta.md", "share/doc/zone-mta/api.md"):
        assert f in files, f
    assert os.access(root / "bin/zone-mta", os.X_OK)
    assert (root / "etc/zone-mta/config").is_dir()  # the unit's app folder
    res = subprocess.run([str(root / "bin/zone-mta"), "--version"], capture_output=True,
                         text=True)
    assert res.returncode == 0 and res.stdout.startswith("zone-mta ")
    assert (root / "share/zone-mta/default.yaml").read_bytes() == \
        (REPO / "config/default.yaml").read_bytes()


def test_systemd_unit_is_accepted_and_hardened(installed, tmp_path):
    unit = (installed / PREFIX.lstrip("/") / "lib/systemd/system/zone-mta.service").read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "User=zone-mta",
                 "StateDirectory=zone-mta", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/zone-mta /var/log/zone-mta",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "PrivateTmp=yes",
                 f"ExecStart={PREFIX}/bin/zone-mta run -d {PREFIX}/etc/zone-mta "
                 f"-c {PREFIX}/share/zone-mta/service.yaml"):
        assert re.search(rf"^{re.escape(line)}$", unit, re.M), line
    # systemd-analyze checks the commands exist: point them into DESTDIR
    # (only the path prefix changes), and take no warning for an answer.
    copy = tmp_path / "zone-mta.service"
    copy.write_text(unit.replace(f"{PREFIX}/", f"{installed}{PREFIX}/"))
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                         capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stderr.strip()) == (0, ""), res.stderr
    # The unit's own check (ExecStartPre) passes on a fresh install.
    pre = re.search(r"^ExecStartPre=(.*)$", copy.read_text(), re.M).group(1).split()
    res = subprocess.run(pre, capture_output=True, text=True, timeout=30,
                         env={**os.environ, "ZONEMTA_ENV": "production"})
    assert res.returncode == 0, res.stderr
    assert "service.yaml" in res.stdout


@pytest.mark.parametrize("page,words", [
    ("man8/zone-mta.8", ["zone-mta - outbound SMTP relay", "check-bounce", "SIGHUP",
                         "EXIT STATUS"]),
    ("man5/zone-mta.yaml.5", ["zone-mta.yaml - the zone-mta configuration",
                              "smtpInterfaces.feeder.maxRecipients", "connectionCache.ttl",
                              "ZoneMTA's options"]),
])
def test_man_pages_render(installed, page, words):
    path = installed / PREFIX.lstrip("/") / "share/man" / page
    res = subprocess.run(["man", "-l", str(path)], capture_output=True, text=True,
                         env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "200"}, timeout=60)
    assert res.returncode == 0, res.stderr
    text = re.sub(r".\x08", "", res.stdout)
    for w in words:
        assert w in text, w


def test_notify_protocol(app, zmta, tmp_path):
    """Type=notify: READY=1 once listening, RELOADING=1 then READY=1 on
    SIGHUP, STOPPING=1 on SIGTERM, on the socket systemd would give."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    try:
        d = zmta(env={"NOTIFY_SOCKET": str(path)})
        ready = sock.recv(4096).decode()
        assert "READY=1" in ready.splitlines(), ready
        assert f"MAINPID={d.pid}" in ready.splitlines()
        assert d.get("/health")[0] == 200  # ready means serving
        os.kill(d.pid, signal.SIGHUP)
        reloading = sock.recv(4096).decode().splitlines()
        assert "RELOADING=1" in reloading
        assert any(re.fullmatch(r"MONOTONIC_USEC=\d+", l) for l in reloading), reloading
        assert "READY=1" in sock.recv(4096).decode().splitlines()
        os.kill(d.pid, signal.SIGTERM)
        assert "STOPPING=1" in sock.recv(4096).decode().splitlines()
        wait_until(lambda: d.proc.poll() is not None, 30, what="exit")
        assert d.proc.returncode == 0
    finally:
        sock.close()
