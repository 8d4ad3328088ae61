# SPDX-License-Identifier: EUPL-1.2
"""Rspamd checks of arriving mail (docs/rspamd.md) against Debian's real
rspamd (peers/rspamd.py: its core's GTUBE and test rules whose markers
pick the action).  The relay delivers to a sink as a smart host, so what
the check added to a message is seen where it arrives.
"""
import re
import smtplib
import socket
import threading
import time

import pytest

from conftest import free_port, wait_until
from test_api import call, send
from test_delivery import wait_delivered
from test_queue import queue_counts, submit

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(body, subject="hello"):
    return (f"From: <sender@example.test>\r\nTo: <rcpt@example.test>\r\n"
            f"Subject: {subject}\r\n\r\n{body}\r\n").encode()


def relay(sink, url, **rspamd):
    return {"rspamd": {"enabled": True, "url": url, "interfaces": ["feeder", "api"],
                       **rspamd},
            "zones": {"default": {"host": sink.host, "port": sink.port, "disabled": False}}}


def data_reply(d, body, sender="sender@example.test"):
    """(code, text) of DATA for one message."""
    with d.smtp() as client:
        client.ehlo("client.test")
        client.mail(sender)
        client.rcpt("rcpt@example.test")
        code, text = client.data(body)
        return code, text.decode()


def header(raw: bytes, name: str):
    m = re.search(rb"^" + name.encode() + rb": ([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", raw,
                  re.M | re.I)
    return m.group(1).decode() if m else None


def test_gtube_is_refused_with_rspamds_reason(rspamd, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay(sink, rspamd.url))
    code, text = data_reply(d, message(GTUBE))
    assert (code, text) == (550, "5.7.1 Gtube pattern")
    d.wait_log(r'event=rspamd score=\d+\.\d+ required=15\.00 action="reject" result=reject '
               r'ms=\d+ tests=\[GTUBE=')
    # never queued, so nothing is delivered
    assert queue_counts(d) == (0, 0)
    time.sleep(0.5)
    assert sink.messages() == []
    assert re.search(r"event=refused hook=message:store handler=rspamd ", d.log())


def test_clean_message_passes_with_headers_over_smtp_and_api(rspamd, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay(sink, rspamd.url))
    code, _ = data_reply(d, message("a perfectly ordinary message"))
    assert code == 250
    send(d, {"from": "sender@example.test", "to": "rcpt@example.test", "subject": "via api",
             "text": "hello from the API"})
    got = sink.wait_for(2)
    for m in got:
        assert header(m["data"], "X-Zone-Spam-Resolution") == "no action", m["data"][:600]
        assert header(m["data"], "X-Zone-Spam-Status").startswith("No, score=0.00, "
                                                                  "required=15.00")
        assert header(m["data"], "X-Spam") is None
    # Rspamd saw each message with its envelope: one scan each
    assert len(re.findall(r'event=rspamd .*action="no action" result=accept', d.log())) == 2
    rlog = rspamd.log()
    assert "sender@example.test" in rlog


def test_soft_reject_gives_451(rspamd, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay(sink, rspamd.url))
    code, text = data_reply(d, message("SOFT-REJECT-TEST"))
    assert (code, text) == (451, "4.7.1 Try again later (test)")
    assert queue_counts(d) == (0, 0)


def test_add_header_and_rewrite_subject(rspamd, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay(sink, rspamd.url))
    assert data_reply(d, message("ADD-HEADER-TEST", subject="first"))[0] == 250
    assert data_reply(d, message("REWRITE-SUBJECT-TEST", subject="second"))[0] == 250
    first, second = sorted(sink.wait_for(2), key=lambda m: b"REWRITE" in m["data"])
    assert header(first["data"], "X-Spam") == "Yes"
    assert header(first["data"], "Subject") == "first"
    assert header(first["data"], "X-Zone-Spam-Resolution") == "add header"
    assert re.match(r"Yes, score=7\.00, required=15\.00,\r\n\ttests=\[ZMTA_TEST_SPAMMY=7\.00\]",
                    header(first["data"], "X-Zone-Spam-Status"))
    assert header(second["data"], "X-Spam") == "Yes"
    assert header(second["data"], "Subject") == "***SPAM*** second"  # Rspamd's subject
    assert len(re.findall(rb"^Subject:", second["data"], re.M)) == 1

    # with Rspamd's rewrite turned into a plain header action
    d.stop()
    d2 = zmta(extra_config=relay(sink, rspamd.url, actions={"rewrite subject": "header"}))
    assert data_reply(d2, message("REWRITE-SUBJECT-TEST", subject="third"))[0] == 250
    third = sink.wait_for(3)[2]
    assert header(third["data"], "Subject") == "third"
    assert header(third["data"], "X-Spam") == "Yes"


