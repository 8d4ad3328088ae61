# SPDX-License-Identifier: EUPL-1.2
"""Tests of the end-to-end test peers themselves: the SMTP sink and the
dnsmasq wrapper, driven with smtplib and dnspython."""

import os
import smtplib
import ssl
import time

import dns.rcode
import dns.resolver
import pytest

from peers.dns import NULL_MX, NXDOMAIN, REFUSED, SERVFAIL
from peers.sink import check_script

MESSAGE = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n"
           b"\r\n.leading dot\r\n..two dots\r\nbody \xc3\xa9\r\n")


def connect(sink, helo="client.example.test", **kwargs) -> smtplib.SMTP:
    return smtplib.SMTP(sink.host, sink.port, local_hostname=helo,
                        timeout=30, **kwargs)


# --- SMTP sink ---------------------------------------------------------------

def test_sink_records_envelope_peer_helo_and_exact_bytes(smtp_sink):
    sink = smtp_sink()
    with connect(sink, source_address=("127.0.0.5", 0)) as client:
        client_port = client.sock.getsockname()[1]
        refused = client.sendmail("a@example.test",
                                  ["b@example.test", "c@example.test"],
                                  MESSAGE)
    assert refused == {}
    [message] = sink.wait_for(1)
    assert message["data"] == MESSAGE
    assert message["size"] == len(MESSAGE)
    assert message["mail_from"] == "a@example.test"
    assert message["rcpt_tos"] == ["b@example.test", "c@example.test"]
    assert (message["peer_ip"], message["peer_port"]) == ("127.0.0.5",
                                                          client_port)
    assert message["helo"] == "client.example.test"
    assert message["esmtp"] is True
    assert message["tls"] is False
    [session] = sink.wait_for_sessions(1)
    assert session["session"] == message["session"]
    assert session["peer_ip"] == "127.0.0.5"
    assert session["helo"] == "client.example.test"
    assert session["messages"] == 1


def test_sink_records_helo_and_null_sender(smtp_sink):
    sink = smtp_sink()
    with connect(sink, helo="old.example.test") as client:
        client.helo()
        client.sendmail("", ["postmaster@example.test"], MESSAGE)
    [message] = sink.wait_for(1)
    assert message["mail_from"] == ""
    assert message["helo"] == "old.example.test"
    assert message["esmtp"] is False


def test_sink_counts_messages_per_session(smtp_sink):
    sink = smtp_sink()
    with connect(sink) as client:
        for _ in range(3):
            client.sendmail("a@example.test", ["b@example.test"], MESSAGE)
    with connect(sink) as client:
        client.sendmail("a@example.test", ["b@example.test"], MESSAGE)
    sessions = sink.wait_for_sessions(2)
    assert [s["messages"] for s in sessions] == [3, 1]
    first, second = (s["session"] for s in sessions)
    assert [m["session"] for m in sink.messages()] == [first] * 3 + [second]
    assert sink.max_concurrent_sessions() == 1


def test_sink_counts_concurrent_sessions(smtp_sink):
    sink = smtp_sink()
    first, second = connect(sink), connect(sink)
    try:
        first.sendmail("a@example.test", ["b@example.test"], MESSAGE)
        second.sendmail("a@example.test", ["c@example.test"], MESSAGE)
    finally:
        first.quit()
        second.quit()
    sessions = sink.wait_for_sessions(2)
    assert sink.max_concurrent_sessions() == 2
    assert [s["messages"] for s in sessions] == [1, 1]
    assert sessions[0]["peer_port"] != sessions[1]["peer_port"]


