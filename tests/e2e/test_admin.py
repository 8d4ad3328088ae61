# SPDX-License-Identifier: EUPL-1.2
"""Queue administration over the API (docs/api.md#queue-administration):
pauses (zone, domain, sender, user; with an end) and holds that survive a
restart, each change audited (GET /ops) with who asked and from where.
"""
import email
import email.policy
import re
import time
import urllib.parse

import pytest

from conftest import wait_until
from test_api import call, metrics
from test_dsn_mail import config as dsn_config, world  # noqa: F401 (a fixture)
from test_queue import submit
from test_webhooks import SECRET, receiver  # noqa: F401 (a fixture)

MSG = b"From: <a@tenant.test>\r\nSubject: admin\r\n\r\nbody\r\n"


def relay(sink, **extra):
    return {"zones": {"default": {"host": sink.host, "port": sink.port, "disabled": False}},
            **extra}


def stays_undelivered(sink, seconds=1.5):
    time.sleep(seconds)
    return sink.messages() == []


def pause(d, **fields):
    status, body = call(d, "POST", "/pauses", fields)
    assert status == 200, body
    return body["pause"]


def test_pause_a_zone_then_resume_and_audit(smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay(sink))
    p = pause(d, zone="default", reason="blocklisted pool")
    assert p["zone"] == "default" and re.fullmatch(r"[0-9a-f]{24}", p["id"])
    qid = submit(d, MSG, sender="a@tenant.test")
    assert stays_undelivered(sink)
    status, listed = call(d, "GET", "/queued/queued/default")
    assert status == 200 and [r["paused"] for r in listed["list"]] == [True]
    assert call(d, "GET", "/pauses")[1]["pauses"][0]["id"] == p["id"]
    status, body = call(d, "DELETE", f"/pauses/{p['id']}")
    assert status == 200 and body["resumed"] == p["id"]
    got = sink.wait_for(1)[0]
    assert got["rcpt_tos"] == ["rcpt@example.test"]
    assert call(d, "GET", "/pauses")[1]["pauses"] == []
    ops = call(d, "GET", "/ops")[1]["ops"]
    assert [o["action"] for o in ops[:2]] == ["resume", "pause"]
    assert ops[1]["target"] == {"zone": "default", "reason": "blocklisted pool"}
    assert ops[1]["by"] == {"principal": "anonymous", "address": "127.0.0.1"}
    assert call(d, "GET", f"/ops/{ops[0]['id']}")[1]["action"] == "resume"
    d.wait_log(r'event=admin action=pause op=\w+ by="anonymous" client=127\.0\.0\.1 '
               r'affected=0 target=\{"zone": ?"default"')
    assert qid


def test_resume_goes_no_faster_than_the_zones_throttle(smtp_sink, zmta):
    """40 messages wait out a 3 s pause of their domain; on resume they go
    at the zone's 10 messages/second, not in a burst of what the pause
    saved up (a throttle's quiet time earns no credit)."""
    sink = smtp_sink("127.0.0.2")
    cfg = relay(sink)
    cfg["zones"]["default"]["throttling"] = "10 messages/second"
    d = zmta(extra_config=cfg)
    p = pause(d, domain="example.test")
    with d.smtp() as client:
        for i in range(40):
            client.sendmail("a@tenant.test", [f"r{i}@example.test"], MSG)
    assert stays_undelivered(sink, 3)
    assert call(d, "DELETE", f"/pauses/{p['id']}")[0] == 200
    got = sink.wait_for(40, timeout=60)
    times = sorted(m["time"] for m in got)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    # sent at 10/s: 10 in any second (more allowed, as arrivals at the sink
    # jitter), and the 40 over 3.9 s (a saved-up burst would be 40 at once)
    assert busiest <= 16, f"{busiest} in one second after resume"
    assert times[-1] - times[0] >= 3.0, f"40 went in {times[-1] - times[0]:.2f} s"


