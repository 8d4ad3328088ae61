# SPDX-License-Identifier: EUPL-1.2
"""DSN mail end to end: a delivery fails (or is delayed, or relayed to a
next hop without DSN) at one sink, and the sender's own MX, a second sink
found through dnsmasq, gets the notification, which Python's email package
and flufl.bounce read.  RFC 3461 (the parameters), RFC 3464 (the report),
RFC 6522 (multipart/report), RFC 5321 6.1 (a bounce MUST be sent).
"""
import email
import email.policy
import email.utils
import random
import re
import signal
import time

import pytest
from flufl.bounce import all_failures

from conftest import wait_until
from test_api import metrics
from test_delivery import relay_config
from test_queue import queue_counts

HOSTNAME = "mta.test"


@pytest.fixture
def world(dns_server, smtp_sink):
    """mx1 (127.0.0.2) for example.test, the recipients' domain; mx2
    (127.0.0.5) for origin.test, the senders' domain."""
    mx1 = smtp_sink("127.0.0.2")
    mx2 = smtp_sink("127.0.0.5", port=mx1.port)
    dns_server.set_records({
        "example.test": {"MX": [(10, "mx1.example.test")]},
        "mx1.example.test": {"A": ["127.0.0.2"]},
        "origin.test": {"MX": [(10, "mx.origin.test")]},
        "mx.origin.test": {"A": ["127.0.0.5"]},
    })
    return mx1, mx2


def config(dns_server, mx1, **bounces):
    cfg = relay_config(dns_server, mx1.port, zones={"bounces": {}}, hostname=HOSTNAME)
    cfg["bounces"] = bounces
    return cfg


def send(d, rcpts, sender="alice@origin.test", mail_options=(), rcpt_options=None,
         headers=b"", body=b"Hello,\r\n\r\nthe numbers.\r\n", message_id=None):
    """One message over SMTP; rcpt_options maps a recipient to its
    parameters.  Returns the queue id."""
    mid = message_id or f"<{random.getrandbits(64):x}@origin.test>"
    msg = (b"From: Alice <alice@origin.test>\r\nTo: team@example.test\r\n"
           b"Subject: Quarterly report\r\nMessage-ID: " + mid.encode() + b"\r\n" +
           headers + b"\r\n" + body)
    with d.smtp() as client:
        client.ehlo("client.test")
        assert client.mail(sender, list(mail_options))[0] == 250
        for r in rcpts:
            assert client.rcpt(r, list((rcpt_options or {}).get(r, ())))[0] == 250
        code, text = client.data(msg)
        assert code == 250, text
        return re.search(rb"queued as ([0-9a-f]{18})", text).group(1).decode()


def parse(message):
    return email.message_from_bytes(message["data"], policy=email.policy.default)


def status_blocks(msg):
    part = next(p for p in msg.walk() if p.get_content_type() == "message/delivery-status")
    return [dict(block.items()) for block in part.get_payload()]


def when(value):
    return email.utils.parsedate_to_datetime(value).timestamp()


def refuse(*rcpts, reply="550 5.1.1 <{}>: Recipient address rejected: User unknown"):
    return {"recipients": {r: {"rcpt": {"reply": reply.format(r)}} for r in rcpts}}


