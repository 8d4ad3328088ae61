# SPDX-License-Identifier: EUPL-1.2
"""The listeners made safe to expose: STARTTLS and implicit TLS, SMTP AUTH
against a real HTTP service and a users file, access lists, per-address
caps and deadlines, the PROXY protocol, and the open-relay guard.

Real peers only: swaks and openssl s_client as clients, httpd.py as the
AUTH service, certificates made with openssl for each test.
"""
import base64
import json
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import free_port, wait_until
from test_smtp import HOST, QUEUED, Session, get_message, wire

MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


def make_cert(path, name):
    """A self-signed EC certificate for NAME: (cert, key) in folder PATH."""
    path.mkdir(parents=True, exist_ok=True)
    cert, key = path / "cert.pem", path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def cert_name(der):
    """The CN of a DER certificate, through openssl x509."""
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                         input=der, capture_output=True, check=True, timeout=30).stdout
    return re.search(rb"CN\s*=\s*([^,\s/]+)", out).group(1).decode()


@pytest.fixture
def certs(tmp_path):
    return make_cert(tmp_path / "tls", "mta.test")


def listener(certs, **options):
    """Feeder options: TLS with the test certificate, then OPTIONS."""
    cert, key = certs
    return {"cert": str(cert), "key": str(key), **options}


def config(feeder, **extra):
    return {"hostname": HOST, "httpClient": {"timeout": "1 s"},
            "smtpInterfaces": {"feeder": feeder}, **extra}


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def starttls(s):
    """EHLO, STARTTLS and the handshake on Session S; returns its EHLO
    reply in the clear."""
    s.send("EHLO client.test\r\n")
    ehlo = s.reply()
    assert s.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
    assert s.buf == b""
    s.sock = client_context().wrap_socket(s.sock, server_hostname="mta.test")
    return ehlo


def auth_plain(user, password):
    return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def swaks(port, *args, timeout=60):
    res = subprocess.run(["swaks", "--server", f"127.0.0.1:{port}", "--from", "a@example.test",
                          "--to", "b@example.test", "--helo", "client.test", *args],
                         capture_output=True, text=True, timeout=timeout)
    return res.stdout + res.stderr


def queued_id(out):
    m = QUEUED.search(out)
    assert m, out
    return m.group(1)


def auth_log(server):
    with __import__("urllib.request").request.urlopen(server.url("/auth-log"),
                                                        timeout=10) as r:
        return json.loads(r.read())


# ------------------------------------------------------------ STARTTLS + AUTH


def test_starttls_then_auth_plain_and_login_against_an_http_service(zmta, certs, http_server):
    web = http_server()
    # alice's mail goes through her own zone (authenticatedUsers)
    d = zmta(config(listener(certs, starttls=True, authentication=True,
                             authUrl=web.url("/auth")),
                    zones={"alice": {"authenticatedUsers": ["alice"], "disabled": True}}))

    # In the clear: STARTTLS offered, AUTH not (it would expose the
    # password), and MAIL needs authentication.
    with Session(d.smtp_port) as s:
        s.send("EHLO client.test\r\n")
        ehlo = s.reply()
        assert "250-STARTTLS" in ehlo and not any("AUTH" in l for l in ehlo), ehlo
        assert s.cmd(auth_plain("alice", "s3cret")) == \
            "538 5.7.11 Encryption required for requested authentication mechanism"
        assert s.cmd("MAIL FROM:<a@example.test>") == "530 5.7.0 Authentication required"

    out = swaks(d.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user", "alice",
                "--auth-password", "s3cret")
    assert "<~  235 2.7.0 Authentication successful" in out, out
    qid = queued_id(out)
    meta = get_message(d, qid)
    assert meta["meta"]["user"] == "alice", meta
    assert [m["zone"] for m in meta["messages"]] == ["alice"], meta
    head = d.fetch(qid).split(b"\r\n\r\n")[0].decode()
    received = re.search(r"^Received: .*?(?=\r\n\S)", head, re.S | re.M).group(0)
    assert re.search(r"\(using TLSv1\.3 with cipher \S+\)", received), received
    assert " with ESMTPSA id " + qid in received, received

    # LOGIN, and a service that names no user: the login name is kept.
    out = swaks(d.smtp_port, "--tls", "--auth", "LOGIN", "--auth-user", "bob",
                "--auth-password", "hunter2")
    assert "<~  235 2.7.0 Authentication successful" in out, out
    meta = get_message(d, queued_id(out))
    assert meta["meta"]["user"] == "bob"
    assert [m["zone"] for m in meta["messages"]] == ["default"], meta

    out = swaks(d.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user", "alice",
                "--auth-password", "wrong")
    assert "<~* 535 5.7.8 Error: authentication failed" in out, out
    assert not QUEUED.search(out)

    # What the service was asked: ZoneMTA's query, the credentials as
    # Basic; what zone-mta logged: user and result, never the password.
    requests = auth_log(web)
    assert [r["user"] for r in requests] == ["alice", "bob", "alice"], requests
    assert re.fullmatch(r"transport=SMTP&method=PLAIN&client=127\.0\.0\.1&interface=feeder",
                        requests[0]["query"]), requests
    assert "method=LOGIN" in requests[1]["query"]
    log = d.log()
    assert re.search(r'smtp_auth .*client=127\.0\.0\.1 mechanism=PLAIN user="alice" '
                     r'result=ok$', log, re.M), log
    assert re.search(r'mechanism=PLAIN user="alice" result=failed$', log, re.M), log
    assert "s3cret" not in log and "hunter2" not in log and "wrong" not in log


