# SPDX-License-Identifier: EUPL-1.2
"""Delivery: DNS, the SMTP client, zones and pools, limits, retries, bounces.

Every test runs its own dnsmasq (MX/A records for .test names) and aiosmtpd
sinks on 127.0.0.x, all on one port number, which the zones use as their
SMTP port.
"""
import os
import re
import signal
import time

import pytest

from conftest import wait_until
from peers.dns import NULL_MX, NXDOMAIN, SERVFAIL
from test_queue import queue_counts, submit


def relay_config(dns_server, port, zones=None, **extra):
    """Config for a relay that resolves through dns_server and delivers to
    `port`; quick retries for tests."""
    zone = {"port": port, "disabled": False}
    cfg = {
        "dns": {"nameservers": [dns_server.address]},
        "queue": {"deferTimes": ["1 s", "1 s", "1 s"]},
        "zones": {"default": dict(zone)},
    }
    for name, z in (zones or {}).items():
        cfg["zones"][name] = {**zone, **z}
    for key, value in extra.items():
        cfg[key] = value
    return cfg


def wait_delivered(d, n=1, zone="default", timeout=30):
    """Until the zone's queue is empty and `n` delivered lines are logged."""
    def done():
        return (queue_counts(d, zone) == (0, 0) and
                len(re.findall(r"event=delivered ", d.log())) >= n)
    wait_until(done, timeout, interval=0.1, what=f"{n} deliveries")


MSG = b"From: <sender@origin.test>\r\nTo: <rcpt@example.test>\r\nSubject: hello\r\n\r\nbody line\r\n.dot line\r\n"


def test_delivers_to_preferred_mx(dns_server, smtp_sink, zmta):
    mx1 = smtp_sink("127.0.0.2")
    mx2 = smtp_sink("127.0.0.3", port=mx1.port)
    dns_server.set_records({
        "example.test": {"MX": [(20, "mx2.example.test"), (10, "mx1.example.test")]},
        "mx1.example.test": {"A": ["127.0.0.2"]},
        "mx2.example.test": {"A": ["127.0.0.3"]},
    })
    d = zmta(extra_config=relay_config(dns_server, mx1.port))
    qid = submit(d, MSG, rcpts=("rcpt@example.test", "other@example.test"))
    stored = d.fetch(qid)
    got = mx1.wait_for(1)[0]
    # One transaction for both recipients, the stored bytes exactly.
    assert got["mail_from"] == "sender@example.test"
    assert sorted(got["rcpt_tos"]) == ["other@example.test", "rcpt@example.test"]
    assert got["data"] == stored
    assert mx2.messages() == []
    wait_delivered(d, 2)
    assert d.get(f"/message/{qid}")[0] == 404  # gone with its last delivery
    d.wait_log(r"id=%s event=attempt zone=default domain=example\.test .*mx=mx1\.example\.test "
               r"remote=127\.0\.0\.2 .*accepted=2 response=\"250 " % qid)


def test_falls_back_to_next_mx(dns_server, smtp_sink, zmta):
    mx2 = smtp_sink("127.0.0.3")
    dns_server.set_records({
        "example.test": {"MX": [(10, "mx1.example.test"), (20, "mx2.example.test")]},
        "mx1.example.test": {"A": ["127.0.0.4"]},  # nothing listens there
        "mx2.example.test": {"A": ["127.0.0.3"]},
    })
    d = zmta(extra_config=relay_config(dns_server, mx2.port))
    submit(d, MSG)
    assert mx2.wait_for(1)[0]["rcpt_tos"] == ["rcpt@example.test"]
    wait_delivered(d)
    d.wait_log(r"event=mta_connect mx=mx1\.example\.test remote=127\.0\.0\.4 .*action=next_address")


def test_implicit_mx(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    submit(d, MSG)
    sink.wait_for(1)
    wait_delivered(d)


@pytest.mark.parametrize("records, why", [
    ({"example.test": {"MX": NULL_MX}}, "null MX"),
    ({"example.test": NXDOMAIN}, "NXDOMAIN"),
])
def test_null_mx_and_nxdomain_bounce(dns_server, smtp_sink, zmta, records, why):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records(records)
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=bounced seq=001 zone=default rcpt=<rcpt@example\.test> "
               r"category=dns attempts=0" % qid)
    wait_until(lambda: queue_counts(d) == (0, 0), 10, what="queue empty")
    assert sink.messages() == []


