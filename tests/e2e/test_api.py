# SPDX-License-Identifier: EUPL-1.2
"""The HTTP API: sending (POST /send, /send-raw), access control, queue
management (/zones, /counter, /queued, DELETE and PUT /message) and /metrics.

Delivery tests use dnsmasq and aiosmtpd sinks as test_delivery.py does;
the others keep mail queued (the app fixture disables every zone) and look
at it through /message and /fetch.
"""
import base64
import email
import email.policy
import email.utils
import http.client
import json
import os
import random
import re
import signal
import socket
import threading
import time
from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_until
from test_delivery import relay_config, submit_many, wait_delivered
from test_queue import queue_counts, submit

QID = re.compile(r"[0-9a-f]{18}")


# ---- helpers ---------------------------------------------------------------

def call(d, method, path, body=None, headers=None, timeout=60):
    """(status, body): the body parsed when the reply says it is JSON, else
    bytes.  A dict or list body is sent as JSON."""
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection("127.0.0.1", d.api_port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if (resp.getheader("Content-Type") or "").startswith("application/json"):
            return resp.status, json.loads(data)
        return resp.status, data
    finally:
        conn.close()


def send(d, msg, headers=None):
    """POST /send that must succeed; returns the reply."""
    status, reply = call(d, "POST", "/send", msg, headers)
    assert status == 200, reply
    assert QID.fullmatch(reply["id"]), reply
    return reply


def send_raw(d, raw, query="", headers=None):
    status, reply = call(d, "POST", "/send-raw" + query, raw,
                         {"Content-Type": "message/rfc822", **(headers or {})})
    assert status == 200, reply
    assert QID.fullmatch(reply["id"]), reply
    return reply


def split_received(stored):
    """(the first header field with its folded lines, the rest)."""
    assert stored.startswith(b"Received: "), stored[:200]
    end = 0
    while True:
        end = stored.index(b"\r\n", end) + 2
        if stored[end:end + 1] not in (b" ", b"\t"):
            return stored[:end], stored[end:]


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def header_block(data):
    return data.split(b"\r\n\r\n", 1)[0]


def metrics(d, headers=None):
    """{(sample name, ((label, value), ...)): value} and the families by name."""
    conn = http.client.HTTPConnection("127.0.0.1", d.api_port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers=headers or {})
        resp = conn.getresponse()
        text = resp.read().decode()
        assert resp.status == 200, text
        assert resp.getheader("Content-Type", "").startswith("text/plain"), \
            resp.getheader("Content-Type")
    finally:
        conn.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {}
    for fam in families.values():
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, families


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


BASE = {"from": "sender@origin.test", "to": "rcpt@example.test", "subject": "s", "text": "t"}


# ---- 1. POST /send: compose, queue, deliver --------------------------------

def test_send_json_round_trip_through_delivery(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    rnd = random.Random(20261124)
    image = b"\x89PNG\r\n\x1a\n" + rnd.randbytes(3000)
    big = rnd.randbytes(10 * 1024 * 1024)
    subject = ("Grüße aus Köln — ein ziemlich langer Betreff, der gefaltet und "
               "kodiert werden muss ☃ Zoë")
    text = ("Hallo Zoë,\n\nhier ist das Logo.\n.a line starting with a dot\n"
            + "ä" * 200 + "\nEnde\n")
    html = ('<p>Hallo <b>Zoë</b>,</p>\n<p><img src="cid:logo@zmta.test" alt="logo"></p>\n')
    msg = {
        "from": {"name": "Jürgen Müller", "address": "juergen@origin.test"},
        "to": [{"name": "Zoë", "address": "zoe@example.test"}],
        "cc": "Ünal Öztürk <uenal@example.test>",
        "bcc": "hidden@example.test",
        "subject": subject,
        "text": text,
        "html": html,
        "attachments": [
            {"filename": "logo.png", "content": base64.b64encode(image).decode(),
             "encoding": "base64", "contentType": "image/png", "cid": "logo@zmta.test"},
            {"filename": "Prüfbericht 2026.bin", "content": base64.b64encode(big).decode(),
             "encoding": "base64", "contentType": "application/octet-stream"},
        ],
    }
    reply = send(d, msg)
    assert reply["from"] == "juergen@origin.test"
    assert sorted(reply["to"]) == ["hidden@example.test", "uenal@example.test",
                                   "zoe@example.test"]
    assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", reply["messageId"]), reply

    got = sink.wait_for(1, timeout=30)[0]
    assert got["mail_from"] == "juergen@origin.test"
    assert sorted(got["rcpt_tos"]) == sorted(reply["to"])
    data = got["data"]
    head = header_block(data)
    assert head.isascii(), "non-ASCII header bytes: names and subject must be encoded"
    assert b"hidden@example.test" not in head and b"\r\nBcc:" not in head
    m = parse(data)
    assert m["Bcc"] is None
    assert m["Subject"] == subject
    assert m["Message-ID"] == reply["messageId"]
    assert [(a.display_name, a.addr_spec) for a in m["From"].addresses] == [
        ("Jürgen Müller", "juergen@origin.test")]
    assert [(a.display_name, a.addr_spec) for a in m["To"].addresses] == [
        ("Zoë", "zoe@example.test")]
    assert [(a.display_name, a.addr_spec) for a in m["Cc"].addresses] == [
        ("Ünal Öztürk", "uenal@example.test")]

    def norm(s):
        return s.replace("\r\n", "\n")

    assert norm(m.get_body(("plain",)).get_content()) == text
    assert norm(m.get_body(("html",)).get_content()) == html
    parts = list(m.walk())
    img = [p for p in parts if p["Content-ID"] == "<logo@zmta.test>"]
    assert len(img) == 1
    assert img[0].get_content_type() == "image/png"
    assert img[0].get_content() == image
    # The image sits with the html in a multipart/related, so cid: resolves.
    related = [p for p in parts if p.get_content_type() == "multipart/related"]
    assert len(related) == 1
    kids = list(related[0].iter_parts())
    assert kids[0].get_content_type() == "text/html" and img[0] in kids
    att = [p for p in parts if p.get_filename() == "Prüfbericht 2026.bin"]
    assert len(att) == 1
    assert att[0].get_content_disposition() == "attachment"
    assert att[0].get_content_type() == "application/octet-stream"
    assert att[0].get_content() == big
    wait_delivered(d)


# ---- POST /send: the other fields, and the metadata ------------------------

def _check_reply_to(m, meta, reply):
    assert [a.addr_spec for a in m["Reply-To"].addresses] == ["reply@origin.test"]
    assert m["Reply-To"].addresses[0].display_name == "Re Ply"


def _check_threading(m, meta, reply):
    assert m["In-Reply-To"] == "<parent@origin.test>"
    assert m["References"].split() == ["<root@origin.test>", "<parent@origin.test>"]


def _check_message_id(m, meta, reply):
    assert m["Message-ID"] == reply["messageId"] == meta["messageId"] == "<fixed-1@origin.test>"


def _check_date(m, meta, reply):
    assert m["Date"].datetime == datetime(2024, 2, 29, 12, 34, 56, tzinfo=timezone.utc)


def _check_headers_object(m, meta, reply):
    assert m["X-Campaign"] == "spring"
    assert m.get_all("X-Multi") == ["1", "2"]


def _check_headers_list(m, meta, reply):
    assert m.get_all("X-List") == ["v1", "v2"]


def _check_priority(m, meta, reply):
    assert m["Importance"].lower() == "high"
    assert m["X-Priority"].startswith("1")


def _check_sender(m, meta, reply):
    assert m["Sender"].addresses[0].addr_spec == "bulk@bulk.test"
    assert [a.addr_spec for a in m["From"].addresses] == ["sender@origin.test"]
    # the envelope sender is From's, as in Nodemailer and ZoneMTA
    assert meta["from"] == reply["from"] == "sender@origin.test"


def _check_envelope(m, meta, reply):
    assert meta["from"] == reply["from"] == "bounce@bulk.test"
    assert meta["to"] == reply["to"] == ["env1@example.test", "env2@other.test"]
    assert [a.addr_spec for a in m["To"].addresses] == ["rcpt@example.test"]


def _check_cc_bcc(m, meta, reply):
    assert m["Bcc"] is None
    assert [a.addr_spec for a in m["Cc"].addresses] == ["cc@example.test"]
    assert sorted(meta["to"]) == sorted(reply["to"]) == [
        "bcc@other.test", "cc@example.test", "rcpt@example.test"]


def _check_alternatives(m, meta, reply):
    alt = [p for p in m.walk() if p.get_content_type() == "multipart/alternative"]
    assert len(alt) == 1
    kinds = [p.get_content_type() for p in alt[0].iter_parts()]
    assert kinds == ["text/plain", "text/html", "text/calendar"]
    cal = list(alt[0].iter_parts())[2]
    assert cal.get_param("method") == "REQUEST"
    assert cal.get_content().replace("\r\n", "\n") == "BEGIN:VCALENDAR\nEND:VCALENDAR\n"


def _check_address_list_string(m, meta, reply):
    assert [(a.display_name, a.addr_spec) for a in m["To"].addresses] == [
        ("Zoë", "zoe@example.test"), ("", "plain@example.test")]
    assert meta["to"] == ["zoe@example.test", "plain@example.test"]


@pytest.mark.parametrize("extra, check", [
    ({"replyTo": "Re Ply <reply@origin.test>"}, _check_reply_to),
    ({"inReplyTo": "<parent@origin.test>",
      "references": ["<root@origin.test>", "<parent@origin.test>"]}, _check_threading),
    ({"messageId": "<fixed-1@origin.test>"}, _check_message_id),
    ({"date": "2024-02-29T12:34:56Z"}, _check_date),
    ({"headers": {"X-Campaign": "spring", "X-Multi": ["1", "2"]}}, _check_headers_object),
    ({"headers": [{"key": "X-List", "value": "v1"}, {"key": "X-List", "value": "v2"}]},
     _check_headers_list),
    ({"priority": "high"}, _check_priority),
    ({"sender": "bulk@bulk.test"}, _check_sender),
    ({"envelope": {"from": "bounce@bulk.test", "to": ["env1@example.test", "env2@other.test"]}},
     _check_envelope),
    ({"cc": "cc@example.test", "bcc": ["bcc@other.test"]}, _check_cc_bcc),
    ({"html": "<b>t</b>", "alternatives": [
        {"contentType": "text/calendar; method=REQUEST",
         "content": "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"}]}, _check_alternatives),
    ({"to": "Zoë <zoe@example.test>, plain@example.test"}, _check_address_list_string),
], ids=lambda v: ",".join(v) if isinstance(v, dict) else None)
def test_send_fields(zmta, extra, check):
    d = zmta()
    reply = send(d, {**BASE, **extra})
    status, msg = d.get(f"/message/{reply['id']}")
    assert status == 200
    meta = msg["meta"]
    assert meta["id"] == reply["id"]
    assert meta["interface"] == "api" and meta["transtype"] == "HTTP"
    assert meta["from"] == reply["from"] and meta["to"] == reply["to"]
    assert meta["messageId"] == reply["messageId"]
    assert [r["recipient"] for r in msg["messages"]] == meta["to"]
    stored = d.fetch(reply["id"])
    received, rest = split_received(stored)
    assert reply["id"].encode() in received
    m = parse(rest)
    assert m["Message-ID"] == reply["messageId"]
    assert m["Date"] is not None and m["MIME-Version"] == "1.0"
    check(m, meta, reply)


def test_send_records_user_and_origin_only_when_trusted(zmta):
    claims = {"X-Authenticated-User": "alice@origin.test", "X-Originating-IP": "192.0.2.7"}
    d = zmta()
    spoofed = {**BASE, "headers": {"X-Originating-IP": "[203.0.113.9]"}}
    reply = send(d, spoofed, claims)
    meta = d.get(f"/message/{reply['id']}")[1]["meta"]
    # Anyone may send these headers: without trust they are not believed.
    assert "user" not in meta and meta["origin"] == "127.0.0.1"
    # from this host: no X-Originating-IP of ours (ZoneMTA's default-headers)
    stored = call(d, "GET", f"/fetch/{reply['id']}")[1]
    assert stored.count(b"X-Originating-IP:") == 1  # the client's own, kept
    d.stop()
    d = zmta(extra_config={"api": {"trustHeaders": True}})
    reply = send(d, BASE, claims)
    meta = d.get(f"/message/{reply['id']}")[1]["meta"]
    assert meta["user"] == "alice@origin.test"
    assert meta["origin"] == "192.0.2.7"
    assert meta["interface"] == "api" and meta["transtype"] == "HTTP"
    reply = send(d, spoofed, claims)
    stored = call(d, "GET", f"/fetch/{reply['id']}")[1]
    # from elsewhere: the client's address, replacing what the client wrote
    assert re.findall(rb"X-Originating-IP: (.*)\r\n", stored) == [b"[192.0.2.7]"]


def test_endless_header_line_is_refused_before_it_costs_memory(zmta):
    d = zmta()
    import socket
    s = socket.create_connection(("127.0.0.1", d.api_port), timeout=10)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Junk: ")
    sent, reply = 0, b""
    try:
        while sent < 8 * 1024 * 1024:
            s.sendall(b"j" * 65536)
            sent += 65536
    except OSError:
        pass  # closed by the server, as it should be
    try:
        reply = s.recv(4096)
    except OSError:
        pass
    s.close()
    assert sent < 8 * 1024 * 1024 or reply.startswith(b"HTTP/1.1 4"), (sent, reply[:80])
    assert reply == b"" or b" 413 " in reply.split(b"\r\n")[0] or b" 400 " in reply.split(b"\r\n")[0]
    assert d.get("/health")[0] == 200


def test_reply_means_durably_queued(zmta):
    """200 only once the message is on disk: SIGKILL right after the replies
    loses nothing, and concurrent requests get distinct ids."""
    d = zmta()
    replies = [None] * 16

    def one(i):
        if i % 2:
            replies[i] = send(d, {**BASE, "subject": f"json {i}", "text": f"{i}\n" * 1000})
        else:
            replies[i] = send_raw(d, b"To: <rcpt@example.test>\r\nSubject: raw %d\r\n\r\n%d\r\n"
                                  % (i, i))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(replies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(replies), replies
    ids = sorted(r["id"] for r in replies)
    assert len(set(ids)) == len(ids)
    stored = {qid: d.fetch(qid) for qid in ids}
    last = send_raw(d, b"To: <rcpt@example.test>\r\nSubject: last\r\n\r\nlast\r\n")["id"]
    os.kill(d.pid, signal.SIGKILL)  # right after the reply
    d.wait_exit()
    d2 = zmta()
    d2.wait_log(r"event=queue_recovered messages=17 deliveries=17 ")
    assert all(d2.fetch(qid) == body for qid, body in stored.items())
    assert d2.fetch(last).endswith(b"\r\n\r\nlast\r\n")
    assert queue_counts(d2) == (17, 0)


# ---- 2. POST /send-raw -----------------------------------------------------

RAW_HEAD = (b"From: \"Sender\" <sender@origin.test>\r\n"
            b"To: a@example.test, \"B, Person\" <b@example.test>\r\n"
            b"Cc: c@other.test\r\n"
            b"Bcc: secret@example.test,\r\n hidden2@other.test\r\n"
            b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
            b"Message-ID: <raw-1@origin.test>\r\n"
            b"Date: Tue, 24 Nov 2026 08:00:00 +0000\r\n"
            b"X-Odd:   spacing kept  \r\n")
RAW_BODY = (b"\r\nbody line\r\n.a dot line\r\n..two dots\r\n\r\ncaf\xc3\xa9 8-bit\r\n"
            + b"y" * 990 + b"\r\n")
RAW = RAW_HEAD + RAW_BODY
RAW_NO_BCC = RAW.replace(b"Bcc: secret@example.test,\r\n hidden2@other.test\r\n", b"")


@pytest.mark.parametrize("raw, query, env_from, env_to", [
    (RAW, "", "sender@origin.test",
     ["a@example.test", "b@example.test", "c@other.test", "secret@example.test",
      "hidden2@other.test"]),
    (RAW, "?from=env@bulk.test&to=x@example.test&to=y@other.test", "env@bulk.test",
     ["x@example.test", "y@other.test"]),
    (RAW.replace(b"From: \"Sender\" <sender@origin.test>", b"Sender: <only@sender.test>"),
     "", "only@sender.test", None),
], ids=["headers", "query", "sender-header"])
def test_send_raw_stores_the_message_byte_for_byte(zmta, raw, query, env_from, env_to):
    d = zmta()
    reply = send_raw(d, raw, query)
    qid = reply["id"]
    assert reply["from"] == env_from
    if env_to is not None:
        assert sorted(reply["to"]) == sorted(env_to)
    assert reply["messageId"] == "<raw-1@origin.test>"
    meta = d.get(f"/message/{qid}")[1]["meta"]
    assert meta["from"] == env_from and sorted(meta["to"]) == sorted(reply["to"])
    assert meta["interface"] == "api" and meta["transtype"] == "HTTP"
    received, rest = split_received(d.fetch(qid))
    assert f"id {qid}".encode() in received
    expected = raw.replace(b"Bcc: secret@example.test,\r\n hidden2@other.test\r\n", b"")
    assert rest == expected


def test_send_raw_adds_missing_message_id_and_date(zmta):
    d = zmta()
    head = b"From: <sender@origin.test>\r\nTo: <rcpt@example.test>\r\nSubject: bare\r\n"
    reply = send_raw(d, head + RAW_BODY)
    received, rest = split_received(d.fetch(reply["id"]))
    assert rest.startswith(head) and rest.endswith(RAW_BODY), rest[:300]
    added = rest[len(head):len(rest) - len(RAW_BODY)]
    m = re.fullmatch(rb"Message-ID: (<[^>\r\n]+>)\r\nDate: [^\r\n]+\r\n", added)
    assert m, added
    assert m.group(1).decode() == reply["messageId"]
    assert parse(rest)["Date"].datetime.timestamp() == pytest.approx(time.time(), abs=60)


def test_send_raw_never_stores_bare_line_feeds(zmta):
    """A message uploaded with Unix line ends (curl --data-binary @file.eml)
    is either stored with CRLF line ends, as SMTP needs, or refused; never
    stored (and later relayed) with bare LFs mixed with our CRLF headers."""
    d = zmta()
    crlf = RAW_NO_BCC
    status, reply = call(d, "POST", "/send-raw", crlf.replace(b"\r\n", b"\n"),
                         {"Content-Type": "message/rfc822"})
    if status == 400:
        return
    assert status == 200, reply
    received, rest = split_received(d.fetch(reply["id"]))
    assert re.search(rb"(?<!\r)\n", rest) is None, rest[:400]
    assert rest == crlf


# ---- 3. Errors, maildrop, access control -----------------------------------

def _many(n):
    return ", ".join(f"r{i}@example.test" for i in range(n))


def _json(obj):
    return json.dumps(obj).encode()


SEND_ERRORS = [
    # route, body, status, field, error pattern
    ("/send", b'{\n  "to": "rcpt@example.test",\n  "subject": "x" "text": "y"\n}', 400, "",
     r"(?i)line 3"),
    ("/send", b'{"to": "rcpt@example.test", "text": "unterminated', 400, "", r"."),
    ("/send", b"", 400, "", r"."),
    ("/send", b"[1, 2]", 400, "", r"(?i)object"),
    ("/send", _json({**BASE, "attachments": [{"filename": "passwd", "path": "/etc/passwd"}]}),
     400, "attachments[0].path", r"."),
    ("/send", _json({**BASE, "attachments": [
        {"filename": "a.txt", "content": "ok"},
        {"filename": "b.txt", "href": "http://127.0.0.1:9/b.txt"}]}),
     400, "attachments[1].href", r"."),
    ("/send", _json({**BASE, "alternatives": [{"path": "/etc/hostname"}]}),
     400, "alternatives[0].path", r"."),
    ("/send", _json({"from": "sender@origin.test", "subject": "x", "text": "y"}),
     400, "to", r"(?i)recipient"),
    ("/send", _json({**BASE, "to": "not an address"}), 400, "to", r"."),
    ("/send", _json({**BASE, "dsn": {"notify": ["never", "success"]}}), 400, "dsn.notify",
     r"never, or some of"),
    ("/send", _json({**BASE, "dsn": {"return": "everything"}}), 400, "dsn.ret", r"headers"),
    ("/send", _json({**BASE, "dsn": "yes"}), 400, "dsn", r"object"),
    ("/send", _json({**BASE, "cc": ["ok@example.test", "bad@@example"]}), 400, "cc[1]", r"."),
    ("/send", _json({**BASE, "to": {"name": "X", "address": "nobody"}}), 400, "to.address",
     r"."),
    ("/send", _json({**BASE, "subject": 5}), 400, "subject", r"."),
    ("/send", _json({**BASE, "headers": {"X-Evil": "a\r\nBcc: x@evil.test"}}), 400,
     "headers.X-Evil", r"."),
    ("/send", _json({**BASE, "attachments": [
        {"filename": "a.bin", "content": "!!!not base64!!!", "encoding": "base64"}]}),
     400, "attachments[0].content", r"(?i)base64"),
    ("/send", _json({**BASE, "to": _many(4096)}), 400, "to", r"4095"),
    ("/send", _json({**BASE, "to": _many(2100),
                     "cc": ", ".join(f"c{i}@example.test" for i in range(2000))}),
     400, "to", r"."),
    ("/send-raw", b"Subject: nobody\r\n\r\nx\r\n", 400, "to", r"."),
    ("/send-raw?to=not-an-address", b"Subject: x\r\n\r\nx\r\n", 400, "to", r"."),
    ("/send-raw", b"To: " + _many(4096).encode() + b"\r\nSubject: x\r\n\r\nx\r\n", 400, "to",
     r"."),
    ("/send-raw", b"", 400, None, r"."),
]


def test_send_errors(zmta):
    d = zmta(extra_config={"api": {"maxBodySize": "1 MB"}})
    problems = []
    for route, body, status, field, pattern in SEND_ERRORS:
        ctype = "application/json" if route == "/send" else "message/rfc822"
        got_status, reply = call(d, "POST", route, body, {"Content-Type": ctype})
        what = f"{route} {body[:70]!r}: {got_status} {reply!r:.300}"
        if got_status != status or not isinstance(reply, dict) or \
                not re.search(pattern, reply.get("error", "")) or \
                (field is not None and reply.get("field") != field):
            problems.append(what)
    assert not problems, "\n".join(problems)
    # Nothing was queued by any of them, and the limits are inclusive.
    assert queue_counts(d) == (0, 0)
    send(d, {**BASE, "to": _many(100)})
    assert queue_counts(d) == (100, 0)


def post_big(d, path, size, chunked):
    """POSTs `size` bytes of a valid JSON message without waiting for the
    body to go out; returns (status, body) of the reply."""
    pad = b'{"from":"sender@origin.test","to":"rcpt@example.test","text":"'
    body = pad + b"x" * (size - len(pad) - 2) + b'"}'
    s = socket.create_connection(("127.0.0.1", d.api_port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {size}\r\n"
    s.sendall(head.encode() + b"\r\n")

    def pump():
        try:
            for i in range(0, len(body), 65536):
                piece = body[i:i + 65536]
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may stop reading once it has answered

    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    try:
        resp = http.client.HTTPResponse(s)
        resp.begin()
        return resp.status, resp.read()
    finally:
        sender.join(timeout=30)
        s.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_larger_than_max_body_size_is_413(zmta, chunked):
    d = zmta(extra_config={"api": {"maxBodySize": "1 MB"}})
    status, _ = post_big(d, "/send", 1024 * 1024 - 100, chunked)
    assert status == 200
    status, body = post_big(d, "/send", 3 * 1024 * 1024, chunked)
    # libevent's HTTP layer answers 413 itself, before the request reaches
    # us, with its own (HTML) page: the one error that is not JSON.
    assert status == 413, body[:300]
    assert queue_counts(d) == (1, 0)
    assert d.get("/health")[0] == 200


def test_default_max_body_size_is_50_mb(zmta):
    d = zmta()
    status, body = post_big(d, "/send-raw", 50 * 1024 * 1024 + 4096, False)
    assert status == 413, body[:300]


def test_maildrop_false_refuses_both_routes(zmta):
    d = zmta(extra_config={"api": {"maildrop": False}})
    for route, body in (("/send", _json(BASE)),
                        ("/send-raw", b"To: rcpt@example.test\r\n\r\nx\r\n")):
        status, reply = call(d, "POST", route, body)
        assert status == 403, (route, reply)
        assert isinstance(reply, dict) and reply.get("error"), (route, reply)
    assert queue_counts(d) == (0, 0)
    assert call(d, "GET", "/zones")[0] == 200  # only sending is off


def _basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("auth, good, bad", [
    ({"apiKey": "s3cret-key"},
     [{"X-API-Key": "s3cret-key"}, {"Authorization": "Bearer s3cret-key"}],
     [{}, {"X-API-Key": "s3cret-kez"}, {"X-API-Key": "s3cret-key2"}, {"X-API-Key": ""},
      {"Authorization": "Bearer s3cret-ke"}, {"Authorization": "Bearer"},
      {"Authorization": _basic("api", "s3cret-key")}]),
    ({"user": "admin", "password": "pa:ss wörd"},
     [{"Authorization": _basic("admin", "pa:ss wörd")}],
     [{}, {"Authorization": _basic("admin", "pa:ss word")},
      {"Authorization": _basic("admim", "pa:ss wörd")}, {"Authorization": "Basic !!!"},
      {"Authorization": "Bearer pa:ss wörd"}, {"X-API-Key": "pa:ss wörd"}]),
], ids=["apiKey", "basic"])
def test_access_control(zmta, auth, good, bad):
    d = zmta(extra_config={"api": {"auth": auth}})
    # /health stays open.
    assert call(d, "GET", "/health")[0] == 200
    requests = [("GET", "/zones", None), ("GET", "/queue/default", None),
                ("GET", "/metrics", None), ("GET", "/counter/queued/default", None),
                ("GET", "/queued/queued/default", None),
                ("GET", "/message/0123456789abcdef01", None),
                ("DELETE", "/message/0123456789abcdef01", None),
                ("POST", "/send", _json(BASE)),
                ("POST", "/send-raw", b"To: rcpt@example.test\r\n\r\nx\r\n")]
    problems = []
    for headers in bad:
        for method, path, body in requests:
            status, reply = call(d, method, path, body, headers)
            if status != 401 or not (isinstance(reply, dict) and reply.get("error")):
                problems.append(f"{method} {path} with {headers}: {status} {reply!r:.200}")
    assert not problems, "\n".join(problems)
    assert queue_counts_auth(d, good[0]) == (0, 0)
    for headers in good:
        assert call(d, "GET", "/zones", None, headers)[0] == 200
        status, reply = call(d, "POST", "/send", _json(BASE), headers)
        assert status == 200, reply
        assert call(d, "GET", f"/message/{reply['id']}", None, headers)[0] == 200
    assert queue_counts_auth(d, good[0]) == (len(good), 0)


def queue_counts_auth(d, headers):
    status, body = call(d, "GET", "/queue/default", None, headers)
    assert status == 200, body
    return body["queued"], body["deferred"]


# ---- 4. DELETE and PUT /message --------------------------------------------

def test_delete_removes_deliveries_for_good(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", script={"recipients": {
        "grey@example.test": {"rcpt": {"reply": "451 4.7.1 Greylisted, try again later"}}}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]},
                            "held.test": {"A": ["127.0.0.2"]}})
    held = {"recipientDomains": ["held.test"], "disabled": True}
    cfg = relay_config(dns_server, sink.port, zones={"held": held},
                       queue={"deferTimes": ["1 s"] * 10})
    d = zmta(extra_config=cfg)
    a = send(d, {**BASE, "subject": "A", "to": ["a1@held.test", "a2@held.test"]})["id"]
    b = send(d, {**BASE, "subject": "B", "to": ["b1@held.test", "b2@held.test"]})["id"]
    c = send(d, {**BASE, "subject": "C", "to": "grey@example.test"})["id"]
    d.wait_log(r"id=%s event=deferred seq=001 " % c)
    assert queue_counts(d, "held") == (4, 0)

    # The whole message.
    assert call(d, "DELETE", f"/message/{a}") == (200, {"success": True, "id": a, "deleted": 2})
    assert d.get(f"/message/{a}")[0] == 404
    assert call(d, "GET", f"/fetch/{a}")[0] == 404
    assert call(d, "DELETE", f"/message/{a}")[0] == 404
    # One delivery.
    assert call(d, "DELETE", f"/message/{b}/001") == (200, {"success": True, "id": b, "deleted": 1})
    assert [(r["seq"], r["recipient"]) for r in d.get(f"/message/{b}")[1]["messages"]] == [
        ("002", "b2@held.test")]
    assert call(d, "DELETE", f"/message/{b}/001")[0] == 404
    assert call(d, "DELETE", f"/message/{b}/007")[0] == 404
    assert call(d, "DELETE", "/message/0123456789abcdef01")[0] == 404
    assert call(d, "DELETE", "/message/not-an-id")[0] == 400
    assert queue_counts(d, "held") == (1, 0)
    # A deferred one, waiting for its retry: the retry must not happen.
    nxt = d.get(f"/message/{c}")[1]["messages"][0]["deferred"]["next"]
    assert call(d, "DELETE", f"/message/{c}") == (200, {"success": True, "id": c, "deleted": 1})
    sink.set_script({})
    assert queue_counts(d) == (0, 0)
    wait_until(lambda: time.time() * 1000 > nxt + 1500, 10, what="C's retry time")
    send(d, {**BASE, "subject": "D", "to": "d@example.test"})
    assert [m["rcpt_tos"] for m in sink.wait_for(1)] == [["d@example.test"]]
    wait_delivered(d)

    # After a restart with the held zone open, only what is left goes out.
    assert d.stop() == 0
    d2 = zmta(extra_config=relay_config(dns_server, sink.port,
                                        zones={"held": {"recipientDomains": ["held.test"]}}))
    sink.wait_for(2)
    send(d2, {**BASE, "subject": "E", "to": "e@held.test"})
    sink.wait_for(3)
    wait_until(lambda: queue_counts(d2, "held") == (0, 0), 15, what="held zone empty")
    time.sleep(0.5)
    got = sorted((parse(m["data"])["Subject"], tuple(m["rcpt_tos"])) for m in sink.messages())
    assert got == [("B", ("b2@held.test",)), ("D", ("d@example.test",)),
                   ("E", ("e@held.test",))]


def test_delete_during_delivery_stops_retries(dns_server, smtp_sink, zmta):
    """DELETE while the delivery is in flight: when the attempt then defers,
    the delivery is gone and never retried."""
    sink = smtp_sink("127.0.0.2", script={
        "default": {"data": {"reply": "451 4.3.0 Try again later", "stall": 1.0}}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port,
                                       queue={"deferTimes": ["1 s"] * 5}))
    qid = send(d, {**BASE, "subject": "doomed"})["id"]
    wait_until(lambda: any(e["event"] == "rcpt" for e in sink.events()), 10, what="RCPT")
    assert call(d, "DELETE", f"/message/{qid}") == (200, {"success": True, "id": qid, "deleted": 1})
    wait_until(lambda: any(e["event"] == "data" for e in sink.events()), 10, what="DATA reply")
    sink.set_script({})
    answered = time.monotonic()
    assert d.get(f"/message/{qid}")[0] == 404
    assert queue_counts(d) == (0, 0)
    # Past the 1 s retry, another message goes through; the deleted one never.
    wait_until(lambda: time.monotonic() > answered + 2, 5, what="retry time")
    send(d, {**BASE, "subject": "later"})
    sink.wait_for(1)
    wait_delivered(d)
    assert [parse(m["data"])["Subject"] for m in sink.messages()] == ["later"]
    assert queue_counts(d) == (0, 0)


def test_put_retries_a_deferred_delivery_now(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", script={
        "default": {"rcpt": {"reply": "451 4.7.1 Greylisted, try again later", "times": 1}}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(dns_server, sink.port, queue={"deferTimes": ["1 h"]}))
    qid = send(d, BASE)["id"]
    d.wait_log(r"id=%s event=deferred seq=001 .*attempts=1 " % qid)
    assert call(d, "GET", "/counter/deferred/default")[1]["count"] == 1
    assert call(d, "GET", "/counter/queued/default")[1]["count"] == 0
    status, listing = call(d, "GET", "/queued/deferred/default")
    assert status == 200
    [row] = listing["list"]
    assert (row["id"], row["seq"], row["recipient"]) == (qid, "001", "rcpt@example.test")
    assert row["deferred"] == 1  # ZoneMTA's: the count of failed attempts
    assert row["lastResponse"].startswith("451 4.7.1")
    due = datetime.fromisoformat(row["queued"].replace("Z", "+00:00")).timestamp()
    assert 3000 < due - time.time() <= 3600  # the next attempt, an hour out
    assert call(d, "GET", "/queued/queued/default")[1]["list"] == []

    assert call(d, "PUT", f"/message/{qid}/002")[0] == 404
    assert call(d, "PUT", "/message/0123456789abcdef01/001")[0] == 404
    started = time.monotonic()
    status, reply = call(d, "PUT", f"/message/{qid}/001")
    assert (status, reply["success"]) == (200, True), reply
    got = sink.wait_for(1, timeout=10)
    assert time.monotonic() - started < 5
    assert got[0]["rcpt_tos"] == ["rcpt@example.test"]
    wait_delivered(d)
    assert call(d, "PUT", f"/message/{qid}/001")[0] == 404


# ---- 5. /zones, /counter, /queued ------------------------------------------

def test_zones_counter_and_queued_paging(zmta):
    d = zmta(extra_config={"zones": {
        "alpha": {"disabled": True, "recipientDomains": ["alpha.test"]},
        "beta": {"disabled": True, "recipientDomains": ["beta.test"]},
        "Gamma": {"disabled": False, "recipientDomains": ["gamma.test"]}}})
    # ZoneMTA's: enabled zones only, unless includeDisabled; by name
    assert call(d, "GET", "/zones") == (200, [{"name": "Gamma"}])
    status, zones = call(d, "GET", "/zones?includeDisabled=true")
    assert status == 200
    assert [z["name"] for z in zones] == ["alpha", "beta", "bounces", "default", "Gamma"]

    ids = submit_many(d, [f"r{i}@example.test" for i in range(105)])
    ids += submit_many(d, ["x@alpha.test"])
    assert call(d, "GET", "/counter/queued/default") == (
        200, {"zone": "default", "type": "queued", "count": 105, "active": 105, "deferred": 0})
    assert call(d, "GET", "/counter/deferred/default") == (
        200, {"zone": "default", "type": "deferred", "count": 0, "active": 105, "deferred": 0})
    assert call(d, "GET", "/counter/queued/alpha")[1]["count"] == 1
    assert call(d, "GET", "/counter/queued/beta")[1]["count"] == 0
    assert call(d, "GET", "/counter/queued/nosuchzone")[0] == 404

    # ZoneMTA's paging: 1000 rows by default, newest id first, created and
    # queued as ISO times, deferred a count
    status, page = call(d, "GET", "/queued/queued/default")
    assert status == 200 and (page["zone"], page["type"]) == ("default", "queued")
    rows = page["list"]
    assert [r["id"] for r in rows] == sorted(ids[:105], reverse=True)
    now = time.time()
    for r in rows:
        assert (r["seq"], r["zone"], r["deferred"]) == ("001", "default", 0)
        created = datetime.fromisoformat(r["created"].replace("Z", "+00:00")).timestamp()
        assert now - 60 < created <= now + 1
        assert r["queued"] == r["created"]  # due since it was queued
    expected = {i: f"r{n}@example.test" for n, i in enumerate(ids[:105])}
    assert all(r["recipient"] == expected[r["id"]] for r in rows)
    asc = call(d, "GET", "/queued/queued/default?order=asc&sort=created&start=100&pageSize=10")
    assert [r["id"] for r in asc[1]["list"]] == sorted(ids[:105])[100:]
    offset = call(d, "GET", "/queued/queued/default?start=7&pageSize=3")[1]["list"]
    assert [r["id"] for r in offset] == sorted(ids[:105], reverse=True)[7:10]
    for query, n in [("?pageSize=1001", 105), ("?pageSize=-1", 1), ("?pageSize=0", 105),
                     ("?pageSize=ten", 105), ("?start=-5&pageSize=2", 2)]:
        assert len(call(d, "GET", f"/queued/queued/default{query}")[1]["list"]) == n, query

    # Ours: after=<id> pages in id order at the same cost however long the queue.
    seen, after = [], ""
    for _ in range(50):
        page = call(d, "GET", f"/queued/queued/default?pageSize=7&after={after}")[1]["list"]
        assert len(page) <= 7
        if not page:
            break
        seen += [r["id"] for r in page]
        after = page[-1]["id"]
    assert seen == sorted(ids[:105])
    rest = call(d, "GET", f"/queued/queued/default?start={sorted(ids)[99]}")[1]["list"]
    assert [r["id"] for r in rest] == sorted(ids[:105])[100:]
    assert [r["recipient"] for r in call(d, "GET", "/queued/queued/alpha")[1]["list"]] == [
        "x@alpha.test"]
    assert call(d, "GET", "/queued/deferred/default")[1]["list"] == []

    got, body = call(d, "GET", "/queued/queued/default?after=not-an-id")
    assert (got, body["field"]) == (400, "after"), body
    assert call(d, "GET", "/queued/queued/nosuchzone")[0] == 404
    for path in ("/queued/bogus/default", "/counter/bogus/default"):
        status, body = call(d, "GET", path)
        assert (status, body["field"]) == (400, "type"), (path, body)


def test_queued_paging_keeps_every_delivery_of_multi_recipient_messages(zmta):
    """Pages of /queued/... may end inside a message's deliveries; following
    `start=<last id>` must still reach every row exactly once."""
    d = zmta()
    rows = []
    for i in range(4):
        rcpts = [f"m{i}r{j}@example.test" for j in range(3)]
        qid = submit(d, b"Subject: x\r\n\r\nx\r\n", rcpts=rcpts)
        rows += [(qid, f"{j + 1:03d}") for j in range(3)]
    seen, start = [], ""
    for _ in range(20):
        page = call(d, "GET", f"/queued/queued/default?pageSize=2&after={start}")[1]["list"]
        if not page:
            break
        seen += [(r["id"], r["seq"]) for r in page]
        start = page[-1]["id"]
    assert sorted(seen) == sorted(rows), f"missing {sorted(set(rows) - set(seen))}"


# ---- 6. /metrics -----------------------------------------------------------

def test_just_queued_messages_deliver_from_memory_within_its_bound(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]},
                            "other.test": {"A": ["127.0.0.2"]}})
    held = {"recipientDomains": ["held.test"], "disabled": True}
    cfg = relay_config(dns_server, sink.port, zones={"held": held})
    d = zmta(extra_config=cfg)

    def loads():
        samples = metrics(d)[0]
        return tuple(sample(samples, "zonemta_delivery_loads_total", source=s)
                     for s in ("memory", "store"))

    # Fresh messages, one with two destinations (two loads): all from memory,
    # and each delivered intact.
    bodies = [b"Subject: m%d\r\n\r\n" % i + b"line %d\r\n" % i * 2000 for i in range(3)]
    submit(d, bodies[0], rcpts=("a@example.test",))
    submit(d, bodies[1], rcpts=("b@example.test",))
    submit(d, bodies[2], rcpts=("c@example.test", "d@other.test"))
    got = sink.wait_for(4)
    assert sorted(m["data"].split(b"\r\n\r\n", 1)[1] for m in got) == \
        sorted([bodies[0].split(b"\r\n\r\n", 1)[1], bodies[1].split(b"\r\n\r\n", 1)[1]]
               + [bodies[2].split(b"\r\n\r\n", 1)[1]] * 2)
    wait_delivered(d, 4)
    assert loads() == (4, 0)
    samples = metrics(d)[0]
    assert sample(samples, "zonemta_queue_memory_messages") == 0
    assert sample(samples, "zonemta_queue_memory_bytes") == 0

    # 24 MB of held mail: memory keeps at most 16 MiB of it, the newest.
    chunk = b"Subject: held\r\n\r\n" + b"h" * 998 + b"\r\n"
    for i in range(120):
        submit(d, chunk * 200, rcpts=(f"r{i}@held.test",))
    samples = metrics(d)[0]
    kept = sample(samples, "zonemta_queue_memory_bytes")
    assert 12 << 20 < kept <= 16 << 20
    assert 60 < sample(samples, "zonemta_queue_memory_messages") < 120

    # After a restart, nothing is in memory: deliveries read the store.
    assert d.stop() == 0
    cfg["zones"]["held"]["disabled"] = False
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]},
                            "held.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=cfg)
    sink.wait_for(4 + 120, timeout=60)
    wait_delivered(d, 120, zone="held", timeout=60)
    assert loads() == (0, 120)
    assert all(m["data"].endswith(b"h" * 998 + b"\r\n") for m in sink.messages()[4:])