@pytest.mark.parametrize("on_error", ["accept", "tempfail"])
def test_rspamd_down_takes_the_configured_fallback(smtp_sink, zmta, on_error):
    # Nothing listens on the port: as an Rspamd that is stopped.
    sink = smtp_sink("127.0.0.2")
    port = free_port()
    d = zmta(extra_config=relay(sink, f"http://127.0.0.1:{port}/checkv2", onError=on_error))
    code, text = data_reply(d, message("hello"))
    d.wait_log(r"event=rspamd_error url=http://127\.0\.0\.1:%d/checkv2 error=\".+\" "
               r"action=%s" % (port, on_error))
    if on_error == "accept":
        assert code == 250
        got = sink.wait_for(1)[0]
        assert header(got["data"], "X-Zone-Spam-Resolution") is None
    else:
        assert (code, text) == (451, "4.7.1 The spam check is not available, try again later")
        assert queue_counts(d) == (0, 0)


def test_slow_rspamd_times_out(smtp_sink, zmta):
    # A server that takes the request and never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    sink = smtp_sink("127.0.0.2")
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/checkv2"
        d = zmta(extra_config=relay(sink, url, timeout="1 s", onError="tempfail"))
        start = time.monotonic()
        code, _ = data_reply(d, message("hello"))
        took = time.monotonic() - start
        assert code == 451
        assert 0.8 <= took < 10, took
        d.wait_log(r"event=rspamd_error .*action=tempfail")
    finally:
        silent.close()


def test_fifty_concurrent_sessions_are_scanned_without_blocking(rspamd, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay(sink, rspamd.url))
    results = {}
    go = threading.Event()

    def one(i):
        go.wait()
        body = message(GTUBE if i % 5 == 0 else f"message number {i}")
        try:
            results[i] = data_reply(d, body)[0]
        except Exception as e:  # noqa: BLE001 - recorded, asserted below
            results[i] = repr(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    # Meanwhile another session's commands keep being answered at once.
    worst = 0.0
    with d.smtp() as probe:
        probe.ehlo("probe.test")
        go.set()
        while any(t.is_alive() for t in threads):
            start = time.monotonic()
            assert probe.noop()[0] == 250
            worst = max(worst, time.monotonic() - start)
            time.sleep(0.01)
    for t in threads:
        t.join()
    assert {i: r for i, r in results.items() if r != (550 if i % 5 == 0 else 250)} == {}
    assert worst < 1.0, worst
    sink.wait_for(40)
    assert len(re.findall(r"event=rspamd ", d.log())) == 50


def vm_hwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))


def test_thirty_megabyte_message_is_scanned_at_flat_memory(rspamd, smtp_sink, zmta):
    """The scan reads the message back from the store a chunk at a time:
    it adds a few MB at most to what receiving the message takes anyway
    (measured on the same message with Rspamd off), never the message."""
    sink = smtp_sink("127.0.0.2")
    line = b"x" * 76 + b"\r\n"
    body = line * (30 * 1024 * 1024 // len(line)) + b"ADD-HEADER-TEST\r\n"
    big = b"From: <sender@example.test>\r\nSubject: big\r\n\r\n" + body
    grown = {}
    for enabled in (False, True):
        cfg = {**relay(sink, rspamd.url, maxSize="40 MB"),
               "smtpInterfaces": {"feeder": {"maxSize": "64 MB"}}}
        cfg["rspamd"]["enabled"] = enabled
        d = zmta(extra_config=cfg)
        # warm up: one small message, so the buffers of a scan exist already
        assert data_reply(d, message("warm up"))[0] == 250
        before = vm_hwm_kb(d.pid)
        assert data_reply(d, big)[0] == 250
        grown[enabled] = vm_hwm_kb(d.pid) - before
        wait_delivered(d, 2, timeout=60)
        d.stop()
    # Rspamd saw the whole message (the marker is at its very end)...
    assert re.search(r'event=rspamd score=7\.00 .*action="add header"', d.log())
    scanned = [m for m in sink.wait_for(4, timeout=60) if b"Subject: big" in m["data"]][1]
    assert header(scanned["data"], "X-Spam") == "Yes"
    assert len(scanned["data"]) > 30 * 1024 * 1024
    # ...while the relay held a few chunks of it, not the message.
    extra = grown[True] - grown[False]
    assert extra < 8 * 1024, f"scanning took {extra} kB more at peak ({grown})"


def test_what_is_not_scanned(rspamd, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    # too large for maxSize: accepted unscanned
    d = zmta(extra_config=relay(sink, rspamd.url, maxSize="1 kB"))
    assert data_reply(d, message(GTUBE + "\r\n" + "y" * 2000))[0] == 250
    d.wait_log(r"event=rspamd_skipped reason=size size=\d+ max=1024")
    # an interface that is not listed, and an ignored origin
    for extra in ({"interfaces": ["other"]}, {"ignoreOrigins": ["127.0.0.0/8"]}):
        d.stop()
        d = d2 = zmta(extra_config=relay(sink, rspamd.url, **extra))
        assert data_reply(d2, message(GTUBE))[0] == 250
        assert "event=rspamd" not in d2.log()
    got = sink.wait_for(3)
    assert all(header(m["data"], "X-Zone-Spam-Resolution") is None for m in got)


def test_metrics_count_the_results(rspamd, smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=relay(sink, rspamd.url))
    data_reply(d, message(GTUBE))
    data_reply(d, message("clean"))
    status, body = call(d, "GET", "/metrics")
    assert status == 200
    text = body.decode()
    assert 'zonemta_rspamd_checks_total{result="reject"} 1' in text
    assert 'zonemta_rspamd_checks_total{result="no action"} 1' in text