def test_a_paused_domain_stays_paused_across_a_restart(smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    cfg = relay(sink)
    d = zmta(extra_config=cfg)
    p = pause(d, domain="Example.TEST")  # every zone, any case
    assert p["domain"] == "example.test"
    submit(d, MSG)
    d.stop()
    d = zmta(extra_config=cfg)
    d.wait_log(r"event=admin pauses=1 action=restored")
    assert stays_undelivered(sink)
    # mail to another domain goes on meanwhile
    submit(d, MSG, rcpts=("someone@other.test",))
    assert sink.wait_for(1)[0]["rcpt_tos"] == ["someone@other.test"]
    assert call(d, "DELETE", f"/pauses/{p['id']}")[0] == 200
    wait_until(lambda: len(sink.messages()) == 2, 15, what="the paused message")


def test_pause_by_sender_and_user(smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay(sink))
    pause(d, sender="tenant.test")
    pause(d, sender="one@other-tenant.test")
    submit(d, MSG, sender="a@tenant.test")
    submit(d, MSG, sender="one@other-tenant.test")
    submit(d, MSG, sender="two@other-tenant.test")
    got = sink.wait_for(1)
    time.sleep(1)
    assert [m["mail_from"] for m in sink.messages()] == ["two@other-tenant.test"]
    assert got


def test_a_pause_with_an_end_resumes_by_itself(smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay(sink))
    start = time.monotonic()
    pause(d, zone="default", until="2 s")
    submit(d, MSG)
    sink.wait_for(1, timeout=20)
    assert time.monotonic() - start >= 1.5
    ops = call(d, "GET", "/ops")[1]["ops"]
    assert ops[0]["action"] == "resume" and ops[0]["by"]["principal"] == "zone-mta"
    assert ops[0]["target"]["reason"] == "its time ran out"


def test_hold_and_release_a_message_across_a_restart(smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    cfg = relay(sink)
    d = zmta(extra_config={**cfg, "zones": {"default": {**cfg["zones"]["default"],
                                                        "disabled": True}}})
    qid = submit(d, MSG, rcpts=("r1@example.test", "r2@example.test"))
    status, body = call(d, "POST", f"/message/{qid}/hold")
    assert status == 200 and body["changed"] == 2
    assert call(d, "POST", f"/message/{qid}/hold")[1]["changed"] == 0  # already
    d.stop()
    d = zmta(extra_config=cfg)  # deliveries on: the held message still waits
    assert stays_undelivered(sink)
    status, listed = call(d, "GET", "/queued/queued/default")
    assert [r.get("held") for r in listed["list"]] == [True, True]
    assert "paused" not in listed["list"][0]
    status, body = call(d, "POST", f"/message/{qid}/release")
    assert status == 200 and body["changed"] == 2
    got = sink.wait_for(1)[0]
    assert sorted(got["rcpt_tos"]) == ["r1@example.test", "r2@example.test"]
    actions = [o["action"] for o in call(d, "GET", "/ops")[1]["ops"]]
    assert actions[:2] == ["release", "hold"]


@pytest.mark.parametrize("body, error", [
    ({}, "a pause needs zone, domain, sender or user"),
    ({"reason": "x"}, "a pause needs zone, domain, sender or user"),
    ({"zone": "nope"}, "no such zone: nope"),
    ({"zone": "default", "until": "yesterday"}, "until must be"),
    ({"zone": "default", "until": 1000}, "until is in the past"),
    ({"domain": 5}, "domain must be a string"),
])
def test_bad_requests_are_refused_clearly(zmta, body, error):
    d = zmta()
    status, reply = call(d, "POST", "/pauses", body)
    assert status == 400 and reply["error"].startswith(error), reply
    assert call(d, "GET", "/pauses")[1]["pauses"] == []


def test_unknown_ids_and_the_api_key_principal(zmta):
    d = zmta(extra_config={"api": {"auth": {"apiKey": "s3cret-key"}}})
    key = {"X-API-Key": "s3cret-key"}
    assert call(d, "DELETE", "/pauses/000000000000000000000000", headers=key)[0] == 404
    assert call(d, "POST", "/message/1a23af1989bd970000/hold", headers=key)[0] == 404
    assert call(d, "GET", "/ops/nope", headers=key)[0] == 404
    assert call(d, "POST", "/pauses", {"zone": "default"})[0] == 401
    status, body = call(d, "POST", "/pauses", {"zone": "default"}, headers=key)
    assert status == 200 and body["pause"]["by"]["principal"] == "apiKey"


def run_op(d, action, **flt):
    status, body = call(d, "POST", "/ops", {"action": action, "filter": flt})
    assert status == 202, body
    op = body["op"]
    assert op["action"] == action and op["target"] == flt

    def done():
        return call(d, "GET", f"/ops/{op['id']}")[1].get("state") == "done"
    wait_until(done, 15, what=f"operation {action}")
    return call(d, "GET", f"/ops/{op['id']}")[1]


def test_operations_by_filter_hold_release_delete(zmta):
    d = zmta()  # zone default disabled: everything waits
    for i in range(3):
        submit(d, MSG, sender=f"s{i}@tenant.test", rcpts=("a@example.test", "b@example.test"))
    other = submit(d, MSG, sender="x@other.test")
    op = run_op(d, "hold", sender="tenant.test")
    assert (op["matched"], op["affected"]) == (6, 6) and op["scanned"] == 7
    listed = call(d, "GET", "/queued/queued/default")[1]["list"]
    assert sum(1 for r in listed if r.get("held")) == 6
    assert run_op(d, "release", sender="tenant.test", domain="example.test")["affected"] == 6
    run_op(d, "hold", sender="tenant.test")
    deleted = run_op(d, "delete", status="held")
    assert deleted["affected"] == 6
    listed = call(d, "GET", "/queued/queued/default")[1]["list"]
    assert [r["id"] for r in listed] == [other]
    assert run_op(d, "flush", zone="default")["matched"] == 1
    assert [o["action"] for o in call(d, "GET", "/ops")[1]["ops"][:5]] == \
        ["flush", "delete", "hold", "release", "hold"]


@pytest.mark.parametrize("body, error", [
    ({"action": "explode", "filter": {"zone": "default"}}, "action must be one of"),
    ({"action": "hold"}, "a filter is needed"),
    ({"action": "hold", "filter": {"zone": "nope"}}, "no such zone: nope"),
    ({"action": "hold", "filter": {"status": "sleeping"}}, "filter.status: 'sleeping'"),
    ({"action": "hold", "ids": ["nope"]}, "ids must be 1 to 1000 queue ids"),
    ({"action": "hold", "ids": ["1a23af1989bd970000/0"]}, "ids must be"),
    ({"action": "hold", "ids": ["1a23af1989bd970000/1000"]}, "ids must be"),
    ({"action": "hold", "ids": ["1a23af1989bd970000"], "filter": {"zone": "default"}},
     "ids must be"),
])
def test_bad_operations_are_refused(zmta, body, error):
    d = zmta()
    status, reply = call(d, "POST", "/ops", body)
    assert status == 400 and reply["error"].startswith(error), reply


def campaign_message(n, campaign, mid):
    return (f"From: <alice@origin.test>\r\nSubject: offer {n}\r\nMessage-ID: <{mid}>\r\n"
            f"X-Campaign: {campaign}\r\n\r\nbody\r\n").encode()


def test_bounce_by_header_sends_one_dsn_and_delete_by_message_id(world, dns_server, zmta):
    """A campaign withdrawn: its queued deliveries bounce (one DSN per
    message, saying why) while the rest of the paused zone stays."""
    mx1, mx2 = world
    d = zmta(extra_config=dsn_config(dns_server, mx1))
    pause(d, zone="default")
    spring = submit(d, campaign_message(1, "spring", "s1@origin.test"),
                    sender="alice@origin.test", rcpts=("a@example.test", "b@example.test"))
    submit(d, campaign_message(2, "autumn", "a1@origin.test"), sender="alice@origin.test")
    submit(d, campaign_message(3, "autumn", "a2@origin.test"), sender="alice@origin.test")
    status, body = call(d, "POST", "/ops", {"action": "bounce", "reason": "campaign withdrawn",
                                            "filter": {"header": "X-Campaign: spring"}})
    assert status == 202, body
    op_id = body["op"]["id"]
    assert body["op"]["reason"] == "campaign withdrawn"
    wait_until(lambda: call(d, "GET", f"/ops/{op_id}")[1]["state"] == "done", 15,
               what="the bounce")
    op = call(d, "GET", f"/ops/{op_id}")[1]
    assert (op["scanned"], op["matched"], op["affected"]) == (4, 2, 2)
    got = mx2.wait_for(1)
    time.sleep(1)
    assert len(mx2.messages()) == 1 and got[0]["rcpt_tos"] == ["alice@origin.test"]
    msg = email.message_from_bytes(got[0]["data"], policy=email.policy.default)
    human = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
    assert "Bounced by the queue's operator: campaign withdrawn" in human
    assert "<a@example.test>" in human and "<b@example.test>" in human
    d.wait_log(r"id=%s event=bounced seq=001 zone=default rcpt=<a@example\.test> "
               r"category=admin" % spring)
    assert mx1.messages() == []
    # By Message-ID, with or without its angle brackets: one of the two left.
    op = run_op(d, "delete", messageId="<a2@origin.test>")
    assert (op["matched"], op["affected"]) == (1, 1)
    left = call(d, "GET", "/queued/queued/default")[1]["list"]
    assert len(left) == 1
    assert run_op(d, "delete", messageId="nobody@origin.test")["affected"] == 0


def test_rebind_moves_deliveries_to_another_zone(smtp_sink, zmta):
    main_sink, backup_sink = smtp_sink("127.0.0.2"), smtp_sink("127.0.0.3")
    d = zmta(extra_config={"zones": {
        "default": {"host": main_sink.host, "port": main_sink.port, "disabled": True},
        "backup": {"host": backup_sink.host, "port": backup_sink.port, "disabled": False}}})
    ids = [submit(d, MSG, rcpts=("r1@example.test", "r2@example.test")) for _ in range(2)]
    call(d, "POST", f"/message/{ids[1]}/hold")
    status, body = call(d, "POST", "/ops", {"action": "rebind", "zone": "backup",
                                            "filter": {"zone": "default"}})
    assert status == 202 and body["op"]["zone"] == "backup"
    wait_until(lambda: call(d, "GET", f"/ops/{body['op']['id']}")[1]["state"] == "done", 15,
               what="the rebind")
    assert call(d, "GET", f"/ops/{body['op']['id']}")[1]["affected"] == 4
    got = backup_sink.wait_for(1)
    assert sorted(got[0]["rcpt_tos"]) == ["r1@example.test", "r2@example.test"]
    # the held one moved too, and is still held
    counts = call(d, "GET", "/queue/backup")[1]
    assert (counts["queued"], counts["held"]) == (2, 2)
    assert call(d, "GET", "/queue/default")[1]["queued"] == 0
    call(d, "POST", f"/message/{ids[1]}/release")
    wait_until(lambda: len(backup_sink.messages()) == 2, 15, what="the released message")
    d.wait_log(r"id=%s event=rebound seq=001 rcpt=<r1@example\.test> zone=backup "
               r"from_zone=default" % ids[0])
    assert main_sink.messages() == []
    status, reply = call(d, "POST", "/ops", {"action": "rebind", "filter": {"zone": "default"}})
    assert status == 400 and reply["error"].startswith("rebind needs zone")


def in_flight(sink, rcpt):
    """Waits until the sink has taken rcpt's RCPT: its attempt is under way."""
    wait_until(lambda: any(e["event"] == "rcpt" and e["address"] == rcpt
                           for e in sink.events()), 15, what=f"{rcpt}'s attempt")


def op_done(d, op_id):
    wait_until(lambda: call(d, "GET", f"/ops/{op_id}")[1]["state"] == "done", 15,
               what="the operation")
    return call(d, "GET", f"/ops/{op_id}")[1]


@pytest.mark.parametrize("reply", ["451 4.3.0 Try again later", None])
def test_a_bounce_waits_for_the_attempt_in_flight(world, dns_server, zmta, reply):
    """A delivery being tried when the operator bounces it is bounced
    when its attempt defers; an attempt that delivers it ends it."""
    mx1, mx2 = world
    rule = {"stall": 2.0, **({"reply": reply} if reply else {})}
    mx1.set_script({"recipients": {"a@example.test": {"data": rule}}})
    d = zmta(extra_config=dsn_config(dns_server, mx1))
    qid = submit(d, campaign_message(1, "spring", "f1@origin.test"),
                 sender="alice@origin.test", rcpts=("a@example.test",))
    in_flight(mx1, "a@example.test")
    status, body = call(d, "POST", "/ops", {"action": "bounce", "reason": "withdrawn",
                                            "filter": {"domain": "example.test"}})
    assert status == 202, body
    op = op_done(d, body["op"]["id"])
    assert (op["matched"], op["affected"], op["afterAttempt"]) == (1, 0, 1)
    if reply is None:
        assert mx1.wait_for(1)[0]["rcpt_tos"] == ["a@example.test"]
        d.wait_log(r"id=%s event=delivered seq=001" % qid)
        time.sleep(1)
        assert mx2.messages() == [] and "event=after_attempt" not in d.log()
        return
    d.wait_log(r"id=%s event=after_attempt seq=001 op=%s action=bounce" % (qid, op["id"]))
    got = mx2.wait_for(1)
    msg = email.message_from_bytes(got[0]["data"], policy=email.policy.default)
    human = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_content()
    assert "Bounced by the queue's operator: withdrawn" in human
    assert mx1.messages() == []
    assert call(d, "GET", "/queue/default")[1]["deferred"] == 0


def test_a_delivery_deleted_in_flight_that_arrives_is_told_as_delivered(smtp_sink, zmta,
                                                                         receiver):
    """Deleted while its attempt runs: the row goes at once (a read after
    the reply finds nothing), and when the server takes it anyway the
    events say so: dropped, then delivered."""
    sink = smtp_sink("127.0.0.2", script={"default": {"data": {"stall": 2.0}}})
    receiver.start()
    ep = {"url": receiver.url(), "secret": SECRET, "events": ["dropped", "delivered"],
          "maxDelay": "100 ms"}
    d = zmta(extra_config=relay(sink, webhooks={"endpoints": [ep]}))
    qid = submit(d, MSG)
    in_flight(sink, "rcpt@example.test")
    status, body = call(d, "DELETE", f"/message/{qid}")
    assert status == 200 and body["deleted"] == 1, body
    assert call(d, "GET", f"/message/{qid}")[0] == 404
    assert sink.wait_for(1)[0]["rcpt_tos"] == ["rcpt@example.test"]
    d.wait_log(r"id=%s event=delivered seq=001 zone=default rcpt=<rcpt@example\.test> "
               r"attempts=1" % qid)
    wait_until(lambda: len(receiver.events()) == 2, 15, what="two events")
    assert [(e["event"], e["id"]) for e in receiver.events()] == \
        [("dropped", qid), ("delivered", qid)]
    assert call(d, "GET", "/queue/default")[1]["queued"] == 0


def test_a_rebind_waits_for_the_attempt_in_flight(smtp_sink, zmta):
    main_sink, backup_sink = smtp_sink("127.0.0.2"), smtp_sink("127.0.0.3")
    main_sink.set_script({"default": {"data": {"reply": "451 4.3.0 Try again later",
                                               "stall": 2.0}}})
    d = zmta(extra_config={"zones": {
        "default": {"host": main_sink.host, "port": main_sink.port, "disabled": False},
        "backup": {"host": backup_sink.host, "port": backup_sink.port, "disabled": False}}})
    qid = submit(d, MSG)
    in_flight(main_sink, "rcpt@example.test")
    status, body = call(d, "POST", "/ops", {"action": "rebind", "zone": "backup",
                                            "filter": {"zone": "default"}})
    assert status == 202, body
    op = op_done(d, body["op"]["id"])
    assert (op["affected"], op["afterAttempt"]) == (0, 1)
    assert backup_sink.wait_for(1)[0]["rcpt_tos"] == ["rcpt@example.test"]
    d.wait_log(r"id=%s event=after_attempt seq=001 op=%s action=rebind" % (qid, op["id"]))
    d.wait_log(r"id=%s event=rebound seq=001 rcpt=<rcpt@example\.test> zone=backup "
               r"from_zone=default" % qid)
    assert main_sink.messages() == []


def test_held_and_paused_counts_in_the_api_and_metrics(zmta):
    d = zmta(extra_config={"zones": {"default": {"disabled": False, "host": "127.0.0.2",
                                                 "port": 9}}})
    pause(d, zone="default")
    ids = [submit(d, MSG) for _ in range(3)]
    call(d, "POST", f"/message/{ids[0]}/hold")
    counts = call(d, "GET", "/queue/default")[1]
    assert (counts["queued"], counts["held"], counts["paused"]) == (3, 1, 2)
    samples = metrics(d)[0]
    assert samples[("zonemta_queue_held", (("state", "held"), ("zone", "default")))] == 1
    assert samples[("zonemta_queue_held", (("state", "paused"), ("zone", "default")))] == 2


@pytest.mark.parametrize("expire", [True, False])
def test_held_mail_keeps_aging(smtp_sink, zmta, expire):
    """queue.expireHeld: a held delivery past maxQueueTime bounces as
    expired without being tried; with false it waits for its release."""
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay(sink, queue={"maxQueueTime": "3 s", "expireHeld": expire}))
    pause(d, zone="default")
    qid = submit(d, MSG)
    call(d, "POST", f"/message/{qid}/hold")
    if expire:
        d.wait_log(r"id=%s event=expired seq=001 attempts=0 held=yes" % qid, timeout=15)
        d.wait_log(r"id=%s event=bounced seq=001 zone=default rcpt=<rcpt@example\.test> "
                   r"category=expired attempts=0 status=4\.4\.7" % qid)
        wait_until(lambda: call(d, "GET", "/queue/default")[1]["queued"] == 0, 10,
                   what="the queue empty")
    else:
        time.sleep(5)
        assert call(d, "GET", "/queue/default")[1]["held"] == 1
        assert "event=expired" not in d.log()
    assert sink.messages() == []


def test_every_change_is_an_admin_event(smtp_sink, zmta, receiver):
    sink = smtp_sink("127.0.0.2")
    receiver.start()
    ep = {"name": "audit", "url": receiver.url(), "secret": SECRET, "events": ["admin"],
          "maxDelay": "100 ms"}
    d = zmta(extra_config=relay(sink, webhooks={"endpoints": [ep]}))
    p = pause(d, domain="example.test")
    submit(d, MSG)
    op = run_op(d, "hold", domain="example.test")
    call(d, "DELETE", f"/pauses/{p['id']}")

    def admin_events():
        return [e for e in receiver.events() if e["event"] == "admin"]
    wait_until(lambda: len(admin_events()) == 3, 15, what="three admin events")
    got = admin_events()
    assert [e["op"]["action"] for e in got] == ["pause", "hold", "resume"]
    assert got[1]["id"] == op["id"] and got[1]["op"]["affected"] == 1
    assert got[1]["op"]["state"] == "done"
    assert got[0]["op"]["by"] == {"principal": "anonymous", "address": "127.0.0.1"}
    assert all(e["event"] == "admin" for e in receiver.events())  # nothing else asked for


def pipelined_message(d, sender, rcpts, body):
    """One message with many recipients, its commands pipelined (RFC 2920)
    so that 100,000 recipients take seconds, not minutes."""
    import socket
    with socket.create_connection(("127.0.0.1", d.smtp_port), timeout=60) as s:
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if line[3:4] != b"-":
                    return line
        reply()
        s.sendall(b"EHLO client.test\r\n")
        reply()
        s.sendall(b"".join([f"MAIL FROM:<{sender}>\r\n".encode()] +
                           [f"RCPT TO:<{r}>\r\n".encode() for r in rcpts] + [b"DATA\r\n"]))
        answers = [reply() for _ in range(len(rcpts) + 2)]
        bad = [a for a in answers[:-1] if not a.startswith(b"250")]
        assert not bad, bad[:3]
        assert answers[-1].startswith(b"354")
        s.sendall(body + b"\r\n.\r\n")
        last = reply()
        assert last.startswith(b"250"), last
        s.sendall(b"QUIT\r\n")
        return re.search(rb"queued as ([0-9a-f]{18})", last).group(1).decode()


def cursor_after(d, pages):
    """The `next` of the listing after `pages` pages of 1,000."""
    after = None
    for _ in range(pages):
        q = "/deliveries?limit=1000" + (f"&after={after}" if after else "")
        after = call(d, "GET", q)[1]["next"]
    return after


def test_a_100000_recipient_purge_during_live_delivery(smtp_sink, zmta):
    """Deleting 100,000 deliveries by filter while other mail is accepted
    and delivered: all go, the rest flows on, and the loop keeps answering
    meanwhile (SMTP NOOPs and transactions timed; the measures printed)."""
    import threading
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay(sink, smtpInterfaces={"feeder": {"maxRecipients": 4000}}))
    pause(d, domain="purge.test")
    for m in range(25):
        pipelined_message(d, "bulk@tenant.test",
                          [f"r{m}-{i}@purge.test" for i in range(4000)],
                          b"From: <bulk@tenant.test>\r\nSubject: bulk\r\n\r\nbody")
    assert call(d, "GET", "/queue/default")[1]["queued"] == 100000

    start = time.monotonic()
    summary = call(d, "GET", "/summary?domain=purge.test")[1]
    summary_took = time.monotonic() - start
    assert summary["total"] == 100000 and summary["paused"] == 100000
    deep = cursor_after(d, 52)
    start = time.monotonic()
    page = call(d, "GET", f"/deliveries?domain=purge.test&limit=100&after={deep}")[1]
    page_took = time.monotonic() - start
    assert len(page["deliveries"]) == 100
    start = time.monotonic()
    by_rcpt = call(d, "GET", "/deliveries?domain=purge.test&sort=recipient&order=desc&limit=100")
    sorted_took = time.monotonic() - start
    assert by_rcpt[1]["scanned"] == 100000
    everyone = sorted((f"r{m}-{i}@purge.test" for m in range(25) for i in range(4000)),
                      reverse=True)
    assert [r["recipient"] for r in by_rcpt[1]["deliveries"]] == everyone[:100]

    stop = threading.Event()
    worst, commits, accepted = [], [], {}

    def live():  # a steady flow of mail that must keep being accepted and delivered
        with d.smtp() as client:
            client.ehlo("client.test")
            n = 0
            while not stop.is_set():
                t = time.monotonic()
                assert client.noop()[0] == 250
                worst.append(time.monotonic() - t)
                if n % 10 == 0:
                    t = time.monotonic()
                    client.sendmail("live@tenant.test", ["live@example.test"],
                                    b"X-Live: %d\r\n" % n + MSG)
                    commits.append(time.monotonic() - t)
                    accepted[n] = time.time()
                n += 1
                time.sleep(0.005)
    flow = threading.Thread(target=live)
    flow.start()
    try:
        time.sleep(0.5)
        before = len(sink.messages())
        start = time.monotonic()
        op = run_op(d, "delete", domain="purge.test")
        took = time.monotonic() - start
        time.sleep(0.5)
    finally:
        stop.set()
        flow.join()
    assert (op["matched"], op["affected"]) == (100000, 100000)
    wait_until(lambda: call(d, "GET", "/queue/default")[1]["queued"] == 0, 60,
               what="the queue empty")
    assert len(sink.messages()) > before  # delivery went on meanwhile
    # each live message from its acceptance to the sink: what a stall
    # of deliveries would show as
    def live_delivered():
        got = {int(n.group(1)): m["time"] for m in sink.messages()
               if (n := re.search(rb"^X-Live: (\d+)", m["data"], re.M))}
        return got if len(got) == len(accepted) else None
    arrived = wait_until(live_delivered, 30, what="every live message delivered")
    latency = [arrived[n] - accepted[n] for n in accepted]
    print(f"purge of 100,000 deliveries: {took:.2f} s; slowest delivery of the live mail "
          f"(accepted to at the sink) {max(latency) * 1000:.0f} ms of {len(latency)}; "
          f"slowest NOOP during it "
          f"{max(worst) * 1000:.1f} ms of {len(worst)}, slowest message accepted "
          f"{max(commits) * 1000:.1f} ms of {len(commits)}; GET /summary over them "
          f"{summary_took * 1000:.0f} ms, a page deep in them {page_took * 1000:.0f} ms, "
          f"a page sorted by recipient over all of them {sorted_took * 1000:.0f} ms")
    assert max(worst) < 2.0  # the loop kept answering (generous: not a speed test)


