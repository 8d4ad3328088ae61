# SPDX-License-Identifier: EUPL-1.2
"""The suppression list end to end: ZoneMTA's GET/POST/DELETE
/suppressionlist shapes, kept in the store across restarts, checked at
RCPT and /send (suppression.intake: refuse) or before delivery (accept:
dropped with a `suppressed` event, never delivered, no bounce), a
suppression added after queuing stops the pending delivery, and
bounces.autoSuppress after a hard bounce.
"""
import email
import email.policy
import json
import re
import smtplib
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import wait_until
from test_delivery import relay_config
from test_api import metrics
from test_queue import queue_counts
from test_webhooks import SECRET, Receiver


def call(d, method, path, body=None, form=False):
    data = headers = None
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(d.url(path), data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def world(dns_server, smtp_sink):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]},
                            "other.test": {"A": ["127.0.0.2"]}})
    return sink


def config(dns_server, sink, intake="accept", **extra):
    cfg = relay_config(dns_server, sink.port, zones={"bounces": {}})
    cfg["suppression"] = {"intake": intake}
    cfg.update(extra)
    return cfg


def send(d, rcpts, subject="x"):
    with d.smtp() as client:
        client.ehlo("client.test")
        refused = client.sendmail("alice@origin.test", rcpts,
                                  f"From: alice@origin.test\r\nSubject: {subject}\r\n\r\nhi\r\n")
    return refused


def test_crud_with_zonemtas_shapes_survives_restart(world, dns_server, zmta):
    d = zmta(extra_config=config(dns_server, world))
    status, got = call(d, "POST", "/suppressionlist", {"address": "Bob@Example.TEST"})
    assert status == 200
    bob = got["suppressed"]
    assert re.fullmatch(r"[0-9a-f]{24}", bob["id"])
    assert bob["address"] == "bob@example.test" and bob["source"] == "api"
    assert "domain" not in bob
    status, got = call(d, "POST", "/suppressionlist", {"domain": "other.test",
                                                       "reason": "complaints",
                                                       "expires": "2099-01-01T00:00:00Z"},
                       form=True)
    assert status == 200, got
    dom = got["suppressed"]
    assert dom["domain"] == "other.test" and dom["reason"] == "complaints"
    assert dom["expires"].startswith("2099-01-01T00:00:00")
    # Newest first, as ZoneMTA sorts.
    status, got = call(d, "GET", "/suppressionlist")
    assert status == 200
    assert [e["id"] for e in got["suppressed"]] == [dom["id"], bob["id"]]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", got["suppressed"][0]["created"])
    status, got = call(d, "GET", "/suppressionlist?limit=1")
    assert [e["id"] for e in got["suppressed"]] == [dom["id"]] and got["total"] == 2
    assert got["next"] == dom["id"]
    status, got = call(d, "GET", f"/suppressionlist?limit=1&after={dom['id']}")
    assert [e["id"] for e in got["suppressed"]] == [bob["id"]] and "next" not in got
    assert call(d, "GET", "/suppressionlist?after=" + "0" * 24)[1]["field"] == "after"
    assert call(d, "GET", "/suppressionlist?limit=10001")[1]["field"] == "limit"
    status, got = call(d, "POST", "/suppressionlist", {"domain": "@Third.test"})
    assert status == 200 and got["suppressed"]["domain"] == "third.test"
    assert call(d, "DELETE", "/suppressionlist", {"id": got["suppressed"]["id"]})[0] == 200

    for bad, field in (({}, "address"), ({"address": "no-at-sign"}, "address"),
                       ({"domain": "a@b.test"}, "domain"),
                       ({"address": "x@y.test", "expires": "soon"}, "expires"),
                       ({"address": "x@y.test", "source": "guess"}, "source")):
        status, got = call(d, "POST", "/suppressionlist", bad)
        assert status == 400 and got["field"] == field, (bad, got)
    assert call(d, "DELETE", "/suppressionlist", {"id": "nothex"})[1]["error"] == "Invalid entry ID"
    assert call(d, "DELETE", "/suppressionlist", {"id": "0" * 24})[0] == 404

    d.stop()
    d = zmta(extra_config=config(dns_server, world))
    got = call(d, "GET", "/suppressionlist")[1]
    assert [e["id"] for e in got["suppressed"]] == [dom["id"], bob["id"]]
    assert call(d, "DELETE", "/suppressionlist", {"id": bob["id"]}) == \
        (200, {"deleted": bob["id"]})
    assert call(d, "DELETE", "/suppressionlist", {"domain": "other.test"}) == \
        (200, {"deleted": dom["id"]})
    d.stop()
    d = zmta(extra_config=config(dns_server, world))
    assert call(d, "GET", "/suppressionlist")[1]["suppressed"] == []


def test_refused_at_rcpt_and_send(world, dns_server, zmta):
    d = zmta(extra_config=config(dns_server, world, intake="refuse"))
    call(d, "POST", "/suppressionlist", {"address": "bob@example.test"})
    call(d, "POST", "/suppressionlist", {"domain": "other.test"})
    with d.smtp() as client:
        client.ehlo("client.test")
        client.mail("alice@origin.test")
        code, text = client.rcpt("BOB@example.test")
        assert code == 550 and text.startswith(b"5.7.1 <BOB@example.test>: Recipient is on "
                                               b"the suppression list"), text
        assert client.rcpt("anyone@other.test")[0] == 550
        assert client.rcpt("carol@example.test")[0] == 250
    status, got = call(d, "POST", "/send", {"from": "alice@origin.test",
                                            "to": "bob@example.test", "text": "hi"})
    assert status == 403 and got["field"] == "to"
    assert "bob@example.test is on the suppression list" in got["error"]
    assert call(d, "POST", "/send", {"from": "alice@origin.test", "to": "carol@example.test",
                                     "text": "hi"})[0] == 200


