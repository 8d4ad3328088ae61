# SPDX-License-Identifier: EUPL-1.2
"""Delivery at the edges: phase deadlines, hostile receivers, source
addresses per family, ESMTP parameters and the 8-bit downgrade, folding,
smuggling vectors, IDN, duplicates, a stop in mid-transaction.

Misbehaving receivers are peers/rawsmtp.py servers on loopback; well-
behaved ones are aiosmtpd sinks.  Timeouts are test-sized (seconds), bounds
generous.
"""
import email
import email.policy
import re
import signal
import time

import pytest

from conftest import wait_until
from peers.rawsmtp import RawSMTP, lenient_lines
from test_api import call
from test_delivery import MSG, relay_config, wait_delivered
from test_dkim import keygen, verify_all
from test_queue import queue_counts, submit

FAST = {"connect": "2 s", "greeting": "2 s", "ehlo": "2 s", "mail": "2 s", "rcpt": "2 s",
        "data": "2 s", "body": "2 s", "dot": "2 s", "rset": "2 s", "quit": "1 s"}


@pytest.fixture
def raw_peers():
    peers = []

    def start(host, port, behaviour, **opts):
        p = RawSMTP(host, port, behaviour, **opts)
        peers.append(p)
        return p

    yield start
    for p in peers:
        p.stop()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_drip_feeding_receiver_is_dropped_and_others_are_served(dns_server, smtp_sink, zmta,
                                                                 raw_peers):
    sink = smtp_sink("127.0.0.2")
    drip = raw_peers("127.0.0.5", sink.port, "drip", interval=0.5)
    dns_server.set_records({"slow.test": {"A": ["127.0.0.5"]},
                            "example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port, zones={
        "default": {"connections": 2, "timeouts": FAST}}, queue={"deferTimes": ["30 s"]}))
    for i in range(4):
        submit(d, MSG, rcpts=(f"u{i}@slow.test",))
    time.sleep(0.5)  # the drip peer holds both connections of the zone
    start = time.monotonic()
    submit(d, MSG)
    sink.wait_for(1, timeout=30)
    # Served after at most a few greeting deadlines, not after minutes.
    assert time.monotonic() - start < 20
    wait_until(lambda: len(drip.sessions) >= 2 and all(s["closed"] for s in drip.sessions[:2]),
               20, what="drip sessions closed")
    for s in drip.sessions[:2]:
        # Dropped at the greeting deadline (2 s) although a line came every 0.5 s.
        assert 1.5 <= s["closed"] - s["opened"] < 10, s
    d.wait_log(r"event=mta_connect mx=slow\.test remote=127\.0\.0\.5 .*state=greeting "
               r"error=\"451 4\.4\.2 timeout")


def test_slow_reader_gets_a_big_message_exactly_once(dns_server, zmta, raw_peers, smtp_sink):
    port = smtp_sink("127.0.0.3").port  # only for a free port number
    peer = raw_peers("127.0.0.2", port, "smtp", read_rate=300_000)
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, port, zones={"default": {"timeouts": FAST}}))
    body = MSG + b"".join(b"%07d " % i + b"y" * 70 + b"\r\n" for i in range(13000))
    assert len(body) > 1_000_000
    submit(d, body)
    wait_delivered(d, timeout=60)
    # Several times longer than every phase timeout, and yet one delivery.
    assert len(peer.messages) == 1
    assert peer.messages[0].count(b"\r\n") >= 13000
    time.sleep(3)
    assert len(peer.messages) == 1


def test_stalled_reader_still_times_out(dns_server, zmta, raw_peers, smtp_sink):
    port = smtp_sink("127.0.0.3").port
    raw_peers("127.0.0.2", port, "smtp", stall_data=True, stall_for=30)
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, port, zones={"default": {"timeouts": FAST}},
                                       queue={"deferTimes": ["60 s"]}))
    body = MSG + (b"z" * 76 + b"\r\n") * 100_000  # ~7.8 MB: more than socket buffers
    qid = submit(d, body)
    d.wait_log(r"id=%s event=deferred seq=001 .*response=\".*(no write progress|timeout)" % qid,
               timeout=30)


def test_endless_reply_line_is_cut(dns_server, zmta, raw_peers, smtp_sink):
    port = smtp_sink("127.0.0.3").port
    peer = raw_peers("127.0.0.2", port, "endless")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, port, queue={"deferTimes": ["60 s"]}))
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=deferred seq=001 .*reply too long" % qid, timeout=20)
    wait_until(lambda: peer.sessions and peer.sessions[0]["closed"], 10, what="closed")
    assert peer.sessions[0]["closed_by"] == "peer"  # we hung up mid-line
    # Once warm, another endless line costs no memory (it was 64 MB).
    before = rss_kb(d.pid)
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=deferred seq=001 .*reply too long" % qid, timeout=20)
    assert rss_kb(d.pid) - before < 1024