def test_sinks_share_a_port_on_different_addresses(smtp_sink):
    mx1 = smtp_sink("127.0.0.2")
    mx2 = smtp_sink("127.0.0.3", port=mx1.port)
    assert mx2.port == mx1.port
    for sink, rcpt in ((mx1, "one@example.test"), (mx2, "two@example.test")):
        with connect(sink) as client:
            client.sendmail("a@example.test", [rcpt], MESSAGE)
    assert [m["rcpt_tos"] for m in mx1.wait_for(1)] == [["one@example.test"]]
    assert [m["rcpt_tos"] for m in mx2.wait_for(1)] == [["two@example.test"]]


def test_scripted_rcpt_replies_per_recipient(smtp_sink):
    sink = smtp_sink(script={"recipients": {
        "Bad@Example.test": {"rcpt": {"reply": "550 5.1.1 No such user"}},
        "multi@example.test": {"rcpt": {
            "reply": ["452-4.2.2 Mailbox full", "452 4.2.2 Try later"]}},
    }})
    with connect(sink) as client:
        refused = client.sendmail(
            "a@example.test",
            ["good@example.test", "bad@example.test", "multi@example.test"],
            MESSAGE)
    assert refused == {
        "bad@example.test": (550, b"5.1.1 No such user"),
        "multi@example.test": (452, b"4.2.2 Mailbox full\n4.2.2 Try later"),
    }
    [message] = sink.wait_for(1)
    assert message["rcpt_tos"] == ["good@example.test"]
    rcpts = [(e["address"], e["reply"][:3]) for e in sink.events()
             if e["event"] == "rcpt"]
    assert rcpts == [("good@example.test", "250"), ("bad@example.test", "550"),
                     ("multi@example.test", "452")]


def test_greylisting_with_times(smtp_sink):
    sink = smtp_sink(script={"default": {
        "rcpt": {"reply": "451 4.7.1 Greylisted", "times": 1}}})
    with connect(sink) as client:
        client.ehlo()
        client.mail("a@example.test")
        assert client.rcpt("b@example.test") == (451, b"4.7.1 Greylisted")
        # Counted per recipient.
        assert client.rcpt("c@example.test")[0] == 451
        assert client.rcpt("b@example.test")[0] == 250
    # The counts survive across sessions.
    with connect(sink) as client:
        assert client.sendmail("a@example.test",
                               ["b@example.test", "c@example.test"],
                               MESSAGE) == {}
    assert sink.wait_for(1)[0]["rcpt_tos"] == ["b@example.test",
                                               "c@example.test"]
    # A changed script starts the counts again.
    sink.set_script({"default": {
        "rcpt": {"reply": "450 4.7.1 Again", "times": 2}}})
    with connect(sink) as client:
        client.ehlo()
        client.mail("a@example.test")
        codes = [client.rcpt("b@example.test")[0] for _ in range(3)]
    assert codes == [450, 450, 250]


def test_scripted_data_replies(smtp_sink):
    sink = smtp_sink(script={
        "recipients": {"later@example.test": {
            "data": {"reply": "452 4.3.1 Out of space", "times": 1}}},
        "default": {"data": {"reply": "554 5.7.1 Rejected as spam"}},
    })
    with connect(sink) as client:
        with pytest.raises(smtplib.SMTPDataError) as error:
            client.sendmail("a@example.test", ["later@example.test"], MESSAGE)
        assert error.value.smtp_code == 452
        client.sendmail("a@example.test", ["later@example.test"], MESSAGE)
        with pytest.raises(smtplib.SMTPDataError) as error:
            client.sendmail("a@example.test", ["other@example.test"], MESSAGE)
        assert error.value.smtp_code == 554
    # Only the accepted message is recorded.
    sink.wait_for_sessions(1)
    assert [m["rcpt_tos"] for m in sink.messages()] == [["later@example.test"]]


def test_script_is_reread_on_every_command(smtp_sink):
    sink = smtp_sink()
    with connect(sink) as client:
        client.ehlo()
        client.mail("a@example.test")
        assert client.rcpt("b@example.test")[0] == 250
        sink.set_script({"default": {"rcpt": {"reply": "550 5.7.1 Changed"}}})
        assert client.rcpt("c@example.test") == (550, b"5.7.1 Changed")