def test_an_operation_cut_short_by_a_stop_is_interrupted_with_its_progress(zmta):
    """A hold of 40,000 deliveries (a write each, paced by the store) is
    still running when SIGTERM comes: its entry says interrupted and how far
    it got, and after the restart what it held is held and the rest is not."""
    cfg = {"smtpInterfaces": {"feeder": {"maxRecipients": 4000}}}
    d = zmta(extra_config=cfg)  # zone default disabled: everything waits
    for m in range(10):
        pipelined_message(d, "bulk@tenant.test",
                          [f"r{m}-{i}@bulk.test" for i in range(4000)],
                          b"From: <bulk@tenant.test>\r\nSubject: bulk\r\n\r\nbody")
    status, body = call(d, "POST", "/ops", {"action": "hold", "filter": {"domain": "bulk.test"}})
    assert status == 202, body
    d.stop()
    log = d.log()
    m = re.search(r"event=op_interrupted op=%s action=hold scanned=(\d+) affected=(\d+)"
                  % body["op"]["id"], log)
    assert m, "the stop came after the hold's end: the test needs more deliveries"
    d = zmta(extra_config=cfg)
    op = call(d, "GET", f"/ops/{body['op']['id']}")[1]
    assert op["state"] == "interrupted"
    assert (op["scanned"], op["affected"]) == (int(m.group(1)), int(m.group(2)))
    assert 0 < op["affected"] < 40000 and op["affected"] <= op["scanned"] < 40000
    counts = call(d, "GET", "/queue/default")[1]
    assert (counts["queued"], counts["held"]) == (40000, op["affected"])