def test_nul_and_bare_cr_never_end_data_at_a_lenient_receiver(dns_server, zmta, raw_peers,
                                                               smtp_sink):
    port = smtp_sink("127.0.0.3").port
    peer = raw_peers("127.0.0.2", port, "smtp")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}, "bank.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, port))
    smuggled = b"MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<victim@bank.test>\r\nDATA\r\n"
    # SMTP: NUL before the dot is refused (a NUL-dropping receiver ends there).
    with d.smtp() as client:
        client.ehlo("client.test")
        client.mail("sender@origin.test")
        client.rcpt("rcpt@example.test")
        code, text = client.data(b"Subject: x\r\n\r\nhi\r\n\x00.\r\n" + smuggled + b"x\r\n")
        assert code == 550 and b"NUL" in text
    # /send-raw: NUL refused; bare CR made CRLF, so the dot line is stuffed.
    status, body = call(d, "POST", "/send-raw", b"From: a@origin.test\r\nTo: rcpt@example.test\r\n"
                              b"\r\nhi\r\n\x00.\r\n" + smuggled)
    assert status == 400 and "NUL" in str(body), body
    status, body = call(d, "POST", "/send-raw", b"From: a@origin.test\r\nTo: rcpt@example.test\r\n"
                              b"\r\nhi\r.\r" + smuggled + b"end\r\n")
    assert status == 200, body
    wait_until(lambda: len(peer.messages) == 1, 20, what="one message")
    raw = peer.messages[0]
    lines = lenient_lines(raw)
    # The only end of data, even read leniently, is the real one.
    assert [i for i, line in enumerate(lines) if line == b"."] == [len(lines) - 2], raw
    assert b"\r\n..\r\nMAIL FROM:<ceo@bank.test>" in raw
    assert len(peer.mail_lines) == 1  # no second transaction from our connection


def test_pool_address_of_the_targets_family(dns_server, smtp_sink, zmta):
    v4 = smtp_sink("127.0.0.2")
    v6 = smtp_sink("::1", port=v4.port)
    dns_server.set_records({
        "both.test": {"MX": [(10, "mx.both.test")]},
        "mx.both.test": {"A": ["127.0.0.4"], "AAAA": ["::1"]},  # nothing on 127.0.0.4
        "four.test": {"A": ["127.0.0.2"]},
    })
    d = zmta(extra_config=relay_config(
        dns_server, v4.port, pools={"default": ["127.0.0.5", "::1"]},
        zones={"default": {"ignoreIPv6": False}}))
    submit(d, MSG, rcpts=("a@both.test",))
    submit(d, MSG, rcpts=("b@four.test",))
    v6.wait_for(1)
    v4.wait_for(1)
    wait_delivered(d, 2)
    assert {s["peer_ip"] for s in v6.sessions()} == {"::1"}
    assert {s["peer_ip"] for s in v4.sessions()} == {"127.0.0.5"}
    d.wait_log(r"event=attempt zone=default domain=both\.test local=::1 .*remote=::1 ")


def test_no_pool_address_of_a_family_defers_without_connecting(dns_server, smtp_sink, zmta):
    v6 = smtp_sink("::1")
    dns_server.set_records({"six.test": {"AAAA": ["::1"]}})
    d = zmta(extra_config=relay_config(
        dns_server, v6.port, pools={"default": ["127.0.0.5"]},
        zones={"default": {"ignoreIPv6": False}}, queue={"deferTimes": ["60 s"]}))
    qid = submit(d, MSG, rcpts=("a@six.test",))
    d.wait_log(r"id=%s event=deferred seq=001 .*response=\"451 4\.4\.4 the zone's pool has no "
               r"IPv6 address" % qid)
    assert v6.sessions() == []


