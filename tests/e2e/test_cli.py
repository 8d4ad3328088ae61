# SPDX-License-Identifier: EUPL-1.2
"""The zone-mta command line: create, check-config, run, exit codes."""
import json
import re

import pytest
import yaml

from conftest import REPO, free_port, http_get, run_cli


def project_version():
    text = (REPO / "CMakeLists.txt").read_text()
    return re.search(r"project\(zone-mta VERSION (\S+)", text).group(1)


def test_version():
    res = run_cli("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"zone-mta {project_version()}"


def test_help_lists_every_command():
    res = run_cli("--help")
    assert res.returncode == 0
    for cmd in ("create DIR", "run [-d DIR] [-c FILE]", "check-config", "check-bounce", "--version"):
        assert cmd in res.stdout


@pytest.mark.parametrize("args, message", [
    ((), "a command is required"),
    (("frobnicate",), "unknown command frobnicate"),
    (("create",), "needs exactly one argument"),
    (("create", "a", "b"), "needs exactly one argument"),
    (("run", "-x"), "-x: unknown option"),
    (("run", "-d"), "-d: unknown option or missing argument"),
    (("check-config", "stray"), "unexpected argument stray"),
])
def test_usage_errors_exit_2(args, message):
    res = run_cli(*args)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Usage:" in res.stderr


def test_create_then_check_config(tmp_path):
    app = tmp_path / "app"
    res = run_cli("create", str(app))
    assert res.returncode == 0, res.stderr
    assert (app / "plugins").is_dir()
    assert (app / "data").is_dir()
    override = app / "config" / "default.yaml"
    # The override file documents everything but sets nothing.
    assert yaml.safe_load(override.read_text()) is None
    assert "# api:" in override.read_text()
    res = run_cli("check-config", "-d", str(app))
    assert res.returncode == 0, res.stderr
    assert f"{override}" in res.stdout


def test_create_never_overwrites(tmp_path):
    app = tmp_path / "app"
    assert run_cli("create", str(app)).returncode == 0
    override = app / "config" / "default.yaml"
    override.write_text("api:\n  port: 9999\n")
    res = run_cli("create", str(app))
    assert res.returncode == 1
    assert "exists already" in res.stderr
    assert override.read_text() == "api:\n  port: 9999\n"


def test_check_config_missing_folder(tmp_path):
    res = run_cli("check-config", "-d", str(tmp_path / "nope"))
    assert res.returncode == 2
    assert "app folder does not exist" in res.stderr


# development.yaml text → the line check-config must print (after "<app>/").
INVALID = [
    pytest.param("api:\n  host: 127.0.0.1\n  prot: 2525\n",
                 "config/development.yaml:3: unknown option api.prot", id="unknown-key"),
    pytest.param("log:\n  level: info\n  syslog: sometimes\n",
                 "config/development.yaml:3: option log.syslog must be true or false (got 'sometimes')",
                 id="wrong-type"),
    pytest.param("api:\n  port: 123456\n",
                 "config/development.yaml:2: option api.port must be an integer from 1 to 65535 (got '123456')",
                 id="out-of-range"),
    pytest.param("api:\n  port: [8080\n",
                 "config/development.yaml:3: YAML syntax error", id="bad-yaml"),
    pytest.param("queue: data\n",
                 "config/development.yaml:1: option queue must be a mapping (got a single value)",
                 id="scalar-for-section"),
]


@pytest.mark.parametrize("text, message", INVALID)
def test_check_config_reports_file_line_and_key(app, text, message):
    app.write_config("development", text)
    res = app.check_config()
    assert res.returncode == 2
    first = res.stderr.splitlines()[0]
    assert first == f"{app.path}/{message}" or first.startswith(f"{app.path}/{message}"), res.stderr
    # run refuses to start with the same message.
    res = run_cli("run", "-d", str(app.path))
    assert res.returncode == 2
    assert message in res.stderr


def test_check_config_reports_every_problem_in_order(app):
    app.write_config("default", "log:\n  levl: info\n")
    app.write_config("development", "api:\n  port: x\nextra: 1\n")
    res = app.check_config()
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert lines[:3] == [
        f"{app.path}/config/default.yaml:2: unknown option log.levl",
        f"{app.path}/config/development.yaml:2: option api.port must be an integer from 1 to 65535 (got 'x')",
        f"{app.path}/config/development.yaml:3: unknown option extra",
    ]


def test_deep_merge_overrides_only_named_keys(app, zmta):
    """default.yaml sets api and log; development.yaml overrides api.port only."""
    first, second = free_port(), free_port()
    app.write_config("default", {"api": {"host": "127.0.0.1", "port": first},
                                 "log": {"level": "warn"}})
    app.write_config("development", {"api": {"port": second}})
    app.api_port = second
    d = zmta()
    status, body = d.get("/health")
    assert status == 200 and body["status"] == "ok"
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{first}/health", timeout=2)
    # log.level: warn from default.yaml still holds: no info lines.
    assert "event=ready" not in d.log()
    assert " info " not in d.log()


def test_zonemta_env_selects_file(app, zmta):
    port = free_port()
    app.write_config("production", {"api": {"port": port}})
    app.api_port = port
    d = zmta(env={"ZONEMTA_ENV": "production"})
    assert d.get("/health")[0] == 200
    res = run_cli("check-config", "-d", str(app.path), env={"ZONEMTA_ENV": "production"})
    assert "config/production.yaml" in res.stdout
    assert "config/development.yaml" not in res.stdout


def test_extra_file_merges_last(app, zmta):
    port = free_port()
    d = zmta(extra_config={"api": {"port": port}})
    assert d.api_port == port
    assert d.get("/health")[0] == 200


def test_check_config_reads_the_bounce_rules_file(app):
    rules = app.path / "config" / "bounces.txt"
    rules.write_text("defer greylist greylist\nrejectt mailbox unknown\n")
    app.write_config("production", {"bounces": {"rules": str(rules)}})
    res = run_cli("check-config", "-d", str(app.path), env={"ZONEMTA_ENV": "production"})
    assert res.returncode == 2
    assert f"{rules}:2: unknown action 'rejectt'" in res.stderr
    rules.write_text("defer greylist greylist\n")
    res = run_cli("check-config", "-d", str(app.path), env={"ZONEMTA_ENV": "production"})
    assert res.returncode == 0, res.stderr


# A ZoneMTA app folder's config.json with the common options of its
# config/default.js, as a migrating user brings it.
ZONEMTA_CONFIG = {
    "name": "ZoneMTA",
    "ident": "zone-mta",
    "dbs": {"mongo": "mongodb://127.0.0.1:27017/zone-mta",
            "redis": {"host": "127.0.0.1", "port": 6379, "db": 3}},
    "queue": {"instanceId": "default", "gfs": "mail", "collection": "zone-queue",
              "defaultZone": "default", "maxQueueTime": 2592000000, "disableGC": False},
    "queueServer": {"enabled": True, "port": 12081, "host": "127.0.0.1"},
    "log": {"level": "info", "queue": False, "remote": False},
    "plugins": {"core/default-headers": {"enabled": ["*"], "addMissing": ["message-id", "date"],
                                          "xOriginatingIP": True}},
    "smtpInterfaces": {"feeder": {
        "enabled": True, "useProxy": False, "port": 0, "processes": 2, "maxSize": 31457280,
        "host": "127.0.0.1", "authentication": False, "starttls": False, "secure": False,
        "socketTimeout": 600000, "maxRecipients": 1000, "logger": False}},
    "dns": {"caching": True, "cacheTTL": 600, "blockLocalAddresses": False},
    "api": {"port": 0, "host": "127.0.0.1", "hostname": "localhost", "maildrop": True,
            "user": "zone", "pass": "test"},
    "dkim": {"enabled": True, "hashAlgo": "sha256"},
    "pools": {"default": [{"address": "127.0.0.1", "name": "mta.example.test"}]},
    "zones": {
        "default": {"preferIPv6": False, "ignoreIPv6": True, "processes": 1, "connections": 10,
                    "pool": "default", "connectionCache": {"ttl": 5, "reuseCount": 100}},
        "bounces": {"preferIPv6": False, "ignoreIPv6": True, "connections": 1, "processes": 1,
                    "pool": "default"}},
    "blacklist": {"ttl": 3600000},
    "domainConfig": {"default": {"maxConnections": 5, "disabledAddresses": []}},
}


def test_zonemta_config_json_passes_check_config_with_warnings(app):
    cfg = json.loads(json.dumps(ZONEMTA_CONFIG))
    cfg["smtpInterfaces"]["feeder"]["port"] = app.smtp_port
    cfg["api"]["port"] = app.api_port
    (app.path / "config.json").write_text(json.dumps(cfg, indent=4))
    (app.path / "config" / "production.json").write_text(
        json.dumps({"log": {"level": "warn"}}, indent="\t"))
    res = run_cli("check-config", "-d", str(app.path), env={"NODE_ENV": "production"})
    assert res.returncode == 0, res.stderr
    assert "config.json" in res.stdout and "config/production.json" in res.stdout
    warnings = res.stderr.splitlines()
    assert re.search(r"\((\d+) warnings\)", res.stdout).group(1) == str(len(warnings))
    path = f"{app.path}/config.json"
    for line in warnings:
        assert re.match(re.escape(path) + r":\d+: ", line), line
    text = res.stderr
    assert "ignored: dbs is not needed in zone-mta (the queue is RocksDB" in text
    assert "ignored: plugins is not yet supported" in text
    assert "zones.default.connectionCache.ttl: the bare number 5 is read as 5 s" in text
    assert "queue.maxQueueTime: the bare number 2592000000 is read as 2592000000 ms" in text
    assert "unknown option" not in text
    assert "authentication" not in text  # false: nothing asked, nothing to say

    # a listener asked for TLS without its key and certificate stops it,
    # with file and line
    cfg["smtpInterfaces"]["feeder"]["secure"] = True
    (app.path / "config.json").write_text(json.dumps(cfg, indent=4))
    res = run_cli("check-config", "-d", str(app.path))
    assert res.returncode == 2
    assert re.search(re.escape(path) + r":\d+: smtpInterfaces.feeder: TLS needs key and cert",
                     res.stderr), res.stderr


def test_check_config_lists_all_problems_run_says_how_to_see_them(app):
    app.write_config("development", "\n".join(f"bogus{i}: 1" for i in range(25)) + "\n")
    res = app.check_config()
    assert res.returncode == 2
    assert len([l for l in res.stderr.splitlines() if "unknown option bogus" in l]) == 25
    res = run_cli("run", "-d", str(app.path))
    assert res.returncode == 2
    assert len([l for l in res.stderr.splitlines() if "unknown option bogus" in l]) == 20
    assert "(5 more problems not shown: zone-mta check-config lists them all)" in res.stderr