def test_deliveries_are_listed_by_filter_a_page_at_a_time(zmta):
    d = zmta(extra_config={"zones": {"default": {"disabled": True},
                                     "second": {"disabled": True}},
                           "smtpInterfaces": {"feeder": {"allowRoutingHeaders": True}}})
    ids = [submit(d, MSG, sender=f"s{i}@tenant.test",
                  rcpts=("a@example.test", "b@other.test")) for i in range(5)]
    with d.smtp() as c:  # to the second zone through its routing header
        c.sendmail("z@tenant.test", ["z@example.test"], b"X-Sending-Zone: second\r\n" + MSG)
    call(d, "POST", f"/message/{ids[2]}/hold")
    rows, after, pages = [], None, 0
    while True:
        q = "/deliveries?limit=3" + (f"&after={after}" if after else "")
        status, body = call(d, "GET", q)
        assert status == 200, body
        rows += body["deliveries"]
        pages += 1
        after = body["next"]
        if after is None:
            break
    assert len(rows) == 11 and pages == 4
    assert [r["zone"] for r in rows] == ["default"] * 10 + ["second"]  # zones by name
    assert [(r["id"], r["seq"]) for r in rows[:10]] == \
        [(i, s) for i in ids for s in ("001", "002")]  # queue order
    assert rows[0]["from"] == "s0@tenant.test" and rows[0]["domain"] == "example.test"
    assert [r["recipient"] for r in rows if r.get("held")] == ["a@example.test", "b@other.test"]
    got = call(d, "GET", "/deliveries?domain=other.test&sender=s3@tenant.test")[1]
    assert [(r["id"], r["recipient"]) for r in got["deliveries"]] == [(ids[3], "b@other.test")]
    got = call(d, "GET", "/deliveries?recipient=Z@Example.TEST")[1]["deliveries"]
    assert [r["zone"] for r in got] == ["second"]
    held = call(d, "GET", "/deliveries?status=held")[1]
    assert len(held["deliveries"]) == 2 and held["next"] is None
    # a page that ends exactly at the end says so: no next page to ask for
    exact = call(d, "GET", "/deliveries?status=held&limit=2")[1]
    assert len(exact["deliveries"]) == 2 and exact["next"] is None
    first = call(d, "GET", "/deliveries?status=held&limit=1")[1]
    assert first["next"] is not None
    rest = call(d, "GET", f"/deliveries?status=held&limit=1&after={first['next']}")[1]
    assert [r["seq"] for r in rest["deliveries"]] == ["002"] and rest["next"] is None
    for bad, error in [("limit=0", "limit must be"), ("after=nope", "after must be"),
                       (f"after=default/{ids[0]}/0", "after must be"),
                       ("zone=nope", "no such zone"), ("header=X:y", "filter.header is for")]:
        status, body = call(d, "GET", f"/deliveries?{bad}")
        assert status == 400 and body["error"].startswith(error), (bad, body)


