# SPDX-License-Identifier: EUPL-1.2
"""Bounce rules as a ZoneMTA user knows them.

- Every sample reply quoted in ZoneMTA's own config/bounces.txt (from its
  npm package, checked against the registry's integrity) gets the action
  and category ZoneMTA gives it, from our shipped rules.
- A rules file in ZoneMTA's format (regex,action,category,message, with
  `slowdown`) loads, and `zone-mta check-bounce` (ZoneMTA's
  bin/check-bounce) prints what a reply means and which rule said so.
"""
import base64
import hashlib
import re
import tarfile
from pathlib import Path

import pytest

from conftest import run_cli

VENDOR = Path(__file__).resolve().parents[1] / "js" / "vendor" / "zone-mta-3.10.3.tgz"
INTEGRITY = ("sha512-1KmojST5jSaN2JeuQjq88l1XYlx0QjDsQtjajQUfwJaUcKSgDb2TM2Pzer7RJtLkP4A4L8l8"
             "NhCEAec26dgUfA==")


def zonemta_bounces():
    data = VENDOR.read_bytes()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    assert digest == INTEGRITY, "tests/js/vendor holds another zone-mta package"
    with tarfile.open(VENDOR) as tar:
        return tar.extractfile("package/config/bounces.txt").read().decode()


def zonemta_rules_and_samples(text):
    """ZoneMTA's rules as its lib/bounces.js reads them (split at commas,
    flags "im"), and the sample replies quoted in comments above them."""
    rules, samples, pending = [], [], []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*(\d{3}[ \-].*)$", line)
            if m:
                pending.append(m.group(1))
            continue
        parts = line.split(",")
        rules.append((re.compile(parts[0], re.I | re.M), parts[1], parts[2]))
        samples += pending
        pending = []
    return rules, samples


def zonemta_verdict(rules, reply):
    for regex, action, category in rules:
        if regex.search(reply):
            return ("defer" if action == "slowdown" else action), category
    return "reject", None


def check_bounce(reply, *args):
    res = run_cli("check-bounce", *args, input=reply)
    assert res.returncode == 0, res.stderr
    return {k.strip(): v.strip() for k, v in
            (line.split(":", 1) for line in res.stdout.splitlines())}


def test_shipped_rules_classify_zonemtas_samples_as_zonemta_does():
    rules, samples = zonemta_rules_and_samples(zonemta_bounces())
    assert len(samples) >= 100
    differ = []
    for reply in samples:
        want = zonemta_verdict(rules, reply)
        got = check_bounce(reply)
        if (got["action"], got["category"]) != want:
            differ.append(f"{reply[:100]}: ours {got['action']}/{got['category']} "
                          f"({got['rule']}), ZoneMTA's {want[0]}/{want[1]}")
    assert not differ, "\n".join(differ)


ZONEMTA_FORMAT = """\
# a customised ZoneMTA bounces.txt
^550[ \\-].*mailbox is frozen,reject,recipient,Frozen mailbox, gone for good
^421[ \\-].*slow down please,slowdown,rate,Slow down
^5\\d\\d[ \\-].*vacation,defer,other,Away
"""


def test_zonemta_format_rules_file_loads_and_classifies(app):
    rules = app.path / "config" / "bounces.txt"
    rules.write_text(ZONEMTA_FORMAT + "reject spam our own format works too\n")
    app.write_config("development", {"bounces": {"rules": str(rules)}})
    assert app.check_config().returncode == 0
    d = ["-d", str(app.path)]
    got = check_bounce("550-5.2.1 This mailbox is frozen\r\n550 5.2.1 contact support\r\n", *d)
    assert got == {"data": "550 5.2.1 This mailbox is frozen 5.2.1 contact support",
                   "action": "reject", "category": "recipient",
                   "message": "Frozen mailbox, gone for good", "code": "550",
                   "rule": f"{rules}:2"}
    got = check_bounce("421 4.7.0 slow down please\n", *d)
    assert (got["action"], got["category"], got["rule"]) == ("slowdown", "rate", f"{rules}:3")
    got = check_bounce("550 our own format works too", *d)
    assert (got["action"], got["category"], got["rule"]) == ("reject", "spam", f"{rules}:5")
    assert "message" not in got
    got = check_bounce("452 4.5.3 nothing matches this", *d)
    assert (got["action"], got["category"]) == ("defer", "other")
    assert got["rule"].startswith("none matched")


@pytest.mark.parametrize("line,error", [
    ("^550 x,bounce,recipient,msg", "unknown action 'bounce' in ZoneMTA's"),
    ("^550 (x,reject,recipient,msg", "bad regex"),
])
def test_zonemta_format_errors_name_file_and_line(app, line, error):
    rules = app.path / "config" / "bounces.txt"
    rules.write_text("# ok\n" + line + "\n")
    app.write_config("development", {"bounces": {"rules": str(rules)}})
    res = app.check_config()
    assert res.returncode == 2
    assert f"{rules}:2: {error}" in res.stderr, res.stderr