def test_metrics_follow_sends_and_deliveries(dns_server, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", script={"recipients": {
        "grey@example.test": {"rcpt": {"reply": "451 4.7.1 Greylisted", "times": 1}},
        "gone@example.test": {"rcpt": {"reply": "550 5.1.1 no such user"}}}})
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    d = zmta(extra_config=relay_config(
        dns_server, sink.port,
        zones={"default": {"connectionCache": {"ttl": "1 s"}},
               "held": {"recipientDomains": ["held.test"], "disabled": True}},
        queue={"deferTimes": ["1 s", "1 s"]},
        smtpInterfaces={"feeder": {"maxSize": "10 kB"}}))
    samples, families = metrics(d)
    for name, kind in [("zonemta_messages_accepted", "counter"),
                       ("zonemta_messages_rejected", "counter"),
                       ("zonemta_delivery_attempts", "counter"),
                       ("zonemta_queue_size", "gauge"),
                       ("zonemta_outbound_connections", "gauge"),
                       ("zonemta_store_commit_seconds", "histogram"),
                       ("zonemta_dns_lookup_seconds", "histogram"),
                       ("zonemta_message_load_seconds", "histogram")]:
        assert name in families and families[name].type == kind, name
    for zone in ("default", "bounces", "held"):
        for state in ("queued", "deferred"):
            assert sample(samples, "zonemta_queue_size", zone=zone, state=state,
                          type=state) == 0
        assert sample(samples, "zonemta_outbound_connections", zone=zone) == 0

    # SMTP: two accepted, one refused as too big.
    submit(d, b"Subject: s1\r\n\r\nx\r\n", rcpts=("ok1@example.test",))
    submit(d, b"Subject: s2\r\n\r\nx\r\n", rcpts=("ok2@example.test",))
    with d.smtp() as client:
        client.ehlo("client.test")
        client.mail("sender@origin.test")
        client.rcpt("ok9@example.test")
        assert client.data(b"Subject: big\r\n\r\n" + b"z" * 20000 + b"\r\n")[0] == 552
    # API: three accepted, one refused.
    send(d, {**BASE, "subject": "a1", "to": ["grey@example.test", "ok3@example.test"]})
    send(d, {**BASE, "subject": "a2", "to": "gone@example.test"})
    send(d, {**BASE, "subject": "a3", "to": "h@held.test"})
    assert call(d, "POST", "/send", {"from": "a@origin.test", "text": "no rcpt"})[0] == 400

    sink.wait_for(4, timeout=20)
    d.wait_log(r"event=bounced seq=001 zone=default rcpt=<gone@example\.test>")
    wait_delivered(d, 4)
    samples, families = metrics(d)
    assert sample(samples, "zonemta_messages_accepted_total", interface="feeder") == 2
    assert sample(samples, "zonemta_messages_accepted_total", interface="api") == 3
    assert sample(samples, "zonemta_messages_rejected_total", interface="feeder") == 1
    assert sample(samples, "zonemta_messages_rejected_total", interface="api") == 1
    attempts = {r: sample(samples, "zonemta_delivery_attempts_total", zone="default", result=r)
                for r in ("delivered", "deferred", "bounced")}
    assert attempts == {"delivered": 4, "deferred": 1, "bounced": 1}
    assert sample(samples, "zonemta_queue_size", zone="held", state="queued", type="queued") == 1
    assert sample(samples, "zonemta_queue_size", zone="default", state="queued",
                  type="queued") == 0
    assert sample(samples, "zonemta_queue_size", zone="default", state="deferred",
                  type="deferred") == 0
    # ZoneMTA's names for the same, so its dashboards work (exposed without
    # _total, as ZoneMTA's prom-client does; the parser adds it)
    text = call(d, "GET", "/metrics")[1].decode()
    for name in ("zonemta_delivery_status", "zonemta_message_push", "zonemta_connection_reuses"):
        assert re.search(rf"^{name}{{", text, re.M), name
    status = {r: sample(samples, "zonemta_delivery_status_total", zone="default", status=r)
              for r in ("delivered", "deferred", "rejected")}
    assert status == {"delivered": 4, "deferred": 1, "rejected": 1}
    assert sample(samples, "zonemta_message_push_total", result="success") == 5
    assert sample(samples, "zonemta_message_push_total", result="fail") == 2
    assert sample(samples, "zonemta_message_drop_total") == 2
    opened = len(sink.sessions())
    assert 0 <= sample(samples, "zonemta_outbound_connections", zone="default") <= opened
    assert 0 <= sample(samples, "zonemta_connection_pool_size") <= opened
    transactions = len(re.findall(r"event=attempt ", d.log()))
    assert sample(samples, "zonemta_connection_reuses_total", zone="default") == \
        transactions - opened
    for hist, least in (("zonemta_store_commit_seconds", 5), ("zonemta_dns_lookup_seconds", 1),
                        ("zonemta_message_load_seconds", 4)):
        count = sample(samples, f"{hist}_count")
        assert count >= least, hist
        buckets = sorted((float(dict(k[1])["le"]), v) for k, v in samples.items()
                         if k[0] == f"{hist}_bucket")
        assert buckets[-1] == (float("inf"), count)
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), hist
        assert sample(samples, f"{hist}_sum") >= 0
    # Idle connections close after connectionCache.ttl: the gauge goes back to 0.
    sink.wait_for_sessions(opened)
    wait_until(lambda: sample(metrics(d)[0], "zonemta_outbound_connections", zone="default") == 0,
               5, what="outbound_connections back to 0")


