# SPDX-License-Identifier: EUPL-1.2
"""Events and webhooks end to end: every outcome is an event, stored with
the change it reports and POSTed to a real HTTP receiver run here, which
checks each POST's HMAC-SHA256 signature.  An endpoint that is down loses
nothing (the backlog is in the store, across kill -9), gets its backlog in
order per message, and /metrics shows the backlog rise and fall.
bounces.url keeps ZoneMTA's http-bounce form.
"""
import hashlib
import hmac
import json
import re
import signal
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, wait_until
from test_api import metrics
from test_delivery import relay_config, wait_delivered

SECRET = "s3cret-webhook-key"


class Receiver:
    """A webhook endpoint on loopback that can be taken down and brought
    back on the same port.  Every POST's signature is checked: a bad one
    gets 401 (and the test fails: the events would never be taken)."""

    def __init__(self, secret=SECRET):
        self.port = free_port()
        self.secret = secret
        self.lock = threading.Lock()
        self.posts = []          # (headers, body) of each POST taken
        self.bad_signatures = 0
        self.status = 200        # what the next POSTs get
        self.server = None

    def url(self, path="/events"):
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver.status
                if receiver.secret is not None and not receiver.verify(self.headers, body):
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    status = 401
                if status == 200:
                    with receiver.lock:
                        receiver.posts.append((dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def verify(self, headers, body):
        """X-Zmta-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">,
        within 5 minutes (a replay later is refused)."""
        m = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", headers.get("X-Zmta-Signature", ""))
        if m is None or abs(time.time() - int(m.group(1))) > 300:
            return False
        want = hmac.new(self.secret.encode(), m.group(1).encode() + b"." + body,
                        hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, m.group(2))

    def events(self):
        with self.lock:
            return [e for _, body in self.posts for e in json.loads(body)]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def config(dns_server, sink, endpoints, **webhooks):
    cfg = relay_config(dns_server, sink.port)
    cfg["webhooks"] = {"endpoints": endpoints, **webhooks}
    return cfg


@pytest.fixture
def world(dns_server, smtp_sink):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    return sink


def send_many(d, n, rcpt="bob@example.test", campaign=None):
    """n messages over one SMTP session; their queue ids in order."""
    ids = []
    with d.smtp() as client:
        client.ehlo("client.test")
        for i in range(n):
            extra = f"X-Campaign: {campaign}\r\n" if campaign else ""
            msg = (f"From: alice@origin.test\r\nTo: {rcpt}\r\nSubject: m{i}\r\n"
                   f"Message-ID: <m{i}@origin.test>\r\n{extra}\r\nbody {i}\r\n").encode()
            client.mail("alice@origin.test")
            client.rcpt(rcpt)
            code, text = client.data(msg)
            assert code == 250, text
            ids.append(re.search(rb"queued as ([0-9a-f]{18})", text).group(1).decode())
    return ids


def webhook_metric(d, family, endpoint):
    samples = metrics(d)[0]
    return samples[(family, (("endpoint", endpoint),))]


def test_an_endpoint_down_30s_loses_nothing(world, dns_server, receiver, zmta):
    """1,000 messages delivered while the endpoint is down for 30 s: then
    every event arrives (each id at least once), in order per message,
    signed; the backlog metric rises and falls."""
    sink = world
    ep = {"name": "crm", "url": receiver.url(), "secret": SECRET, "batchSize": 200,
          "maxDelay": "200 ms", "retryMax": "2 s", "timeout": "5 s"}
    cfg = config(dns_server, sink, [ep], headers=["X-Campaign"])
    cfg["zones"]["default"]["connections"] = 4
    d = zmta(extra_config=cfg)
    down_at = time.time()
    ids = send_many(d, 1000, campaign="winter-sale")
    wait_delivered(d, 1000, timeout=120)
    wait_until(lambda: webhook_metric(d, "zonemta_webhook_pending_events", "crm") == 2000,
               30, interval=0.2, what="2000 events pending")
    d.wait_log(r"event=webhook_failed endpoint=\"crm\" .*error=\"", timeout=10)
    time.sleep(max(0.0, 30 - (time.time() - down_at)))
    assert webhook_metric(d, "zonemta_webhook_oldest_event_seconds", "crm") >= 25
    assert webhook_metric(d, "zonemta_webhook_failures_total", "crm") >= 1
    assert receiver.posts == []

    receiver.start()
    wait_until(lambda: webhook_metric(d, "zonemta_webhook_pending_events", "crm") == 0,
               60, interval=0.2, what="the backlog taken")
    assert receiver.bad_signatures == 0
    events = receiver.events()
    by_id = {}
    for e in events:
        by_id.setdefault(e["eventId"], e)
    assert len(by_id) == 2000  # each event at least once (repeats share the id)
    assert webhook_metric(d, "zonemta_webhook_sent_events_total", "crm") >= 2000
    assert webhook_metric(d, "zonemta_webhook_oldest_event_seconds", "crm") == 0
    per_message = {}
    for e in events:
        per_message.setdefault(e["id"], []).append(e["event"])
    assert sorted(per_message) == sorted(ids)
    for qid, kinds in per_message.items():
        # in order per message: queued before delivered
        assert [k for i, k in enumerate(kinds) if k not in kinds[:i]] == \
            ["queued", "delivered"], (qid, kinds)
    delivered = next(e for e in by_id.values() if e["event"] == "delivered")
    assert delivered["to"] == "bob@example.test"
    assert delivered["from"] == "alice@origin.test"
    assert delivered["seq"] == "001" and delivered["zone"] == "default"
    assert re.fullmatch(r"<m\d+@origin\.test>", delivered["messageId"])
    # no MX record: the domain itself is the host (RFC 5321 5.1)
    assert delivered["mx"] == "example.test" and delivered["remoteAddress"] == "127.0.0.2"
    assert delivered["response"].startswith("250")
    assert delivered["headers"] == {"X-Campaign": "winter-sale"}
    assert delivered["interface"] == "feeder"
    assert abs(delivered["time"] / 1000 - time.time()) < 300


def test_the_backlog_survives_kill_9(world, dns_server, receiver, zmta):
    sink = world
    ep = {"name": "crm", "url": receiver.url(), "secret": SECRET, "batchSize": 10,
          "maxDelay": "100 ms", "retryMax": "1 s", "events": ["delivered", "bounced"]}
    cfg = config(dns_server, sink, [ep])
    d = zmta(extra_config=cfg)
    ids = send_many(d, 20)
    wait_delivered(d, 20)
    wait_until(lambda: webhook_metric(d, "zonemta_webhook_pending_events", "crm") == 20,
               20, what="20 events pending")
    d.signal(signal.SIGKILL)
    d.wait_exit()
    receiver.start()
    d = zmta(extra_config=cfg)
    d.wait_log(r"event=webhook_backlog endpoint=\"crm\" pending=20")
    wait_until(lambda: len({e["eventId"] for e in receiver.events()}) == 20, 30,
               what="the stored backlog sent")
    assert sorted({e["id"] for e in receiver.events()}) == sorted(ids)
    assert {e["event"] for e in receiver.events()} == {"delivered"}  # only those asked for
    wait_until(lambda: webhook_metric(d, "zonemta_webhook_pending_events", "crm") == 0, 10)


def test_a_batch_that_does_not_fill_goes_after_max_delay(world, dns_server, receiver, zmta):
    sink = world
    receiver.start()
    ep = {"url": receiver.url(), "secret": SECRET, "batchSize": 100, "maxDelay": "500 ms",
          "events": ["delivered"]}
    d = zmta(extra_config=config(dns_server, sink, [ep]))
    send_many(d, 3)
    wait_until(lambda: len(receiver.events()) == 3, 15, what="3 events in batches under 100")
    for headers, body in receiver.posts:
        assert headers["Content-Type"] == "application/json"
        assert int(headers["X-Zmta-Events"]) == len(json.loads(body))


def test_non_2xx_is_retried_and_never_lost(world, dns_server, receiver, zmta):
    sink = world
    receiver.status = 503
    receiver.start()
    ep = {"url": receiver.url(), "secret": SECRET, "batchSize": 5, "maxDelay": "0 s",
          "retryMax": "500 ms", "events": ["delivered"]}
    d = zmta(extra_config=config(dns_server, sink, [ep]))
    send_many(d, 5)
    wait_delivered(d, 5)
    d.wait_log(r"event=webhook_failed endpoint=\"%s\" .*error=\"status 503\"" %
               re.escape(receiver.url()))
    assert receiver.events() == []
    receiver.status = 200
    wait_until(lambda: len(receiver.events()) == 5, 20, what="retried until 2xx")
    d.wait_log(r"event=webhook_recovered")


def test_max_backlog_drops_the_oldest_and_counts_them(world, dns_server, receiver, zmta):
    sink = world
    ep = {"name": "small", "url": receiver.url(), "secret": SECRET, "events": ["delivered"],
          "maxDelay": "0 s", "retryMax": "500 ms"}
    d = zmta(extra_config=config(dns_server, sink, [ep], maxBacklog=5))
    ids = send_many(d, 12)
    wait_delivered(d, 12)
    wait_until(lambda: webhook_metric(d, "zonemta_webhook_dropped_events_total", "small") >= 6,
               20, what="drops counted")
    d.wait_log(r"event=dropped_events endpoint=\"small\" dropped=1 max_backlog=5")
    receiver.start()
    wait_until(lambda: webhook_metric(d, "zonemta_webhook_pending_events", "small") == 0, 20)
    got = [e["id"] for e in receiver.events()]
    dropped = webhook_metric(d, "zonemta_webhook_dropped_events_total", "small")
    # What is dropped is the oldest not in flight: what is kept is the
    # events a failing POST still held (the first ones) and the newest.
    # Four connections deliver at once, so the order is the one the
    # deliveries ended in (the log's), not the one the messages were sent in.
    order = re.findall(r"id=([0-9a-f]{18}) event=delivered", d.log())
    assert sorted(order) == sorted(ids)
    assert len(set(got)) == len(got) == 12 - dropped
    kept = sorted(order.index(i) for i in got)
    in_flight = next(k for k in range(len(kept) + 1) if k == len(kept) or kept[k] != k)
    newest = kept[in_flight:]
    assert newest == list(range(12 - len(newest), 12)) and len(newest) >= 5 - in_flight, kept


def test_bounce_url_posts_zonemtas_form(world, dns_server, receiver, zmta):
    sink = world
    sink.set_script({"recipients": {"bob@example.test": {
        "rcpt": {"reply": "550 5.1.1 <bob@example.test>: no such user"}}}})
    receiver.secret = None  # ZoneMTA's http-bounce is not signed
    receiver.start()
    cfg = relay_config(dns_server, sink.port)
    cfg["bounces"] = {"url": receiver.url("/report-bounce"), "dsn": False}
    d = zmta(extra_config=cfg)
    with d.smtp() as client:
        client.ehlo("client.test")
        client.sendmail("alice@origin.test", ["bob@example.test"],
                        b"From: alice@origin.test\r\nX-FBL: fbl-42\r\nSubject: x\r\n\r\nhi\r\n")
    wait_until(lambda: len(receiver.posts) == 1, 20, what="the bounce POST")
    headers, body = receiver.posts[0]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = dict(urllib.parse.parse_qsl(body.decode()))
    assert re.fullmatch(r"[0-9a-f]{18}", form["id"])
    assert form["to"] == "bob@example.test" and form["seq"] == "001"
    assert form["returnPath"] == "alice@origin.test"
    assert form["category"] == "recipient"
    assert form["response"] == "550 5.1.1 <bob@example.test>: no such user"
    assert form["fbl"] == "fbl-42"
    assert abs(int(form["time"]) / 1000 - time.time()) < 300
    time.sleep(1)
    assert len(receiver.posts) == 1  # a 2xx ends it: one POST per bounce


def test_deferred_and_rejected_are_events(world, dns_server, receiver, zmta):
    sink = world
    sink.set_script({"recipients": {"bob@example.test": {
        "rcpt": {"reply": "451 4.7.1 try later"}}}})
    receiver.start()
    ep = {"url": receiver.url(), "secret": SECRET, "maxDelay": "0 s",
          "events": ["deferred", "rejected"]}
    cfg = config(dns_server, sink, [ep])
    cfg["maxHops"] = 2
    d = zmta(extra_config=cfg)
    with d.smtp() as client:
        client.ehlo("client.test")
        client.sendmail("alice@origin.test", ["bob@example.test"],
                        b"From: alice@origin.test\r\nSubject: x\r\n\r\nhi\r\n")
        looped = b"Received: from a\r\n" * 3 + b"Subject: loop\r\n\r\nhi\r\n"
        client.mail("alice@origin.test")
        client.rcpt("carol@example.test")
        assert client.data(looped)[0] == 554
    wait_until(lambda: {e["event"] for e in receiver.events()} >= {"deferred", "rejected"},
               20, what="both events")
    deferred = next(e for e in receiver.events() if e["event"] == "deferred")
    assert deferred["to"] == "bob@example.test"
    assert deferred["response"] == "451 4.7.1 try later"
    assert deferred["status"] == "4.7.1" and deferred["attempts"] == 1
    assert deferred["nextAttempt"] / 1000 > time.time() - 5
    rejected = next(e for e in receiver.events() if e["event"] == "rejected")
    assert rejected["to"] == "carol@example.test"
    assert rejected["response"].startswith("554 5.4.6")


@pytest.mark.parametrize("endpoints,error", [
    ([{"url": "ftp://example.test/x"}],
     r"webhooks\.endpoints\[0\]\.url must be http:// or https:// \(got 'ftp://example\.test/x'\)"),
    ([{"name": "a", "url": "http://127.0.0.1:1/"}, {"name": "a", "url": "http://127.0.0.1:2/"}],
     r"webhooks\.endpoints\[1\]: another endpoint has the name 'a'"),
    ([{"url": "http://127.0.0.1:1/", "events": ["bounced", "exploded"]}],
     r"webhooks\.endpoints\[0\]\.events\[1\] must be one of queued, .* \(got 'exploded'\)"),
    ([{"url": "http://127.0.0.1:1/", "events": []}],
     r"webhooks\.endpoints\[0\]\.events lists no event"),
    ([{"name": "x"}], r"webhooks\.endpoints\[0\] needs url"),
])
def test_a_bad_endpoint_is_a_config_error(app, endpoints, error):
    app.write_config("development", {"webhooks": {"endpoints": endpoints}})
    res = app.check_config()
    assert res.returncode == 2
    assert re.search(r"development\.yaml:\d+: (option )?" + error, res.stderr), res.stderr
