# SPDX-License-Identifier: EUPL-1.2
"""The SMTP feeder end to end: submission, routing, storage, pipelining,
limits and replies, and DATA smuggling, against the real daemon.

Every test starts its own daemon (they start in a few tens of milliseconds),
so every "nothing was queued" check can read absolute counts from the API.
"""
import email.utils
import json
import random
import re
import socket
import subprocess
import time
import urllib.request
from datetime import datetime, timezone

import pytest
import yaml

from conftest import free_port, wait_until

HOST = "mta.test"  # hostname of the relay in every test
HELO = "client.test"
QUEUED = re.compile(r"250 2\.0\.0 Ok: queued as ([0-9a-f]{18})")
EHLO_LAST = "250 ENHANCEDSTATUSCODES"

# ---------------------------------------------------------------- helpers


def config(**feeder):
    """extra_config: our host name, and feeder options (merged key by key)."""
    return {"hostname": HOST, "smtpInterfaces": {"feeder": dict(feeder)}}


class Session:
    """A raw SMTP client: sends bytes, reads (multi-line) replies."""

    def __init__(self, port, timeout=30, greet=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.greeting = self.reply() if greet else None

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed; unterminated data {self.buf!r}")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        """One reply as its list of lines (one line for most replies)."""
        lines = []
        while True:
            line = self.line()
            assert re.match(r"\d{3}([ -]|$)", line), f"not a reply line: {line!r}"
            lines.append(line)
            if len(line) == 3 or line[3] == " ":
                return lines

    def last(self):
        """The last line of the next reply."""
        return self.reply()[-1]

    def cmd(self, line):
        """Sends a command line; returns the last line of its reply."""
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.last()

    def ehlo(self, name=HELO):
        self.send(f"EHLO {name}\r\n")
        lines = self.reply()
        assert lines[0] == f"250-{HOST} Hello {name} [127.0.0.1]", lines
        assert lines[-1] == EHLO_LAST, lines
        return lines

    def at_eof(self, timeout=15):
        """True when the server closes the connection (no more bytes) in time."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def envelope(self, sender, rcpts, params=""):
        assert self.cmd(f"MAIL FROM:<{sender}>{params}") == "250 2.1.0 Ok"
        for r in rcpts:
            assert self.cmd(f"RCPT TO:<{r}>") == "250 2.1.5 Ok"
        assert self.cmd("DATA") == "354 End data with <CR><LF>.<CR><LF>"

    def submit(self, message, sender="sender@example.test", rcpts=("rcpt@example.test",),
               params=""):
        """A whole transaction (EHLO done); returns the queue id."""
        self.envelope(sender, rcpts, params)
        self.send(wire(message))
        last = self.last()
        m = QUEUED.fullmatch(last)
        assert m, last
        return m.group(1)


def wire(message):
    """The DATA bytes of a message (CRLF lines): dot-stuffed, with the end."""
    assert message == b"" or message.endswith(b"\r\n")
    return re.sub(rb"(^|\r\n)\.", rb"\1..", message) + b".\r\n"


def counts(d, zone="default"):
    status, body = d.get(f"/queue/{zone}")
    assert status == 200, body
    return body


def assert_nothing_queued(d, *zones):
    for zone in ("default",) + zones:
        body = counts(d, zone)
        assert (body["queued"], body["deferred"], body["domains"]) == (0, 0, []), body


def get_message(d, qid):
    status, body = d.get(f"/message/{qid}")
    assert status == 200, body
    return body


def deliveries(d, qid):
    return [(m["seq"], m["recipient"], m["zone"], m["status"])
            for m in get_message(d, qid)["messages"]]


def fetch(d, qid, timeout=10):
    """GET /fetch/:id (as Daemon.fetch, with a shorter timeout)."""
    with urllib.request.urlopen(d.url(f"/fetch/{qid}"), timeout=timeout) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "message/rfc822"
        return resp.read()


def header_value(head, name):
    """The unfolded, trimmed value of the first field `name` of a header
    block (bytes), or None."""
    for line in re.sub(rb"\r\n(?=[ \t])", b"", head).split(b"\r\n"):
        key, colon, value = line.partition(b":")
        if colon and key.strip().lower() == name:
            return value.strip().decode()
    return None


def split_received(raw):
    """(our Received: field, the rest) of a fetched message."""
    m = re.match(rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", raw)
    assert m, raw[:300]
    return m.group(0), raw[m.end():]


def check_received(received, qid, helo=HELO, rcpts=("rcpt@example.test",), with_="ESMTP"):
    text = received.decode()
    assert text.startswith(f"Received: from {helo} ([127.0.0.1])\r\n"), text
    unfolded = re.sub(r"\r\n[ \t]+", " ", text)
    assert f" by {HOST} " in unfolded and f" with {with_} " in unfolded, text
    assert re.search(rf" id {qid}\b", unfolded), text
    if len(rcpts) == 1:
        assert f"for <{rcpts[0]}>" in unfolded, text
    else:  # a message must not disclose its other recipients
        assert not any(r in unfolded for r in rcpts), text
    check_date(unfolded.rsplit(";", 1)[1].strip())


def check_date(value):
    when = email.utils.parsedate_to_datetime(value)
    assert when.tzinfo is not None, value
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 300, value


def smtplib_submit(d, message, sender, rcpts):
    with d.smtp() as client:
        code, _ = client.ehlo(HELO)
        assert code == 250
        assert client.mail(sender) == (250, b"2.1.0 Ok")
        for r in rcpts:
            assert client.rcpt(r) == (250, b"2.1.5 Ok")
        code, text = client.data(message)
        assert code == 250, text
        m = re.fullmatch(rb"2\.0\.0 Ok: queued as ([0-9a-f]{18})", text)
        assert m, text
        features = client.esmtp_features
        assert client.quit()[0] == 221
    assert {"pipelining", "size", "8bitmime", "smtputf8", "dsn",
            "enhancedstatuscodes"} <= set(features)
    assert features["size"] == str(30 * 1024 * 1024)
    return m.group(1).decode(), message


def swaks_submit(d, message, sender, rcpts):
    """Submits with swaks; returns the id and the DATA it says it sent."""
    res = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{d.smtp_port}", "--from", sender,
         "--to", ",".join(rcpts), "--helo", HELO, "--timeout", "30",
         "--header", "Subject: via swaks", "--body", "swaks body line"],
        capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    m = re.search(r"^<-  250 2\.0\.0 Ok: queued as ([0-9a-f]{18})$", out, re.M)
    assert m, out
    # The message as swaks shows it sent, between the 354 and the final dot.
    data = out.split("<-  354 End data with <CR><LF>.<CR><LF>\n", 1)[1].split("\n -> .\n", 1)[0]
    lines = [line[4:] for line in data.split("\n")]
    assert all(line.startswith(" -> ") for line in data.split("\n")), data
    sent = "".join(line + "\r\n" for line in lines).encode()
    assert b"Subject: via swaks\r\n" in sent and b"swaks body line" in sent
    return m.group(1), sent


# ---------------------------------------------------------- 1. submissions


@pytest.mark.parametrize("client", [smtplib_submit, swaks_submit], ids=["smtplib", "swaks"])
def test_submission(zmta, client):
    d = zmta(extra_config=config())
    sender, rcpts = "sender@example.test", ["one@example.test", "two@other.test",
                                            "three@example.test"]
    message = b"From: <sender@example.test>\r\nSubject: hello\r\n\r\nline 1\r\nline 2\r\n"
    qid, sent = client(d, message, sender, rcpts)

    body = get_message(d, qid)
    meta = body["meta"]
    assert [(m["id"], m["seq"], m["recipient"], m["zone"], m["status"])
            for m in body["messages"]] == [
        (qid, "001", "one@example.test", "default", "QUEUED"),
        (qid, "002", "two@other.test", "default", "QUEUED"),
        (qid, "003", "three@example.test", "default", "QUEUED")]
    assert meta["id"] == qid and meta["interface"] == "feeder"
    assert meta["from"] == sender and meta["to"] == rcpts
    assert meta["origin"] == "127.0.0.1" and meta["originhost"] == "[127.0.0.1]"
    assert meta["transhost"] == HELO and meta["transtype"] == "ESMTP"

    received, rest = split_received(fetch(d, qid))
    check_received(received, qid, rcpts=rcpts)
    head, body_part = sent.split(b"\r\n\r\n", 1)
    given_id, given_date = header_value(head, b"message-id"), header_value(head, b"date")
    if given_id is not None:  # swaks writes both fields: they are kept
        assert rest == sent
        assert (meta["messageId"], meta["date"]) == (given_id, given_date)
    else:  # smtplib sends our message as is: both are added
        assert meta["messageId"] == f"<{qid}@{HOST}>"
        assert rest == with_added_fields(sent, meta)
    check_date(meta["date"])
    # The body is everything after the header block, the blank line included.
    assert meta["bodySize"] == len(b"\r\n" + body_part)
    status = counts(d)
    assert status["queued"] == 3
    assert sorted((x["domain"], x["queued"]) for x in status["domains"]) == [
        ("example.test", 2), ("other.test", 1)]
    d.wait_log(rf"info id={qid} event=queued from=<{re.escape(sender)}> rcpts=3 ")


# -------------------------------------------------------------- 2. routing

# Listed in this order after the built-in default and bounces (the file is
# written with its keys unsorted).  Domains are given in mixed case: they
# match ignoring case.
ZONES = {
    "named": {},  # reachable only through X-Sending-Zone
    "hdr": {"routingHeaders": {"X-User-Id": "123"}},
    "snd": {"senderDomains": ["Sender.Test"]},
    "rcpa": {"recipientDomains": ["RA.test", "shared.test"]},
    "rcpb": {"recipientDomains": ["rb.test", "shared.test"]},
}


def start_routing(app, zmta, zones):
    """A daemon with `zones` (in order), allowRoutingHeaders on feeder and a
    second listener, `plain`, without it; returns (daemon, plain port)."""
    app.write_config("default", yaml.safe_dump({"zones": zones}, sort_keys=False))
    plain = free_port()
    cfg = config(allowRoutingHeaders=True)
    cfg["smtpInterfaces"]["plain"] = {"port": plain}
    return zmta(extra_config=cfg), plain


ROUTES = [
    # id, listener, envelope sender, recipients, added header lines, zone of
    # each recipient, X-Sending-Zone value logged as ignored
    ("header", "feeder", "a@plain.test", ["x@one.test"],
     ["X-Sending-Zone: named"], ["named"], None),
    ("header-any-case", "feeder", "a@plain.test", ["x@one.test"],
     ["x-sending-ZONE:   Named  "], ["named"], None),
    ("header-folded", "feeder", "a@plain.test", ["x@one.test"],
     ["X-Sending-Zone:\r\n named"], ["named"], None),
    ("header-not-allowed", "plain", "a@plain.test", ["x@one.test"],
     ["X-Sending-Zone: named"], ["default"], None),
    ("header-unknown-zone", "feeder", "a@plain.test", ["x@one.test"],
     ["X-Sending-Zone: nosuch"], ["default"], "nosuch"),
    ("header-unknown-zone-then-rules", "feeder", "a@sender.test", ["x@one.test"],
     ["X-Sending-Zone: nosuch"], ["snd"], "nosuch"),
    ("routing-header", "feeder", "a@plain.test", ["x@one.test"],
     ["X-User-Id: 123"], ["hdr"], None),
    ("routing-header-name-case-and-trim", "feeder", "a@plain.test", ["x@one.test"],
     ["x-user-ID:    123   "], ["hdr"], None),
    ("routing-header-folded", "feeder", "a@plain.test", ["x@one.test"],
     ["X-User-Id:\r\n\t123"], ["hdr"], None),
    ("routing-header-other-value", "feeder", "a@plain.test", ["x@one.test"],
     ["X-User-Id: 1234"], ["default"], None),
    ("sender-domain", "feeder", "a@sender.test", ["x@one.test", "y@two.test"],
     [], ["snd", "snd"], None),
    ("sender-domain-case", "feeder", "a@SENDER.test", ["x@one.test"], [], ["snd"], None),
    ("sender-subdomain-no-match", "feeder", "a@sub.sender.test", ["x@one.test"],
     [], ["default"], None),
    ("null-sender", "feeder", "", ["x@ra.test"], [], ["rcpa"], None),
    ("recipient-domains-per-recipient", "feeder", "a@plain.test",
     ["x@ra.test", "y@rb.test", "z@other.test"], [], ["rcpa", "rcpb", "default"], None),
    ("recipient-domain-case", "feeder", "a@plain.test", ["x@rA.TEST"], [], ["rcpa"], None),
    ("recipient-subdomain-no-match", "feeder", "a@plain.test", ["x@sub.ra.test"],
     [], ["default"], None),
    ("recipient-domain-first-zone-wins", "feeder", "a@plain.test", ["x@shared.test"],
     [], ["rcpa"], None),
    ("default", "feeder", "a@plain.test", ["x@one.test"], [], ["default"], None),
    # priority: a message matching several rules goes by the earliest
    ("prio-header-first", "feeder", "a@sender.test", ["x@ra.test", "y@rb.test"],
     ["X-User-Id: 123", "X-Sending-Zone: named"], ["named", "named"], None),
    ("prio-routing-header-over-sender", "feeder", "a@sender.test", ["x@ra.test"],
     ["X-User-Id: 123"], ["hdr"], None),
    ("prio-sender-over-recipient", "feeder", "a@sender.test", ["x@ra.test", "y@rb.test"],
     [], ["snd", "snd"], None),
    ("prio-recipient-over-default", "feeder", "a@plain.test", ["x@other.test", "y@rb.test"],
     [], ["default", "rcpb"], None),
    ("prio-header-ignored-then-routing-header", "plain", "a@sender.test", ["x@ra.test"],
     ["X-Sending-Zone: named", "X-User-Id: 123"], ["hdr"], None),
]


@pytest.mark.parametrize("listener, sender, rcpts, headers, zones, ignored",
                         [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES])
def test_routing(app, zmta, listener, sender, rcpts, headers, zones, ignored):
    d, plain = start_routing(app, zmta, ZONES)
    head = "".join(h + "\r\n" for h in headers).encode()
    msg = b"From: <a@plain.test>\r\n" + head + b"Subject: route\r\n\r\nbody\r\n"
    with Session(d.smtp_port if listener == "feeder" else plain) as s:
        s.ehlo()
        qid = s.submit(msg, sender=sender, rcpts=rcpts)
        assert s.cmd("QUIT") == "221 2.0.0 Bye"
    body = get_message(d, qid)
    assert body["meta"]["interface"] == listener
    assert [(m["seq"], m["recipient"], m["zone"], m["status"]) for m in body["messages"]] == [
        (f"{i:03x}", r, z, "QUEUED") for i, (r, z) in enumerate(zip(rcpts, zones), 1)]
    for zone in ["default", "bounces"] + list(ZONES):
        assert counts(d, zone)["queued"] == zones.count(zone), zone
    # X-Sending-Zone is removed whatever the listener; other fields stay.
    stored = fetch(d, qid)
    assert b"x-sending-zone" not in stored.lower()
    expected_head = b"".join(h.encode() + b"\r\n" for h in headers
                             if not h.lower().startswith("x-sending-zone"))
    assert split_received(stored)[1].startswith(b"From: <a@plain.test>\r\n" + expected_head
                                                + b"Subject: route\r\n")
    warn = rf"warn id={qid} event=route x_sending_zone={ignored} action=ignored"
    if ignored:
        d.wait_log(warn)
    else:
        assert "x_sending_zone=" not in d.log()


@pytest.mark.parametrize("rule, header, sender, rcpt", [
    ("recipientDomains", None, "a@plain.test", "x@dup.test"),
    ("senderDomains", None, "a@dup.test", "x@one.test"),
    ("routingHeaders", "X-Dup: yes", "a@plain.test", "x@one.test"),
], ids=["recipientDomains", "senderDomains", "routingHeaders"])
@pytest.mark.parametrize("order", [("zfirst", "asecond"), ("asecond", "zfirst")],
                         ids=["z-then-a", "a-then-z"])
def test_routing_first_listed_zone_wins(app, zmta, rule, header, sender, rcpt, order):
    def value():  # a fresh object each time, or the dump would use an alias
        return {"X-Dup": "yes"} if rule == "routingHeaders" else ["dup.test"]
    d, _ = start_routing(app, zmta, {name: {rule: value()} for name in order})
    head = (header + "\r\n").encode() if header else b""
    with Session(d.smtp_port) as s:
        s.ehlo()
        qid = s.submit(head + b"Subject: dup\r\n\r\nbody\r\n", sender=sender, rcpts=[rcpt])
    assert deliveries(d, qid) == [("001", rcpt, order[0], "QUEUED")]
    assert counts(d, order[0])["queued"] == 1
    assert_nothing_queued(d, order[1])


# ------------------------------------------------- 3. the stored message

DATE = b"Date: Mon, 02 Mar 2020 10:00:00 +0000\r\n"  # in the past: no delay
MSGID = b"Message-ID: <given.1@client.test>\r\n"
_rng = random.Random(1)
# 450 kB of short and dotted lines: dot-stuffing across the server's reads.
MIXED_BODY = b"".join(
    _rng.choice([b".", b"..", b". ", b"", b"x", b".dot"]) + b"y" * _rng.randrange(0, 300) + b"\r\n"
    for _ in range(3000))
HIGH = bytes(range(0x80, 0x100))

FETCH_CASES = [
    # id, MAIL parameters, HELO verb, recipients, header block, body,
    # Message-ID added, Date added
    ("complete", "", "EHLO", 1,
     b"From: <a@x.test>\r\nTo: <rcpt@example.test>\r\n" + MSGID + DATE + b"Subject: s\r\n",
     b"\r\nhello\r\n", False, False),
    ("no-id-no-date", "", "EHLO", 1, b"From: <a@x.test>\r\nSubject: s\r\n",
     b"\r\nhello\r\n", True, True),
    ("no-date", "", "EHLO", 1, b"Subject: s\r\n" + MSGID, b"\r\nhello\r\n", False, True),
    ("no-id", "", "EHLO", 1, DATE + b"Subject: s\r\n", b"\r\nhello\r\n", True, False),
    ("lower-case-names", "", "EHLO", 1,
     b"message-id: <lc@client.test>\r\nDATE: Mon, 02 Mar 2020 10:00:00 +0000\r\n",
     b"\r\nhello\r\n", False, False),
    ("folded-and-odd-spacing", "", "EHLO", 1,
     b"Subject:   folded  \r\n\tacross\r\n  three lines \r\nX-Empty:\r\nX-Old-Style : v\r\n"
     b"X-Tab:\tv\r\n", b"\r\n  indented body\r\n\t\r\n", True, True),
    ("two-recipients", "", "EHLO", 2, b"Subject: s\r\n", b"\r\nhello\r\n", True, True),
    ("helo", "", "HELO", 1, b"Subject: s\r\n", b"\r\nhello\r\n", True, True),
    ("empty-body", "", "EHLO", 1, b"Subject: s\r\n", b"\r\n", True, True),
    ("headers-only", "", "EHLO", 1, b"Subject: s\r\n", b"", True, True),
    ("no-headers", "", "EHLO", 1, b"", b"\r\nonly a body\r\n", True, True),
    ("dot-lines", "", "EHLO", 1, b"Subject: dots\r\n",
     b"\r\n.\r\n..\r\n...\r\n.leading\r\n..double\r\n . space\r\n.\r\nend.\r\n.\r\n", True, True),
    ("long-lines", "", "EHLO", 1, b"Subject: " + b"h" * 5000 + b"\r\n",
     b"\r\n" + b"a" * 10_000 + b"\r\n" + b"b" * 100_000 + b"\r\n.\r\n", True, True),
    ("many-dotted-lines", "", "EHLO", 1, b"Subject: mixed\r\n", b"\r\n" + MIXED_BODY, True, True),
    ("8bitmime", " BODY=8BITMIME", "EHLO", 1,
     "Subject: Grüße, ça va\r\n".encode() + b"X-Latin1: caf\xe9\r\n",
     b"\r\n" + HIGH + b"\r\n\xff\xfe invalid utf-8 \xc3\x28\r\n\x01ctl\x7f\r\n", True, True),
    ("smtputf8", " SMTPUTF8 BODY=8BITMIME", "EHLO", 1,
     "From: Jörg <jörg@exämple.test>\r\n".encode(), "\r\nüñí\r\n".encode(), True, True),
]


@pytest.mark.parametrize("params, verb, nrcpts, head, body, add_id, add_date",
                         [c[1:] for c in FETCH_CASES], ids=[c[0] for c in FETCH_CASES])
def test_fetch_is_received_then_message_byte_for_byte(zmta, params, verb, nrcpts, head, body,
                                                      add_id, add_date):
    d = zmta(extra_config=config())
    sender = "jörg@exämple.test" if "SMTPUTF8" in params else "a@x.test"
    rcpts = ["rcpt@example.test", "other@example.test"][:nrcpts]
    with Session(d.smtp_port) as s:
        if verb == "EHLO":
            s.ehlo()
        else:
            assert s.cmd(f"HELO {HELO}") == f"250 {HOST}"
        qid = s.submit(head + body, sender=sender, rcpts=rcpts, params=params)
    meta = get_message(d, qid)["meta"]
    assert meta["from"] == sender and meta["to"] == rcpts
    assert meta["transtype"] == ("ESMTP" if verb == "EHLO" else "SMTP")
    added = b""
    if add_id:
        assert meta["messageId"] == f"<{qid}@{HOST}>"
        added += b"Message-ID: " + meta["messageId"].encode() + b"\r\n"
    else:
        assert meta["messageId"] == header_value(head, b"message-id")
    if add_date:
        check_date(meta["date"])
        added += b"Date: " + meta["date"].encode() + b"\r\n"
    else:
        assert meta["date"] == header_value(head, b"date")
    stored = fetch(d, qid)
    received, rest = split_received(stored)
    check_received(received, qid, rcpts=rcpts, with_=meta["transtype"])
    assert rest == head + added + body
    assert meta["bodySize"] == len(body)
    assert counts(d)["queued"] == nrcpts


def with_added_fields(msg, meta):
    """msg (no Message-ID, no Date) as stored: both added at the end of its
    header block."""
    head, body = msg.split(b"\r\n\r\n", 1)
    return (head + b"\r\nMessage-ID: " + meta["messageId"].encode() + b"\r\nDate: "
            + meta["date"].encode() + b"\r\n\r\n" + body)


# ----------------------------------------------------------- 4. pipelining

MSG1 = b"Subject: one\r\n\r\nfirst message\r\n"
MSG2 = b"Subject: two\r\n\r\nsecond message\r\n.with a dot\r\n"
R3 = ["r1@one.test", "r2@two.test", "r3@one.test"]
EHLO_OK = re.escape(EHLO_LAST)
MAIL_OK = r"250 2\.1\.0 Ok"
RCPT_OK = r"250 2\.1\.5 Ok"
GO_AHEAD = r"354 End data with <CR><LF>\.<CR><LF>"
QUEUED_OK = QUEUED.pattern
OK = r"250 2\.0\.0 Ok"
BYE = r"221 2\.0\.0 Bye"
EOF = None  # the server closes the connection


def mail(sender="a@x.test"):
    return f"MAIL FROM:<{sender}>\r\n".encode()


def rcpt(*rcpts):
    return "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts).encode()


def lock_step(*steps):
    """Splits each (bytes, replies) step into one write per command line;
    DATA contents are kept whole with the command that follows them."""
    out = []
    for data, replies in steps:
        if data.startswith(b"Subject:"):  # a message, then maybe commands
            end = data.index(b"\r\n.\r\n") + 5
            out.append((data[:end], replies[:1]))
            data, replies = data[end:], replies[1:]
        lines = [line + b"\r\n" for line in data.split(b"\r\n")[:-1]]
        assert len(lines) == len([r for r in replies if r is not EOF])
        for i, line in enumerate(lines):
            rest = replies[i + 1:] if i == len(lines) - 1 else []
            out.append((line, [replies[i]] + [r for r in rest if r is EOF]))
    return out


ENVELOPE = mail() + rcpt(*R3) + b"DATA\r\n"
ENVELOPE_REPLIES = [MAIL_OK, RCPT_OK, RCPT_OK, RCPT_OK, GO_AHEAD]
ONE_TRANSACTION = [
    (b"EHLO client.test\r\n" + ENVELOPE, [EHLO_OK] + ENVELOPE_REPLIES),
    (wire(MSG1) + b"QUIT\r\n", [QUEUED_OK, BYE, EOF]),
]
TWO_MESSAGES = [
    ONE_TRANSACTION[0],
    (wire(MSG1) + mail("b@x.test") + rcpt("s@two.test") + b"DATA\r\n",
     [QUEUED_OK, MAIL_OK, RCPT_OK, GO_AHEAD]),
    (wire(MSG2) + b"QUIT\r\n", [QUEUED_OK, BYE, EOF]),
]
RSET_BETWEEN = [
    ONE_TRANSACTION[0],
    (wire(MSG1) + b"RSET\r\n" + mail("dropped@x.test") + rcpt("dropped@gone.test")
     + b"RSET\r\n" + rcpt("late@gone.test") + b"DATA\r\n" + mail("b@x.test")
     + rcpt("s@two.test") + b"DATA\r\n",
     [QUEUED_OK, OK, MAIL_OK, RCPT_OK, OK, r"503 5\.5\.1 Error: need MAIL command",
      r"503 5\.5\.1 Error: need MAIL command", MAIL_OK, RCPT_OK, GO_AHEAD]),
    (wire(MSG2) + b"QUIT\r\n", [QUEUED_OK, BYE, EOF]),
]
REFUSED_RCPTS = [
    (b"EHLO client.test\r\n" + mail() + b"RCPT TO:<bad>\r\n" + rcpt("r1@one.test")
     + b"RCPT TO:<>\r\nDATA\r\n",
     [EHLO_OK, MAIL_OK, r"553 5\.1\.3 Recipient address has no domain", RCPT_OK,
      r"553 5\.1\.3 Null recipient address not allowed", GO_AHEAD]),
    (wire(MSG1) + b"QUIT\r\n", [QUEUED_OK, BYE, EOF]),
]
ALL_RCPTS_REFUSED = [
    (b"EHLO client.test\r\n" + mail() + b"RCPT TO:<bad>\r\nDATA\r\nNOOP\r\nQUIT\r\n",
     [EHLO_OK, MAIL_OK, r"553 5\.1\.3 Recipient address has no domain",
      r"503 5\.5\.1 Error: need RCPT command", OK, BYE, EOF]),
]
EHLO_RESETS = [
    (b"EHLO client.test\r\n" + mail() + rcpt("r1@one.test") + b"EHLO again.test\r\n"
     + b"DATA\r\nQUIT\r\n",
     [EHLO_OK, MAIL_OK, RCPT_OK, EHLO_OK, r"503 5\.5\.1 Error: need MAIL command", BYE, EOF]),
]
PIPELINES = [
    # id, writes (bytes, expected replies), messages queued (text, recipients)
    ("pipelined", ONE_TRANSACTION, [(MSG1, R3)]),
    ("pipelined-after-ehlo", [(b"EHLO client.test\r\n", [EHLO_OK]),
                              (ENVELOPE, ENVELOPE_REPLIES), ONE_TRANSACTION[1]], [(MSG1, R3)]),
    ("lock-step", lock_step(*ONE_TRANSACTION), [(MSG1, R3)]),
    ("two-messages-pipelined", TWO_MESSAGES, [(MSG1, R3), (MSG2, ["s@two.test"])]),
    ("two-messages-lock-step", lock_step(*TWO_MESSAGES), [(MSG1, R3), (MSG2, ["s@two.test"])]),
    ("rset-between-pipelined", RSET_BETWEEN, [(MSG1, R3), (MSG2, ["s@two.test"])]),
    ("rset-between-lock-step", lock_step(*RSET_BETWEEN), [(MSG1, R3), (MSG2, ["s@two.test"])]),
    ("refused-recipients-pipelined", REFUSED_RCPTS, [(MSG1, ["r1@one.test"])]),
    ("all-recipients-refused", ALL_RCPTS_REFUSED, []),
    ("ehlo-resets-transaction", EHLO_RESETS, []),
]


@pytest.mark.parametrize("steps, messages", [p[1:] for p in PIPELINES],
                         ids=[p[0] for p in PIPELINES])
def test_pipelining(zmta, steps, messages):
    d = zmta(extra_config=config())
    ids = []
    with Session(d.smtp_port) as s:
        assert re.fullmatch(rf"220 {HOST} ESMTP zone-mta \S+", s.greeting[0]), s.greeting
        for data, expected in steps:
            s.send(data)  # one write
            for pattern in expected:
                if pattern is EOF:
                    assert s.at_eof(), "the connection should be closed"
                    continue
                got = s.last()
                assert re.fullmatch(pattern, got), (pattern, got, data[:200])
                if pattern == QUEUED_OK:
                    ids.append(QUEUED.fullmatch(got).group(1))
    assert len(ids) == len(messages)
    for qid, (msg, rcpts) in zip(ids, messages):
        assert deliveries(d, qid) == [(f"{i:03x}", r, "default", "QUEUED")  # seq: hex
                                      for i, r in enumerate(rcpts, 1)]
        meta = get_message(d, qid)["meta"]
        assert split_received(fetch(d, qid))[1] == with_added_fields(msg, meta)
    assert counts(d)["queued"] == sum(len(r) for _, r in messages)
    assert "gone.test" not in json.dumps(counts(d))


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_end_of_data_split_across_reads(zmta, cut):
    """The real end, CRLF . CRLF, split over two reads: the message ends
    there and nothing after it is taken as message text."""
    d = zmta(extra_config=config())
    with Session(d.smtp_port) as s:
        s.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.ehlo()
        s.envelope("a@x.test", ["b@example.test"])
        data = MSG1[:-2] + b"\r\n.\r\nNOOP\r\n"
        end = len(MSG1) - 2
        s.send(data[:end + cut])
        time.sleep(0.2)
        s.send(data[end + cut:])
        qid = QUEUED.fullmatch(s.last()).group(1)
        assert s.last() == "250 2.0.0 Ok"
    meta = get_message(d, qid)["meta"]
    assert split_received(fetch(d, qid))[1] == with_added_fields(MSG1, meta)
    assert counts(d)["queued"] == 1


# ------------------------------------------------- 5. replies and limits

GREETED, EHLOED = [], ["EHLO client.test"]
IN_MAIL = EHLOED + ["MAIL FROM:<a@x.test>"]
IN_RCPT = IN_MAIL + ["RCPT TO:<b@y.test>"]
REPLIES = [
    # id, commands before (each must succeed), command, its exact reply
    ("mail-before-ehlo", GREETED, "MAIL FROM:<a@x.test>", "503 5.5.1 Error: send HELO/EHLO first"),
    ("rcpt-before-mail", EHLOED, "RCPT TO:<b@y.test>", "503 5.5.1 Error: need MAIL command"),
    ("data-before-mail", EHLOED, "DATA", "503 5.5.1 Error: need MAIL command"),
    ("data-before-rcpt", IN_MAIL, "DATA", "503 5.5.1 Error: need RCPT command"),
    ("nested-mail", IN_RCPT, "MAIL FROM:<c@x.test>", "503 5.5.1 Error: nested MAIL command"),
    ("ehlo-without-name", GREETED, "EHLO", "501 5.5.4 Syntax: EHLO hostname"),
    ("helo-without-name", GREETED, "HELO", "501 5.5.4 Syntax: HELO hostname"),
    ("data-with-argument", IN_RCPT, "DATA now", "501 5.5.4 Syntax: DATA"),
    ("sender-without-domain", EHLOED, "MAIL FROM:<a@>", "553 5.1.7 Sender address has no domain"),
    ("sender-without-brackets", EHLOED, "MAIL FROM:a@b", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    ("sender-unclosed", EHLOED, "MAIL FROM:<a@b.test",
     "501 5.5.4 Syntax: missing '>' after address"),
    ("sender-text-after", EHLOED, "MAIL FROM:<a@b.test>x",
     "501 5.5.4 Syntax: unexpected text after address"),
    ("sender-no-keyword", EHLOED, "MAIL <a@b.test>", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    ("sender-bad-local", EHLOED, "MAIL FROM:<a..b@x.test>", "553 5.1.7 Bad sender address syntax"),
    ("sender-bad-domain", EHLOED, "MAIL FROM:<a@-x.test>", "553 5.1.7 Bad sender domain syntax"),
    ("sender-local-too-long", EHLOED, f"MAIL FROM:<{'l' * 65}@x.test>",
     "553 5.1.7 Sender local part longer than 64 octets"),
    ("sender-bad-literal", EHLOED, "MAIL FROM:<a@[300.1.1.1]>",
     "553 5.1.7 Bad sender address literal"),
    ("sender-utf8-without-smtputf8", EHLOED, "MAIL FROM:<jörg@x.test>",
     "553 5.6.7 Non-ASCII sender address requires SMTPUTF8"),
    ("unknown-mail-parameter", EHLOED, "MAIL FROM:<a@x.test> FOO=1",
     "555 5.5.4 Unsupported parameter"),
    ("bad-body-value", EHLOED, "MAIL FROM:<a@x.test> BODY=BINARYMIME",
     "555 5.5.4 Unsupported BODY value: 7BIT or 8BITMIME expected"),
    ("bad-size-value", EHLOED, "MAIL FROM:<a@x.test> SIZE=12x",
     "555 5.5.4 Bad SIZE value: 1 to 20 digits expected"),
    ("duplicate-size", EHLOED, "MAIL FROM:<a@x.test> SIZE=1 SIZE=2",
     "555 5.5.4 Duplicate SIZE parameter"),
    ("parameters-after-helo", ["HELO client.test"], "MAIL FROM:<a@x.test> SIZE=10",
     "555 5.5.4 Error: parameters need EHLO"),
    ("recipient-without-at-sign", IN_MAIL, "RCPT TO:<no-at-sign>",
     "553 5.1.3 Recipient address has no domain"),
    ("recipient-null", IN_MAIL, "RCPT TO:<>", "553 5.1.3 Null recipient address not allowed"),
    ("recipient-without-brackets", IN_MAIL, "RCPT TO:b@y.test",
     "501 5.5.4 Syntax: RCPT TO:<address>"),
    ("recipient-bad-domain", IN_MAIL, "RCPT TO:<b@y..test>",
     "553 5.1.3 Bad recipient domain syntax"),
    ("recipient-utf8-without-smtputf8", IN_MAIL, "RCPT TO:<b@exämple.test>",
     "553 5.6.7 Non-ASCII recipient address requires SMTPUTF8"),
    ("recipient-parameter", IN_MAIL, "RCPT TO:<b@y.test> SIZE=10",
     "555 5.5.4 Unsupported parameter"),
    ("recipient-bad-notify", IN_MAIL, "RCPT TO:<b@y.test> NOTIFY=NEVER,DELAY",
     "501 5.5.4 Bad NOTIFY value: NEVER, or SUCCESS, FAILURE and DELAY separated by commas, "
     "expected"),
    ("unknown-command", EHLOED, "FROBNICATE", "500 5.5.2 Error: command not recognized"),
    ("empty-line", EHLOED, "", "500 5.5.2 Error: empty command line"),
    ("control-character", EHLOED, "NOOP\x01", "500 5.5.2 Error: control character in command line"),
    ("nul-byte", EHLOED, "NO\x00OP", "500 5.5.2 Error: NUL byte in command line"),
    ("vrfy", EHLOED, "VRFY postmaster",
     "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"),
    ("expn", EHLOED, "EXPN staff", "502 5.5.1 Error: EXPN not implemented"),
    ("starttls", EHLOED, "STARTTLS", "502 5.5.1 Error: STARTTLS not offered"),
    ("auth", EHLOED, "AUTH PLAIN AGFAYgBj", "502 5.5.1 Error: authentication not enabled"),
    ("bdat", IN_RCPT, "BDAT 5 LAST", "502 5.5.1 Error: BDAT not implemented"),
    ("help", GREETED, "HELP",
     "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"),
    ("noop-before-ehlo", GREETED, "NOOP", "250 2.0.0 Ok"),
    ("rset-before-ehlo", GREETED, "RSET", "250 2.0.0 Ok"),
    ("helo", GREETED, "HELO client.test", f"250 {HOST}"),
    ("lower-case-verbs", EHLOED, "mail from:<a@x.test>", "250 2.1.0 Ok"),
    ("space-after-colon", EHLOED, "MAIL FROM: <a@x.test>", "250 2.1.0 Ok"),
    ("null-sender", EHLOED, "MAIL FROM:<>", "250 2.1.0 Ok"),
    ("size-and-body", EHLOED, "MAIL FROM:<a@x.test> SIZE=1000 BODY=8BITMIME", "250 2.1.0 Ok"),
    ("smtputf8-sender", EHLOED, "MAIL FROM:<jörg@exämple.test> SMTPUTF8", "250 2.1.0 Ok"),
    ("line-of-2048-octets", EHLOED, "NOOP " + "x" * 2041, "250 2.0.0 Ok"),
    ("line-too-long", EHLOED, "NOOP " + "x" * 2044, "500 5.5.2 Error: line too long"),
    ("line-far-too-long", IN_RCPT, "NOOP " + "x" * 100_000, "500 5.5.2 Error: line too long"),
]


@pytest.mark.parametrize("before, command, expected", [r[1:] for r in REPLIES],
                         ids=[r[0] for r in REPLIES])
def test_reply(zmta, before, command, expected):
    d = zmta(extra_config=config())
    with Session(d.smtp_port) as s:
        for c in before:
            reply = s.cmd(c)
            assert reply.startswith("250 "), (c, reply)
        assert s.cmd(command.encode()) == expected
        # The session is still usable, still in the same transaction state.
        assert s.cmd("NOOP") == "250 2.0.0 Ok"
        if before == IN_RCPT:
            assert s.cmd("RCPT TO:<c@y.test>") == "250 2.1.5 Ok"
        assert s.cmd("QUIT") == "221 2.0.0 Bye"
        assert s.at_eof()
    assert_nothing_queued(d)


def sized(n):
    """A message of exactly n octets (n >= 100)."""
    head = b"Subject: sized\r\n\r\n"
    body, left = b"", n - len(head)
    while left > 0:
        line = b"z" * min(998, max(left - 2, 0)) + b"\r\n"
        if left - len(line) == 1:  # never leave one octet for the last line
            line = line[1:]
        body += line
        left -= len(line)
    assert len(head + body) == n
    return head + body


def big_header(n):
    """A header block of at least n octets, then a short body."""
    lines, size, i = [], 0, 0
    while size < n:
        line = b"X-Pad-%06d: " % i + b"p" * 980 + b"\r\n"
        lines.append(line)
        size += len(line)
        i += 1
    return b"".join(lines) + b"\r\nbody\r\n"


def refused_message(s, msg, reply, rcpts=("b@y.test",)):
    """Sends msg in a transaction, then NOOP in the same write: the message
    is read to its end and refused, and the session is still in step."""
    s.envelope("a@x.test", rcpts)
    s.send(wire(msg) + b"NOOP\r\n")
    assert s.last() == reply
    assert s.last() == "250 2.0.0 Ok"


MAX = 10 * 1024  # maxSize in the size cases


def limit_size_parameter(d, s):
    assert s.cmd(f"MAIL FROM:<a@x.test> SIZE={MAX + 1}") == (
        f"552 5.3.4 Error: message size exceeds fixed limit of {MAX} bytes")
    assert s.cmd("RCPT TO:<b@y.test>") == "503 5.5.1 Error: need MAIL command"
    assert s.cmd(f"MAIL FROM:<a@x.test> SIZE={MAX}") == "250 2.1.0 Ok"
    assert s.cmd("RSET") == "250 2.0.0 Ok"


def limit_data_one_over(d, s):
    refused_message(s, sized(MAX + 1), "552 5.3.4 Error: message size exceeds fixed limit")


def limit_data_far_over(d, s):
    refused_message(s, sized(100 * MAX), "552 5.3.4 Error: message size exceeds fixed limit")


def limit_data_size_advertised_and_exact(d, s):
    assert f"250-SIZE {MAX}" in s.ehlo("again.test")
    qid = s.submit(sized(MAX))
    assert get_message(d, qid)["meta"]["bodySize"] == MAX - len(b"Subject: sized\r\n")
    return 1


def limit_recipients(d, s):
    assert s.cmd("MAIL FROM:<a@x.test>") == "250 2.1.0 Ok"
    replies = [s.cmd(f"RCPT TO:<r{i}@y.test>") for i in range(1, 6)]
    assert replies == ["250 2.1.5 Ok"] * 3 + ["452 4.5.3 Error: too many recipients"] * 2
    assert s.cmd("DATA").startswith("354 ")
    s.send(wire(MSG1))
    qid = QUEUED.fullmatch(s.last()).group(1)
    assert [r for _, r, _, _ in deliveries(d, qid)] == ["r1@y.test", "r2@y.test", "r3@y.test"]
    # The count starts again with the next message.
    s.submit(MSG2, rcpts=("r4@y.test", "r5@y.test", "r6@y.test"))
    return 6


def limit_long_lines(d, s):
    assert s.cmd("MAIL FROM:<a@x.test>") == "250 2.1.0 Ok"
    # An over-long line in pieces, a partial one at the end of a read: one
    # reply each, and the transaction goes on.
    s.send(b"RCPT TO:<" + b"x" * 50_000)
    time.sleep(0.2)
    s.send(b"y" * 50_000 + b"@y.test>\r\nRCPT TO:<ok@y.test>\r\n")
    assert s.last() == "500 5.5.2 Error: line too long"
    assert s.last() == "250 2.1.5 Ok"
    assert s.cmd("DATA").startswith("354 ")
    s.send(wire(MSG1))
    assert QUEUED.fullmatch(s.last())
    return 1


def limit_header_over_1mib(d, s):
    refused_message(s, big_header(1024 * 1024 + 1),
                    "552 5.3.4 Error: message header exceeds 1 MiB")


def limit_header_line_over_1mib(d, s):
    refused_message(s, b"Subject: " + b"s" * (1024 * 1024) + b"\r\n\r\nbody\r\n",
                    "552 5.3.4 Error: message header exceeds 1 MiB")


def limit_header_just_under_1mib(d, s):
    msg = big_header(1024 * 1024 - 2000)
    qid = s.submit(msg)
    meta = get_message(d, qid)["meta"]
    assert split_received(fetch(d, qid))[1] == with_added_fields(msg, meta)
    return 1


def limit_big_body_small_header(d, s):
    msg = b"Subject: big\r\n\r\n" + (b"b" * 998 + b"\r\n") * 2200  # 2.2 MB
    qid = s.submit(msg)
    assert get_message(d, qid)["meta"]["bodySize"] == len(msg) - len(b"Subject: big\r\n")
    return 1


LIMITS = [
    # id, feeder options, scenario (after EHLO) -> number of deliveries queued
    ("size-parameter-over-max", {"maxSize": MAX}, limit_size_parameter),
    ("data-one-octet-over-max", {"maxSize": MAX}, limit_data_one_over),
    ("data-far-over-max", {"maxSize": MAX}, limit_data_far_over),
    ("data-exactly-max", {"maxSize": "10 KB"}, limit_data_size_advertised_and_exact),
    ("max-recipients", {"maxRecipients": 3}, limit_recipients),
    ("long-command-lines", {}, limit_long_lines),
    ("header-block-over-1mib", {"maxSize": "4 MB"}, limit_header_over_1mib),
    ("header-line-over-1mib", {"maxSize": "4 MB"}, limit_header_line_over_1mib),
    ("header-block-under-1mib", {"maxSize": "4 MB"}, limit_header_just_under_1mib),
    ("body-over-1mib", {"maxSize": "4 MB"}, limit_big_body_small_header),
]


@pytest.mark.parametrize("feeder, scenario", [x[1:] for x in LIMITS], ids=[x[0] for x in LIMITS])
def test_limit(zmta, feeder, scenario):
    d = zmta(extra_config=config(**feeder))
    with Session(d.smtp_port) as s:
        s.ehlo()
        queued = scenario(d, s) or 0
        assert s.cmd("NOOP") == "250 2.0.0 Ok"
        assert s.cmd("QUIT") == "221 2.0.0 Bye"
    if queued:
        assert counts(d)["queued"] == queued
    else:
        assert_nothing_queued(d)


# Sessions the server ends.  Each scenario gets the daemon and returns when
# the server has closed the connection.

TIMEOUT = f"421 4.4.2 {HOST} Error: timeout exceeded"
TOO_MANY_ERRORS = f"421 4.7.0 {HOST} Error: too many errors"
UNKNOWN = "500 5.5.2 Error: command not recognized"


def end_max_clients(d):
    first, second = Session(d.smtp_port), Session(d.smtp_port)
    for s in (first, second):
        assert len(s.greeting) == 1 and re.fullmatch(rf"220 {HOST} ESMTP zone-mta \S+",
                                                     s.greeting[0]), s.greeting
    with Session(d.smtp_port) as third:
        assert third.greeting == [f"421 4.7.0 {HOST} Error: too many connections"]
        assert third.at_eof()
    # The two sessions work on; once one leaves, a new client is let in.
    assert second.cmd("NOOP") == "250 2.0.0 Ok"
    first.close()

    def let_in():
        with Session(d.smtp_port) as s:
            if s.greeting[0].startswith("220 "):
                assert s.cmd("QUIT") == "221 2.0.0 Bye"
                return True
            assert s.greeting[0].startswith("421 4.7.0 ")
            return False
    wait_until(let_in, 15, interval=0.1, what="a free client slot")
    assert second.cmd("QUIT") == "221 2.0.0 Bye"
    assert second.at_eof()
    second.close()
    d.wait_log(r'warn event=smtp_reject interface=feeder client=127\.0\.0\.1 '
               r'reason="too many connections"$')


def end_idle_after_greeting(d):
    with Session(d.smtp_port) as s:
        start = time.monotonic()
        assert s.reply() == [TIMEOUT]
        assert s.at_eof()
        assert time.monotonic() - start >= 0.8


def end_idle_in_transaction(d):
    with Session(d.smtp_port) as s:
        s.ehlo()
        assert s.cmd("MAIL FROM:<a@x.test>") == "250 2.1.0 Ok"
        time.sleep(0.5)  # activity restarts the clock
        assert s.cmd("RCPT TO:<b@y.test>") == "250 2.1.5 Ok"
        start = time.monotonic()
        assert s.reply() == [TIMEOUT]
        assert s.at_eof()
        assert time.monotonic() - start >= 0.8
    d.wait_log(r"event=smtp_timeout session=\d+ client=127\.0\.0\.1 state=rcpt")


def end_stall_in_data(d):
    with Session(d.smtp_port) as s:
        s.ehlo()
        s.envelope("a@x.test", ["b@y.test"])
        s.send(b"Subject: stalled\r\n\r\nsome of the body\r\n")
        time.sleep(0.5)
        s.send(b"more of the body, no end")
        assert s.reply() == [TIMEOUT]
        assert s.at_eof()
    d.wait_log(r"event=smtp_timeout session=\d+ client=127\.0\.0\.1 state=data")


def end_ten_unknown_commands(d):
    with Session(d.smtp_port) as s:
        s.ehlo()
        for _ in range(9):
            assert s.cmd("FOO") == UNKNOWN
        assert s.cmd("NOOP") == "250 2.0.0 Ok"  # good commands do not reset the count
        assert s.cmd("FOO") == UNKNOWN
        assert s.reply() == [TOO_MANY_ERRORS]
        assert s.at_eof()
    d.wait_log(r'event=smtp_abort session=\d+ client=127\.0\.0\.1 reason="too many errors"')


def end_ten_mixed_errors_pipelined(d):
    bad = [("FOO", UNKNOWN),
           ("MAIL FROM:<a@x.test>", "503 5.5.1 Error: send HELO/EHLO first"),
           ("EHLO", "501 5.5.4 Syntax: EHLO hostname"),
           ("RCPT TO:<b@y.test>", "503 5.5.1 Error: need MAIL command"),
           ("DATA", "503 5.5.1 Error: need MAIL command"),
           ("STARTTLS", "502 5.5.1 Error: STARTTLS not offered"),
           ("AUTH LOGIN", "502 5.5.1 Error: authentication not enabled"),
           ("", "500 5.5.2 Error: empty command line"),
           ("NOOP " + "x" * 3000, "500 5.5.2 Error: line too long"),
           ("VRFY", "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"),
           ("MAIL FROM:a@b", "503 5.5.1 Error: send HELO/EHLO first")]
    with Session(d.smtp_port) as s:
        # All in one write, with more after the tenth: none of it is answered.
        s.send("".join(c + "\r\n" for c, _ in bad) + "HELP\r\nEHLO x.test\r\n")
        for _, reply in bad:
            assert s.last() == reply
        assert s.reply() == [TOO_MANY_ERRORS]
        assert s.at_eof()


SESSION_ENDS = [
    ("max-clients", {"maxClients": 2}, end_max_clients),
    ("idle-after-greeting", {"socketTimeout": "1 s"}, end_idle_after_greeting),
    ("idle-in-transaction", {"socketTimeout": "1 s"}, end_idle_in_transaction),
    ("stall-in-data", {"socketTimeout": "1 s"}, end_stall_in_data),
    ("ten-bad-commands", {}, end_ten_unknown_commands),
    ("ten-mixed-errors-pipelined", {}, end_ten_mixed_errors_pipelined),
]


@pytest.mark.parametrize("feeder, scenario", [x[1:] for x in SESSION_ENDS],
                         ids=[x[0] for x in SESSION_ENDS])
def test_session_end(zmta, feeder, scenario):
    d = zmta(extra_config=config(**feeder))
    scenario(d)
    assert_nothing_queued(d)
    # The listener is fine afterwards.
    with Session(d.smtp_port) as s:
        s.ehlo()
        s.submit(MSG1)
    assert counts(d)["queued"] == 1


# ------------------------------------------------------------ 6. smuggling

BARE = "550 5.6.0 Error: bare CR or LF in message; lines must end with CRLF"
HELP = "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"
SMUGGLED = (b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nevil body")
VECTORS = [
    # id, text before the vector, the vector (a would-be end of data)
    ("lf-dot-lf", b"Subject: s\r\n\r\nhello", b"\n.\n"),
    ("cr-dot-cr", b"Subject: s\r\n\r\nhello", b"\r.\r"),
    ("crlf-dot-lf", b"Subject: s\r\n\r\nhello", b"\r\n.\n"),
    ("lf-dot-crlf", b"Subject: s\r\n\r\nhello", b"\n.\r\n"),
    ("cr-dot-crlf", b"Subject: s\r\n\r\nhello", b"\r.\r\n"),
    ("crlf-dot-cr", b"Subject: s\r\n\r\nhello", b"\r\n.\r"),
    ("crlf-dot-cr-crlf", b"Subject: s\r\n\r\nhello", b"\r\n.\r\r\n"),
    ("bare-lf-mid-line", b"Subject: s\r\n\r\nhel", b"lo\nworld\r\n"),
    ("bare-cr-mid-line", b"Subject: s\r\n\r\nhel", b"lo\rworld\r\n"),
    ("dot-lf-first-line", b"", b".\n"),
    ("lf-dot-lf-in-header", b"Subject: s", b"\n.\n"),
]


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "split-in-vector"])
@pytest.mark.parametrize("before, vector", [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
def test_smuggling(zmta, before, vector, split):
    d = zmta(extra_config=config())
    data = before + vector + SMUGGLED + b"\r\n.\r\n" + b"HELP\r\n"
    with Session(d.smtp_port) as s:
        s.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.ehlo()
        s.envelope("a@x.test", ["b@example.test"])
        if split:  # the vector across two reads of the server
            cut = len(before) + len(vector) // 2 + 1
            s.send(data[:cut])
            time.sleep(0.2)
            data = data[cut:]
        s.send(data)
        # Exactly one reply to the whole DATA, then the HELP one.
        replies = []
        while not replies or replies[-1] != HELP:
            replies.append(s.last())
        assert replies == [BARE, HELP]
        assert_nothing_queued(d)
        # The session still takes a clean message.
        qid = s.submit(MSG1, rcpts=["clean@example.test"])
        assert s.cmd("QUIT") == "221 2.0.0 Bye"
    status = counts(d)
    assert status["queued"] == 1 and [x["domain"] for x in status["domains"]] == ["example.test"]
    assert deliveries(d, qid) == [("001", "clean@example.test", "default", "QUEUED")]
    assert b"evil" not in fetch(d, qid)
    assert "evil" not in json.dumps(status) and "victim" not in json.dumps(status)
    log = d.log()
    assert "evil" not in log and "victim" not in log
    assert len(re.findall(r"event=queued ", log)) == 1


def test_delivery_loop_is_refused_after_max_hops(zmta):
    """ZoneMTA's delivery-loop: more Received headers than maxHops (ours
    counted) is a loop: 554 5.4.6 for SMTP and the API alike."""
    from test_api import call
    d = zmta(config())

    def message(hops):
        received = "".join(f"Received: from hop{i}.test by hop{i + 1}.test; "
                           f"Wed, 2 Dec 2026 10:00:00 +0000\r\n" for i in range(hops))
        return (received + "From: a@example.test\r\nTo: b@example.test\r\nSubject: loop\r\n"
                "\r\nbody\r\n").encode()

    with Session(d.smtp_port) as s:
        s.ehlo()
        qid = s.submit(message(34))  # 35 with ours: at the limit
        s.envelope("sender@example.test", ["rcpt@example.test"])
        s.send(wire(message(35)))
        assert s.last() == ("554 5.4.6 Too many hops (36 Received headers, at most 35): "
                            "delivery loop detected")
        assert s.cmd("NOOP") == "250 2.0.0 Ok"
    assert get_message(d, qid)["meta"]
    status, body = call(d, "POST", "/send-raw", message(40))
    assert status == 403, body
    d.wait_log(r"event=refused reason=loop hops=41")
    assert counts(d)["queued"] == 1