def test_fetch_cut_short_is_incomplete_not_a_short_body(zmta):
    """A body chunk that goes missing mid-/fetch (the message deleted while
    a slow client reads) ends the reply without its last chunk: the client
    must see it incomplete, never a shorter message that looks whole."""
    d = zmta(extra_config={"zones": {"default": {"disabled": True}}})
    from test_queue import submit
    line = b"f" * 998 + b"\r\n"
    qid = submit(d, b"Subject: big\r\n\r\n" + line * 20000)  # ~20 MB, 77 chunks
    conn = http.client.HTTPConnection("127.0.0.1", d.api_port, timeout=20)
    conn.request("GET", f"/fetch/{qid}")
    resp = conn.getresponse()
    assert resp.status == 200
    got = resp.read(65536)
    time.sleep(0.5)  # socket buffers fill; the server waits for the client
    assert call(d, "DELETE", f"/message/{qid}")[0] == 200
    with pytest.raises(http.client.IncompleteRead):
        while True:
            piece = resp.read(1 << 20)
            if not piece:
                break
            got += piece
    conn.close()
    assert len(got) < 20000 * len(line)
    d.wait_log(r"id=%s event=api_fetch chunk=\d+ error=\"body chunk missing\" action=cut" % qid)
    assert d.get("/health")[0] == 200


