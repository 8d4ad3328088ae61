# SPDX-License-Identifier: EUPL-1.2
"""SOCKS5 proxies from Debian for the e2e tests, on loopback.

``Microsocks``: microsocks (optionally with -u/-P, RFC 1929), run in its own
mount namespace whose /etc/hosts maps host names (e.g. a .onion name) to
loopback addresses: the proxy resolves names itself, as Tor does for
.onion, and the system's /etc/hosts is untouched.  Needs root (unshare -m).

``Dante``: danted with a ``socks block`` rule for some destinations, so a
CONNECT is refused by the proxy's ruleset (REP 2).
"""

import os
import socket
import subprocess
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout=10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"proxy not listening on {port}: {log.read_text()}")


class _Proxy:
    proc: subprocess.Popen
    port: int
    logfile: Path

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            # danted forks: its children are in its process group
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


class Microsocks(_Proxy):
    def __init__(self, workdir: Path, hosts: dict, user=None, password=None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.logfile = workdir / "microsocks.log"
        hostsfile = workdir / "hosts"
        hostsfile.write_text("127.0.0.1 localhost\n" +
                             "".join(f"{addr} {name}\n" for name, addr in hosts.items()))
        args = ["microsocks", "-i", "127.0.0.1", "-p", str(self.port)]
        if user is not None:
            args += ["-u", user, "-P", password]
        script = f"mount --bind {hostsfile} /etc/hosts && exec " + " ".join(args)
        self.proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script],
                                     stdout=open(self.logfile, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _wait_listening(self.port, self.proc, self.logfile)


class Dante(_Proxy):
    def __init__(self, workdir: Path, block=()):
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.logfile = workdir / "danted.log"
        conf = workdir / "danted.conf"
        rules = "".join(f"socks block {{ from: 0.0.0.0/0 to: {b} log: connect error }}\n"
                        for b in block)
        conf.write_text(f"""logoutput: stderr
internal: 127.0.0.1 port = {self.port}
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}
{rules}socks pass {{ from: 0.0.0.0/0 to: 0.0.0.0/0 log: connect }}
""")
        self.proc = subprocess.Popen(["danted", "-f", str(conf), "-N", "1"],
                                     stdout=open(self.logfile, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _wait_listening(self.port, self.proc, self.logfile)