def test_a_550_sends_one_dsn_to_the_senders_mx(world, dns_server, zmta):
    mx1, mx2 = world
    mx1.set_script(refuse("bob@example.test", "carol@example.test"))
    d = zmta(extra_config=config(dns_server, mx1))
    start = time.time()
    qid = send(d, ["bob@example.test", "carol@example.test", "dave@example.test"],
               mail_options=["RET=HDRS", "ENVID=Q4+2Breport"],
               rcpt_options={"bob@example.test": ["NOTIFY=FAILURE",
                                                  "ORCPT=rfc822;Bob+2BLists@example.test"]})
    assert mx1.wait_for(1)[0]["rcpt_tos"] == ["dave@example.test"]
    got = mx2.wait_for(1)
    # One notice for the two recipients that failed in that transaction,
    # from the null sender, to the original sender, through `bounces`.
    assert len(got) == 1
    assert got[0]["mail_from"] == "" and got[0]["rcpt_tos"] == ["alice@origin.test"]
    d.wait_log(r"id=%s event=dsn_queued kind=failed dsn=(\w+) to=<alice@origin\.test> "
               r"rcpts=2" % qid)
    dsn_id = re.search(r"id=%s event=dsn_queued kind=failed dsn=(\w+)" % qid,
                       d.log()).group(1)
    d.wait_log(r"id=%s event=delivered seq=001 zone=bounces rcpt=<alice@origin\.test>" % dsn_id)

    msg = parse(got[0])
    assert msg["From"] == f"Mail Delivery Subsystem <mailer-daemon@{HOSTNAME}>"
    assert msg["To"].addresses[0].addr_spec == "alice@origin.test"
    assert msg["Subject"] == "Delivery Status Notification (Failure)"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"] == f"<{dsn_id}@{HOSTNAME}>"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    human = parts[0].get_content()
    for r in ("bob", "carol"):
        assert f"<{r}@example.test>: host mx1.example.test said:" in human
        assert f"550 5.1.1 <{r}@example.test>: Recipient address rejected" in human
    assert "dave" not in human
    assert "Subject: Quarterly report" in human

    per_message, bob, carol = status_blocks(msg)
    assert per_message["Reporting-MTA"] == f"dns; {HOSTNAME}"
    assert per_message["Original-Envelope-Id"] == "Q4+report"  # xtext decoded
    assert start - 2 <= when(per_message["Arrival-Date"]) <= time.time()
    assert bob["Original-Recipient"] == "rfc822; Bob+Lists@example.test"  # xtext decoded
    assert "Original-Recipient" not in carol
    for block, r in ((bob, "bob"), (carol, "carol")):
        assert block["Final-Recipient"] == f"rfc822; {r}@example.test"
        assert block["Action"] == "failed"
        assert block["Status"] == "5.1.1"
        assert block["Remote-MTA"] == "dns; mx1.example.test"
        assert " ".join(block["Diagnostic-Code"].split()) == (
            f"smtp; 550 5.1.1 <{r}@example.test>: Recipient address rejected: User unknown")
        assert start - 2 <= when(block["Last-Attempt-Date"]) <= time.time()
    headers = parts[2].get_content()
    assert "Subject: Quarterly report" in headers and "the numbers" not in headers
    assert f"by {HOSTNAME}" in headers  # our Received: is part of what was sent
    # A second, independent bounce parser agrees (it reports the original
    # recipient where there is one).
    assert all_failures(msg) == (set(), {b"Bob+Lists@example.test", b"carol@example.test"})
    # The original is gone with its last delivery, the notice with its own.
    wait_until(lambda: queue_counts(d) == (0, 0) and queue_counts(d, "bounces") == (0, 0),
               15, what="queues empty")
    assert d.get(f"/message/{qid}")[0] == 404
    samples = metrics(d)[0]
    assert samples[("zonemta_dsn_queued_total", (("kind", "failed"),))] == 1
    assert samples[("zonemta_bounce_generation_total", ())] == 1  # ZoneMTA's name