def test_composing_a_big_send_does_not_stall_smtp(zmta):
    """/send's JSON is parsed and composed on the worker pool: SMTP clients
    are answered meanwhile (on the loop, a 30 MB attachment held every
    session for about 1.4 s on the development machine)."""
    d = zmta(extra_config={"api": {"maxBodySize": "60 MB"}})
    raw = os.urandom(30 * 1024 * 1024)
    payload = base64.b64encode(raw).decode()
    msg = json.dumps({"from": "a@example.test", "to": "b@example.test", "subject": "big",
                      "text": "hi", "attachments": [{"filename": "x.bin", "content": payload,
                                                     "encoding": "base64"}]}).encode()
    latencies, stop = [], threading.Event()

    def ping():
        with socket.create_connection(("127.0.0.1", d.smtp_port), timeout=30) as s:
            f = s.makefile("rb")
            f.readline()
            while not stop.is_set():
                start = time.monotonic()
                s.sendall(b"HELO ping.test\r\n")  # not a junk command: no limit
                assert f.readline().startswith(b"250")
                latencies.append(time.monotonic() - start)
                time.sleep(0.01)

    pinger = threading.Thread(target=ping)
    pinger.start()
    try:
        time.sleep(0.2)
        status, body = call(d, "POST", "/send", msg, {"Content-Type": "application/json"},
                            timeout=120)
    finally:
        stop.set()
        pinger.join()
    assert status == 200, body
    assert len(latencies) > 10
    print(f"HELO during a 30 MB /send: max {max(latencies) * 1000:.1f} ms, "
          f"{len(latencies)} pings")
    assert max(latencies) < 0.7
    # Fed to the store a step at a time as it keeps up: stored whole, in order.
    stored = email.message_from_bytes(d.fetch(body["id"]), policy=email.policy.default)
    parts = [p for p in stored.iter_attachments()]
    assert len(parts) == 1 and parts[0].get_content() == raw