def test_sigterm_while_waiting_for_the_final_reply(dns_server, smtp_sink, zmta, app):
    sink = smtp_sink("127.0.0.2", script={"default": {"data": {"stall": 3}}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    cfg = relay_config(dns_server, sink.port, shutdownTimeout="20 s")
    d = zmta(extra_config=cfg)
    qid = submit(d, MSG)
    wait_until(lambda: any(e["event"] == "rcpt" for e in sink.events()), 10, what="in DATA")
    time.sleep(0.5)
    d.signal(signal.SIGTERM)
    assert d.wait_exit(timeout=30) == 0  # also: no sanitizer report
    d.wait_log(r"id=%s event=delivered seq=001" % qid)
    assert len(sink.messages()) == 1
    d2 = zmta(extra_config=cfg)
    time.sleep(2)
    assert queue_counts(d2) == (0, 0)
    assert len(sink.messages()) == 1  # not again after the restart


def test_sigterm_in_the_body_delivers_once_after_restart(dns_server, zmta, raw_peers, smtp_sink):
    port = smtp_sink("127.0.0.3").port
    peer = raw_peers("127.0.0.2", port, "smtp", read_rate=100_000)
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    cfg = relay_config(dns_server, port)
    d = zmta(extra_config=cfg)
    body = MSG + (b"w" * 76 + b"\r\n") * 20000
    qid = submit(d, body)
    wait_until(lambda: peer.sessions, 10, what="connected")
    time.sleep(1)
    d.signal(signal.SIGTERM)
    assert d.wait_exit(timeout=30) == 0
    assert peer.messages == []  # cut before the dot: nothing was delivered
    d2 = zmta(extra_config=cfg)
    wait_until(lambda: len(peer.messages) == 1, 60, what="delivered after restart")
    wait_delivered(d2, timeout=30)
    assert len(peer.messages) == 1
    d2.wait_log(r"id=%s event=delivered" % qid)


def test_api_and_7bit_messages_reach_a_server_without_8bitmime(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", script={"ehlo": {"hide": ["8BITMIME"]}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    status, body = call(d, "POST", "/send", {"from": "a@origin.test", "to": "rcpt@example.test",
                                         "subject": "h\u00e9llo", "text": "caf\u00e9 cr\u00e8me"})
    assert status == 200, body
    with d.smtp() as client:  # declared 8BITMIME, but 7-bit content
        client.ehlo("client.test")
        client.mail("sender@origin.test", ["BODY=8BITMIME"])
        client.rcpt("rcpt@example.test")
        assert client.data(MSG)[0] == 250
    got = sink.wait_for(2)
    wait_delivered(d, 2)
    for m in got:
        assert not any("BODY=" in o.upper() for o in m["mail_options"]), m["mail_options"]
    # the two go out side by side: either may arrive first
    relayed = [m for m in got if b"\r\nSubject: hello\r\n" in m["data"]]
    assert len(relayed) == 1, [m["data"][:200] for m in got]
    assert relayed[0]["data"].endswith(b"body line\r\n.dot line\r\n")


def test_8bit_message_is_downgraded_and_stays_signed(tmp_path, dns_server, smtp_sink, zmta):
    key, txt = keygen(tmp_path, "example.org", "s1")
    sink = smtp_sink("127.0.0.2", script={"ehlo": {"hide": ["8BITMIME"]}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port, dkim={"keys": [
        {"domain": "example.org", "selector": "s1", "privateKey": str(key)}]}))
    text = "Gr\u00fc\u00dfe aus K\u00f6ln = caf\u00e9  \r\n".encode() * 3
    attach = "\u00e9t\u00e9 " .encode() * 40 + b"\r\n"
    msg = (b"From: <a@example.org>\r\nTo: <rcpt@example.test>\r\nSubject: 8bit\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
           b"preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + text +
           b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + attach +
           b"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"aGVsbG8=\r\n--b1--\r\nepilogue\r\n")
    with d.smtp() as client:
        client.ehlo("client.test")
        client.mail("a@example.org", ["BODY=8BITMIME"])
        client.rcpt("rcpt@example.test")
        assert client.data(msg)[0] == 250
    got = sink.wait_for(1)[0]
    raw = got["data"]
    assert max(raw) < 0x80, "8-bit byte sent to a server without 8BITMIME"
    assert not any("BODY=" in o.upper() for o in got["mail_options"])
    parts = list(email.message_from_bytes(raw, policy=email.policy.default).iter_parts())
    original = list(email.message_from_bytes(msg, policy=email.policy.default).iter_parts())
    assert parts[0]["Content-Transfer-Encoding"] == "quoted-printable"
    assert parts[1]["Content-Transfer-Encoding"] == "quoted-printable"
    assert parts[2]["Content-Transfer-Encoding"] == "base64"
    # Decoded, every part is what was sent to us, byte for byte.
    for got_part, sent_part in zip(parts, original, strict=True):
        assert got_part.get_payload(decode=True) == sent_part.get_payload(decode=True)
    assert original[0].get_payload(decode=True).startswith(text[:-2])
    assert b"aGVsbG8=\r\n--b1--\r\nepilogue\r\n" in raw
    assert verify_all(raw, {"s1._domainkey.example.org.": txt}) == ["example.org"]


def test_size_only_to_servers_that_advertise_it(dns_server, smtp_sink, zmta):
    plain = smtp_sink("127.0.0.2", script={"ehlo": {"hide": ["SIZE"]}})
    sized = smtp_sink("127.0.0.3", port=plain.port)
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]},
                            "sized.test": {"A": ["127.0.0.3"]}})
    d = zmta(extra_config=relay_config(dns_server, plain.port))
    submit(d, MSG)
    submit(d, MSG, rcpts=("b@sized.test",))
    m1 = plain.wait_for(1)[0]
    m2 = sized.wait_for(1)[0]
    assert not any(o.upper().startswith("SIZE") for o in m1["mail_options"]), m1["mail_options"]
    assert any(o.upper().startswith("SIZE=") for o in m2["mail_options"]), m2["mail_options"]