def test_second_login_is_answered_from_the_cache(zmta, certs, http_server):
    web = http_server()
    d = zmta(config(listener(certs, starttls=True, authentication=True,
                             authUrl=web.url("/auth"))))
    for _ in range(2):
        out = swaks(d.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user", "alice",
                    "--auth-password", "s3cret")
        queued_id(out)
    assert len(auth_log(web)) == 1
    d.wait_log(r'user="alice" result=ok cached=yes$')
    # Another password is another key: asked again.
    out = swaks(d.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user", "alice",
                "--auth-password", "other")
    assert "535 5.7.8" in out, out
    assert len(auth_log(web)) == 2


def test_auth_service_down_is_a_temporary_failure(zmta, certs):
    d = zmta(config(listener(certs, starttls=True, authentication=True,
                             authUrl=f"http://127.0.0.1:{free_port()}/auth")))
    out = swaks(d.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user", "alice",
                "--auth-password", "s3cret")
    assert "<~* 454 4.7.0 Temporary authentication failure, try again later" in out, out
    d.wait_log(r'smtp_auth_backend interface=feeder url=\S+ error=')


def test_slow_auth_service_times_out_while_other_sessions_carry_on(zmta, certs, http_server):
    web = http_server()
    d = zmta(config(listener(certs, starttls=True, authentication=True,
                             authUrl=web.url("/auth/slow/4000"))))
    result = {}

    def slow_login():
        start = time.monotonic()
        with Session(d.smtp_port) as s:
            starttls(s)
            s.send("EHLO client.test\r\n")
            s.reply()
            result["reply"] = s.cmd(auth_plain("alice", "s3cret"))
        result["seconds"] = time.monotonic() - start

    t = threading.Thread(target=slow_login)
    t.start()
    wait_until(lambda: auth_log(web) or None, 10, what="the AUTH request")
    # Meanwhile another client goes through a whole TLS session.
    start = time.monotonic()
    with Session(d.smtp_port) as s:
        starttls(s)
        s.send("EHLO client.test\r\n")
        assert s.reply()[-1] == "250 ENHANCEDSTATUSCODES"
        assert s.cmd("NOOP") == "250 2.0.0 Ok"
        assert s.cmd("QUIT") == "221 2.0.0 Bye"
    other = time.monotonic() - start
    t.join(30)
    assert result["reply"] == "454 4.7.0 Temporary authentication failure, try again later"
    # httpClient.timeout is 1 s; the service would answer after 4 s.
    assert 0.9 <= result["seconds"] < 3.5, result
    assert "seconds" in result and other < result["seconds"], (other, result)


