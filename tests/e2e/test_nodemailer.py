# SPDX-License-Identifier: EUPL-1.2
"""POST /send renders what ZoneMTA's /send renders: Nodemailer's
MailComposer (from npm, pinned in tests/js/package-lock.json) composes each
message object; the same object goes through our /send, our relay and a
real SMTP sink; the two parsed messages must be equivalent: the envelope,
the MIME tree (types, parameters, dispositions, file names, Content-IDs),
the decoded contents and the header values.

The deliberate differences, listed in docs/api.md, are the only
tolerances here (see `equivalent`):
  - charset=utf-8 is declared on every text part holding non-ASCII text
    (Nodemailer declares it only on text/plain);
  - an unnamed attachment of an unknown type is attachment-N.bin, not
    Nodemailer's attachment-N.*;
  - a text part's last line break is not compared: at the end of a
    single-part message it belongs to the message as much as to the text;
  - a `date` given as ISO 8601 or as milliseconds becomes an RFC 5322 date
    (Nodemailer copies the string, or the number, into the header); the
    instants must agree.
"""
import base64
import email
import email.policy
import email.utils
import json
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import wait_until
from test_api import call, send
from test_delivery import relay_config

JS = Path(__file__).resolve().parents[1] / "js"
DOMAINS = ["example.test", "other.test", "xn--jgeva-dua.test"]

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4).decode()
PDF = base64.b64encode(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n").decode()
ICS = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\n"
       "UID:1@example.test\r\nSUMMARY:Kohtumine – Jõgeva\r\nDTSTART:20270101T100000Z\r\n"
       "END:VEVENT\r\nEND:VCALENDAR\r\n")
EMBEDDED = ("From: Inner <inner@other.test>\r\nTo: x@other.test\r\nSubject: inner ümlaut\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\nInner body ü\r\n")

A = {"from": "Sender <sender@example.test>", "to": "rcpt@example.test"}