def test_api_connections_are_capped(zmta):
    d = zmta(extra_config={"api": {"maxConnections": 2}})
    held = []
    for _ in range(2):
        c = http.client.HTTPConnection("127.0.0.1", d.api_port, timeout=10)
        c.request("GET", "/zones")
        r = c.getresponse()
        assert r.status == 200
        r.read()
        held.append(c)  # kept open: keep-alive
    extra = http.client.HTTPConnection("127.0.0.1", d.api_port, timeout=10)
    extra.request("GET", "/zones")
    r = extra.getresponse()
    assert r.status == 503
    assert r.getheader("Connection") == "close"
    assert json.loads(r.read())["error"] == "too many API connections, try again later"
    extra.close()
    d.wait_log(r"warn event=api_refused reason=\"too many connections\" max=2")
    # The held ones go on; once one closes, a new client gets in.
    held[0].request("GET", "/zones")
    assert held[0].getresponse().status == 200
    held[1].close()

    def admitted():
        c = http.client.HTTPConnection("127.0.0.1", d.api_port, timeout=10)
        try:
            c.request("GET", "/zones")
            return c.getresponse().status == 200
        finally:
            c.close()
    wait_until(admitted, 10, what="a free API connection")
    held[0].close()


# ---- 7. ZoneMTA's other endpoints and shapes -------------------------------