def test_servfail_defers(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": SERVFAIL})
    # unbound keeps a SERVFAIL answer for a few seconds: retries spaced past it.
    d = zmta(extra_config=relay_config(dns_server, sink.port,
                                       queue={"deferTimes": ["2 s", "4 s", "8 s"]}))
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=deferred seq=001 .*attempts=1" % qid)
    # Fixed DNS: the retry delivers.
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    sink.wait_for(1, timeout=30)
    wait_delivered(d)


def test_5xx_bounces_at_once_and_others_are_delivered(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", script={"recipients": {
        "gone@example.test": {"rcpt": {"reply": "550 5.1.1 <gone@example.test>: no such user"}}}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    qid = submit(d, MSG, rcpts=("gone@example.test", "rcpt@example.test"))
    # The bounce counts its attempt, as a deferral would (attempts=1).
    d.wait_log(r"id=%s event=bounced seq=001 zone=default rcpt=<gone@example\.test> "
               r"category=\w+ attempts=1 status=5\.1\.1 response=\"550 5\.1\.1" % qid)
    assert sink.wait_for(1)[0]["rcpt_tos"] == ["rcpt@example.test"]
    wait_delivered(d)


def test_greylisting_delivers_after_retry(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", script={
        "default": {"rcpt": {"reply": "451 4.7.1 Greylisted, try again later", "times": 1}}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port,
                                       queue={"deferTimes": ["2 s", "2 s"]},
                                       pools={"default": ["127.0.0.5", "127.0.0.6"]},
                                       zones={"default": {"connectionCache": {"ttl": "0 s"}}}))
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=deferred seq=001 .*attempts=1 " % qid)
    status, msg = d.get(f"/message/{qid}")
    row = msg["messages"][0]
    assert row["status"] == "DEFERRED"
    assert row["deferred"]["count"] == 1
    assert row["deferred"]["response"].startswith("451 4.7.1 Greylisted")
    assert row["deferred"]["next"] - row["deferred"]["last"] == 2000
    assert queue_counts(d) == (0, 1)
    sink.wait_for(1, timeout=30)
    wait_delivered(d)
    # The retry left from the same pool address as the first attempt.
    ips = {s["peer_ip"] for s in sink.sessions()}
    assert len(sink.sessions()) >= 2 and len(ips) == 1, sink.sessions()


def test_schedule_running_out_bounces(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", script={
        "default": {"rcpt": {"reply": "451 4.3.0 Temporary local problem"}}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port,
                                       queue={"deferTimes": ["300 ms", "300 ms"]}))
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=expired seq=001 attempts=3" % qid, timeout=30)
    d.wait_log(r"id=%s event=bounced seq=001 .*attempts=3 status=4\.3\.0 response=\"451 4\.3\.0" % qid)
    assert sink.messages() == []
    wait_until(lambda: queue_counts(d) == (0, 0), 10, what="queue empty")


def test_zones_send_from_their_pool_address_and_name(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]},
                            "other.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(
        dns_server, sink.port,
        zones={"special": {"pool": "special", "recipientDomains": ["other.test"]}},
        pools={"default": [{"address": "127.0.0.5", "name": "out5.test"}],
               "special": ["127.0.0.6"]},
        hostname="relay.test"))
    submit(d, MSG, rcpts=("rcpt@example.test",))
    submit(d, MSG, rcpts=("rcpt@other.test",))
    got = {m["rcpt_tos"][0]: m for m in sink.wait_for(2)}
    assert (got["rcpt@example.test"]["peer_ip"], got["rcpt@example.test"]["helo"]) == (
        "127.0.0.5", "out5.test")
    assert (got["rcpt@other.test"]["peer_ip"], got["rcpt@other.test"]["helo"]) == (
        "127.0.0.6", "relay.test")


def test_connection_reuse(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port,
                                       zones={"default": {"connections": 2}}))
    # Queue 30 messages while the zone is busy, so they pile up and share.
    for i in range(30):
        submit(d, b"Subject: %d\r\n\r\n%d\r\n" % (i, i))
    sink.wait_for(30, timeout=60)
    wait_delivered(d, 30)
    sessions = sink.wait_for_sessions(1)
    assert sum(s["messages"] for s in sessions) == 30
    assert len(sessions) < 30 // 2
    assert max(s["messages"] for s in sessions) > 1


