# SPDX-License-Identifier: EUPL-1.2
"""The DSN composer (src/msg/dsn.c) against two independent parsers:
Python's email package, field by field as RFC 3464 and RFC 6522 define
them, and flufl.bounce (Mailman's bounce detector), which must find the
failed recipients.  Driven through tests/msg/dsn_driver.c.
"""
import email
import email.policy
import email.utils
import json
import subprocess
from pathlib import Path

import pytest
from flufl.bounce import all_failures, scan_message

from conftest import ZMTA_BIN

DRIVER = str(Path(ZMTA_BIN).parent / "tests" / "msg" / "zmta-dsn-driver")

ORIGINAL_HEADER = ("Received: from client.test ([192.0.2.7])\r\n\tby mta.test (zone-mta) "
                   "with ESMTP id 1a2b3c4d5e6f708090;\r\n\tWed, 2 Dec 2026 10:00:00 +0000\r\n"
                   "From: Alice <alice@origin.test>\r\nTo: bob@example.test\r\n"
                   "Subject: Quarterly report\r\nMessage-ID: <orig-1@origin.test>\r\n"
                   "Date: Wed, 2 Dec 2026 10:00:00 +0000\r\n\r\n")
BODY = "Hello Bob,\r\n\r\nthe numbers.\r\n"
ARRIVAL = 1_796_032_800_000  # 2026-12-02 10:00:00 UTC, ms
NOW = ARRIVAL + 3_600_000


def report(kind="failed", rcpts=None, **extra):
    spec = {
        "kind": kind, "reporting_mta": "mta.test", "from_name": "Mail Delivery Subsystem",
        "from_address": "mailer-daemon@mta.test", "to": "alice@origin.test",
        "message_id": "1a2b3c4d5e6f7080ff.dsn@mta.test",
        "original_message_id": "<orig-1@origin.test>", "original_subject": "Quarterly report",
        "arrival_ms": ARRIVAL, "now_ms": NOW, "header_block": ORIGINAL_HEADER,
        "rcpts": rcpts or [{
            "recipient": "bob@example.test", "orcpt": "rfc822;Bob+2BLists@example.test",
            "status": "5.1.1", "remote_mta": "mx1.example.test",
            "diagnostic": "550 5.1.1 <bob@example.test>: Recipient address rejected: "
                          "User unknown in virtual mailbox table",
            "last_attempt_ms": NOW - 1000}],
    }
    spec.update(extra)
    res = subprocess.run([DRIVER], input=json.dumps(spec).encode(), capture_output=True,
                         check=True, timeout=30)
    raw = res.stdout
    assert b"\n" not in raw.replace(b"\r\n", b""), "every line ends with CRLF"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def status_blocks(msg, subtype="delivery-status"):
    part = next(p for p in msg.walk() if p.get_content_type() == f"message/{subtype}")
    # The email package parses message/delivery-status into header blocks:
    # the first per message, then one per recipient.
    return [dict(block.items()) for block in part.get_payload()]


def test_failure_notice_fields():
    raw, msg = report(envid="env+2B1")
    assert msg["From"] == "Mail Delivery Subsystem <mailer-daemon@mta.test>"
    assert msg["To"].addresses[0].addr_spec == "alice@origin.test"
    assert msg["Subject"] == "Delivery Status Notification (Failure)"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<orig-1@origin.test>"
    assert email.utils.parsedate_to_datetime(msg["Date"]).timestamp() * 1000 == NOW
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    human = next(msg.iter_parts()).get_content()
    assert "<bob@example.test>: host mx1.example.test said:" in human
    assert "User unknown in virtual mailbox table" in human
    per_message, per_rcpt = status_blocks(msg)
    assert per_message["Reporting-MTA"] == "dns; mta.test"
    assert per_message["Original-Envelope-Id"] == "env+1"  # xtext decoded
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() * 1000 \
        == ARRIVAL
    # RFC 3461 6.3: the ORCPT address with its xtext encoding removed.
    assert per_rcpt["Original-Recipient"] == "rfc822; Bob+Lists@example.test"
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@example.test"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx1.example.test"
    # Folded in the part, whole once unfolded.
    assert " ".join(per_rcpt["Diagnostic-Code"].split()) == (
        "smtp; 550 5.1.1 <bob@example.test>: Recipient address rejected: User unknown in "
        "virtual mailbox table")
    assert email.utils.parsedate_to_datetime(per_rcpt["Last-Attempt-Date"]).timestamp() \
        * 1000 == NOW - 1000
    headers = list(msg.iter_parts())[2].get_content()
    assert "Subject: Quarterly report" in headers and "Hello Bob" not in headers
    assert b"the numbers" not in raw