def test_zonemta_shapes_of_send_raw_fetch_and_message(zmta):
    d = zmta()
    due = int(time.time()) + 2 * 86400
    date = email.utils.formatdate(due).encode()
    raw = (b"From: Author <author@origin.test>\r\nSender: agent@agents.test\r\n"
           b"To: rcpt@example.test\r\nDate: " + date + b"\r\n"
           b"Subject: later\r\n\r\nthe body\r\n")
    reply = send_raw(d, raw)
    # the envelope sender is From's (ZoneMTA, Nodemailer), not Sender's
    assert (reply["from"], reply["to"]) == ("author@origin.test", ["rcpt@example.test"])
    assert reply["response"] == f"Message queued as {reply['id']}"
    status, body = call(d, "GET", f"/fetch/{reply['id']}?body=yes")
    assert (status, body) == (200, b"the body\r\n")
    status, whole = call(d, "GET", f"/fetch/{reply['id']}")
    assert whole.endswith(b"\r\n\r\nthe body\r\n") and b"Subject: later" in whole
    # dated in the future: waiting, shown DEFERRED with its due time
    status, info = call(d, "GET", f"/message/{reply['id']}")
    [row] = info["messages"]
    assert row["status"] == "DEFERRED", row
    assert row["deferred"]["count"] == 0
    assert row["deferred"]["next"] == due * 1000  # the Date, in ms


