# SPDX-License-Identifier: EUPL-1.2
"""`zone-mta queue`: the queue administration of a running daemon from the
command line (docs/operations.md), through its API found from the app folder's
configuration.  Each command's table and its --json, the exit codes
(0 done, 1 the daemon could not, 2 usage), the confirmation of
destructive operations, and api.auth honoured.
"""
import json
import re

import pytest

from conftest import run_cli
from test_api import call
from test_queue import submit

MSG = b"From: <a@tenant.test>\r\nSubject: cli\r\nX-Campaign: spring\r\n\r\nbody\r\n"


def q(app, *args, env=None, input=None):
    """zone-mta queue -d APP [-c APP/config/test.yaml] ARGS"""
    extra = app.path / "config" / "test.yaml"
    cfg = ["-c", str(extra)] if extra.exists() else []
    return run_cli("queue", "-d", str(app.path), *cfg, *args, env=env, input=input)


def ok(res):
    assert res.returncode == 0, (res.stdout, res.stderr)
    return res.stdout


def table(text):
    """The rows of a table as lists of cells (split on 2+ spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


@pytest.fixture
def queued(app, zmta):
    d = zmta()  # zone default disabled: everything stays
    ids = [submit(d, MSG, sender=f"s{i}@tenant.test",
                  rcpts=("a@example.test", "b@other.test")) for i in range(3)]
    return d, ids


def test_list_as_a_table_and_as_json(app, queued):
    d, ids = queued
    rows = table(ok(q(app, "list")))
    assert rows[0] == ["ID/SEQ", "ZONE", "RECIPIENT", "FROM", "AGE", "STATE", "TRIES",
                       "LAST REPLY"]
    assert rows[1][:4] == [f"{ids[0]}/001", "default", "a@example.test", "s0@tenant.test"]
    assert rows[1][5] == "queued" and rows[-1] == ["6 deliveries"]
    listed = json.loads(ok(q(app, "--json", "list", "--domain", "other.test")))
    assert [(r["id"], r["recipient"]) for r in listed] == [(i, "b@other.test") for i in ids]
    assert listed == call(d, "GET", "/deliveries?domain=other.test")[1]["deliveries"]
    # pages of --limit, all of them with --all
    assert len(json.loads(ok(q(app, "--json", "list", "--limit", "4")))) == 4
    assert len(json.loads(ok(q(app, "--json", "list", "--limit", "4", "--all")))) == 6
    # sorted over all of them, a page at a time with --all
    got = json.loads(ok(q(app, "--json", "list", "--sort", "from", "--desc", "--limit", "4",
                          "--all")))
    assert [r["from"] for r in got] == ["s2@tenant.test"] * 2 + ["s1@tenant.test"] * 2 + \
        ["s0@tenant.test"] * 2
    rows = table(ok(q(app, "list", "--sort", "recipient", "--limit", "3")))
    assert [r[2] for r in rows[1:4]] == ["a@example.test"] * 3


def test_show_and_summary(app, queued):
    d, ids = queued
    out = ok(q(app, "show", ids[1]))
    assert f"Queue id:   {ids[1]}" in out and "From:       <s1@tenant.test>" in out
    assert "  X-Campaign: spring" in out
    rows = table(out.split("Deliveries:")[1])
    assert rows[0][:4] == ["SEQ", "ZONE", "RECIPIENT", "STATE"]
    assert [r[:4] for r in rows[1:]] == [["001", "default", "a@example.test", "queued"],
                                         ["002", "default", "b@other.test", "queued"]]
    shown = json.loads(ok(q(app, "--json", "show", ids[1])))
    assert shown["meta"]["id"] == ids[1] and len(shown["messages"]) == 2

    rows = table(ok(q(app, "summary")).replace(" ", "  "))
    header = rows[0]
    assert header[:3] == ["DOMAIN", "TOTAL", "5m"] and header[-1] == "1280m+"
    assert rows[1][:3] == ["TOTAL", "6", "6"]
    assert sorted(r[:3] for r in rows[2:4]) == [["example.test", "3", "3"],
                                               ["other.test", "3", "3"]]
    summary = json.loads(ok(q(app, "--json", "summary", "--domain", "example.test")))
    assert summary["total"] == 3 and summary["domains"][0]["domain"] == "example.test"
    assert summary["domains"][0]["ages"][0] == 3


def test_operations_with_ids_and_filters(app, queued):
    d, ids = queued
    out = ok(q(app, "hold", ids[0]))
    assert re.match(r"hold: 2 affected of 2 matched \(2 looked at\); operation [0-9a-f]{24}",
                    out), out
    assert [r["held"] for r in call(d, "GET", "/deliveries?status=held")[1]["deliveries"]] \
        == [True, True]
    assert "release: 2 affected" in ok(q(app, "release", "--status", "held"))
    op = json.loads(ok(q(app, "--json", "flush", "--zone", "default")))
    assert op["action"] == "flush" and op["state"] == "done" and op["matched"] == 6
    # delete of several messages asks first: without a terminal it will not
    res = q(app, "delete", "--sender", "s1@tenant.test")
    assert res.returncode == 2
    assert "delete would act on 2 deliveries" in res.stderr and "--yes" in res.stderr
    assert len(call(d, "GET", "/deliveries")[1]["deliveries"]) == 6
    assert "delete: 2 affected" in ok(q(app, "--yes", "delete", "--sender", "s1@tenant.test"))
    # one message needs no confirmation; ID/SEQ names one delivery
    assert "bounce: 1 affected" in ok(q(app, "bounce", f"{ids[2]}/002", "--reason", "test"))
    assert "rebind: 3 affected" in ok(q(app, "rebind", "--to", "bounces", "--zone", "default"))
    rows = call(d, "GET", "/deliveries")[1]["deliveries"]
    dsn = [r for r in rows if r["recipient"] == "s2@tenant.test"]  # the bounce's notice
    assert len(dsn) == 1 and dsn[0]["zone"] == "bounces"
    assert sorted((r["id"], r["zone"]) for r in rows if r not in dsn) == \
        sorted([(ids[0], "bounces"), (ids[0], "bounces"), (ids[2], "bounces")])
    # the audit log, newest first, as a table and as JSON
    rows = table(ok(q(app, "ops")))
    assert rows[0] == ["ID", "TIME", "ACTION", "BY", "AFFECTED", "STATE", "TARGET"]
    assert [r[2] for r in rows[1:7]] == ["rebind", "bounce", "delete", "flush", "release",
                                         "hold"]
    assert rows[1][3] == "anonymous@127.0.0.1" and rows[1][4] == "3"
    ops = json.loads(ok(q(app, "--json", "ops")))
    assert ops[0]["action"] == "rebind" and ops[0]["zone"] == "bounces"
    assert json.loads(ok(q(app, "--json", "ops", ops[1]["id"])))["target"] == \
        {"ids": [f"{ids[2]}/002"]}


def test_pause_resume_and_pauses(app, zmta):
    zmta()
    out = ok(q(app, "pause", "--domain", "example.test", "--until", "1 h",
               "--reason", "maintenance"))
    pause_id = re.fullmatch(r"paused: ([0-9a-f]{24})\n", out).group(1)
    rows = table(ok(q(app, "pauses")))
    assert rows[0] == ["ID", "SINCE", "UNTIL", "WHAT"]
    assert rows[1][0] == pause_id and rows[1][3] == "domain=example.test reason=maintenance"
    assert json.loads(ok(q(app, "--json", "pauses")))[0]["domain"] == "example.test"
    assert ok(q(app, "resume", pause_id)) == f"resumed: {pause_id}\n"
    assert json.loads(ok(q(app, "--json", "pauses"))) == []
    p = json.loads(ok(q(app, "--json", "pause", "--sender", "tenant.test")))
    assert p["sender"] == "tenant.test" and p["by"]["principal"] == "anonymous"
    assert json.loads(ok(q(app, "--json", "resume", p["id"]))) == \
        {"success": True, "resumed": p["id"]}


@pytest.mark.parametrize("args, code, message", [
    (("list", "--status", "sleeping"), 2, "filter.status: 'sleeping' is not understood"),
    (("show", "1a23af1989bd970000"), 1, "404"),
    (("resume", "000000000000000000000000"), 1, "no such pause"),
    (("hold",), 2, "hold needs queue ids or a filter"),
    (("rebind", "--zone", "default"), 2, "rebind needs --to ZONE"),
    (("explode",), 2, "unknown command explode"),
    (("list", "--bogus"), 2, "--bogus: unknown option"),
    (("list", "--sort", "size"), 2, "sort must be one of"),
    (("pause", "--status", "held"), 2, "pause takes --zone"),
])
def test_errors_and_exit_codes(app, zmta, args, code, message):
    zmta()
    res = q(app, *args)
    assert res.returncode == code and message in res.stderr, (res.returncode, res.stderr)


def test_the_daemon_down_is_exit_1(app):
    res = q(app, "list")
    assert res.returncode == 1 and "cannot reach the daemon's API" in res.stderr


def test_api_auth_is_honoured(app, zmta):
    d = zmta(extra_config={"api": {"auth": {"apiKey": "cli-key-123"}}})
    ok(q(app, "pause", "--zone", "default"))  # the key from the configuration
    assert call(d, "GET", "/pauses", headers={"X-API-Key": "cli-key-123"})[1]["pauses"][0][
        "by"]["principal"] == "apiKey"
    url = f"http://127.0.0.1:{app.api_port}"
    res = run_cli("queue", "--api", url, "pauses")
    assert res.returncode == 1 and "401" in res.stderr
    res = run_cli("queue", "--api", url, "--json", "pauses",
                  env={"ZONEMTA_API_KEY": "cli-key-123"})
    assert res.returncode == 0 and len(json.loads(res.stdout)) == 1


def test_show_gives_each_failed_attempt(app, zmta, smtp_sink):
    sink = smtp_sink("127.0.0.2")
    sink.set_script({"recipients": {"slow@example.test": {
        "rcpt": {"reply": "451 4.7.1 Greylisted, try again later"}}}})
    d = zmta(extra_config={
        "queue": {"deferTimes": ["1 s", "1 s", "1 s", "1 h"]},
        "zones": {"default": {"host": sink.host, "port": sink.port, "disabled": False}}})
    qid = submit(d, MSG, rcpts=("slow@example.test",))

    def attempts():
        status, m = call(d, "GET", f"/message/{qid}")
        return m["messages"][0].get("history", []) if status == 200 else []
    from conftest import wait_until
    wait_until(lambda: len(attempts()) >= 2, 30, what="two failed attempts")
    got = attempts()
    assert [a["response"] for a in got[:2]] == ["451 4.7.1 Greylisted, try again later"] * 2
    assert all(a["remoteAddress"] == "127.0.0.2" and a["time"] > 0 for a in got)
    assert got[0]["time"] < got[1]["time"]
    out = ok(q(app, "show", qid))
    rows = table(out.split("Attempts:")[1])
    assert rows[0] == ["SEQ", "TIME", "MX", "ADDRESS", "FROM", "TLS", "REPLY"]
    assert rows[1][0] == "001" and rows[1][3] == "127.0.0.2"
    assert rows[1][-1] == "451 4.7.1 Greylisted, try again later"