def test_a_second_parser_finds_the_failed_recipients():
    _, msg = report(rcpts=[
        {"recipient": "bob@example.test", "status": "5.1.1",
         "diagnostic": "550 5.1.1 no such user", "remote_mta": "mx1.example.test"},
        {"recipient": "carol@example.test", "status": "5.2.2",
         "diagnostic": "552 5.2.2 mailbox full", "remote_mta": "mx1.example.test"}])
    temporary, permanent = all_failures(msg)
    assert permanent == {b"bob@example.test", b"carol@example.test"} and temporary == set()
    assert scan_message(msg) == {b"bob@example.test", b"carol@example.test"}


def test_delay_notice():
    _, msg = report(kind="delayed", rcpts=[{
        "recipient": "bob@example.test", "status": "4.4.1",
        "diagnostic": "connection to mx1.example.test [192.0.2.25] failed: timed out",
        "last_attempt_ms": NOW, "will_retry_until_ms": ARRIVAL + 5 * 86_400_000}])
    assert msg["Subject"] == "Delivery Status Notification (Delay)"
    _, per_rcpt = status_blocks(msg)
    assert per_rcpt["Action"] == "delayed" and per_rcpt["Status"] == "4.4.1"
    assert email.utils.parsedate_to_datetime(per_rcpt["Will-Retry-Until"]).timestamp() \
        * 1000 == ARRIVAL + 5 * 86_400_000
    assert "Remote-MTA" not in per_rcpt
    # A delay is a temporary failure to a bounce detector, not a permanent one.
    assert all_failures(msg) == ({b"bob@example.test"}, set())


def test_success_notice_for_a_next_hop_without_dsn():
    _, msg = report(kind="relayed", rcpts=[{"recipient": "bob@example.test",
                                            "remote_mta": "mx1.example.test",
                                            "diagnostic": "250 2.0.0 Ok: queued as 4F2"}])
    assert msg["Subject"] == "Delivery Status Notification (Success)"
    _, per_rcpt = status_blocks(msg)
    assert (per_rcpt["Action"], per_rcpt["Status"]) == ("relayed", "2.0.0")


def test_ret_full_returns_the_whole_message():
    _, msg = report(body=BODY)
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "message/rfc822"]
    original = parts[2].get_content()
    assert original["Subject"] == "Quarterly report"
    assert original.get_content().replace("\r\n", "\n") == "Hello Bob,\n\nthe numbers.\n"


def test_an_endless_reply_keeps_lines_within_998_octets():
    raw, msg = report(rcpts=[{"recipient": "bob@example.test", "status": "5.0.0",
                              "diagnostic": "550 " + "é" * 3000}])
    # report() checked that no line passes 998 octets.
    assert "Diagnostic-Code: smtp; 550 éé".encode() in raw.replace(b"\r\n ", b" ")
    assert len(raw) < 3000 * 2  # cut, not carried whole
    raw.decode("utf-8")  # cut at a character, not inside one


@pytest.mark.parametrize("rcpt", ["jöhn@exämple.test"])
def test_utf8_recipient_uses_global_delivery_status(rcpt):
    raw, msg = report(rcpts=[{"recipient": rcpt, "status": "5.1.1",
                              "diagnostic": "550 5.1.1 unknown \xff user"}])
    assert msg.get_param("report-type") == "global-delivery-status"
    assert any(p.get_content_type() == "message/global-delivery-status" for p in msg.walk())
    assert f"Final-Recipient: utf-8; {rcpt}".encode() in raw
    # A reply that is not UTF-8 is made UTF-8, never passed on raw.
    raw.decode("utf-8")