def test_long_line_arrives_folded(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    line = bytes(ord("a") + i % 26 for i in range(5000))
    qid = submit(d, MSG + line + b"\r\nafter\r\n")
    raw = sink.wait_for(1)[0]["data"]
    assert max(len(x) for x in raw.split(b"\r\n")) <= 998
    assert raw.replace(b"\r\n ", b"").endswith(line + b"\r\nafter\r\n")
    d.wait_log(r"id=%s event=delivered" % qid)


def test_idn_recipient_goes_to_the_mx_of_its_a_label(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"xn--bcher-kva.test": {"MX": [(10, "mx.xn--bcher-kva.test")]},
                            "mx.xn--bcher-kva.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    with d.smtp() as client:
        client.ehlo("client.test")
        client.mail("sender@origin.test", ["SMTPUTF8"])
        assert client.rcpt("user@b\u00fccher.test")[0] == 250
        assert client.data(MSG)[0] == 250
    got = sink.wait_for(1)[0]
    assert got["rcpt_tos"] == ["user@b\u00fccher.test"]
    assert "SMTPUTF8" in [o.upper() for o in got["mail_options"]]


def test_duplicate_rcpt_is_delivered_once(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    submit(d, MSG, rcpts=("rcpt@example.test", "rcpt@EXAMPLE.test", "other@example.test"))
    got = sink.wait_for(1)[0]
    assert sorted(got["rcpt_tos"]) == ["other@example.test", "rcpt@example.test"]
    wait_delivered(d, 2)
    time.sleep(1)
    assert len(sink.messages()) == 1
    d.wait_log(r"event=duplicate_rcpt rcpt=<rcpt@EXAMPLE\.test> action=dropped")


def test_421_greeting_is_the_deferrals_response(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", script={"greeting": {"reply": "421 4.3.2 Too busy, later"}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port, queue={"deferTimes": ["60 s"]}))
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=deferred seq=001 .*attempts=1 .*status=4\.3\.2 "
               r"response=\"421 4\.3\.2 Too busy, later\"" % qid)


def test_junk_commands_are_limited(zmta):
    d = zmta()
    with d.smtp() as client:
        client.ehlo("client.test")
        codes = [client.noop()[0] for _ in range(100)]
        assert codes == [250] * 100
        # From here on each one is an error, and ten errors end the session.
        closed = False
        for _ in range(20):
            try:
                code = client.noop()[0]
            except Exception:
                closed = True
                break
            if code == 421:
                closed = True
                break
        assert closed
    d.wait_log(r"event=smtp_abort .*reason=\"too many errors\"")


def test_tls_1_0_beats_plain_text_and_sessions_resume(dns_server, smtp_sink, zmta):
    old = smtp_sink("127.0.0.2", tls="tls1")
    dns_server.set_records({"example.test": {"MX": [(10, "mx.example.test")]},
                            "mx.example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, old.port,
                                       zones={"default": {"connectionCache": {"ttl": "0 s"}}}))
    submit(d, MSG)
    got = old.wait_for(1)[0]
    assert got["tls"] is True and got["tls_version"] == "TLSv1", got
    submit(d, MSG)
    old.wait_for(2)
    starts = [e for e in old.events() if e["event"] == "starttls"]
    assert [e["sni"] for e in starts] == ["mx.example.test"] * 2  # a host name: SNI
    assert starts[1]["reused"] is True  # the second connection resumed the session


def test_no_sni_for_an_address_literal(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", tls=True)
    d = zmta(extra_config=relay_config(dns_server, sink.port,
                                       zones={"default": {"host": "127.0.0.2"}}))
    submit(d, MSG)
    got = sink.wait_for(1)[0]
    assert got["tls"] is True
    starts = [e for e in sink.events() if e["event"] == "starttls"]
    assert starts and starts[0]["sni"] is None


def test_address_literal_is_delivered_to_that_address(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    submit(d, MSG, rcpts=("postmaster@[127.0.0.2]",))
    got = sink.wait_for(1)[0]
    assert got["rcpt_tos"] == ["postmaster@[127.0.0.2]"]
    wait_delivered(d)


def test_helo_name_is_bounded(zmta):
    d = zmta()
    with d.smtp() as client:
        code, text = client.ehlo("h" * 300)
        assert code == 501 and b"longer than 255" in text
        assert client.ehlo("client.test")[0] == 250
