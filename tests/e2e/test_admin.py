# SPDX-License-Identifier: EUPL-1.2
"""Queue administration over the API (docs/api.md#queue-administration):
pauses (zone, domain, sender, user; with an end) and holds that survive a
restart, each change audited (GET /ops) with who asked and from where.
"""
import re
import time

import pytest

from conftest import wait_until
from test_api import call
from test_queue import submit

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
])
def test_bad_operations_are_refused(zmta, body, error):
    d = zmta()
    status, reply = call(d, "POST", "/ops", body)
    assert status == 400 and reply["error"].startswith(error), reply