def test_users_file_with_crypt_hashes_reloads_on_sighup(zmta, certs, app):
    def hashed(password, method):
        return subprocess.run(["mkpasswd", "-m", method, password], capture_output=True,
                              text=True, check=True).stdout.strip()

    users = app.path / "users"
    users.write_text(f"# user:hash\nalice:{hashed('s3cret', 'yescrypt')}\n"
                     f"bob:{hashed('hunter2', 'sha512crypt')}\n")
    d = zmta(config(listener(certs, starttls=True, authentication=True,
                             authUsersFile=str(users))))
    for user, password in (("alice", "s3cret"), ("bob", "hunter2")):
        out = swaks(d.smtp_port, "--tls", "--auth", "LOGIN", "--auth-user", user,
                    "--auth-password", password)
        assert get_message(d, queued_id(out))["meta"]["user"] == user
    out = swaks(d.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user", "bob",
                "--auth-password", "s3cret")
    assert "535 5.7.8" in out, out
    out = swaks(d.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user", "carol",
                "--auth-password", "pw")
    assert "535 5.7.8" in out, out

    users.write_text(f"carol:{hashed('pw', 'bcrypt')}\n")
    d.signal(signal.SIGHUP)
    d.wait_log(r"event=reload status=ok")
    out = swaks(d.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user", "carol",
                "--auth-password", "pw")
    assert "235 2.7.0" in out, out


def test_failed_logins_are_limited_per_client_address(zmta, certs, http_server):
    web = http_server()
    d = zmta(config(listener(certs, starttls=True, authentication=True,
                             authUrl=web.url("/auth"), authMaxFailures=3,
                             authFailureWindow="1 min")))
    with Session(d.smtp_port) as s:
        starttls(s)
        s.send("EHLO client.test\r\n")
        s.reply()
        for i in range(2):
            assert s.cmd(auth_plain("alice", f"wrong{i}")).startswith("535 5.7.8")
        assert s.cmd(auth_plain("alice", "wrong2")) == \
            f"421 4.7.0 {HOST} Error: too many failed authentications, try again later"
        assert s.at_eof()
    # The address stays blocked, even with the right password, and the
    # service is not asked again.
    asked = len(auth_log(web))
    with Session(d.smtp_port) as s:
        starttls(s)
        s.send("EHLO client.test\r\n")
        s.reply()
        assert s.cmd(auth_plain("alice", "s3cret")).startswith("421 4.7.0")
        assert s.at_eof()
    assert len(auth_log(web)) == asked
    d.wait_log(r"smtp_auth_blocked interface=feeder client=127\.0\.0\.1 failures=3")


# -------------------------------------------------------- TLS on the listener


def test_implicit_tls_listener_beside_a_starttls_one(zmta, certs, http_server, app):
    web = http_server()
    port465 = free_port()
    cert, key = certs
    d = zmta({"hostname": HOST, "smtpInterfaces": {
        "feeder": listener(certs, starttls=True),
        "submission": {"port": port465, "secure": True, "cert": str(cert), "key": str(key),
                       "authentication": True, "authUrl": web.url("/auth")}}})
    out = swaks(port465, "--tlsc", "--auth", "PLAIN", "--auth-user", "alice",
                "--auth-password", "s3cret")
    assert "<~  235 2.7.0" in out, out
    qid = queued_id(out)
    assert get_message(d, qid)["meta"]["user"] == "alice"
    head = d.fetch(qid).split(b"\r\n\r\n")[0].decode()
    assert f"with ESMTPSA id {qid}" in head, head
    # On the implicit TLS port STARTTLS is neither offered nor accepted.
    with socket.create_connection(("127.0.0.1", port465), timeout=10) as raw:
        with client_context().wrap_socket(raw) as tls:
            s = Session.__new__(Session)
            s.sock, s.buf = tls, b""
            assert s.reply()[0].startswith("220 ")
            s.send("EHLO client.test\r\n")
            assert not any("STARTTLS" in l for l in s.reply())
            assert s.cmd("STARTTLS").startswith("502 5.5.1")
    # Without AUTH on the STARTTLS listener: ESMTPS.
    out = swaks(d.smtp_port, "--tls")
    head = d.fetch(queued_id(out)).split(b"\r\n\r\n")[0].decode()
    assert re.search(r"with ESMTPS id [0-9a-f]{18}", head), head