def test_accepted_then_dropped_with_an_event_never_delivered(world, dns_server, zmta):
    sink = world
    receiver = Receiver()
    receiver.start()
    try:
        cfg = config(dns_server, sink, webhooks={"endpoints": [
            {"url": receiver.url(), "secret": SECRET, "maxDelay": "0 s",
             "events": ["suppressed", "delivered", "bounced"]}]})
        d = zmta(extra_config=cfg)
        call(d, "POST", "/suppressionlist", {"address": "bob@example.test"})
        assert send(d, ["bob@example.test", "carol@example.test"]) == {}
        wait_until(lambda: len(receiver.events()) == 2, 20, what="two events")
        kinds = {e["to"]: e["event"] for e in receiver.events()}
        assert kinds == {"bob@example.test": "suppressed", "carol@example.test": "delivered"}
        sup = next(e for e in receiver.events() if e["event"] == "suppressed")
        assert "is on the suppression list" in sup["response"]
        assert [m["rcpt_tos"] for m in sink.messages()] == [["carol@example.test"]]
        d.wait_log(r"event=suppressed seq=001 zone=default rcpt=<bob@example\.test>")
        assert queue_counts(d, "bounces") == (0, 0)  # no bounce for it (ZoneMTA's rule)
        assert "dsn_queued" not in d.log()
        samples = metrics(d)[0]
        zone = ("zone", "default")
        assert samples[("zonemta_delivery_attempts_total", (("result", "suppressed"), zone))] == 1
        # ZoneMTA's own counter knows only delivered, deferred and rejected.
        assert ("zonemta_delivery_status_total", (("status", "suppressed"), zone)) not in samples
        assert samples[("zonemta_delivery_status_total", (("status", "delivered"), zone))] == 1
    finally:
        receiver.stop()


def test_a_suppression_added_after_queuing_stops_the_delivery(world, dns_server, zmta):
    sink = world
    sink.set_script({"recipients": {"bob@example.test": {"rcpt": {"reply": "451 4.2.0 busy"}}}})
    d = zmta(extra_config=config(dns_server, sink))
    assert send(d, ["bob@example.test"]) == {}
    d.wait_log(r"event=deferred seq=001 .*rcpt=<bob@example\.test>")
    call(d, "POST", "/suppressionlist", {"domain": "example.test"})
    sink.set_script({})
    d.wait_log(r"event=suppressed seq=001 zone=default rcpt=<bob@example\.test> "
               r"reason=\"domain example\.test is on the suppression list", timeout=15)
    wait_until(lambda: queue_counts(d) == (0, 0), 10)
    time.sleep(1.5)  # past the next retry: nothing goes out
    assert sink.messages() == []


def test_auto_suppression_after_a_hard_bounce(world, dns_server, zmta):
    sink = world
    sink.set_script({"recipients": {"bob@example.test": {
        "rcpt": {"reply": "550 5.1.1 <bob@example.test>: no such user"}}}})
    cfg = config(dns_server, sink, intake="refuse",
                 bounces={"autoSuppress": "30 days", "dsn": False})
    d = zmta(extra_config=cfg)
    assert send(d, ["bob@example.test"]) == {}
    d.wait_log(r"event=suppression_added seq=001 suppression=\w{24} address=bob@example\.test "
               r"source=bounce")
    got = call(d, "GET", "/suppressionlist")[1]["suppressed"]
    assert len(got) == 1 and got[0]["address"] == "bob@example.test"
    assert got[0]["source"] == "bounce" and "no such user" in got[0]["reason"]
    left = time.mktime(time.strptime(got[0]["expires"][:19], "%Y-%m-%dT%H:%M:%S")) - \
        time.mktime(time.gmtime())
    assert 29 * 86400 < left <= 30 * 86400 + 60
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(d, ["bob@example.test"])
    # A temporary failure or another category does not suppress.
    sink.set_script({"recipients": {"carol@example.test": {
        "rcpt": {"reply": "550 5.7.1 policy: message refused"}}}})
    assert send(d, ["carol@example.test"]) == {}
    d.wait_log(r"event=bounced seq=001 zone=default rcpt=<carol@example\.test>")
    assert len(call(d, "GET", "/suppressionlist")[1]["suppressed"]) == 1


def test_notify_tells_the_sender_by_dsn(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    senders_mx = smtp_sink("127.0.0.5", port=sink.port)
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]},
                            "origin.test": {"A": ["127.0.0.5"]}})
    d = zmta(extra_config=config(dns_server, sink, suppression={"intake": "accept",
                                                                "notify": True}))
    entry = call(d, "POST", "/suppressionlist", {"address": "bob@example.test"})[1]["suppressed"]
    assert send(d, ["bob@example.test"]) == {}
    msg = email.message_from_bytes(senders_mx.wait_for(1)[0]["data"],
                                   policy=email.policy.default)
    part = next(p for p in msg.walk() if p.get_content_type() == "message/delivery-status")
    block = dict(list(part.get_payload())[1].items())
    assert block["Final-Recipient"] == "rfc822; bob@example.test"
    assert block["Action"] == "failed" and block["Status"] == "5.7.1"
    assert entry["id"] in block["Diagnostic-Code"]
    assert "Remote-MTA" not in block  # no server was asked
    assert sink.messages() == []
