# SPDX-License-Identifier: EUPL-1.2
"""The HTTP config server (docs/http-config.md; ZoneMTA's core/http-config):
a Python server on loopback hands out per-sender settings: zones, DKIM keys
(RSA and Ed25519, both signing, verified by dkimpy), headers, limits and
refusals; answers are cached; private keys never reach the queue.
"""
import json
import re
import signal
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import wait_until
from test_api import send
from test_dkim import keygen, verify_all
from test_queue import submit

MSG_A = (b"From: Alice <alice@tenant-a.test>\r\nTo: <rcpt@example.test>\r\n"
         b"Subject: signed twice\r\n\r\nhello\r\n")


class ConfigServer:
    """Answers POSTs with ANSWERS[from] (JSON); records every request."""

    def __init__(self, answers):
        self.answers = answers
        self.requests = []
        self.down = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode(),
                                                   keep_blank_values=True))
                outer.requests.append({"form": form,
                                       "type": self.headers.get("Content-Type")})
                if outer.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                body = json.dumps(outer.answers.get(form.get("from"), {})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/config"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def asked_for(self, sender):
        return [r for r in self.requests if r["form"].get("from") == sender]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def setup(tmp_path, app, smtp_sink, zmta):
    rsa, rsa_txt = keygen(tmp_path, "tenant-a.test", "rsa1", "rsa", 2048)
    ed, ed_txt = keygen(tmp_path, "tenant-a.test", "ed1", "ed25519")
    records = {"rsa1._domainkey.tenant-a.test.": rsa_txt,
               "ed1._domainkey.tenant-a.test.": ed_txt}
    answers = {
        "alice@tenant-a.test": {
            "sendingZone": "fast",
            "dkim": {"keys": [
                {"domainName": "tenant-a.test", "keySelector": "rsa1",
                 "privateKey": rsa.read_text()},
                {"domain": "tenant-a.test", "selector": "ed1", "privateKey": ed.read_text()}]},
            "headers": {"X-Tenant": "a"}},
        "bob@tenant-b.test": {"sendingZone": "slow"},
        "evil@spam.test": {"error": "Sender not allowed here", "code": 550},
        "later@spam.test": {"error": "Over quota", "code": 451},
        "limited@tenant-a.test": {"maxRecipients": 2, "maxSize": 2000},
    }
    server = ConfigServer(answers)
    fast, slow = smtp_sink("127.0.0.2"), smtp_sink("127.0.0.3")
    cfg = {
        "httpConfig": {"url": server.url, "ttl": "1 h"},
        "queue": {"deferTimes": ["1 s", "1 s", "1 s"]},
        "zones": {
            "default": {"disabled": True},
            "fast": {"host": fast.host, "port": fast.port},
            "slow": {"host": slow.host, "port": slow.port},
        },
    }

    def start(extra=None):
        return zmta(extra_config={**cfg, **(extra or {})})

    start.app = app
    yield start, server, fast, slow, records, rsa
    server.close()


def test_rsa_and_ed25519_keys_from_the_server_both_sign(setup):
    start, server, fast, slow, records, rsa = setup
    d = start()
    qid = submit(d, MSG_A, sender="alice@tenant-a.test")
    got = fast.wait_for(1)[0]
    sigs = re.findall(rb"^DKIM-Signature: .*?a=([a-z0-9-]+);.*?s=([a-z0-9]+);", got["data"],
                      re.M | re.S)
    assert len(re.findall(rb"^DKIM-Signature:", got["data"], re.M)) == 2
    assert verify_all(got["data"], records) == ["tenant-a.test", "tenant-a.test"]
    algos = sorted(re.findall(rb"\ba=([a-z0-9-]+);", got["data"]))
    assert algos == [b"ed25519-sha256", b"rsa-sha256"], algos
    assert re.search(rb"^X-Tenant: a\r$", got["data"], re.M)
    # ZoneMTA's request: a form with the sender, the client, its name
    req = server.asked_for("alice@tenant-a.test")[0]
    assert req["type"] == "application/x-www-form-urlencoded"
    assert req["form"] == {"from": "alice@tenant-a.test", "origin": "127.0.0.1",
                           "originhost": "[127.0.0.1]", "transhost": "client.test",
                           "user": "", "interface": "feeder"}
    # the private key never reached the store (its log and tables keep
    # what was written, deleted or not): only its hash did
    assert qid
    pem_line = rsa.read_text().splitlines()[1].encode()
    stored = [f for f in (start.app.path / "data").rglob("*") if f.is_file()]
    assert any(b"tenant-a.test" in f.read_bytes() for f in stored)
    assert not [f for f in stored if pem_line in f.read_bytes()]


def test_second_sender_gets_another_zone_and_the_cache_answers(setup):
    start, server, fast, slow, records, rsa = setup
    d = start()
    submit(d, MSG_A, sender="bob@tenant-b.test")
    slow.wait_for(1)
    assert fast.messages() == []
    d.wait_log(r"event=queued .*zones=slow")
    asked = len(server.requests)
    # the same request again within the TTL: no new request
    submit(d, MSG_A, sender="bob@tenant-b.test")
    slow.wait_for(2)
    assert len(server.requests) == asked
    # and over the API (interface api), asked with its own fields
    send(d, {"from": "bob@tenant-b.test", "to": "rcpt@example.test", "text": "api"})
    slow.wait_for(3)
    assert [r["form"]["interface"] for r in server.asked_for("bob@tenant-b.test")] == \
        ["feeder", "api"]


def test_refusals_and_limits(setup):
    start, server, fast, slow, records, rsa = setup
    d = start()
    with d.smtp() as c:
        c.ehlo("client.test")
        assert c.mail("evil@spam.test") == (550, b"5.7.1 Sender not allowed here")
        assert c.mail("later@spam.test") == (451, b"4.7.1 Over quota")
        assert c.mail("limited@tenant-a.test")[0] == 250
        assert c.rcpt("one@example.test")[0] == 250
        assert c.rcpt("two@example.test")[0] == 250
        code, text = c.rcpt("three@example.test")
        assert (code, text) == (452, b"4.5.3 Too many recipients for this sender (at most 2)")
        code, text = c.data(b"Subject: big\r\n\r\n" + b"x" * 3000 + b"\r\n")
        assert code == 552 and b"limit of this sender (2000 bytes)" in text
        c.rset()
        assert c.mail("limited@tenant-a.test")[0] == 250
        assert c.rcpt("one@example.test")[0] == 250
        assert c.data(b"Subject: small\r\n\r\nsmall\r\n")[0] == 250


def test_server_down_gives_451_and_onerror_accept_goes_on(setup):
    start, server, fast, slow, records, rsa = setup
    server.down = True
    d = start()
    with d.smtp() as c:
        c.ehlo("client.test")
        assert c.mail("bob@tenant-b.test") == \
            (451, b"4.3.0 Sender configuration not available, try again later")
    d.wait_log(r'event=http_config_error url=\S+ from=<bob@tenant-b\.test> '
               r'error="HTTP status 503" action=tempfail')
    d.stop()
    d = start({"httpConfig": {"url": server.url, "onError": "accept"}})
    with d.smtp() as c:
        c.ehlo("client.test")
        assert c.mail("bob@tenant-b.test")[0] == 250


def test_keys_are_asked_for_again_after_a_restart(setup):
    start, server, fast, slow, records, rsa = setup
    # the fast zone is off: the message waits in the queue
    d = start({"zones": {"default": {"disabled": True},
                         "fast": {"host": fast.host, "port": fast.port, "disabled": True}}})
    qid = submit(d, MSG_A, sender="alice@tenant-a.test")
    assert len(server.asked_for("alice@tenant-a.test")) == 1
    status, msg = d.get(f"/message/{qid}")
    assert status == 200
    keys = msg["meta"]["dkimKeys"]
    assert [(k["domain"], k["selector"]) for k in keys] == [("tenant-a.test", "rsa1"),
                                                            ("tenant-a.test", "ed1")]
    assert all(re.fullmatch(r"[0-9a-f]{64}", k["key"]) for k in keys)
    assert "PRIVATE KEY" not in json.dumps(msg)
    d.stop()
    d = start()  # keyring and cache empty: delivery asks again
    got = fast.wait_for(1)[0]
    assert verify_all(got["data"], records) == ["tenant-a.test", "tenant-a.test"]
    assert len(server.asked_for("alice@tenant-a.test")) == 2