def test_require_tls_refuses_mail_before_starttls(zmta, certs):
    d = zmta(config(listener(certs, starttls=True, requireTLS=True)))
    with Session(d.smtp_port) as s:
        s.send("EHLO client.test\r\n")
        s.reply()
        assert s.cmd("MAIL FROM:<a@example.test>") == \
            "530 5.7.0 Must issue a STARTTLS command first"
    out = swaks(d.smtp_port, "--tls")
    queued_id(out)


def s_client(port, *args):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                           "-starttls", "smtp", "-servername", "mta.test", *args],
                          input="QUIT\r\n", capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("minimum, accepted, refused", [
    ("TLSv1.2", ["-tls1_3", "-tls1_2"], ["-tls1_1"]),
    ("TLSv1.3", ["-tls1_3"], ["-tls1_2"]),
])
def test_openssl_negotiates_down_to_the_minimum_version(zmta, certs, minimum, accepted, refused):
    d = zmta(config(listener(certs, starttls=True, tls={"minVersion": minimum})))
    for flag in accepted:
        res = s_client(d.smtp_port, flag)
        version = {"-tls1_3": "TLSv1.3", "-tls1_2": "TLSv1.2"}[flag]
        assert re.search(rf"Protocol\s*: {re.escape(version)}|New, {version}", res.stdout), \
            res.stdout + res.stderr
    for flag in refused:
        # SECLEVEL=0 so the client itself is willing to speak TLS 1.1.
        res = s_client(d.smtp_port, flag, "-cipher", "DEFAULT:@SECLEVEL=0")
        assert res.returncode != 0, res.stdout
        assert re.search(r"protocol version|no protocols available|wrong version",
                         res.stdout + res.stderr), res.stdout + res.stderr
    d.wait_log(r"smtp_tls_failed session=\d+ client=127\.0\.0\.1 error=")


def test_commands_pipelined_after_starttls_are_dropped(zmta, certs):
    """CVE-2011-0411: RSET sent in the clear with STARTTLS must not be
    answered inside TLS."""
    d = zmta(config(listener(certs, starttls=True)))
    with Session(d.smtp_port) as s:
        s.send("EHLO client.test\r\n")
        s.reply()
        s.send("STARTTLS\r\nRSET\r\n")
        assert s.reply() == ["220 2.0.0 Ready to start TLS"]
        assert s.buf == b""
        s.sock = client_context().wrap_socket(s.sock, server_hostname="mta.test")
        # Nothing is waiting for us: no reply to the RSET.
        s.sock.settimeout(1)
        with pytest.raises((socket.timeout, TimeoutError)):
            s.sock.recv(100)
        s.sock.settimeout(30)
        # The session starts over: EHLO again, no transaction carried over.
        assert s.cmd("MAIL FROM:<a@example.test>").startswith("503 5.5.1")
        s.send("EHLO client.test\r\n")
        ehlo = s.reply()
        assert not any("STARTTLS" in l for l in ehlo), ehlo
        qid = s.submit(MESSAGE)
    d.wait_log(r"smtp_tls_pipelined session=\d+ client=127\.0\.0\.1 dropped_bytes=6$")
    head = d.fetch(qid).split(b"\r\n\r\n")[0].decode()
    assert "with ESMTPS id" in head


def test_tls_state_before_starttls_is_forgotten(zmta, certs):
    d = zmta(config(listener(certs, starttls=True)))
    with Session(d.smtp_port) as s:
        s.send("EHLO client.test\r\n")
        s.reply()
        assert s.cmd("MAIL FROM:<a@example.test>") == "250 2.1.0 Ok"
        assert s.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
        s.sock = client_context().wrap_socket(s.sock, server_hostname="mta.test")
        s.send("EHLO client.test\r\n")
        s.reply()
        assert s.cmd("RCPT TO:<b@example.test>").startswith("503 5.5.1")
        assert s.cmd("STARTTLS") == "554 5.5.1 Error: TLS already active"


def test_sni_picks_the_certificate(zmta, certs, tmp_path):
    other_cert, other_key = make_cert(tmp_path / "other", "other.test")
    d = zmta(config(listener(certs, starttls=True, tls={
        "sni": {"other": {"cert": str(other_cert), "key": str(other_key)}}})))

    def served(name):
        with Session(d.smtp_port) as s:
            starttls_name(s, name)
            return cert_name(s.sock.getpeercert(binary_form=True))

    assert served("other.test") == "other.test"
    assert served("mta.test") == "mta.test"
    assert served("unknown.test") == "mta.test"