@pytest.mark.parametrize("size, returned", [(1000, True), (80_000, False)])
def test_ret_full_returns_the_message_up_to_the_limit(world, dns_server, zmta, size, returned):
    mx1, mx2 = world
    mx1.set_script(refuse("bob@example.test"))
    d = zmta(extra_config=config(dns_server, mx1, returnSizeLimit="50 kB"))
    body = b"".join(b"line %06d of the original\r\n" % i for i in range(size // 26))
    send(d, ["bob@example.test"], mail_options=["RET=FULL"], body=body)
    msg = parse(mx2.wait_for(1)[0])
    parts = list(msg.iter_parts())
    if returned:
        assert parts[2].get_content_type() == "message/rfc822"
        original = parts[2].get_content()
        assert original["Subject"] == "Quarterly report"
        assert original.get_content().replace("\r\n", "\n") == body.decode().replace(
            "\r\n", "\n")
    else:
        assert parts[2].get_content_type() == "text/rfc822-headers"
        assert "line 000001" not in parts[2].get_content()


@pytest.mark.parametrize("why, kwargs", [
    ("null sender", {"sender": ""}),
    ("mailer-daemon sender", {"sender": "MAILER-DAEMON@origin.test"}),
    ("Auto-Submitted", {"headers": b"Auto-Submitted: auto-generated\r\n"}),
    ("Precedence", {"headers": b"Precedence: bulk\r\n"}),
    ("multipart/report", {"headers": b"MIME-Version: 1.0\r\nContent-Type: multipart/report; "
                                     b"report-type=delivery-status; boundary=b\r\n",
                          "body": b"--b\r\n\r\nx\r\n--b--\r\n"}),
    ("NOTIFY", {"rcpt_options": {"bob@example.test": ["NOTIFY=NEVER"]}}),
    ("NOTIFY", {"rcpt_options": {"bob@example.test": ["NOTIFY=SUCCESS,DELAY"]}}),
])
def test_no_dsn_where_none_may_go(world, dns_server, zmta, why, kwargs):
    mx1, mx2 = world
    mx1.set_script(refuse("bob@example.test"))
    d = zmta(extra_config=config(dns_server, mx1))
    qid = send(d, ["bob@example.test"], **kwargs)
    d.wait_log(r"id=%s event=dsn_skipped kind=failed reason=\"%s\"" % (qid, re.escape(why)))
    d.wait_log(r"id=%s event=bounced seq=001" % qid)
    wait_until(lambda: queue_counts(d) == (0, 0), 15, what="the bounce finished")
    assert d.get(f"/message/{qid}")[0] == 404
    assert queue_counts(d, "bounces") == (0, 0)
    assert mx2.messages() == []


def test_templates_override_the_text_and_subject_per_language(world, dns_server, zmta, app):
    mx1, mx2 = world
    mx1.set_script(refuse("bob@example.test", "carol@example.test"))
    folder = app.path / "dsn-templates"
    folder.mkdir()
    (folder / "failed.txt").write_text(
        "Subject: Undeliverable: {subject}\n\n"
        "Hello {sender},\n\nyour message {messageId} of {date} did not reach:\n\n"
        "{recipients}-- {hostname}\n")
    (folder / "failed.de.txt").write_text(
        "Subject: Unzustellbar – Rückmeldung zu „{subject}“\n\nHallo {sender}, Ihre Nachricht kam nicht an:\n\n"
        "{recipients}Grüße, {hostname}\n")
    d = zmta(extra_config=config(dns_server, mx1, templates="dsn-templates"))
    send(d, ["bob@example.test"], message_id="<en@origin.test>")
    send(d, ["carol@example.test"], message_id="<de@origin.test>",
         headers=b"Content-Language: de-AT, en\r\n")
    raw = {parse(m)["In-Reply-To"]: m["data"] for m in mx2.wait_for(2)}
    got = {k: email.message_from_bytes(v, policy=email.policy.default) for k, v in raw.items()}
    en, de = got["<en@origin.test>"], got["<de@origin.test>"]
    assert en["Subject"] == "Undeliverable: Quarterly report"
    text = next(en.iter_parts()).get_content().replace("\r\n", "\n")
    assert text.startswith("Hello alice@origin.test,\n\nyour message <en@origin.test> of ")
    assert re.search(r"of \w{3}, \d+ \w{3} \d{4} [\d:]{8} \+0000 did not reach:", text)
    assert ("<bob@example.test>: host mx1.example.test said:\n    550 5.1.1 "
            "<bob@example.test>: Recipient address rejected") in text
    assert text.endswith(f"-- {HOSTNAME}\n")
    # The second by its Content-Language (de-AT, then de): an encoded subject.
    assert de["Subject"] == "Unzustellbar – Rückmeldung zu „Quarterly report“"
    assert b"\r\nSubject: =?UTF-8?B?" in raw["<de@origin.test>"].split(b"\r\n\r\n")[0]
    part = next(de.iter_parts())
    assert part["Content-Transfer-Encoding"] == "8bit"
    assert part.get_content().replace("\r\n", "\n").endswith(f"Grüße, {HOSTNAME}\n")
    # The report part stays machine-readable whatever the text.
    assert status_blocks(de)[1]["Final-Recipient"] == "rfc822; carol@example.test"
    assert all_failures(de) == (set(), {b"carol@example.test"})


@pytest.mark.parametrize("name, content, error", [
    ("failed.txt", "Dear {name},\n", r"failed\.txt:1: unknown placeholder \{name\}"),
    ("delayed.txt", "ok\n" + "x" * 600 + "\n", r"delayed\.txt:2: line of 600 characters"),
    ("relayed.txt", "a\x01b\n", r"relayed\.txt:1: control character 0x01"),
])
def test_a_bad_template_is_a_config_error(app, name, content, error):
    folder = app.path / "t"
    folder.mkdir()
    (folder / name).write_text(content)
    (folder / "notes.md").write_text("not a template")
    app.write_config("development", {"bounces": {"templates": "t"}})
    res = app.check_config()
    assert res.returncode == 2, res.stderr
    assert re.search(error, res.stderr), res.stderr
    assert "notes.md is not KIND.txt or KIND.LANG.txt" in res.stderr


def test_dsn_off_only_logs(world, dns_server, zmta):
    mx1, mx2 = world
    mx1.set_script(refuse("bob@example.test"))
    d = zmta(extra_config=config(dns_server, mx1, dsn=False))
    qid = send(d, ["bob@example.test"])
    d.wait_log(r"id=%s event=bounced seq=001" % qid)
    wait_until(lambda: queue_counts(d) == (0, 0), 15, what="the bounce finished")
    time.sleep(1)
    assert mx2.messages() == [] and "event=dsn_" not in d.log()


def test_delay_notice_once_then_expiry(world, dns_server, zmta):
    mx1, mx2 = world
    mx1.set_script(refuse("bob@example.test", reply="451 4.2.0 <{}>: mailbox busy"))
    cfg = config(dns_server, mx1, delayNotice="2 s")
    cfg["queue"] = {"deferTimes": ["1500 ms"] * 4}
    d = zmta(extra_config=cfg)
    qid = send(d, ["bob@example.test"])
    # Attempts at about 0, 1.5, 3, 4.5 and 6 s: the third crosses 2 s and
    # sends the delay notice; after the fifth the schedule is over.
    d.wait_log(r"id=%s event=expired seq=001 attempts=5" % qid, timeout=30)
    got = mx2.wait_for(2, timeout=20)
    assert len(re.findall(r"id=%s event=dsn_queued kind=delayed" % qid, d.log())) == 1
    delayed, failed = sorted((parse(m) for m in got), key=lambda m: "Failure" in m["Subject"])
    assert delayed["Subject"] == "Delivery Status Notification (Delay)"
    _, block = status_blocks(delayed)
    assert block["Action"] == "delayed" and block["Status"] == "4.2.0"
    assert "mailbox busy" in block["Diagnostic-Code"]
    # The last attempt the schedule allows: two more 1.5 s steps.
    retry_until = when(block["Will-Retry-Until"])
    assert when(block["Last-Attempt-Date"]) + 2 <= retry_until <= \
        when(block["Last-Attempt-Date"]) + 4
    assert all_failures(delayed) == ({b"bob@example.test"}, set())
    assert failed["Subject"] == "Delivery Status Notification (Failure)"
    _, block = status_blocks(failed)
    assert block["Action"] == "failed" and block["Status"] == "4.2.0"
    assert all_failures(failed) == (set(), {b"bob@example.test"})
    time.sleep(1)
    assert len(mx2.messages()) == 2


def test_expiry_without_an_enhanced_code_is_4_4_7(world, dns_server, zmta):
    mx1, mx2 = world
    mx1.set_script(refuse("bob@example.test", reply="451 try later"))
    cfg = config(dns_server, mx1, delayNotice=None)
    cfg["queue"] = {"deferTimes": ["500 ms"]}
    d = zmta(extra_config=cfg)
    send(d, ["bob@example.test"])
    msg = parse(mx2.wait_for(1)[0])
    _, block = status_blocks(msg)
    assert (block["Action"], block["Status"]) == ("failed", "4.4.7")
    assert block["Diagnostic-Code"] == "smtp; 451 try later"


@pytest.mark.parametrize("next_hop_dsn", [False, True])
def test_success_notice_only_when_the_next_hop_has_no_dsn(world, dns_server, zmta,
                                                           next_hop_dsn):
    mx1, mx2 = world
    mx1.set_script({"ehlo": {"dsn": next_hop_dsn}})
    d = zmta(extra_config=config(dns_server, mx1))
    qid = send(d, ["bob@example.test", "dave@example.test"],
               rcpt_options={"bob@example.test": ["NOTIFY=SUCCESS,FAILURE"]})
    delivered = mx1.wait_for(1)[0]
    wait_until(lambda: queue_counts(d) == (0, 0), 15, what="delivered")
    if next_hop_dsn:
        # The request went on; the next hop answers it, we do not.
        assert delivered["dsn"]["rcpts"][0]["NOTIFY"] == "SUCCESS,FAILURE"
        time.sleep(1.5)
        assert mx2.messages() == [] and "dsn_queued" not in d.log()
        return
    msg = parse(mx2.wait_for(1)[0])
    assert msg["Subject"] == "Delivery Status Notification (Success)"
    _, *blocks = status_blocks(msg)
    assert len(blocks) == 1  # dave asked for nothing
    assert blocks[0]["Final-Recipient"] == "rfc822; bob@example.test"
    assert (blocks[0]["Action"], blocks[0]["Status"]) == ("relayed", "2.0.0")
    assert blocks[0]["Remote-MTA"] == "dns; mx1.example.test"
    assert all_failures(msg) == (set(), set())
    assert d.get(f"/message/{qid}")[0] == 404


def test_kill_9_during_bounces_leaves_exactly_one_dsn_each(world, dns_server, zmta):
    """200 messages bounce while the relay is killed at random moments:
    after the restarts, each has exactly one DSN (a notice may be delivered
    twice, at least once, but it is one notice: one Message-ID)."""
    mx1, mx2 = world
    mx1.set_script({"greeting": {"reply": "421 4.3.2 not yet"}})
    cfg = config(dns_server, mx1)
    cfg["queue"] = {"deferTimes": ["1 s"] * 50}
    cfg["zones"]["default"]["connections"] = 4
    d = zmta(extra_config=cfg)
    ids = [f"<m{i}@origin.test>" for i in range(200)]
    with d.smtp() as client:
        client.ehlo("client.test")
        for mid in ids:
            assert client.sendmail("alice@origin.test", ["bob@example.test"],
                                   b"From: alice@origin.test\r\nMessage-ID: " + mid.encode() +
                                   b"\r\nSubject: x\r\n\r\nbody\r\n") == {}
    mx1.set_script(refuse("bob@example.test"))
    rng = random.Random(1234)
    for _ in range(4):
        time.sleep(rng.uniform(0.3, 1.5))
        d.signal(signal.SIGKILL)
        d.wait_exit()
        d = zmta(extra_config=cfg)
    wait_until(lambda: queue_counts(d) == (0, 0) and queue_counts(d, "bounces") == (0, 0),
               120, interval=0.5, what="every bounce and notice done")
    notices = {}
    for m in mx2.messages():
        msg = parse(m)
        notices.setdefault(msg["In-Reply-To"], set()).add(msg["Message-ID"])
    assert sorted(notices) == sorted(ids)
    assert all(len(v) == 1 for v in notices.values()), \
        {k: v for k, v in notices.items() if len(v) != 1}