# Each case: (name, message object, what else to compare: "cte" compares
# every part's transfer encoding).
CASES = [
    ("text", {**A, "subject": "plain", "text": "Hello\nworld\n"}, ()),
    ("html", {**A, "subject": "html", "html": "<p>Hi</p>"}, ()),
    ("text+html", {**A, "subject": "both", "text": "Hi", "html": "<b>Hi</b>"}, ()),
    ("unicode", {"from": "Jürgen Müller <juergen@example.test>", "to": "Zoë <zoe@example.test>",
                 "subject": "Grüße ☃ " + "lang " * 20, "text": "Grüße, Zoë\n" + "ä" * 300},
     ()),
    ("address objects", {"from": {"name": "Ann, Ltd.", "address": "ann@example.test"},
                         "to": [{"name": "Bob", "address": "bob@example.test"},
                                "Carl <carl@other.test>", "dora@example.test"],
                         "subject": "objects", "text": "x"}, ()),
    ("bare names", {"from": "Andris sender@example.test",
                    "to": "Bob Smith bob@example.test, carl@other.test",
                    "subject": "no brackets", "text": "x"}, ()),
    ("cc bcc", {**A, "cc": ["c1@example.test", "Cee <c2@other.test>"],
                "bcc": "hidden@example.test", "subject": "cc", "text": "x"}, ()),
    ("reply fields", {**A, "replyTo": "Replies <replies@example.test>",
                      "inReplyTo": "<abc@example.test>",
                      "references": ["<abc@example.test>", "def@example.test"],
                      "subject": "Re: x", "text": "x"}, ()),
    ("custom headers", {**A, "subject": "h", "text": "x",
                        "headers": {"X-Campaign": "spring-2027", "X-Tag": ["a", "b ü"],
                                    "X-Number": 42, "Content-Language": "et"}}, ()),
    ("header list", {**A, "subject": "h", "text": "x",
                     "headers": [{"key": "X-One", "value": "1"},
                                 {"key": "X-Two", "value": "two ☃"}]}, ()),
    ("prepared header", {**A, "subject": "h", "text": "x",
                         "headers": {"List-Unsubscribe": {
                             "prepared": True,
                             "value": "<mailto:unsub@example.test>, <https://example.test/u>"}}},
     ()),
    ("header for a field", {**A, "text": "x", "headers": {"Subject": "from headers"}}, ()),
    ("field over header", {**A, "subject": "field", "text": "x",
                           "headers": {"Subject": "ignored"}}, ()),
    ("text attachment", {**A, "subject": "a", "text": "see attached",
                         "attachments": [{"filename": "notes.txt", "content": "line 1\nline 2\n"}]},
     ("cte",)),
    ("png by name", {**A, "subject": "a", "text": "x",
                     "attachments": [{"filename": "logo.png", "content": PNG,
                                      "encoding": "base64"}]}, ()),
    ("pdf by name", {**A, "subject": "a", "text": "x",
                     "attachments": [{"filename": "report.PDF", "content": PDF,
                                      "encoding": "base64"}]}, ()),
    ("explicit type", {**A, "subject": "a", "text": "x",
                       "attachments": [{"filename": "data", "content": '{"a":1}',
                                        "contentType": "application/json"}]}, ()),
    ("unnamed attachment", {**A, "subject": "a", "text": "x",
                            "attachments": [{"content": "blob"},
                                            {"content": "t", "contentType": "text/plain"}]}, ()),
    ("filename false", {**A, "subject": "a", "text": "x",
                        "attachments": [{"content": "blob", "filename": False}]}, ()),
    ("unicode filename", {**A, "subject": "a", "text": "x",
                          "attachments": [{"filename": "Prüfbericht – März 2027.csv",
                                           "content": "a,b\n1,2\n"}]}, ()),
    ("hex", {**A, "subject": "a", "text": "x",
             "attachments": [{"filename": "b.bin", "content": "00ff10ab", "encoding": "hex"}]},
     ()),
    ("latin1", {**A, "subject": "a", "text": "x",
                "attachments": [{"filename": "l.bin", "content": "Ümlaut ÿ", "encoding": "latin1"},
                                {"filename": "b.bin", "content": "é", "encoding": "binary"}]}, ()),
    ("base64url", {**A, "subject": "a", "text": "x",
                   "attachments": [{"filename": "u.bin", "content": "_-8", "encoding": "base64url"}]},
     ()),
    ("utf16le", {**A, "subject": "a", "text": "x",
                 "attachments": [{"filename": "w.bin", "content": "Aä☃😀",
                                  "encoding": "utf-16le"}]}, ()),
    ("attachment headers", {**A, "subject": "a", "text": "x",
                            "attachments": [{"filename": "x.txt", "content": "x",
                                             "headers": {"X-Attachment-Id": "42",
                                                         "Content-Description": "the x"}}]}, ()),
    ("attachment qp", {**A, "subject": "a", "text": "x",
                       "attachments": [{"filename": "q.txt", "content": "Grüße\n",
                                        "contentTransferEncoding": "quoted-printable"}]},
     ("cte",)),
    ("inline attachment", {**A, "subject": "a", "text": "x",
                           "attachments": [{"filename": "i.png", "content": PNG,
                                            "encoding": "base64",
                                            "contentDisposition": "inline"}]}, ()),
    ("related", {**A, "subject": "r", "html": '<img src="cid:logo@x">',
                 "attachments": [{"filename": "logo.png", "content": PNG, "encoding": "base64",
                                  "cid": "logo@x"}]}, ()),
    ("mixed alternative related", {
        **A, "subject": "all", "text": "plain", "html": '<img src="cid:logo@x">',
        "attachments": [{"filename": "logo.png", "content": PNG, "encoding": "base64",
                         "cid": "logo@x"},
                        {"filename": "report.pdf", "content": PDF, "encoding": "base64"}]}, ()),
    ("cid without html", {**A, "subject": "c", "text": "x",
                          "attachments": [{"filename": "logo.png", "content": PNG,
                                           "encoding": "base64", "cid": "logo@x"}]}, ()),
    ("cid on a non-image", {**A, "subject": "c", "html": "<p>x</p>",
                            "attachments": [{"filename": "d.pdf", "content": PDF,
                                             "encoding": "base64", "cid": "doc@x"}]}, ()),
    ("attachment only", {**A, "subject": "only",
                         "attachments": [{"filename": "only.pdf", "content": PDF,
                                          "encoding": "base64"}]}, ()),
    ("two attachments only", {**A, "subject": "two",
                              "attachments": [{"filename": "a.txt", "content": "a"},
                                              {"filename": "b.txt", "content": "b"}]}, ()),
    ("alternatives", {**A, "subject": "alt", "text": "plain", "html": "<p>html</p>",
                      "alternatives": [{"contentType": "text/x-web-markdown",
                                        "content": "**markdown**"}]}, ()),
    ("alternative by name", {**A, "subject": "alt", "text": "plain",
                             "alternatives": [{"filename": "view.html", "content": "<p>v</p>"}]},
     ()),
    ("html in alternatives", {**A, "subject": "alt", "text": "plain",
                              "alternatives": [{"contentType": "text/html",
                                                "content": '<img src="cid:i@x">'}],
                              "attachments": [{"filename": "i.png", "content": PNG,
                                               "encoding": "base64", "cid": "i@x"}]}, ()),
    ("watchHtml", {**A, "subject": "w", "text": "t", "html": "<p>h</p>",
                   "watchHtml": "<b>watch</b>"}, ()),
    ("amp", {**A, "subject": "amp", "text": "t", "html": "<p>h</p>",
             "amp": "<!doctype html><html ⚡4email><body>amp</body></html>"}, ()),
    ("icalEvent", {**A, "subject": "invite", "text": "see invite", "icalEvent": ICS}, ()),
    ("icalEvent object", {**A, "subject": "invite", "html": "<p>invite</p>",
                          "icalEvent": {"method": "request", "filename": "meeting.ics",
                                        "content": ICS}}, ()),
    ("message/rfc822", {**A, "subject": "fwd", "text": "forwarded",
                        "attachments": [{"contentType": "message/rfc822", "content": EMBEDDED}]},
     ("cte",)),
    ("data uri base64", {**A, "subject": "d", "text": "x",
                         "attachments": [{"filename": "dot.png",
                                          "path": "data:image/png;base64," + PNG}]}, ()),
    ("data uri percent", {**A, "subject": "d", "text": "x",
                          "attachments": [{"href": "data:text/plain;charset=utf-8,Gr%C3%BC%C3%9Fe"}]},
     ()),
    ("text as content", {**A, "subject": "t", "text": {"content": "from content"},
                         "html": {"content": "PGI+aGk8L2I+", "encoding": "base64"}}, ()),
    ("html as data uri", {**A, "subject": "t", "html": {"path": "data:text/html,%3Cp%3Ehi%3C%2Fp%3E"}},
     ()),
    ("raw alternative", {**A, "subject": "t", "text": "plain",
                         "alternatives": [{"raw": "Content-Type: text/enriched\r\n\r\n<bold>x</bold>\r\n"}]},
     ()),
    ("raw message", {"raw": "From: Raw <raw@example.test>\r\nTo: rcpt@example.test\r\n"
                            "Subject: raw\r\nMessage-ID: <raw-1@example.test>\r\n\r\nraw body\r\n",
                     "envelope": {"from": "bounce@example.test", "to": ["rcpt@example.test"]}},
     ()),
    ("envelope lists", {**A, "subject": "e", "text": "x",
                        "envelope": {"from": "env@example.test", "to": "one@example.test",
                                     "cc": ["two@other.test"], "bcc": "three@example.test"}},
     ()),
    ("textEncoding qp", {**A, "subject": "q", "text": "Grüße " * 30, "html": "<p>ü</p>",
                         "textEncoding": "quoted-printable"}, ("cte",)),
    ("textEncoding base64", {**A, "subject": "b", "text": "Grüße", "textEncoding": "base64"},
     ("cte",)),
    ("long lines", {**A, "subject": "l", "text": "word " * 400}, ()),
    ("rfc 5322 date", {**A, "subject": "d", "text": "x",
                       "date": "Sun, 04 Jan 2026 10:11:12 +0200"}, ()),
    ("iso date", {**A, "subject": "d", "text": "x", "date": "2026-01-04T08:11:12.000Z"}, ()),
    # (past dates: a Date in the future delays delivery, as in ZoneMTA)
    ("numeric date", {**A, "subject": "d", "text": "x", "date": 1767521472000}, ()),
    ("message id", {**A, "subject": "m", "text": "x", "messageId": "<given-1@example.test>"}, ()),
    ("sender field", {**A, "sender": "Agent <agent@other.test>", "subject": "s", "text": "x"},
     ()),
    ("sender without from", {"sender": "agent@other.test", "to": "rcpt@example.test",
                             "subject": "s", "text": "x"}, ()),
    ("idn domain", {"from": "sender@example.test", "to": "Jõgeva <info@jõgeva.test>",
                    "subject": "idn", "text": "x"}, ()),
    ("empty body", {**A, "subject": "nothing"}, ()),
]


