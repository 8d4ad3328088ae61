# SPDX-License-Identifier: EUPL-1.2
"""The HTTP client (src/net/http_client.c) against a real HTTP server
(peers/httpd.py) on loopback, through tests/net/http_driver.c: requests as
JSON lines in, results as JSON lines out, all on one libevent loop.
"""
import hashlib
import json
import socket
import subprocess
from pathlib import Path

from conftest import ZMTA_BIN, free_port

DRIVER = str(Path(ZMTA_BIN).parent / "tests" / "net" / "zmta-http-driver")

OK, CONNECT, TIMEOUT, TLS, TOO_LARGE, BODY, PROTOCOL = range(7)


def run(requests, *args, timeout=60):
    """Runs the requests side by side; returns the results in the order they
    ended."""
    stdin = "".join(json.dumps(r) + "\n" for r in requests)
    res = subprocess.run([DRIVER, *args], input=stdin, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def by_tag(results):
    return {r["tag"]: r for r in results}


def stats(server):
    got = by_tag(run([{"tag": "s", "url": server.url("/stats")}]))["s"]
    assert got["status"] == 200, got
    return json.loads(got["body"])


def test_success_and_error_statuses(http_server):
    s = http_server()
    got = by_tag(run([
        {"tag": "ok", "url": s.url("/ok")},
        {"tag": "404", "url": s.url("/status/404")},
        {"tag": "503", "url": s.url("/status/503")},
    ]))
    assert got["ok"]["error"] == OK and got["ok"]["status"] == 200
    assert got["ok"]["body"] == "ok" and got["ok"]["content_type"] == "text/plain"
    # An HTTP error status is a response, not a failure of the client.
    assert (got["404"]["error"], got["404"]["status"], got["404"]["body"]) == \
        (OK, 404, "status 404")
    assert (got["503"]["error"], got["503"]["status"]) == (OK, 503)


def test_post_a_buffer_with_headers_and_basic_auth(http_server):
    s = http_server()
    body = "{\"a\": 1}"
    got = by_tag(run([{"tag": "p", "url": s.url("/echo"), "body": body,
                       "header": "Content-Type: application/json",
                       "user": "api", "password": "secret"}]))["p"]
    assert got["status"] == 200, got
    echo = json.loads(got["body"])
    assert echo["length"] == len(body)
    assert echo["sha256"] == hashlib.sha256(body.encode()).hexdigest()
    assert echo["content_type"] == "application/json"
    assert echo["authorization"] == "Basic YXBpOnNlY3JldA=="


def test_streamed_body_arrives_whole(http_server):
    s = http_server()
    n = 1_000_000  # served in 16 KiB pieces, each a little late
    got = by_tag(run([{"tag": "st", "url": s.url("/echo"), "stream": n}]))["st"]
    assert got["status"] == 200, got
    echo = json.loads(got["body"])
    expected = bytes((ord("a") + (i % 256) % 26) for i in range(n))
    assert echo["length"] == n and echo["chunked"] is True
    assert echo["sha256"] == hashlib.sha256(expected).hexdigest()


def test_timeout_and_connection_refused(http_server):
    s = http_server()
    refused_port = free_port()  # nothing listens there
    got = by_tag(run([
        {"tag": "slow", "url": s.url("/slow/3000"), "timeout_ms": 300},
        {"tag": "refused", "url": f"http://127.0.0.1:{refused_port}/ok"},
        {"tag": "bad", "url": "ftp://127.0.0.1/x"},
    ]))
    assert got["slow"]["error"] == TIMEOUT and got["slow"]["status"] == 0
    assert 250 <= got["slow"]["elapsed_ms"] < 2500
    assert got["refused"]["error"] == CONNECT and got["refused"]["status"] == 0
    assert got["refused"]["error_text"]
    # Only http and https.
    assert got["bad"]["error"] == PROTOCOL


def test_a_slow_response_does_not_hold_the_others(http_server):
    s = http_server()
    requests = [{"tag": "slow", "url": s.url("/slow/2000")}]
    requests += [{"tag": f"f{i}", "url": s.url("/ok")} for i in range(20)]
    results = run(requests)
    order = [r["tag"] for r in results]
    # Every fast one ended before the slow one, which still succeeded.
    assert order[-1] == "slow", order
    assert results[-1]["status"] == 200 and results[-1]["elapsed_ms"] >= 2000
    assert max(r["elapsed_ms"] for r in results[:-1]) < 1900


def test_hundred_concurrent_requests_with_a_cap_per_host_and_reuse(http_server):
    s = http_server()
    requests = [{"tag": f"r{i}", "url": s.url("/slow/20")} for i in range(100)]
    results = run(requests, "--max-per-host", "4")
    assert len(results) == 100
    assert all(r["error"] == OK and r["status"] == 200 for r in results), \
        [r for r in results if r["status"] != 200][:3]
    st = stats(s)
    assert st["requests"] == 100
    # Never more than 4 at once, and connections were reused: 4 for 100.
    assert st["max_in_flight"] <= 4
    assert st["connections"] <= 4 + 1  # + the /stats request's own


def test_response_size_cap(http_server):
    s = http_server()
    got = by_tag(run([
        {"tag": "small", "url": s.url("/big/1000"), "max_response": 4096},
        {"tag": "large", "url": s.url("/big/100000"), "max_response": 4096},
    ]))
    assert got["small"]["status"] == 200 and got["small"]["body_len"] == 1000
    assert got["large"]["error"] == TOO_LARGE and got["large"]["status"] == 0


def test_cancel_ends_a_request_without_its_callback(http_server):
    s = http_server()
    results = run([
        {"tag": "gone", "url": s.url("/slow/3000"), "cancel_after_ms": 100},
        {"tag": "kept", "url": s.url("/slow/200")},
    ])
    assert [r["tag"] for r in results] == ["gone", "kept"]
    assert results[0] == {"tag": "gone", "cancelled": True}
    assert results[1]["status"] == 200


def test_tls_is_verified(http_server):
    s = http_server(tls=True)
    # A self-signed certificate fails against the system's CAs ...
    got = by_tag(run([{"tag": "t", "url": s.url("/ok")}]))["t"]
    assert got["error"] == TLS, got
    # ... and passes against the CA file that signed it.
    got = by_tag(run([{"tag": "t", "url": s.url("/ok")}], "--ca-file", str(s.ca_file)))["t"]
    assert got["error"] == OK and got["status"] == 200 and got["body"] == "ok"
    # The name must match too: a certificate for another address fails.
    other = http_server(host="127.0.0.3", tls=True, cert_host="127.0.0.4")
    got = by_tag(run([{"tag": "t", "url": other.url("/ok")}], "--ca-file",
                     str(other.ca_file)))["t"]
    assert got["error"] == TLS, got


def test_a_server_that_closes_without_answering(tmp_path):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        proc = subprocess.Popen([DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        proc.stdin.write(json.dumps({"tag": "c", "url": f"http://127.0.0.1:{port}/x"}) + "\n")
        proc.stdin.close()
        conn, _ = srv.accept()
        conn.recv(4096)
        conn.close()
        out = proc.stdout.read()
        assert proc.wait(timeout=30) == 0
    got = json.loads(out)
    assert got["error"] == PROTOCOL and got["status"] == 0
