# SPDX-License-Identifier: EUPL-1.2
"""Onion routing and SOCKS5 egress (docs/onion.md), against real proxies
from Debian: microsocks, whose own /etc/hosts (a mount namespace) maps the
.onion name to a loopback sink, as Tor maps it to a hidden service; and
danted, whose ruleset refuses some destinations.  dnsmasq's query log
shows what the relay asked DNS.
"""
import re

from conftest import free_port, run_cli

from test_delivery import MSG, relay_config, wait_delivered
from test_queue import submit

ONION = "exampleonionsinkaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaad.onion"


def test_onion_recipient_goes_through_the_proxy_by_name(dns_server, smtp_sink, socks_proxy,
                                                        zmta):
    sink = smtp_sink("127.0.0.5")
    proxy = socks_proxy("microsocks", hosts={ONION: "127.0.0.5"}, user="zone",
                        password="pr0xy-pass")
    dns_server.set_records({"example.test": {"mx": [(10, "mx.example.test")]},
                            "mx.example.test": {"a": ["127.0.0.5"]}})
    cfg = relay_config(dns_server, sink.port,
                       onion={"proxy": f"socks5://zone:pr0xy-pass@127.0.0.1:{proxy.port}"},
                       pools={"default": [{"address": "127.0.0.3", "name": "out3.test"}]})
    d = zmta(extra_config=cfg)
    qid = submit(d, MSG, rcpts=(f"someone@{ONION}",))
    got = sink.wait_for(1)[0]
    assert got["rcpt_tos"] == [f"someone@{ONION}"]
    wait_delivered(d)
    d.wait_log(r"id=%s event=attempt zone=default domain=%s local=any mx=%s remote=%s "
               r"proxy=socks5://zone@127\.0\.0\.1:%d tls=no " % (qid, ONION, ONION, ONION,
                                                                  proxy.port))
    # The sink sees the proxy's connection, and the pool entry's EHLO name.
    session = sink.sessions()[0]
    assert session["peer_ip"] == "127.0.0.1" and session["helo"] == "out3.test", session
    assert "pr0xy-pass" not in d.log()
    # A message to an ordinary domain is looked up in DNS, which shows the
    # query log works; the .onion name was never asked about.
    submit(d, MSG, rcpts=("other@example.test",))
    sink.wait_for(2)
    log = dns_server.log()
    assert re.search(r"query\[MX\] example\.test ", log), log
    assert ".onion" not in log, log


def test_onion_without_a_proxy_bounces(dns_server, zmta):
    cfg = relay_config(dns_server, 25, onion={"proxy": None})
    d = zmta(extra_config=cfg)
    qid = submit(d, MSG, rcpts=(f"someone@{ONION}",))
    d.wait_log(r"id=%s event=bounced seq=001 .*response=\"550 5\.1\.2 %s is an onion address "
               r"and onion\.proxy is not set\"" % (qid, re.escape(ONION)))
    assert ".onion" not in dns_server.log()


def test_zone_wide_proxy_resolves_here_and_connects_there(dns_server, smtp_sink, socks_proxy,
                                                          zmta):
    sink = smtp_sink("127.0.0.2")
    proxy = socks_proxy("dante")
    dns_server.set_records({"example.test": {"mx": [(10, "mx.example.test")]},
                            "mx.example.test": {"a": ["127.0.0.2"]}})
    cfg = relay_config(dns_server, sink.port,
                       zones={"default": {"proxy": f"socks5://127.0.0.1:{proxy.port}"}},
                       pools={"default": [{"address": "127.0.0.3", "name": "out3.test"}]})
    d = zmta(extra_config=cfg)
    qid = submit(d, MSG)
    sink.wait_for(1)
    wait_delivered(d)
    d.wait_log(r"id=%s event=attempt zone=default domain=example\.test local=any "
               r"mx=mx\.example\.test remote=127\.0\.0\.2 proxy=socks5://127\.0\.0\.1:%d "
               % (qid, proxy.port))
    session = sink.sessions()[0]
    # danted's external address (not the pool's 127.0.0.3) reached the sink
    assert session["peer_ip"] == "127.0.0.1" and session["helo"] == "out3.test", session
    assert re.search(r"pass\(\d+\): tcp/connect .* 127\.0\.0\.2\.%d" % sink.port, proxy.log())
    assert re.search(r"query\[MX\] example\.test ", dns_server.log())


def test_proxy_refusing_the_connect_defers_with_its_reason(dns_server, smtp_sink,
                                                           socks_proxy, zmta):
    sink = smtp_sink("127.0.0.66")
    proxy = socks_proxy("dante", block=["127.0.0.66/32"])
    dns_server.set_records({"example.test": {"mx": [(10, "mx.example.test")]},
                            "mx.example.test": {"a": ["127.0.0.66"]}})
    cfg = relay_config(dns_server, sink.port,
                       zones={"default": {"proxy": f"socks5://127.0.0.1:{proxy.port}"}})
    d = zmta(extra_config=cfg)
    qid = submit(d, MSG)
    d.wait_log(r"id=%s event=deferred seq=001 .*response=\"451 4\.4\.0 SOCKS5 proxy: CONNECT "
               r"to 127\.0\.0\.66 failed: connection not allowed by ruleset\"" % qid)
    d.wait_log(r"event=mta_socks proxy=socks5://127\.0\.0\.1:%d target=127\.0\.0\.66 rep=2 "
               % proxy.port)
    assert sink.messages() == []
    assert re.search(r"block\(\d+\): tcp/connect", proxy.log())


def test_proxy_down_defers_naming_the_proxy(dns_server, socks_proxy, zmta):
    port = free_port()
    cfg = relay_config(dns_server, 25, onion={"proxy": f"socks5://127.0.0.1:{port}"})
    d = zmta(extra_config=cfg)
    qid = submit(d, MSG, rcpts=(f"someone@{ONION}",))
    d.wait_log(r"id=%s event=deferred seq=001 .*response=\"451 4\.4\.1 SOCKS5 proxy "
               r"socks5://127\.0\.0\.1:%d unreachable: Connection refused\"" % (qid, port))
    # still queued, for the next attempt
    status, body = d.get(f"/message/{qid}")
    assert status == 200


def test_bad_proxy_url_is_a_config_error_with_its_line(app):
    res = run_cli("check-config", "-d", str(app.path), "-c",
                  str(write(app, {"onion": {"proxy": "socks5://localhost:9050"}})))
    assert res.returncode != 0
    assert re.search(r"test\.yaml:\d+: option onion\.proxy: 'socks5://localhost:9050' needs an "
                     r"IP address, not a host name", res.stderr + res.stdout), res.stderr


def write(app, cfg):
    app.write_config("test", cfg)
    return app.path / "config" / "test.yaml"
