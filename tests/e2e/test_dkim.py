# SPDX-License-Identifier: EUPL-1.2
"""DKIM: keys from `zone-mta dkim keygen`, signatures verified by dkimpy on
what the sink received."""
import os
import re
import subprocess

import dkim
import pytest

from conftest import run_cli
from test_delivery import MSG, relay_config, wait_delivered
from test_queue import submit


def keygen(tmp_path, domain, selector, kind="rsa", bits=2048):
    """Runs `zone-mta dkim keygen`; returns (key path, TXT record text)."""
    out = tmp_path / f"{selector}.{domain}.pem"
    args = ["dkim", "keygen", "--domain", domain, "--selector", selector, "--type", kind,
            "--out", str(out)]
    if kind == "rsa":
        args += ["--bits", str(bits)]
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"
    m = re.search(r'^DNS record:  (\S+)\._domainkey\.(\S+)\. IN TXT((?: "[^"]*")+)$', res.stdout,
                  re.M)
    assert m and m.group(1) == selector and m.group(2) == domain
    # strings of at most 255 octets (RFC 1035 3.3.14), joined by the verifier
    strings = re.findall(r'"([^"]*)"', m.group(3))
    assert all(len(s) <= 255 for s in strings) and len(strings[-1]) > 0
    if bits >= 2048 and kind == "rsa":
        assert len(strings) >= 2
    # the configuration entry to add, with this key's file
    assert f"    - domain: {domain}\n      selector: {selector}\n      privateKey: {out}\n" \
        in res.stdout
    return out, "".join(strings)


def verify_all(message, records):
    """Verifies every DKIM-Signature of `message` with dkimpy; returns the
    d= domains, in order."""
    def dnsfunc(name, timeout=5):
        return records[name.decode() if isinstance(name, bytes) else name].encode()

    d = dkim.DKIM(message)
    sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
    assert sigs, "no DKIM-Signature"
    domains = []
    for i in range(len(sigs)):
        assert d.verify(idx=i, dnsfunc=dnsfunc), f"signature {i} does not verify"
        domains.append(re.search(rb"\bd=([^;\s]+)", sigs[i][1]).group(1).decode())
    return domains


def deliver(d, sink, body, sender="a@example.org"):
    before = len(sink.messages())  # counted first: the delivery can beat the next line
    submit(d, body, sender=sender)
    got = sink.wait_for(before + 1)[-1]
    return got["data"]


@pytest.fixture
def signer(tmp_path, dns_server, smtp_sink, zmta):
    """A relay with keys for example.org (rsa) and zone.test (ed25519)."""
    def start(canon="relaxed/relaxed", kind="rsa", signing_domain=None, bits=2048):
        key, txt = keygen(tmp_path, "example.org", "s1", kind, bits)
        zkey, ztxt = keygen(tmp_path, "zone.test", "z1", "ed25519")
        sink = smtp_sink("127.0.0.2")
        dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
        cfg = relay_config(dns_server, sink.port, smtpInterfaces={"feeder": {"maxSize": "60 MB"}},
                           dkim={"keys": [
                               {"domain": "example.org", "selector": "s1",
                                "privateKey": str(key), "canonicalization": canon},
                               {"domain": "zone.test", "selector": "z1",
                                "privateKey": str(zkey)}]})
        if signing_domain:
            cfg["zones"]["default"]["signingDomain"] = signing_domain
        d = zmta(extra_config=cfg)
        records = {"s1._domainkey.example.org.": txt, "z1._domainkey.zone.test.": ztxt}
        return d, sink, records
    return start


@pytest.mark.parametrize("canon, kind", [
    ("relaxed/relaxed", "rsa"), ("simple/simple", "rsa"), ("relaxed/simple", "ed25519"),
    ("simple/relaxed", "ed25519")])
def test_signatures_verify(signer, canon, kind):
    d, sink, records = signer(canon=canon, kind=kind)
    body = (b"From: Alice <a@example.org>\r\nTo: rcpt@example.test\r\nSubject: dkim test\r\n"
            b"\r\nHello,  with  spaces \r\n\r\n\r\n")
    got = deliver(d, sink, body)
    assert verify_all(got, records) == ["example.org"]
    assert f"c={canon};".encode() in got.replace(b"\r\n\t", b"").replace(b" ", b"")


def test_two_signatures_author_and_zone(signer):
    d, sink, records = signer(signing_domain="zone.test")
    got = deliver(d, sink, MSG.replace(b"sender@origin.test", b"a@example.org"))
    assert verify_all(got, records) == ["example.org", "zone.test"]


