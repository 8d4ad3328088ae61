# SPDX-License-Identifier: EUPL-1.2
"""The durable queue: acknowledged means on disk, nothing else survives a crash."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import wait_until

SANITIZED = os.environ.get("ZMTA_SANITIZED") == "1"
QUEUED = re.compile(rb"250 2\.0\.0 Ok: queued as ([0-9a-f]{18})")


def submit(d, body, rcpts=("rcpt@example.test",), sender="sender@example.test"):
    """Sends one message with smtplib; returns its queue id."""
    with d.smtp() as client:
        client.ehlo("client.test")
        client.mail(sender)
        for r in rcpts:
            assert client.rcpt(r)[0] == 250
        code, text = client.data(body)
        assert code == 250, text
        return QUEUED.match(b"%d %s" % (code, text)).group(1).decode()


def queue_counts(d, zone="default"):
    status, body = d.get(f"/queue/{zone}")
    assert status == 200
    return body["queued"], body["deferred"]


def test_message_and_fetch(zmta):
    d = zmta()
    body = b"From: <a@b.test>\r\nSubject: x\r\n\r\nline 1\r\n.starts with a dot\r\n"
    qid = submit(d, body, rcpts=("one@example.test", "two@other.test"))
    status, msg = d.get(f"/message/{qid}")
    assert status == 200
    meta = msg["meta"]
    assert meta["id"] == qid and meta["interface"] == "feeder"
    assert meta["from"] == "sender@example.test"
    assert meta["to"] == ["one@example.test", "two@other.test"]
    assert meta["origin"] == "127.0.0.1" and meta["originhost"] == "[127.0.0.1]"
    assert meta["transhost"] == "client.test" and meta["transtype"] == "ESMTP"
    assert meta["messageId"] == f"<{qid}@" + meta["messageId"].split("@")[1]
    assert [h["key"] for h in meta["headers"]] == ["received", "from", "subject",
                                                   "message-id", "date"]
    assert [(m["seq"], m["recipient"], m["zone"], m["status"]) for m in msg["messages"]] == [
        ("001", "one@example.test", "default", "QUEUED"),
        ("002", "two@other.test", "default", "QUEUED")]
    stored = d.fetch(qid)
    received, rest = stored.split(b"\r\nFrom: ", 1)
    assert received.startswith(b"Received: from client.test ([127.0.0.1])")
    assert f"id {qid}".encode() in received
    # smtplib dot-stuffs; the store holds the message as sent.
    assert rest.startswith(b"<a@b.test>\r\nSubject: x\r\nMessage-ID: <")
    assert rest.endswith(b"\r\n\r\nline 1\r\n.starts with a dot\r\n")
    assert meta["bodySize"] == len(b"\r\nline 1\r\n.starts with a dot\r\n")
    assert queue_counts(d) == (2, 0)
    status, zone = d.get("/queue/default")
    assert sorted((x["domain"], x["queued"]) for x in zone["domains"]) == [
        ("example.test", 1), ("other.test", 1)]


@pytest.mark.parametrize("path, status, error", [
    ("/message/0123456789abcdef01", 404, "no such message"),
    ("/message/not-an-id", 400, "invalid queue id"),
    ("/fetch/0123456789abcdef01", 404, "no such message"),
    ("/fetch/0123456789ABCDEF01", 400, "invalid queue id"),
    ("/queue/nosuchzone", 404, "no such zone"),
])
def test_lookup_errors(zmta, path, status, error):
    d = zmta()
    assert d.get(path) == (status, {"error": error})


def test_kill_9_after_250_keeps_the_message(app, zmta):
    d = zmta()
    body = b"Subject: durable\r\n\r\n" + b"x" * 700_000 + b"\r\n"
    qid = submit(d, body)
    os.kill(d.pid, signal.SIGKILL)  # right after the 250
    d.wait_exit()
    d2 = zmta()
    d2.wait_log(r"event=queue_recovered messages=1 deliveries=1 ")
    status, msg = d2.get(f"/message/{qid}")
    assert status == 200 and msg["messages"][0]["status"] == "QUEUED"
    assert d2.fetch(qid).endswith(b"\r\n\r\n" + b"x" * 700_000 + b"\r\n")
    assert queue_counts(d2) == (1, 0)


def test_kill_9_in_data_leaves_no_trace(app, zmta):
    d = zmta()
    s = socket.create_connection(("127.0.0.1", d.smtp_port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    s.sendall(b"EHLO x\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    s.sendall(b"MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n")
    assert [f.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
    # Over two chunks of body, so that some reach the store before the crash.
    s.sendall(b"Subject: cut\r\n\r\n" + (b"y" * 998 + b"\r\n") * 800)
    time.sleep(1.0)
    os.kill(d.pid, signal.SIGKILL)
    d.wait_exit()
    s.close()
    d2 = zmta()
    d2.wait_log(r"event=queue_recovered messages=0 deliveries=0 removed_incomplete=0 "
                r"removed_orphan_bodies=1 ")
    assert queue_counts(d2) == (0, 0)
    # And nothing is left for the next start either.
    assert d2.stop() == 0
    d3 = zmta()
    d3.wait_log(r"event=queue_recovered messages=0 deliveries=0 removed_incomplete=0 "
                r"removed_orphan_bodies=0 ")


def test_ids_grow_across_restarts(zmta):
    d = zmta()
    first = submit(d, b"Subject: 1\r\n\r\n1\r\n")
    second = submit(d, b"Subject: 2\r\n\r\n2\r\n")
    assert d.stop() == 0
    third = submit(zmta(), b"Subject: 3\r\n\r\n3\r\n")
    assert first < second < third
    assert len({first[11:14], third[11:14]}) >= 1  # the per-process tag may differ


@pytest.mark.skipif(SANITIZED, reason="sanitizer builds use several times the memory")
def test_50mb_message_streams_in_bounded_memory(zmta):
    d = zmta(extra_config={"smtpInterfaces": {"feeder": {"maxSize": "60 MB"}}})
    line = b"z" * 998 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (50 * 1024 * 1024 // len(line))
    qid = submit(d, body)
    status = open(f"/proc/{d.pid}/status").read()
    peak_kb = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))
    print(f"peak RSS {peak_kb} kB")
    assert peak_kb < 64 * 1024, f"peak RSS {peak_kb} kB"
    status, msg = d.get(f"/message/{qid}")
    assert msg["meta"]["bodySize"] == len(body) - len(b"Subject: big\r\n")
    fetched = d.fetch(qid)
    assert fetched.endswith(body[len(b"Subject: big\r\n"):])


def test_future_date_delays_first_attempt(zmta):
    d = zmta()
    now = int(time.time())
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(now + 3600))
    qid = submit(d, f"Date: {date}\r\nSubject: later\r\n\r\nx\r\n".encode())
    meta = d.get(f"/message/{qid}")[1]["meta"]
    assert meta["date"] == date
    assert meta["nextAttempt"] == (now + 3600) * 1000
    d.wait_log(r"id=%s event=queued .* delayed_until=%d" % (qid, now + 3600))
    # Within the allowed skew it is "now".
    soon = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(now + 60))
    qid2 = submit(d, f"Date: {soon}\r\nSubject: now\r\n\r\nx\r\n".encode())
    meta2 = d.get(f"/message/{qid2}")[1]["meta"]
    assert meta2["nextAttempt"] <= (now + 5) * 1000


def test_damaged_store_refuses_to_start(app, zmta):
    d = zmta()
    submit(d, b"Subject: x\r\n\r\nx\r\n")
    assert d.stop() == 0
    data = app.path / "data"
    manifest = next(data.glob("MANIFEST-*"))
    manifest.write_bytes(b"\x00garbage" * 64)
    d2 = zmta(wait=False)
    assert d2.wait_exit(timeout=20) == 1
    log = d2.log()
    assert f"queue database {data} is damaged" in log
    assert f"mv {data} {data}.damaged" in log
    # Nothing was repaired or rewritten behind the operator's back.
    assert manifest.read_bytes() == b"\x00garbage" * 64


def test_disk_space_guard_answers_452_and_leaves_nothing(app, zmta, tmp_path):
    """Too little space under the queue: the message is refused, not written."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        d = zmta(extra_config={"queue": {"dir": str(small / "data"), "minFreeSpace": "2 MB"}})
        with d.smtp() as client:
            client.ehlo("x")
            client.mail("a@b.test")
            client.rcpt("c@d.test")
            code, text = client.data(b"Subject: big\r\n\r\n" + b"q" * (4 * 1024 * 1024) + b"\r\n")
            assert (code, text[:5]) == (452, b"4.3.1")
            assert client.noop()[0] == 250  # the session goes on
        d.wait_log(r"event=store_failed error=\"insufficient disk space")
        assert queue_counts(d) == (0, 0)
        # The daemon is still up, and a restart finds nothing of the message.
        assert d.get("/health")[0] == 200
        assert d.stop() == 0
        d2 = zmta(extra_config={"queue": {"dir": str(small / "data"), "minFreeSpace": "2 MB"}})
        d2.wait_log(r"event=queue_recovered messages=0 deliveries=0")
        assert queue_counts(d2) == (0, 0)
        assert d2.stop() == 0
    finally:
        subprocess.run(["umount", "-l", str(small)])