@pytest.mark.parametrize("script", [
    {"defaults": {"rcpt": {"reply": "550 5.1.1 No"}}},
    {"default": {"rcpt": {"reply": 550}}},
    {"default": {"rcpt": {"reply": "Rejected"}}},
    {"recipients": {"b@example.test": {"rcpt": {"time": 1}}}},
])
def test_malformed_scripts_are_refused(script):
    with pytest.raises(ValueError):
        check_script(script)


def test_stall_delays_the_reply(smtp_sink):
    sink = smtp_sink(script={"default": {"rcpt": {"stall": 1.5}}})
    with connect(sink) as client:
        client.ehlo()
        client.mail("a@example.test")
        start = time.monotonic()
        code, _ = client.rcpt("b@example.test")
        elapsed = time.monotonic() - start
    assert code == 250
    assert 1.4 <= elapsed < 15


@pytest.mark.parametrize("script, phase", [
    ({"mail": {"drop": True}}, "mail"),
    ({"default": {"rcpt": {"drop": True}}}, "rcpt"),
    ({"default": {"data": {"drop": True}}}, "data"),
])
def test_drop_closes_the_connection(smtp_sink, script, phase):
    sink = smtp_sink(script=script)
    client = connect(sink)
    try:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.sendmail("a@example.test", ["b@example.test"], MESSAGE)
    finally:
        client.close()
    sink.wait_for_sessions(1)
    [event] = [e for e in sink.events() if e["event"] == phase]
    assert event["reply"] is None
    assert sink.messages() == []


def test_scripted_greeting(smtp_sink):
    sink = smtp_sink(script={"greeting": {"reply": "421 4.3.2 Busy",
                                          "times": 1}})
    with pytest.raises(smtplib.SMTPConnectError) as error:
        connect(sink)
    assert error.value.smtp_code == 421
    with connect(sink) as client:
        assert client.noop()[0] == 250
    sink.set_script({"greeting": {"drop": True}})
    with pytest.raises(smtplib.SMTPServerDisconnected):
        connect(sink)
    assert len(sink.wait_for_sessions(3)) == 3


def test_starttls_with_generated_certificate(smtp_sink):
    sink = smtp_sink(tls=True)
    # Verifies the chain and the certificate's IP address against sink.host.
    context = ssl.create_default_context(cafile=sink.tls_cert)
    with connect(sink) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        client.starttls(context=context)
        client.ehlo()
        client.sendmail("a@example.test", ["b@example.test"], MESSAGE)
    [message] = sink.wait_for(1)
    assert message["tls"] is True
    assert message["tls_version"].startswith("TLSv1.")
    assert message["data"] == MESSAGE
    [session] = sink.wait_for_sessions(1)
    assert session["tls"] is True


def test_starttls_can_be_withheld(smtp_sink):
    sink = smtp_sink(tls=True, script={"starttls": False})
    with connect(sink) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.docmd("STARTTLS")[0] == 454


def test_sink_stop_ends_the_process(smtp_sink):
    sink = smtp_sink()
    pid = sink.proc.pid
    sink.stop()
    assert not os.path.exists(f"/proc/{pid}")


# --- DNS (dnsmasq) -----------------------------------------------------------

RECORDS = {
    "example.test": {
        "MX": [(20, "mx2.example.test"), (10, "mx1.example.test")],
        "TXT": ["v=spf1 ip4:127.0.0.2 -all", 'with "quotes", commas\\'],
    },
    "mx1.example.test": {"A": ["127.0.0.2", "127.0.0.3"], "AAAA": ["::1"]},
    "mx2.example.test.": {"A": ["127.0.0.4"]},
    "alias.example.test": {"CNAME": "mx1.example.test"},
    "nullmx.test": {"MX": NULL_MX},
    "gone.test": NXDOMAIN,
    "refused.test": REFUSED,
    "broken.test": SERVFAIL,
}