def starttls_name(s, name):
    s.send("EHLO client.test\r\n")
    s.reply()
    assert s.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
    s.sock = client_context().wrap_socket(s.sock, server_hostname=name)


def test_new_certificate_on_sighup_open_session_unaffected(zmta, certs, tmp_path):
    cert, key = certs
    d = zmta(config(listener(certs, starttls=True)))
    waiting = Session(d.smtp_port)  # connected, no STARTTLS yet
    with Session(d.smtp_port) as old:
        starttls(old)
        assert cert_name(old.sock.getpeercert(binary_form=True)) == "mta.test"
        new_cert, new_key = make_cert(tmp_path / "renewed", "renewed.test")
        cert.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())
        d.signal(signal.SIGHUP)
        d.wait_log(r"event=reload status=ok")
        with Session(d.smtp_port) as new:
            starttls(new)
            assert cert_name(new.sock.getpeercert(binary_form=True)) == "renewed.test"
        # The open session goes on in its TLS session.
        old.send("EHLO client.test\r\n")
        old.reply()
        old.submit(MESSAGE)
    # A session that connected before the reload gets the new certificate
    # at its STARTTLS.
    with waiting:
        starttls(waiting)
        assert cert_name(waiting.sock.getpeercert(binary_form=True)) == "renewed.test"


def test_broken_certificate_on_sighup_keeps_the_old_one(zmta, certs):
    cert, key = certs
    d = zmta(config(listener(certs, starttls=True)))
    key.write_text("not a key\n")
    d.signal(signal.SIGHUP)
    # The configuration check reads the files first: the whole reload is
    # refused and the running setup kept.
    d.wait_log(r"event=reload status=rejected problem=\".*cannot use the key ")
    # TLS goes on with the key read before.
    with Session(d.smtp_port) as s:
        starttls(s)
        assert cert_name(s.sock.getpeercert(binary_form=True)) == "mta.test"


def test_key_and_certificate_problems_are_config_errors(app, certs, tmp_path):
    cert, key = certs
    other_cert, other_key = make_cert(tmp_path / "other", "other.test")
    cases = [
        ({"starttls": True}, r"smtpInterfaces\.feeder: TLS needs key and cert"),
        ({"starttls": True, "cert": str(cert), "key": str(tmp_path / "missing.pem")},
         r"missing\.pem"),
        ({"starttls": True, "cert": str(cert), "key": str(other_key)},
         r"the key \S+other/key\.pem does not match the certificate \S+tls/cert\.pem"),
        ({"requireTLS": True}, r"requireTLS needs starttls"),
        ({"starttls": True, "cert": str(cert), "key": str(key), "authentication": True},
         r"authUrl or authUsersFile"),
        ({"authentication": True, "authUrl": "http://127.0.0.1:1/auth"},
         r"AUTH in the clear|allowInsecureAuth"),
        ({"starttls": True, "cert": str(cert), "key": str(key), "tls": {"minVersion": "SSLv3"}},
         r"minVersion"),
        ({"allow": ["10.0.0.0/33"]}, r"10\.0\.0\.0/33"),
        ({"starttls": True, "cert": str(cert), "key": str(key), "authentication": True,
          "authUrl": "http://127.0.0.1:1/auth", "authUsersFile": str(tmp_path / "users")},
         r"choose one"),
        ({"authUsersFile": str(tmp_path / "bad-users")}, r"bad-users:2: "),
    ]
    (tmp_path / "users").write_text("")
    (tmp_path / "bad-users").write_text("# comment\nalice:plaintext\n")
    for feeder, expect in cases:
        app.write_config("production", {"smtpInterfaces": {"feeder": feeder}})
        res = app.check_config(env={"ZONEMTA_ENV": "production"})
        assert res.returncode == 2, (feeder, res.stdout)
        assert re.search(r"config/production\.yaml:\d+: ", res.stderr), res.stderr
        assert re.search(expect, res.stderr), (feeder, res.stderr)


# ---------------------------------------------------------------- access