def all_pages(d, query, limit):
    rows, after = [], None
    while True:
        q = f"/deliveries?{query}&limit={limit}" + (f"&after={urllib.parse.quote(after)}"
                                                   if after else "")
        status, body = call(d, "GET", q)
        assert status == 200, body
        assert len(body["deliveries"]) <= limit
        rows += body["deliveries"]
        after = body["next"]
        if after is None:
            return rows


def test_deliveries_sort_by_a_column_over_every_match(zmta):
    """Sorted by a column, each page is the next `limit` of all matches in
    that order (not the page's own rows sorted), ties by zone, id, seq."""
    d = zmta()  # zone default disabled: everything waits
    names = ["mia", "bob", "zoe", "al", "kim", "bob", "eve"]
    for i, name in enumerate(names):
        submit(d, MSG, sender=f"{names[-1 - i]}@tenant.test",
               rcpts=(f"{name}@b.test", f"{name}@a.test"))
    everything = all_pages(d, "domain=a.test", 1000) + all_pages(d, "domain=b.test", 1000)
    assert len(everything) == 14

    def place(r):
        return (r["zone"], r["id"], r["seq"])
    cases = {
        "sort=recipient": lambda r: (r["recipient"], place(r)),
        "sort=from": lambda r: (r["from"], place(r)),
        "sort=created": lambda r: (r["created"], place(r)),
        "sort=domain": lambda r: (r["domain"], place(r)),
    }
    for query, key in cases.items():
        want = [place(r) for r in sorted(everything, key=key)]
        assert [place(r) for r in all_pages(d, query, 3)] == want, query
    # descending: the key reversed, ties still by place
    got = all_pages(d, "sort=recipient&order=desc", 4)
    want = sorted(everything, key=lambda r: place(r))
    want = sorted(want, key=lambda r: r["recipient"], reverse=True)
    assert [place(r) for r in got] == [place(r) for r in want]
    # with a filter, and a page that ends exactly at the end
    got = call(d, "GET", "/deliveries?sort=recipient&domain=a.test&limit=7")[1]
    assert [r["recipient"] for r in got["deliveries"]] == sorted(f"{n}@a.test" for n in names)
    assert got["next"] is None and got["scanned"] >= 7
    for bad, error in [("sort=size", "sort must be one of"), ("order=desc", "sort must be"),
                       ("sort=recipient&order=up", "sort must be"),
                       ("sort=recipient&after=default/1a23af1989bd970000/001",
                        "after must be"),
                       ("sort=created&after=default/1a23af1989bd970000/001/7a",
                        "after must be")]:
        status, body = call(d, "GET", f"/deliveries?{bad}")
        assert status == 400 and body["error"].startswith(error), (bad, body)


def test_sorting_by_a_long_reply_pages_on(smtp_sink, zmta):
    """Keys as long as a cut reply (about 2,000 bytes) still make a cursor."""
    replies = {f"r{i}@example.test": f"451 4.3.0 {'busy ' * 300}{i}" for i in (2, 0, 1)}
    sink = smtp_sink("127.0.0.2", script={"recipients": {
        r: {"rcpt": {"reply": text}} for r, text in replies.items()}})
    d = zmta(extra_config=relay(sink))
    for r in replies:
        submit(d, MSG, rcpts=(r,))
    wait_until(lambda: call(d, "GET", "/queue/default")[1]["deferred"] == 3, 15,
               what="three deferrals")
    got = all_pages(d, "sort=response", 1)
    assert [r["recipient"] for r in got] == [f"r{i}@example.test" for i in (0, 1, 2)]
    assert [len(r["deferred"]["response"]) for r in got] == [len(replies[r["recipient"]])
                                                            for r in got]