def mx(resolver, name):
    return sorted((r.preference, r.exchange.to_text())
                  for r in resolver.resolve(name, "MX"))


def addresses(resolver, name, rdtype):
    return sorted(r.address for r in resolver.resolve(name, rdtype))


def test_dns_serves_records(dns_server):
    assert dns_server.address == f"127.0.0.1@{dns_server.port}"
    dns_server.set_records(RECORDS)
    resolver = dns_server.resolver()
    assert mx(resolver, "example.test") == [(10, "mx1.example.test."),
                                            (20, "mx2.example.test.")]
    assert addresses(resolver, "mx1.example.test", "A") == ["127.0.0.2",
                                                            "127.0.0.3"]
    assert addresses(resolver, "mx1.example.test", "AAAA") == ["::1"]
    assert addresses(resolver, "MX2.example.test", "A") == ["127.0.0.4"]
    assert sorted(r.strings for r in resolver.resolve("example.test", "TXT")) \
        == [(b"v=spf1 ip4:127.0.0.2 -all",), (b'with "quotes", commas\\',)]
    answer = resolver.resolve("alias.example.test", "A")
    assert answer.canonical_name.to_text() == "mx1.example.test."
    assert mx(resolver, "nullmx.test") == [(0, ".")]
    # A listed name without records of the asked type: NODATA.
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("example.test", "A")


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_dns_error_answers(dns_server, tcp):
    dns_server.set_records(RECORDS)
    expected = {
        "gone.test": dns.rcode.NXDOMAIN,
        "sub.gone.test": dns.rcode.NXDOMAIN,
        "unlisted.test": dns.rcode.NXDOMAIN,
        "refused.test": dns.rcode.REFUSED,
        "broken.test": dns.rcode.SERVFAIL,
        "example.org": dns.rcode.REFUSED,
    }
    for name, rcode in expected.items():
        response = dns_server.query(name, "MX", tcp=tcp)
        assert (name, dns.rcode.to_text(response.rcode())) \
            == (name, dns.rcode.to_text(rcode))
        assert response.answer == []
    with pytest.raises(dns.resolver.NXDOMAIN):
        dns_server.resolver().resolve("gone.test", "A")


def test_set_records_replaces_answers(dns_server):
    port = dns_server.port
    dns_server.set_records({"example.test": {"MX": [(10, "mx1.example.test")]}})
    resolver = dns_server.resolver()
    assert mx(resolver, "example.test") == [(10, "mx1.example.test.")]
    dns_server.set_records({"example.test": {"MX": [(5, "other.example.test")]},
                            "new.test": {"A": ["127.0.0.9"]}})
    assert dns_server.port == port
    assert mx(resolver, "example.test") == [(5, "other.example.test.")]
    assert addresses(resolver, "new.test", "A") == ["127.0.0.9"]
    dns_server.set_records({})
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("example.test", "MX")


def test_dns_rejects_bad_records(dns_server):
    dns_server.set_records({"example.test": {"A": ["127.0.0.7"]}})
    with pytest.raises(ValueError):
        dns_server.set_records({"example.test": {"SRV": ["x"]}})
    with pytest.raises(ValueError):
        dns_server.set_records({"example.test": {"A": ["::1"]}})
    with pytest.raises(ValueError):
        dns_server.set_records({"bad name.test": {"A": ["127.0.0.1"]}})
    # The server still serves the records it had.
    resolver = dns_server.resolver()
    assert addresses(resolver, "example.test", "A") == ["127.0.0.7"]


def test_dns_stop_ends_the_process(dns_server):
    dns_server.set_records(RECORDS)  # also starts the SERVFAIL stub
    pid = dns_server.proc.pid
    dns_server.stop()
    assert not os.path.exists(f"/proc/{pid}")
    assert dns_server.proc is None