def connect_from(source, port):
    s = Session.__new__(Session)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    s.sock, s.buf = sock, b""
    s.greeting = s.reply()
    return s


def test_allow_and_deny_lists_at_connect(zmta):
    d = zmta(config({"allow": ["127.0.0.0/30", "::1"], "deny": ["127.0.0.2"]}))
    with connect_from("127.0.0.1", d.smtp_port) as s:
        assert s.greeting[0].startswith("220 ")
    for source in ("127.0.0.2", "127.0.0.5"):
        with connect_from(source, d.smtp_port) as s:
            assert s.greeting == [f"554 5.7.1 {HOST} Error: access denied"]
            assert s.at_eof()
    d.wait_log(r'smtp_reject interface=feeder client=127\.0\.0\.5 reason="access denied"')


def test_connections_per_client_address_are_capped(zmta):
    d = zmta(config({"maxClientsPerAddress": 2}))
    held = [connect_from("127.0.0.1", d.smtp_port) for _ in range(2)]
    with connect_from("127.0.0.1", d.smtp_port) as s:
        assert s.greeting == [f"421 4.7.0 {HOST} Error: too many connections from your address"]
    # Another address still gets in, and a slot freed is a slot again.
    with connect_from("127.0.0.3", d.smtp_port) as s:
        assert s.greeting[0].startswith("220 ")
    held.pop().close()

    def let_in():
        with connect_from("127.0.0.1", d.smtp_port) as s:
            return s.greeting[0].startswith("220 ")
    wait_until(let_in, 15, interval=0.1, what="a free slot for 127.0.0.1")
    for s in held:
        s.close()


def test_a_trickling_client_meets_the_data_and_session_deadlines(zmta):
    d = zmta(config({"maxDataTime": "1 s", "maxSessionTime": "3 s", "socketTimeout": "10 s"}))
    with Session(d.smtp_port) as s:
        s.send("EHLO client.test\r\n")
        s.reply()
        s.envelope("a@example.test", ["b@example.test"])
        start = time.monotonic()
        with pytest.raises((EOFError, BrokenPipeError, ConnectionResetError)):
            for _ in range(100):
                s.send(b"x")  # one byte every 0.1 s: never idle
                time.sleep(0.1)
                s.sock.setblocking(False)
                try:
                    data = s.sock.recv(200)
                except BlockingIOError:
                    data = None
                finally:
                    s.sock.setblocking(True)
                if data is not None:
                    assert data == f"421 4.4.2 {HOST} Error: DATA time limit exceeded\r\n" \
                        .encode(), data
                    raise EOFError
        assert 0.9 <= time.monotonic() - start < 5
    d.wait_log(r"smtp_timeout session=\d+ client=127\.0\.0\.1 state=data limit=maxDataTime")
    with Session(d.smtp_port) as s:
        start = time.monotonic()
        line = None
        while time.monotonic() - start < 8:
            line = s.cmd("NOOP")
            if line != "250 2.0.0 Ok":
                break
            time.sleep(0.2)
        assert line == f"421 4.4.2 {HOST} Error: session time limit exceeded", line
        assert 2.9 <= time.monotonic() - start < 6


def test_open_relay_guard(app):
    def check(feeder):
        app.write_config("production", {"smtpInterfaces": {"feeder": feeder}})
        return app.check_config(env={"ZONEMTA_ENV": "production"})

    res = check({"host": "0.0.0.0"})
    assert res.returncode == 2
    assert re.search(r"config/production\.yaml:\d+: smtpInterfaces\.feeder listens on 0\.0\.0\.0.*"
                     r"relay mail.*openRelay: true", res.stderr), res.stderr
    res = check({"host": "::"})
    assert res.returncode == 2 and "relay mail" in res.stderr, res.stderr
    for safe in ({"host": "0.0.0.0", "allow": ["10.0.0.0/8"]},
                 {"host": "0.0.0.0", "openRelay": True},
                 {"host": "127.0.0.1"}):
        res = check(safe)
        assert res.returncode == 0, (safe, res.stderr)


# ----------------------------------------------------------------- PROXY