def nodemailer(messages):
    """Nodemailer's rendering of each message object: {envelope, message}."""
    if not (JS / "node_modules" / "nodemailer").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True,
                       capture_output=True)
    out = subprocess.run(["node", str(JS / "compose.js")], input=json.dumps(messages).encode(),
                         capture_output=True, check=True, timeout=120)
    results = json.loads(out.stdout)
    for r in results:
        assert "error" not in r, r
        r["message"] = base64.b64decode(r["message"])
    return results


TRACE = {"received", "dkim-signature", "x-zone-loop"}  # what a relay adds on the way
STRUCTURE = {"content-type", "content-transfer-encoding", "mime-version", "content-disposition",
             "content-id"}


def addresses(header):
    return [(a.display_name, a.addr_spec) for a in header.addresses]


def header_values(msg, name):
    values = msg.get_all(name) or []
    if name in ("from", "to", "cc", "reply-to", "sender"):
        return [addresses(v) for v in values]
    if name == "date":
        return [instant(str(v)) for v in values]
    return [" ".join(str(v).split()) for v in values]


def instant(value):
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        pass
    if value.isdigit():
        return int(value) // 1000
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def parts(msg, path="0"):
    """[(path, part)] depth first, message/rfc822 parts as leaves."""
    out = [(path, msg)]
    if msg.is_multipart() and msg.get_content_maintype() == "multipart":
        for i, child in enumerate(msg.iter_parts()):
            out += parts(child, f"{path}.{i}")
    return out