def test_zonemta_example_endpoints(zmta):
    d = zmta(extra_config={"api": {"auth": {"user": "admin", "password": "s3cret"}}})
    good = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()}
    # /test-auth is an authentication backend: open, and it checks Basic
    status, body = call(d, "GET", "/test-auth", headers=good)
    assert (status, body["user"]) == (200, "admin")
    datetime.fromisoformat(body["time"].replace("Z", "+00:00"))
    status, body = call(d, "GET", "/test-auth", headers=bad)
    assert (status, body["error"]) == (401, "Authentication required")
    assert call(d, "GET", "/test-auth")[0] == 401

    # /report-bounce keeps what http-bounce posts; /bounces lists it, newest first
    for i in range(3):
        report = {"id": f"q{i}", "to": f"r{i}@example.test", "seq": "001",
                  "returnPath": "s@origin.test", "category": "recipient",
                  "time": 1700000000000 + i, "response": "550 5.1.1 no such user"}
        status, body = call(d, "POST", "/report-bounce", report, headers=good)
        assert (status, body) == (202, f"q{i}")
    status, body = call(d, "POST", "/report-bounce", b"id=q9&to=x%40example.test",
                        {**good, "Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body) == (202, "q9")
    assert call(d, "POST", "/report-bounce", b"{broken",
                {**good, "Content-Type": "application/json"})[0] == 400
    assert call(d, "GET", "/bounces")[0] == 401  # the API's own auth applies
    status, body = call(d, "GET", "/bounces", headers=good)
    assert [b["id"] for b in body["bounces"]] == ["q9", "q2", "q1", "q0"]
    assert body["bounces"][1]["response"] == "550 5.1.1 no such user"
    assert body["bounces"][0]["to"] == "x@example.test"

    # what zone-mta has no subject for says why, not "no such endpoint"
    for path in ("/blacklist", "/skipdomains/default", "/internals"):
        status, body = call(d, "GET", path, headers=good)
        assert status == 501 and len(body["error"]) > 40, (path, body)


def test_send_takes_as_many_recipients_as_zonemta(zmta):
    d = zmta()
    many = [f"r{i}@example.test" for i in range(150)]  # over the old 100
    assert len(send(d, {**BASE, "to": many})["to"]) == 150
    status, body = call(d, "POST", "/send", {**BASE, "to": [f"r{i}@example.test"
                                                           for i in range(4096)]})
    assert (status, body["field"]) == (400, "to"), body
    assert "4095" in body["error"]


def test_send_takes_nodemailers_dsn_option(zmta):
    """Nodemailer's `dsn` (ret/return, envid/id, notify, recipient), stored
    as its SMTP client would have put it on the wire (RFC 3461, xtext)."""
    d = zmta()
    reply = send(d, {**BASE, "to": ["rcpt@example.test", "two@example.test"],
                     "dsn": {"id": "batch 7+x", "return": "headers",
                             "notify": "failure, delay", "recipient": "orig@example.test"}})
    status, body = d.get(f"/message/{reply['id']}")
    assert status == 200, body
    per_rcpt = {"notify": "FAILURE,DELAY", "orcpt": "rfc822;orig@example.test"}
    assert body["meta"]["dsn"] == {"ret": "HDRS", "envid": "batch+207+2Bx", "rcpts": {
        "rcpt@example.test": per_rcpt, "two@example.test": per_rcpt}}
    reply = send(d, {**BASE, "dsn": {"notify": ["never"]}})
    assert d.get(f"/message/{reply['id']}")[1]["meta"]["dsn"] == {
        "rcpts": {"rcpt@example.test": {"notify": "NEVER"}}}
    reply = send(d, BASE)
    assert "dsn" not in d.get(f"/message/{reply['id']}")[1]["meta"]