def proxy_v2(src, dst, sport, dport):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + sport.to_bytes(2, "big") + \
        dport.to_bytes(2, "big")
    return (b"\r\n\r\n\0\r\nQUIT\n" + bytes([0x21, 0x11]) + len(body).to_bytes(2, "big")
            + body)


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n",
    proxy_v2("203.0.113.9", "127.0.0.1", 40000, 25),
], ids=["v1", "v2"])
def test_proxy_header_from_a_trusted_proxy_sets_the_origin(zmta, header):
    d = zmta(config({"useProxy": ["127.0.0.1/32"], "allow": ["203.0.113.0/24"]}))
    with socket.create_connection(("127.0.0.1", d.smtp_port), timeout=30) as sock:
        # The header and the first command in one packet.
        sock.sendall(header + b"EHLO client.test\r\n")
        s = Session.__new__(Session)
        s.sock, s.buf = sock, b""
        assert s.reply()[0].startswith("220 ")
        assert s.reply()[0] == f"250-{HOST} Hello client.test [203.0.113.9]"
        qid = s.submit(MESSAGE)
    assert get_message(d, qid)["meta"]["origin"] == "203.0.113.9"
    head = d.fetch(qid).split(b"\r\n\r\n")[0].decode()
    assert "from client.test ([203.0.113.9])" in head, head
    d.wait_log(r"smtp_connect session=\d+ interface=feeder client=203\.0\.113\.9")


