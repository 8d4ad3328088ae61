# SPDX-License-Identifier: EUPL-1.2
"""A real HTTP/1.1 server on loopback for the HTTP client's tests (python's
http.server, one thread per connection, keep-alive).

    python3 httpd.py --host 127.0.0.1 [--tls-cert C --tls-key K]

prints "READY <port>" and serves:

    GET  /ok                 200 "ok"
    GET  /status/<code>      that status, body "status <code>"
    GET  /slow/<ms>          200 "slow" after <ms> milliseconds
    GET  /big/<n>            200 with n bytes
    POST /echo               200 JSON {"length", "sha256", "content_type",
                             "chunked", "authorization"}
    GET  /stats              200 JSON {"requests", "connections",
                             "max_in_flight"} (not counted itself)
    POST /stats/reset        zeroes the counters
    GET  /auth[/slow/<ms>]?q an SMTP AUTH service (ZoneMTA's http-auth):
                             Basic alice:s3cret -> 200 {"user": "alice"},
                             bob:hunter2 -> 200 "" (no name), else 401;
                             after <ms> milliseconds with /slow/<ms>
    GET  /auth-log           200 JSON list of {"query", "user"} of each
                             /auth request (never the password)
"""
import argparse
import base64
import hashlib
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

AUTH_USERS = {"alice": "s3cret", "bob": "hunter2"}
AUTH_LOG = []


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = self.connections = self.in_flight = self.max_in_flight = 0

    def reset(self):
        with self.lock:
            self.requests = self.connections = self.max_in_flight = 0


STATS = Stats()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with STATS.lock:
            STATS.connections += 1

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def reply(self, status, body, ctype="text/plain"):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def counted(self, fn):
        with STATS.lock:
            STATS.requests += 1
            STATS.in_flight += 1
            STATS.max_in_flight = max(STATS.max_in_flight, STATS.in_flight)
        try:
            fn()
        finally:
            with STATS.lock:
                STATS.in_flight -= 1

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data, True
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n), False

    def do_GET(self):
        path = self.path
        if path == "/auth-log":
            with STATS.lock:
                return self.reply(200, json.dumps(AUTH_LOG), "application/json")
        if path == "/stats":
            with STATS.lock:
                body = {"requests": STATS.requests, "connections": STATS.connections,
                        "max_in_flight": STATS.max_in_flight}
            return self.reply(200, json.dumps(body), "application/json")
        self.counted(lambda: self.get(path))

    def auth(self, path):
        parts = urlsplit(path)
        if parts.path.startswith("/auth/slow/"):
            time.sleep(int(parts.path.split("/")[3]) / 1000)
        header = self.headers.get("Authorization", "")
        user = password = None
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        with STATS.lock:
            AUTH_LOG.append({"query": parts.query, "user": user})
        if user in AUTH_USERS and AUTH_USERS[user] == password:
            if user == "alice":
                return self.reply(200, json.dumps({"user": user}), "application/json")
            return self.reply(200, "")
        self.reply(401, "no")

    def get(self, path):
        if path.startswith("/auth"):
            self.auth(path)
        elif path == "/ok":
            self.reply(200, "ok")
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            self.reply(code, f"status {code}")
        elif path.startswith("/slow/"):
            time.sleep(int(path.split("/")[2]) / 1000)
            self.reply(200, "slow")
        elif path.startswith("/big/"):
            self.reply(200, b"x" * int(path.split("/")[2]))
        else:
            self.reply(404, "no such path")

    def do_POST(self):
        if self.path == "/stats/reset":
            self.read_body()
            STATS.reset()
            return self.reply(200, "reset")
        self.counted(self.post)

    def post(self):
        data, chunked = self.read_body()
        if self.path == "/echo":
            body = {"length": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                    "content_type": self.headers.get("Content-Type"),
                    "chunked": chunked,
                    "authorization": self.headers.get("Authorization")}
            self.reply(200, json.dumps(body), "application/json")
        else:
            self.reply(404, "no such path")

    do_PUT = do_POST


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