def test_connection_limits(dns_server, smtp_sink, zmta):
    """Zone connections and domainConfig.maxConnections are never exceeded."""
    sink = smtp_sink("127.0.0.2", script={"default": {"data": {"stall": 0.3}}})
    domains = [f"d{i}.test" for i in range(6)]
    dns_server.set_records({dom: {"A": ["127.0.0.2"]} for dom in domains})
    d = zmta(extra_config=relay_config(
        dns_server, sink.port, zones={"default": {"connections": 3}},
        domainConfig={"default": {"maxConnections": 1}}))
    for i in range(18):
        submit(d, b"Subject: x\r\n\r\nx\r\n", rcpts=(f"r{i}@{domains[i % 6]}",))
    sink.wait_for(18, timeout=60)
    wait_delivered(d, 18)
    assert sink.max_concurrent_sessions() == 3
    # Per domain: one at a time.
    by_domain = {}
    for m in sink.messages():
        by_domain.setdefault(m["rcpt_tos"][0].split("@")[1], set()).add(m["session"])
    sessions = {s["session"]: s for s in sink.sessions()}
    for dom, ids in by_domain.items():
        spans = sorted((sessions[i]["connected"], sessions[i]["disconnected"]) for i in ids)
        for (a_start, a_end), (b_start, b_end) in zip(spans, spans[1:]):
            assert b_start >= a_end - 0.05, f"{dom}: overlapping sessions"


def submit_many(d, rcpts, body=b"Subject: x\r\n\r\nx\r\n"):
    """One message per recipient over one SMTP session; returns the ids."""
    ids = []
    with d.smtp() as client:
        client.ehlo("client.test")
        for r in rcpts:
            client.mail("sender@origin.test")
            assert client.rcpt(r)[0] == 250
            code, text = client.data(body)
            assert code == 250, text
            ids.append(text.split()[-1].decode())
    return ids


def test_zone_and_domain_throttles_hold_over_20_seconds(dns_server, smtp_sink, zmta):
    """A zone at 5/s over several domains, and one domain at 3/s in another
    zone: over a 20 s window each holds its rate within 10%."""
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({**{f"z{i}.test": {"A": ["127.0.0.2"]} for i in range(4)},
                            "slow.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(
        dns_server, sink.port,
        zones={"default": {"throttling": "5 messages/second"},
               "other": {"recipientDomains": ["slow.test"]}},
        domainConfig={"default": {"maxConnections": 5},
                      "slow.test": {"throttling": "3 messages/second"}}))
    submit_many(d, [f"r{i}@z{i % 4}.test" for i in range(130)] +
                [f"s{i}@slow.test" for i in range(80)])
    wait_until(lambda: len(sink.messages()) >= 170, 60, interval=0.5, what="170 deliveries")
    got = sink.messages()
    start = min(m["time"] for m in got)
    in_window = [m for m in got if start + 1 <= m["time"] < start + 21]
    zone = sum(1 for m in in_window if not m["rcpt_tos"][0].endswith("@slow.test"))
    slow = sum(1 for m in in_window if m["rcpt_tos"][0].endswith("@slow.test"))
    assert 90 <= zone <= 110, f"zone throttle: {zone} in 20 s (want 100)"
    assert 54 <= slow <= 66, f"domain throttle: {slow} in 20 s (want 60)"


def test_pool_ratio_splits_traffic(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(
        dns_server, sink.port, zones={"default": {"connections": 4}},
        pools={"default": [{"address": "127.0.0.5", "ratio": 0.3}, "127.0.0.6"]}))
    submit_many(d, [f"r{i}@example.test" for i in range(1000)])
    got = sink.wait_for(1000, timeout=120)
    share = sum(1 for m in got if m["peer_ip"] == "127.0.0.5") / len(got)
    # Dealt by smooth weighted round robin: 30% within one message.
    assert 0.299 <= share <= 0.301, f"127.0.0.5 carried {share:.1%}, want 30%"
    assert {m["peer_ip"] for m in got} == {"127.0.0.5", "127.0.0.6"}