@pytest.mark.parametrize("trusted, header", [
    (["127.0.0.9/32"], b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n"),  # untrusted peer
    (True, b"PROXY TCP4 203.0.113.999 127.0.0.1 40000 25\r\n"),           # malformed
    (True, b"EHLO client.test\r\n"),                                      # no header
], ids=["untrusted", "malformed", "missing"])
def test_proxy_header_untrusted_or_malformed_closes(zmta, trusted, header):
    d = zmta(config({"useProxy": trusted}))
    with socket.create_connection(("127.0.0.1", d.smtp_port), timeout=30) as sock:
        sock.sendall(header)
        sock.settimeout(15)
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
    d.wait_log(r"smtp_proxy interface=feeder peer=127\.0\.0\.1 error=")
    assert d.get("/health")[0] == 200


def test_plain_message_received_header_has_no_tls_part(zmta):
    d = zmta(config({}))
    with Session(d.smtp_port) as s:
        s.send("EHLO client.test\r\n")
        s.reply()
        qid = s.submit(MESSAGE)
    head = d.fetch(qid).split(b"\r\n\r\n")[0].decode()
    assert f"with ESMTP id {qid}" in head and "using" not in head, head
    assert "user" not in get_message(d, qid)["meta"]


def test_auth_in_the_clear_when_allowed(zmta, http_server):
    web = http_server()
    d = zmta(config({"authentication": True, "allowInsecureAuth": True,
                     "authUrl": web.url("/auth")}))
    with Session(d.smtp_port) as s:
        s.send("EHLO client.test\r\n")
        assert "250-AUTH PLAIN LOGIN" in s.reply()
        assert s.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        assert s.cmd(base64.b64encode(b"alice").decode()) == "334 UGFzc3dvcmQ6"
        assert s.cmd(base64.b64encode(b"s3cret").decode()) == \
            "235 2.7.0 Authentication successful"
        assert s.cmd(auth_plain("alice", "s3cret")).startswith("503 5.5.1")
        qid = s.submit(MESSAGE)
    head = d.fetch(qid).split(b"\r\n\r\n")[0].decode()
    assert f"with ESMTPA id {qid}" in head, head
    with Session(d.smtp_port) as s:
        s.send("EHLO client.test\r\n")
        s.reply()
        assert s.cmd("AUTH PLAIN") == "334 "
        assert s.cmd("*") .startswith("501 5.7.0")
        assert s.cmd("AUTH CRAM-MD5").startswith("504 5.5.4")
        assert s.cmd("AUTH PLAIN !!notbase64").startswith("501 5.5.2")
        assert s.cmd("NOOP") == "250 2.0.0 Ok"


# --------------------------------------------------------------- HTTP API


def https_get(port, path, cafile, headers=None):
    import urllib.request
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False  # the test certificate names mta.test
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.status, json.loads(r.read()), r
    except __import__("urllib.error").error.HTTPError as e:
        return e.code, None, None


def test_api_over_https_with_reload(zmta, app, certs, tmp_path):
    cert, key = certs
    d = zmta({"api": {"key": str(key), "cert": str(cert),
                      "auth": {"apiKey": "k3y"}}}, wait=False)
    ready = lambda: (https_get(d.api_port, "/health", cert)[0] == 200  # noqa: E731
                     if d.proc.poll() is None else pytest.fail(d.log()))
    wait_until(lambda: _quiet(ready), 20, what="/health over HTTPS")
    assert https_get(d.api_port, "/zones", cert)[0] == 401
    status, body, _ = https_get(d.api_port, "/zones?includeDisabled=true", cert,
                               {"X-API-Key": "k3y"})
    assert status == 200 and any(z["name"] == "default" for z in body), body
    # Plain HTTP on the HTTPS port gets no answer.
    with socket.create_connection(("127.0.0.1", d.api_port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        try:
            data = sock.recv(100)
        except ConnectionResetError:
            data = b""
        assert not data.startswith(b"HTTP/"), data
    d.wait_log(r"event=listen service=api proto=https ")
    # A renewed certificate is served after SIGHUP.
    new_cert, new_key = make_cert(tmp_path / "renewed", "renewed.test")
    cert.write_bytes(new_cert.read_bytes())
    key.write_bytes(new_key.read_bytes())
    d.signal(signal.SIGHUP)
    d.wait_log(r"event=reload status=ok")
    der = ssl.get_server_certificate(("127.0.0.1", d.api_port))
    assert cert_name(ssl.PEM_cert_to_DER_cert(der)) == "renewed.test"


def _quiet(fn):
    try:
        return fn()
    except OSError:
        return False


def test_api_settings_that_are_silently_unsafe_are_errors(app, certs, tmp_path):
    cert, key = certs
    other_cert, other_key = make_cert(tmp_path / "other", "other.test")
    cases = [
        ({"auth": {"user": "zone"}}, r"api\.auth\.user without a password"),
        ({"auth": {"user": "zone", "password": ""}}, r"api\.auth\.user without a password"),
        ({"auth": {"password": "secret"}}, r"api\.auth\.password without api\.auth\.user"),
        ({"auth": {"apiKey": ""}}, r"api\.auth\.apiKey is empty"),
        ({"host": "0.0.0.0"}, r"api listens on 0\.0\.0\.0, beyond loopback, without api\.auth"),
        ({"host": "::"}, r"beyond loopback"),
        ({"key": str(key)}, r"HTTPS needs both key and cert"),
        ({"key": str(other_key), "cert": str(cert)}, r"does not match the certificate"),
    ]
    for api, expect in cases:
        app.write_config("production", {"api": api})
        res = app.check_config(env={"ZONEMTA_ENV": "production"})
        assert res.returncode == 2, (api, res.stdout)
        assert re.search(r"config/production\.yaml:\d+: ", res.stderr), res.stderr
        assert re.search(expect, res.stderr), (api, res.stderr)
    for api in ({"host": "0.0.0.0", "auth": {"apiKey": "k"}},
                {"host": "0.0.0.0", "openAccess": True},
                {"host": "0.0.0.0", "auth": {"user": "u", "password": "p"}}):
        app.write_config("production", {"api": api})
        res = app.check_config(env={"ZONEMTA_ENV": "production"})
        assert res.returncode == 0, (api, res.stderr)


def test_connections_waiting_for_their_proxy_header_count_toward_max_clients(zmta):
    d = zmta(config({"useProxy": True, "maxClients": 2}))
    waiting = [socket.create_connection(("127.0.0.1", d.smtp_port), timeout=10)
               for _ in range(2)]
    d.wait_log(r"event=listen service=smtp")
    with socket.create_connection(("127.0.0.1", d.smtp_port), timeout=10) as third:
        third.settimeout(10)
        try:
            assert third.recv(100) == b""
        except ConnectionResetError:
            pass
    d.wait_log(r'smtp_reject interface=feeder peer=127\.0\.0\.1 reason="too many connections"')
    # The waiting ones still get in once their header comes.
    first = waiting[0]
    first.sendall(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n")
    first.settimeout(10)
    assert first.recv(100).startswith(b"220 ")
    for s in waiting:
        s.close()