def describe(part, compare_cte):
    ctype = part.get_content_type()
    params = dict(part["Content-Type"].params) if part["Content-Type"] else {}
    params.pop("boundary", None)
    params.pop("name", None)  # compared through the file name
    params = {k.lower(): v.lower() if k.lower() in ("charset", "method") else v
              for k, v in params.items()}
    if ctype.startswith("message/"):
        content = part.get_payload(0).as_bytes().replace(b"\r\n", b"\n")
    elif part.is_multipart():
        content = None
    else:
        content = part.get_payload(decode=True)
        if ctype.startswith("text/"):
            # a single part's last line break may belong to the message's end
            content = content.replace(b"\r\n", b"\n").removesuffix(b"\n")
    filename = part.get_filename()
    if filename and re.fullmatch(r"attachment-\d+\.\*?", filename):
        filename = filename.rstrip("*") + "bin"  # Nodemailer's attachment-N.*
    d = {
        "type": ctype,
        "params": params,
        "disposition": part.get_content_disposition(),
        "filename": filename,
        "has name": "name" in (part["Content-Type"].params if part["Content-Type"] else {}),
        "cid": str(part["Content-ID"]).strip() if part["Content-ID"] else None,
        "content": content,
    }
    if compare_cte or ctype.startswith("message/"):
        d["cte"] = part.get("Content-Transfer-Encoding", "7bit").lower()
    return d


def equivalent(name, obj, options, ref, got, reply):
    """The differences between Nodemailer's rendering and ours, as text."""
    problems = []
    if (reply["from"], sorted(reply["to"])) != (ref["envelope"]["from"] or "",
                                                sorted(ref["envelope"]["to"])):
        problems.append(f"answered envelope {reply['from']!r} {reply['to']} != {ref['envelope']}")
    if got["mail_from"] != (ref["envelope"]["from"] or ""):
        problems.append(f"MAIL FROM {got['mail_from']!r} != {ref['envelope']['from']!r}")
    if sorted(got["rcpt_tos"]) != sorted(ref["envelope"]["to"]):
        problems.append(f"RCPT TO {sorted(got['rcpt_tos'])} != {sorted(ref['envelope']['to'])}")
    theirs = email.message_from_bytes(ref["message"], policy=email.policy.default)
    ours = email.message_from_bytes(got["data"], policy=email.policy.default)

    names = {k.lower() for k in theirs.keys()} - STRUCTURE
    # the relay adds Message-ID and Date where they lack, as ZoneMTA's
    # default-headers plugin does (a `raw` message may lack them)
    extra = {k.lower() for k in ours.keys()} - STRUCTURE - TRACE - names - {"date", "message-id"}
    if extra:
        problems.append(f"headers only we have: {sorted(extra)}")
    for h in sorted(names):
        if h == "message-id" and "messageId" not in obj and "raw" not in obj:
            # generated on both sides: the same form, the same domain
            t, o = str(theirs[h]), str(ours[h])
            if not re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", o) or \
                    t.rsplit("@", 1)[1] != o.rsplit("@", 1)[1]:
                problems.append(f"Message-ID {o} is not like {t}")
            continue
        if h == "date" and "date" not in obj:
            continue  # both "now"
        tv, ov = header_values(theirs, h), header_values(ours, h)
        if tv != ov:
            problems.append(f"{h}: {ov!r} != {tv!r}")

    compare_cte = "cte" in options
    tp, op = parts(theirs), parts(ours)
    if [p for p, _ in tp] != [p for p, _ in op]:
        problems.append("trees differ: " +
                        repr([(p, m.get_content_type()) for p, m in op]) + " != " +
                        repr([(p, m.get_content_type()) for p, m in tp]))
        return problems
    for (path, t), (_, o) in zip(tp, op):
        td, od = describe(t, compare_cte), describe(o, compare_cte)
        # ours declares charset=utf-8 on any non-ASCII text (docs/api.md)
        if ("charset" not in td["params"] and od["params"].get("charset") == "utf-8"
                and td["content"] is not None and not td["content"].isascii()):
            del od["params"]["charset"]
        for key in td:
            if td[key] != od[key]:
                problems.append(f"part {path} {key}: {od[key]!r} != {td[key]!r}")
    return problems