def test_kill_9_mid_delivery_delivers_after_restart(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", script={"default": {"data": {"stall": 3}}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    cfg = relay_config(dns_server, sink.port)
    d = zmta(extra_config=cfg)
    qid = submit(d, MSG)
    wait_until(lambda: any(e["event"] == "rcpt" for e in sink.events()), 15, what="RCPT")
    os.kill(d.pid, signal.SIGKILL)
    d.wait_exit()
    sink.set_script({})
    d2 = zmta(extra_config=cfg)
    d2.wait_log(r"event=queue_recovered messages=1 deliveries=1 ")
    got = sink.wait_for(1, timeout=30)
    assert qid.encode() in got[-1]["data"]
    wait_delivered(d2)


def test_future_date_waits_until_due(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port,
                                       queue={"futureDateSkew": "0 s"}))
    due = int(time.time()) + 3
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(due))
    submit(d, f"Date: {date}\r\nSubject: later\r\n\r\nx\r\n".encode())
    got = sink.wait_for(1, timeout=30)
    assert got[0]["time"] >= due - 0.01


def test_starttls_when_offered(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", tls=True)
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    qid = submit(d, MSG)
    got = sink.wait_for(1)[0]
    assert got["tls"] is True and got["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert got["helo"]  # EHLO was sent again after the handshake
    wait_delivered(d)
    d.wait_log(r"id=%s event=attempt .*tls=%s " % (qid, re.escape(got["tls_version"])))


def test_require_tls_defers_without_it(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")  # no STARTTLS
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port,
                                       zones={"default": {"requireTLS": True}}))
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=deferred seq=001 .*response=\"452 4\.7\.5 TLS is required" % qid)
    assert sink.messages() == []