def test_rsa_and_ed25519_keys_of_one_domain_both_sign(tmp_path, dns_server, smtp_sink, zmta,
                                                      app):
    # RFC 8463 section 6: sign with both, so verifiers without Ed25519 pass.
    rsa, rsa_txt = keygen(tmp_path, "example.org", "r1", "rsa", 2048)
    ed, ed_txt = keygen(tmp_path, "example.org", "e1", "ed25519")
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    keys = [{"domain": "example.org", "selector": "r1", "privateKey": str(rsa)},
            {"domain": "example.org", "selector": "e1", "privateKey": str(ed),
             "canonicalization": "relaxed/simple"}]
    d = zmta(extra_config=relay_config(dns_server, sink.port, dkim={"keys": keys}))
    got = deliver(d, sink, MSG.replace(b"sender@origin.test", b"a@example.org"))
    records = {"r1._domainkey.example.org.": rsa_txt, "e1._domainkey.example.org.": ed_txt}
    assert verify_all(got, records) == ["example.org", "example.org"]
    assert sorted(re.findall(rb"\bs=(r1|e1);", got)) == [b"e1", b"r1"]
    # one domain and selector twice is a mistake, named with its place
    d.stop()
    app.write_config("test", {"dkim": {"keys": keys + [dict(keys[0])]}})
    res = run_cli("check-config", "-d", str(app.path), "-c",
                  str(app.path / "config" / "test.yaml"))
    assert res.returncode == 2
    assert re.search(r"test\.yaml:\d+: dkim\.keys\[2\]: dkim\.keys\[0\] has the same domain "
                     r"and selector \(example\.org, r1\)", res.stdout + res.stderr), res.stderr


def test_zone_key_alone_for_other_authors(signer):
    d, sink, records = signer(signing_domain="zone.test")
    got = deliver(d, sink, b"From: x@elsewhere.test\r\nSubject: s\r\n\r\nbody\r\n")
    assert verify_all(got, records) == ["zone.test"]


def test_unsigned_without_a_key(signer):
    d, sink, records = signer()
    got = deliver(d, sink, b"From: x@elsewhere.test\r\nSubject: s\r\n\r\nbody\r\n")
    assert b"DKIM-Signature" not in got


@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple"])
def test_message_queued_before_its_key_is_signed(tmp_path, dns_server, smtp_sink, zmta, canon):
    # Queued with no key, so no body hash was made at intake: the delivery
    # after the restart with a key has the store hash the body.
    key, txt = keygen(tmp_path, "example.org", "s1")
    sink = smtp_sink("127.0.0.2")
    dns_server.set_records({"example.test": {"A": ["127.0.0.2"]}})
    cfg = relay_config(dns_server, sink.port)
    cfg["zones"]["default"]["disabled"] = True
    d = zmta(extra_config=cfg)
    body = (b"From: a@example.org\r\nTo: r@example.test\r\nSubject: later\r\n\r\n"
            + b"line  with   spaces \r\n" * 30000 + b"\r\n\r\n")  # two chunks
    submit(d, body, sender="a@example.org")
    assert d.stop() == 0
    cfg["zones"]["default"]["disabled"] = False
    cfg["dkim"] = {"keys": [{"domain": "example.org", "selector": "s1", "privateKey": str(key),
                             "canonicalization": canon}]}
    d = zmta(extra_config=cfg)
    got = sink.wait_for(1)[-1]["data"]
    assert verify_all(got, {"s1._domainkey.example.org.": txt}) == ["example.org"]
    assert "no body hash" not in d.log()


def test_long_folded_headers_and_20mb_body(signer):
    d, sink, records = signer()
    subject = b"Subject: " + b" ".join(b"word%d" % i for i in range(120))
    folded = b"X-Long: start\r\n\t" + b"\r\n\t".join(b"part %d   with  spaces" % i for i in range(50))
    body = (b"From: a@example.org\r\nTo: r@example.test\r\n" + subject + b"\r\n" + folded + b"\r\n\r\n"
            + (b"z" * 998 + b"\r\n") * (20 * 1024 * 1024 // 1000))
    got = deliver(d, sink, body)
    assert verify_all(got, records) == ["example.org"]


def test_broken_key_is_a_config_error(app, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    app.write_config("production", f"dkim:\n  keys:\n    - domain: example.org\n"
                                   f"      selector: s1\n      privateKey: {bad}\n")
    res = run_cli("check-config", "-d", str(app.path), env={"ZONEMTA_ENV": "production"})
    assert res.returncode == 2
    assert re.search(r"config/production\.yaml:5: option dkim\.keys\[0\]\.privateKey: ",
                     res.stderr), res.stderr
    app.write_config("production", "dkim:\n  keys:\n    - domain: example.org\n")
    res = run_cli("check-config", "-d", str(app.path), env={"ZONEMTA_ENV": "production"})
    assert res.returncode == 2
    assert "config/production.yaml:3: dkim.keys[0] needs selector" in res.stderr


def test_keygen_refuses_to_overwrite_and_checks_arguments(tmp_path):
    key, txt = keygen(tmp_path, "example.org", "s1", "rsa", 1024)
    assert txt.startswith("v=DKIM1; k=rsa; p=")
    res = run_cli("dkim", "keygen", "--domain", "example.org", "--selector", "s1",
                  "--out", str(key))
    assert res.returncode == 1 and "exists already" in res.stderr
    assert run_cli("dkim", "keygen", "--domain", "x").returncode == 2
    assert run_cli("dkim", "keygen", "--domain", "x", "--selector", "s",
                   "--bits", "512").returncode == 2
    _, txt = keygen(tmp_path, "example.org", "e1", "ed25519")
    assert txt.startswith("v=DKIM1; k=ed25519; p=")