def test_send_renders_what_nodemailer_renders(dns_server, smtp_sink, zmta):
    assert len(CASES) >= 40
    refs = nodemailer([obj for _, obj, _ in CASES])
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({d: {"A": ["127.0.0.2"]} for d in DOMAINS})
    d = zmta(extra_config=relay_config(dns_server, sink.port))
    replies = [send(d, obj) for _, obj, _ in CASES]
    for reply in replies:
        assert reply["response"] == f"Message queued as {reply['id']}", reply
    # a message may come in several deliveries (per domain): merged by Message-ID
    total = sum(len(reply["to"]) for reply in replies)
    wait_until(lambda: sum(len(m["rcpt_tos"]) for m in sink.messages()) >= total, 60,
               what=f"{total} recipients at the sink")
    by_id = {}
    for m in sink.messages():
        mid = str(email.message_from_bytes(m["data"], policy=email.policy.default)["Message-ID"])
        if mid in by_id:
            assert by_id[mid]["data"] == m["data"], f"copies of {mid} differ"
            by_id[mid]["rcpt_tos"] += m["rcpt_tos"]
        else:
            by_id[mid] = m
    report = []
    for (name, obj, options), ref, reply in zip(CASES, refs, replies):
        m = by_id.get(reply["messageId"])
        if m is None:
            report.append(f"{name}: not delivered ({reply['messageId']})")
            continue
        report += [f"{name}: {p}" for p in equivalent(name, obj, options, ref, m, reply)]
    assert not report, "\n".join(report)


@pytest.mark.parametrize("msg,field,text", [
    ({**A, "text": "x", "attachments": [{"path": "/etc/passwd"}]},
     "attachments[0].path", "file and URL access is disabled"),
    ({**A, "text": "x", "attachments": [{"href": "https://example.test/x"}]},
     "attachments[0].href", "file and URL access is disabled"),
    ({**A, "html": {"path": "/etc/passwd"}}, "html.path", "file and URL access is disabled"),
    ({**A, "icalEvent": {"href": "http://example.test/x.ics"}}, "icalEvent.href",
     "file and URL access is disabled"),
    ({**A, "text": "x", "headers": {"X-Evil": "a\r\nBcc: victim@example.test"}},
     "headers.X-Evil", "header injection"),
    ({**A, "text": "x", "headers": {"X-Evil": {"prepared": True, "value": "a\r\nBcc: v@x.test"}}},
     "headers.X-Evil", "header injection"),
    ({**A, "text": "x", "attachments": [{"content": "x", "encoding": "rot13"}]},
     "attachments[0].encoding", "unknown encoding"),
    ({**A, "text": "x", "headers": {"Content-Type": "text/html"}}, "headers.Content-Type",
     "set by the composer"),
])
def test_send_refuses_what_would_read_files_or_inject(zmta, msg, field, text):
    d = zmta()
    status, reply = call(d, "POST", "/send", msg)
    assert status == 400, reply
    assert reply["field"] == field, reply
    assert text in reply["error"], reply