def test_failed_tls_handshake_retries_in_plain_text(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", tls="broken")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    qid = submit(d, MSG)
    got = sink.wait_for(1)[0]
    assert got["tls"] is False
    d.wait_log(r"id=%s event=mta_tls .*action=retry_plain" % qid)
    wait_delivered(d)


@pytest.mark.parametrize("ehlo, message, needs", [
    ({"hide": ["SMTPUTF8"]}, "smtputf8", "553 5.6.7 message needs SMTPUTF8"),
    ({"size": 100}, "big", "552 5.3.4 message is larger than the receiving server's SIZE"),
])
def test_missing_extension_fails_for_good(dns_server, smtp_sink, zmta, ehlo, message, needs):
    sink = smtp_sink("127.0.0.2", script={"ehlo": ehlo})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    with d.smtp() as client:
        client.ehlo("client.test")
        if message == "smtputf8":
            client.mail("sender@origin.test", ["SMTPUTF8"])
            client.rcpt("rcpt@example.test")
            code, text = client.data("Subject: \u00e9t\u00e9\r\n\r\nx\r\n".encode())
        else:
            client.mail("sender@origin.test")
            client.rcpt("rcpt@example.test")
            code, text = client.data(b"Subject: x\r\n\r\n" + b"y" * 500 + b"\r\n")
        assert code == 250
        qid = text.split()[-1].decode()
    d.wait_log(r"id=%s event=bounced seq=001 .*response=\"%s" % (qid, re.escape(needs)))
    assert sink.messages() == []


def test_ipv6_when_allowed_and_preferred(dns_server, smtp_sink, zmta):
    sink = smtp_sink("::1")
    dns_server.set_records({"example.test": {"A": ["127.0.0.9"], "AAAA": ["::1"]}})
    d = zmta(extra_config=relay_config(
        dns_server, sink.port,
        zones={"default": {"ignoreIPv6": False, "preferIPv6": True}}))
    qid = submit(d, MSG)
    assert sink.wait_for(1)[0]["peer_ip"] == "::1"
    d.wait_log(r"id=%s event=attempt .*remote=::1 " % qid)


def test_bounce_rules_file_and_reload(app, dns_server, smtp_sink, zmta):
    rules = app.path / "config" / "bounces.txt"
    rules.write_text("# ours\ndefer custom-defer ^550 5\\.1\\.1\n")
    sink = smtp_sink("127.0.0.2", script={
        "default": {"rcpt": {"reply": "550 5.1.1 no such user"}}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port,
                                       queue={"deferTimes": ["1 s"] * 20},
                                       bounces={"rules": str(rules)}))
    qid = submit(d, MSG)
    # The rule makes a 5xx defer.
    d.wait_log(r"id=%s event=deferred seq=001 .*category=custom-defer attempts=1 " % qid)
    # A broken file keeps the running rules...
    rules.write_text("reject gone (\n")
    d.signal(signal.SIGHUP)
    d.wait_log(r"event=reload status=rejected problem=\"\S+bounces\.txt:1: bad regex")
    d.wait_log(r"id=%s event=deferred seq=001 .*category=custom-defer attempts=2 " % qid)
    # ...a good one takes over at once.
    rules.write_text("reject custom-gone ^550\n")
    d.signal(signal.SIGHUP)
    d.wait_log(r"event=reload bounce_rules=\S+bounces\.txt count=1")
    d.wait_log(r"id=%s event=bounced seq=001 .*category=custom-gone " % qid)


def test_delivered_messages_leave_nothing_behind(dns_server, smtp_sink, zmta):
    """Small bodies go by point deletes, large ones (over 16 chunks) by a
    range: after delivery and a restart, no chunk of either is left."""
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    cfg = relay_config(dns_server, sink.port, smtpInterfaces={"feeder": {"maxSize": "20 MB"}})
    d = zmta(extra_config=cfg)
    submit(d, MSG)
    submit(d, b"Subject: big\r\n\r\n" + (b"b" * 998 + b"\r\n") * 5000)  # ~5 MB: 20 chunks
    # A body of exactly one chunk (256 KiB, its leading empty line included).
    exact = (b"e" * 998 + b"\r\n") * 262 + b"f" * 140 + b"\r\n"
    assert len(b"\r\n" + exact) == 256 * 1024
    submit(d, b"Subject: exact\r\n\r\n" + exact)
    sink.wait_for(3, timeout=60)
    wait_delivered(d, 3)
    assert d.stop() == 0
    d2 = zmta(extra_config=cfg)
    d2.wait_log(r"event=queue_recovered messages=0 deliveries=0 removed_incomplete=0 "
                r"removed_orphan_bodies=0 ")


@pytest.mark.parametrize("offers_dsn", [True, False], ids=["next-hop-dsn", "next-hop-plain"])
def test_dsn_parameters_are_kept_and_passed_on(dns_server, smtp_sink, zmta, offers_dsn):
    """RFC 3461: RET, ENVID, NOTIFY and ORCPT are stored with the message and
    given to a next hop that offers DSN, never to one that does not."""
    from test_smtp import Session, get_message, wire
    sink = smtp_sink("127.0.0.2", script={"ehlo": {"dsn": offers_dsn}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    with Session(d.smtp_port) as s:
        s.send("EHLO client.test\r\n")
        s.reply()
        assert s.cmd("MAIL FROM:<sender@origin.test> RET=HDRS ENVID=env+2B1") == "250 2.1.0 Ok"
        assert s.cmd("RCPT TO:<rcpt@example.test> NOTIFY=SUCCESS,FAILURE "
                     "ORCPT=rfc822;orig@example.test") == "250 2.1.5 Ok"
        assert s.cmd("RCPT TO:<other@example.test>") == "250 2.1.5 Ok"
        assert s.cmd("DATA").startswith("354")
        s.send(wire(MSG))
        qid = s.last().split()[-1]
    meta = get_message(d, qid)["meta"]
    assert meta["dsn"] == {"ret": "HDRS", "envid": "env+2B1", "rcpts": {
        "rcpt@example.test": {"notify": "SUCCESS,FAILURE", "orcpt": "rfc822;orig@example.test"}}}
    got = sink.wait_for(1)[0]
    assert sorted(got["rcpt_tos"]) == ["other@example.test", "rcpt@example.test"]
    if offers_dsn:
        assert got["dsn"]["mail"] == {"RET": "HDRS", "ENVID": "env+2B1"}
        by_rcpt = dict(zip(got["rcpt_tos"], got["dsn"]["rcpts"]))
        assert by_rcpt == {"rcpt@example.test": {"NOTIFY": "SUCCESS,FAILURE",
                                                 "ORCPT": "rfc822;orig@example.test"},
                           "other@example.test": {}}
    else:
        assert got["dsn"] == {"mail": {}, "rcpts": [{}, {}]}
    wait_delivered(d, 2)