def vm_data_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmData:\s+(\d+)", f.read()).group(1))


@pytest.mark.skipif(SANITIZED, reason="ASan's quarantine and shadow memory count in VmData")
def test_small_messages_kept_in_memory_hold_only_their_size(zmta):
    # Deliveries off: every message stays in the just-queued cache (16 MiB
    # of bodies at most).  3,000 small ones must not pin a 256 KiB chunk
    # buffer each (750 MB).
    d = zmta(extra_config={"zones": {"default": {"disabled": True}}})
    submit(d, b"Subject: warm\r\n\r\nx\r\n")
    before = vm_data_kb(d.pid)
    body = b"Subject: small\r\n\r\n" + b"s" * 1500 + b"\r\n"
    with d.smtp() as client:
        client.ehlo("client.test")
        for _ in range(3000):
            client.mail("sender@example.test")
            client.rcpt("rcpt@example.test")
            assert client.data(body)[0] == 250
    grown = vm_data_kb(d.pid) - before
    assert grown < 200 * 1024, f"VmData grew by {grown} KiB"


def test_a_full_disk_breaks_the_store_and_health_says_so(app, zmta, tmp_path):
    """With the guard off, RocksDB meets a real ENOSPC: the store goes out of
    service (no more writes, no abort), /health answers 503 degraded with the
    reason, the metric says so, and the daemon keeps answering."""
    small = tmp_path / "full"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        d = zmta(extra_config={"queue": {"dir": str(small / "data"), "minFreeSpace": 0}})
        body = b"Subject: fill\r\n\r\n" + (b"z" * 998 + b"\r\n") * 1000  # 1 MB
        codes = []
        for _ in range(40):
            with d.smtp() as client:
                client.ehlo("x")
                client.mail("a@b.test")
                client.rcpt("c@d.test")
                codes.append(client.data(body)[0])
            if codes[-1] != 250:
                break
        assert codes[-1] == 451, codes
        d.wait_log(r"error event=store_broken error=\".*(No space|IO error|space)")
        status, health = d.get("/health")
        assert status == 503, health
        assert health["status"] == "degraded"
        assert "takes no more mail until zone-mta is restarted" in health["reason"]
        with urllib.request.urlopen(d.url("/metrics"), timeout=10) as resp:
            assert re.search(r"^zonemta_store_broken 1$", resp.read().decode(), re.M)
        # Still up: SMTP answers, and refuses mail for now (4xx, not 5xx).
        with d.smtp() as client:
            client.ehlo("x")
            client.mail("a@b.test")
            client.rcpt("c@d.test")
            assert client.data(b"Subject: small\r\n\r\nx\r\n")[0] == 451
        assert d.proc.poll() is None
        d.stop()
    finally:
        subprocess.run(["umount", "-l", str(small)])
