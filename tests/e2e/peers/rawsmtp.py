# SPDX-License-Identifier: EUPL-1.2
"""Hostile and odd receiving SMTP servers, scripted at the byte level.

aiosmtpd (sink.py) is a well-behaved server; these are not.  Each
``RawSMTP`` listens on a loopback address in a thread of the test process
and runs one behaviour for every connection:

- ``drip``: sends ``220-`` greeting lines, one every ``interval`` seconds,
  never the last one.
- ``endless``: answers the connection with ``220 `` followed by an endless
  line (no CRLF), up to ``limit`` bytes, as fast as we take it.
- ``smtp``: a plain SMTP server (EHLO keywords in ``ehlo``) that records the
  raw bytes of each DATA (dot-stuffing kept) in ``messages``; options:
  ``read_rate`` (bytes/second read during DATA, with a small receive
  buffer, so a slow reader really is slow), ``stall_data`` (after 354,
  never read again).

Every connection is logged in ``sessions``: peer address, when it opened,
when it closed, who closed it.
"""
import socket
import threading
import time


class RawSMTP:
    def __init__(self, host, port, behaviour, **opts):
        self.host, self.port = host, port
        self.behaviour = behaviour
        self.opts = opts
        self.sessions = []
        self.messages = []
        self.mail_lines = []
        self.lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if "read_rate" in opts or opts.get("stall_data"):
            # Inherited by accepted sockets: the kernel cannot absorb the body.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopping:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            s = {"peer_ip": addr[0], "opened": time.monotonic(), "closed": None,
                 "closed_by": None}
            with self.lock:
                self.sessions.append(s)
            threading.Thread(target=self._serve, args=(conn, s), daemon=True).start()

    def _serve(self, conn, s):
        try:
            getattr(self, "_" + self.behaviour)(conn)
            s["closed_by"] = "us"
        except (ConnectionError, BrokenPipeError, OSError):
            s["closed_by"] = "peer"
        finally:
            s["closed"] = time.monotonic()
            conn.close()

    # --- behaviours ---

    def _drip(self, conn):
        interval = self.opts.get("interval", 1.0)
        while not self.stopping:
            conn.sendall(b"220-still thinking\r\n")
            # A closed peer shows as readable with nothing to read.
            conn.settimeout(interval)
            try:
                if conn.recv(1024) == b"":
                    raise ConnectionError("closed")
            except socket.timeout:
                pass

    def _endless(self, conn):
        limit = self.opts.get("limit", 64 * 1024 * 1024)
        conn.sendall(b"220 ")
        chunk = b"x" * 65536
        sent = 0
        while sent < limit:
            conn.sendall(chunk)
            sent += len(chunk)
        time.sleep(5)

    def _readline(self, f):
        line = f.readline(65536)
        if not line:
            raise ConnectionError("closed")
        return line

    def _smtp(self, conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 raw.test ESMTP\r\n")
        while True:
            line = self._readline(f)
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                kws = self.opts.get("ehlo", ["PIPELINING"])
                lines = [b"250-raw.test"] + [b"250-" + k.encode() for k in kws]
                lines[-1] = b"250 " + lines[-1][4:]
                conn.sendall(b"\r\n".join(lines) + b"\r\n")
            elif verb == b"MAIL":
                with self.lock:
                    self.mail_lines.append(line)
                conn.sendall(b"250 2.1.0 ok\r\n")
            elif verb == b"RCPT":
                conn.sendall(b"250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go ahead\r\n")
                if self.opts.get("stall_data"):
                    time.sleep(self.opts.get("stall_for", 60))
                    return
                data = self._read_data(conn, f)
                with self.lock:
                    self.messages.append(data)
                conn.sendall(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                conn.sendall(b"250 2.0.0 ok\r\n")

    def _read_data(self, conn, f):
        """The raw DATA bytes up to and including the strict CRLF.CRLF."""
        rate = self.opts.get("read_rate")
        data = bytearray()
        while not data.endswith(b"\r\n.\r\n") and data != b".\r\n":
            if rate:
                piece = f.read1(4096)
                time.sleep(len(piece) / rate)
            else:
                piece = f.read1(65536)
            if not piece:
                raise ConnectionError("closed in DATA")
            data += piece
        return bytes(data)


def lenient_lines(raw: bytes) -> list:
    """The lines a lenient receiver reads in `raw`: one that drops NULs and
    ends lines at CR, LF or CRLF."""
    text = raw.replace(b"\x00", b"")
    return text.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
