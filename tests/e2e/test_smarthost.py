# SPDX-License-Identifier: EUPL-1.2
"""Authenticated smart hosts: a zone's next hop with AUTH (PLAIN or LOGIN,
only over TLS), implicit TLS (secure) and ignoreTLS, against aiosmtpd
sinks that require the credentials.
"""
import re
import signal

import pytest

from test_delivery import MSG, wait_delivered
from test_queue import submit


def smarthost(sink, **zone):
    """A relay whose default zone sends everything to SINK."""
    return {"queue": {"deferTimes": ["1 s", "1 s", "1 s"]},
            "zones": {"default": {"host": sink.host, "port": sink.port, "disabled": False,
                                  **zone}}}


@pytest.mark.parametrize("tls", [True, "implicit"], ids=["starttls", "implicit-tls"])
def test_delivers_through_an_authenticating_smart_host(smtp_sink, zmta, tls):
    sink = smtp_sink("127.0.0.2", tls=tls, auth="relay:pa55word")
    zone = {"auth": {"user": "relay", "pass": "pa55word"}}
    if tls == "implicit":
        zone["secure"] = True
    d = zmta(extra_config=smarthost(sink, **zone))
    qid = submit(d, MSG)
    got = sink.wait_for(1)[0]
    assert got["auth_user"] == "relay" and got["tls"] is True, got
    wait_delivered(d)
    d.wait_log(r"event=mta_auth zone=default mx=127\.0\.0\.2 remote=127\.0\.0\.2 "
               r'user="relay" result=ok response="235 ')
    assert "pa55word" not in d.log()
    # The connection is authenticated once and reused for the next message.
    submit(d, MSG)
    sink.wait_for(2)
    wait_delivered(d, 2)
    assert len(re.findall(r"event=mta_auth ", d.log())) == 1
    events = [e["event"] for e in sink.events() if e["event"] in ("connect", "auth")]
    assert events == ["connect", "auth"], events
    assert qid


def test_login_mechanism_and_password_from_a_file(smtp_sink, zmta, app):
    sink = smtp_sink("127.0.0.2", tls=True, auth="relay:from-a-file",
                     script={"ehlo": {"auth": ["LOGIN"]}})
    (app.path / "smarthost.pass").write_text("from-a-file\n")
    d = zmta(extra_config=smarthost(sink, auth={"user": "relay",
                                                "passFile": "smarthost.pass"}))
    submit(d, MSG)
    got = sink.wait_for(1)[0]
    assert got["auth_user"] == "relay"
    mechanisms = [e["mechanism"] for e in sink.events() if e["event"] == "auth"]
    assert mechanisms == ["LOGIN"]


def test_wrong_password_defers_and_keeps_the_mail(smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", tls=True, auth="relay:right")
    d = zmta(extra_config=smarthost(sink, auth={"user": "relay", "pass": "Wr0ngPa55"}))
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=deferred seq=001 .*response=\"454 4\.7\.0 AUTH as relay at "
               r"the smart host failed: 535 " % qid)
    d.wait_log(r'event=mta_auth .*user="relay" result=failed response="535 ')
    assert sink.messages() == []
    assert "Wr0ngPa55" not in d.log()


def test_credentials_are_never_sent_in_the_clear(smtp_sink, zmta):
    # The sink offers no STARTTLS (it has no certificate) and would take
    # AUTH in the clear: zone-mta must not offer the password.
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config=smarthost(sink, auth={"user": "relay", "pass": "pw"}))
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=deferred seq=001 .*response=\"452 4\.7\.5 the server does not "
               r"offer TLS: the credentials are not sent in the clear" % qid)
    assert [e for e in sink.events() if e["event"] == "auth"] == []
    assert sink.messages() == []


def test_ignore_tls_never_starts_tls(smtp_sink, zmta):
    sink = smtp_sink("127.0.0.2", tls=True)
    d = zmta(extra_config=smarthost(sink, ignoreTLS=True))
    submit(d, MSG)
    got = sink.wait_for(1)[0]
    assert got["tls"] is False
    assert [e for e in sink.events() if e["event"] == "starttls"] == []


def test_smart_host_option_errors(app):
    def check(zone):
        app.write_config("production", {"zones": {"default": zone}})
        return app.check_config(env={"ZONEMTA_ENV": "production"})

    cases = [
        ({"host": "127.0.0.1", "auth": {"user": "u"}}, r"user without pass or passFile"),
        ({"host": "127.0.0.1", "auth": {"pass": "p"}}, r"a password without user"),
        ({"host": "127.0.0.1", "auth": {"user": "u", "pass": "p", "passFile": "f"}},
         r"choose one"),
        ({"host": "127.0.0.1", "auth": {"user": "u", "passFile": "missing.pass"}},
         r"auth\.passFile: cannot read \S*missing\.pass"),
        ({"auth": {"user": "u", "pass": "p"}}, r"never sent to MX hosts"),
        ({"host": "127.0.0.1", "ignoreTLS": True, "requireTLS": True},
         r"ignoreTLS contradicts requireTLS"),
        ({"host": "127.0.0.1", "ignoreTLS": True, "auth": {"user": "u", "pass": "p"}},
         r"sent in the clear"),
    ]
    for zone, expect in cases:
        res = check(zone)
        assert res.returncode == 2, (zone, res.stdout)
        assert re.search(r"config/production\.yaml:\d+: ", res.stderr), res.stderr
        assert re.search(expect, res.stderr), (zone, res.stderr)
    res = check({"host": "127.0.0.1", "secure": True, "port": 465,
                 "auth": {"user": "u", "pass": "p"}})
    assert res.returncode == 0, res.stderr


def test_password_file_is_read_again_on_sighup(smtp_sink, zmta, app):
    sink = smtp_sink("127.0.0.2", tls=True, auth="relay:rotated-pw")
    pass_file = app.path / "smarthost.pass"
    pass_file.write_text("old-pw\n")
    d = zmta(extra_config=smarthost(sink, auth={"user": "relay", "passFile": "smarthost.pass"}))
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=deferred seq=001 .*AUTH as relay at the smart host failed" % qid)
    pass_file.write_text("rotated-pw\n")
    d.signal(signal.SIGHUP)
    d.wait_log(r"event=reload status=ok")
    got = sink.wait_for(1, timeout=30)[0]
    assert got["auth_user"] == "relay"
    wait_delivered(d)
