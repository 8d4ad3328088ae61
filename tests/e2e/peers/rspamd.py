# SPDX-License-Identifier: EUPL-1.2
"""Debian's rspamd for the e2e tests, on loopback, with a config of its own.

Nothing but Rspamd's core (GTUBE) and the rules of rspamd/test-rules.lua,
whose markers choose the action: SOFT-REJECT-TEST (soft reject),
ADD-HEADER-TEST (score 7: add header), REWRITE-SUBJECT-TEST (score 11:
rewrite subject).  No module of the packaged config is loaded, so Rspamd
asks no DNS server and fetches no map: it talks to nobody but us.
"""

import os
import socket
import subprocess
import time
from pathlib import Path

RULES = Path(__file__).with_name("rspamd") / "test-rules.lua"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rspamd:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.logfile = workdir / "rspamd.log"
        self.conf = workdir / "rspamd.conf"
        self.conf.write_text(f"""options {{
  pidfile = "{workdir}/rspamd.pid";
  dns {{ nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 1; }}
  max_message = 64mb;
}}
logging {{ type = "file"; filename = "{self.logfile}"; level = "info"; }}
worker "normal" {{
  bind_socket = "127.0.0.1:{self.port}";
  count = 1;
  mime = true;
  task_timeout = 120s;
}}
actions {{
  reject = 15; rewrite_subject = 10; add_header = 6; greylist = 4;
  subject = "***SPAM*** %s";
}}
lua = "{RULES}";
""")
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/checkv2"

    def start(self, timeout: float = 90.0) -> "Rspamd":
        self.proc = subprocess.Popen(
            ["rspamd", "-f", "-i", *(["-u", "root", "-g", "root"] if os.geteuid() == 0 else []),
             "-c", str(self.conf),
             "--var", f"DBDIR={self.workdir}", "--var", f"RUNDIR={self.workdir}"],
            stdout=open(self.workdir / "rspamd.out", "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rspamd exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
                    if b"pong" in s.recv(200):
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"rspamd did not answer /ping: {self.log()}")

    def log(self) -> str:
        out = ""
        for f in (self.workdir / "rspamd.out", self.logfile):
            if f.exists():
                out += f.read_text(errors="replace")
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
