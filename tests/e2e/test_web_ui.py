# SPDX-License-Identifier: EUPL-1.2
"""The web page at /ui/ in a real browser: Debian's chromium driven by
playwright-core (tests/js/browser.mjs), against the real daemon, its SMTP
sinks and dnsmasq.  The dashboard's charts draw from live counts, the
queue browser finds a message by recipient, a pause set in the page stops
deliveries at the sink and resuming releases them, a bounce from the page
sends a DSN, deliveries selected in the page (or all a filter matches)
are held and released after a confirmation that gives their count, and
the page keeps its security headers.  Screenshots go to
test-artifacts/web-ui/ (desktop and phone-sized).
"""
import json
import re
import subprocess
import time
import urllib.request

import pytest

from conftest import REPO, wait_until
from test_api import call
from test_dsn_mail import config as dsn_config, send, world  # noqa: F401 (a fixture)

JS = REPO / "tests" / "js"
ARTIFACTS = REPO / "test-artifacts" / "web-ui"


class Browser:
    def __init__(self):
        self.proc = subprocess.Popen(["node", str(JS / "browser.mjs")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=JS)
        assert self._answer() == "ready"

    def _answer(self):
        line = self.proc.stdout.readline()
        assert line, "the browser driver exited"
        answer = json.loads(line)
        if not answer["ok"]:
            raise AssertionError(f"browser: {answer['error']}")
        return answer["value"]

    def do(self, op, **args):
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def shot(self, name):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        return self.do("screenshot", path=str(ARTIFACTS / f"{name}.png"))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=20)


@pytest.fixture
def browser():
    b = Browser()
    yield b
    errors = b.do("errors")
    b.close()
    assert errors == [], errors  # no script error and no CSP violation on any page


def ui(d, path=""):
    return f"http://127.0.0.1:{d.api_port}/ui/{path}"


def test_the_dashboard_charts_live_counts(world, dns_server, zmta, browser):
    mx1, _ = world
    d = zmta(extra_config=dsn_config(dns_server, mx1))
    browser.do("goto", url=ui(d))
    browser.do("wait", selector="#rates-chart canvas")
    assert browser.do("text", selector="#total-delivered") == "0"
    for i in range(4):
        send(d, [f"r{i}@example.test"])
    mx1.wait_for(4)
    # refreshed by itself: the counts and the line come from the daemon
    browser.do("waitFor", js="() => document.querySelector('#total-delivered')?.textContent === '4'")
    assert browser.do("text", selector="#total-accepted") == "4"
    drawn = browser.do("eval", js="""() => {
        const c = document.querySelector('#rates-chart canvas');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let green = 0;  // the delivered series' stroke, #1e7d32
        for (let i = 0; i < px.length; i += 4)
            if (px[i] < 60 && px[i + 1] > 100 && px[i + 1] < 150 && px[i + 2] < 80) green++;
        return green; }""")
    assert drawn > 20, drawn
    zones = browser.do("text", selector="table.zones")
    assert re.search(r"default\s+0\s+0\s+0\s+0", zones), zones
    browser.shot("dashboard")
    browser.do("click", selector="text=Last day")
    browser.do("waitFor", js="() => location.hash === '#/?range=day' && "
               "document.querySelector('#total-delivered')?.textContent === '4'")
    browser.shot("dashboard-day")
    # one zone's rates: the DSN zone delivered nothing
    browser.do("select", selector="#f-chart-zone", value="bounces")
    browser.do("waitFor", js="() => location.hash === '#/?range=day&zone=bounces' && "
               "document.querySelector('#total-delivered')?.textContent === '0'")
    browser.do("select", selector="#f-chart-zone", value="default")
    browser.do("waitFor", js="() => document.querySelector('#total-delivered')?.textContent === '4'")
    browser.do("viewport", width=390, height=844)
    browser.do("goto", url=ui(d) + "#/")
    browser.do("wait", selector="#rates-chart canvas")
    browser.shot("dashboard-phone")


def test_search_finds_a_message_by_recipient(zmta, browser):
    d = zmta()  # zone default disabled: mail stays queued
    with d.smtp() as c:
        for i in range(3):
            c.sendmail("alice@origin.test", [f"user{i}@example.test"],
                       b"From: <alice@origin.test>\r\nSubject: find me\r\n\r\nbody\r\n")
    wanted = call(d, "GET", "/deliveries?recipient=user1@example.test")[1]["deliveries"][0]
    browser.do("goto", url=ui(d) + "#/queue")
    browser.do("wait", selector="table.deliveries tbody tr")
    assert browser.do("count", selector="table.deliveries tbody tr") == 3
    browser.do("fill", selector="input[name=recipient]", value="user1@example.test")
    browser.do("press", selector="input[name=recipient]", key="Enter")
    browser.do("waitFor", js="() => document.querySelectorAll('table.deliveries tbody tr').length === 1")
    row = browser.do("text", selector="table.deliveries tbody tr")
    assert wanted["id"] in row and "user1@example.test" in row and "queued" in row
    browser.shot("queue-search")
    browser.do("click", selector=f"a[href='#/message/{wanted['id']}']")
    browser.do("wait", selector="table.message-deliveries")
    assert "Subject: find me" in browser.do("text", selector="pre.headers")
    assert "user1@example.test" in browser.do("text", selector="table.message-deliveries")
    browser.shot("message")


def test_sorting_a_column_sorts_every_match_not_the_page(zmta, browser):
    """60 deliveries queued z..a, 50 a page: sorted by recipient, the
    first page starts with what the queue's order put on the second."""
    d = zmta()
    names = [f"{chr(ord('a') + i // 26)}{chr(ord('z') - i % 26)}" for i in range(60)][::-1]
    with d.smtp() as c:
        for name in sorted(names, reverse=True):
            c.sendmail("alice@origin.test", [f"{name}@example.test"],
                       b"From: <alice@origin.test>\r\nSubject: sort me\r\n\r\nbody\r\n")
    first_cell = "document.querySelector('table.deliveries tbody tr td:nth-child(3)')?.textContent"
    browser.do("goto", url=ui(d) + "#/queue")
    browser.do("wait", selector="table.deliveries tbody tr")
    assert browser.do("eval", js=f"() => {first_cell}") == f"{max(names)}@example.test"
    browser.do("click", selector="table.deliveries th:nth-child(3) button")
    want = sorted(names)
    browser.do("waitFor", js=f"() => {first_cell} === '{want[0]}@example.test'")
    assert browser.do("count", selector="table.deliveries tbody tr") == 50
    browser.do("click", selector="div.pager button:last-of-type")
    browser.do("waitFor", js=f"() => {first_cell} === '{want[50]}@example.test'")
    assert browser.do("count", selector="table.deliveries tbody tr") == 10
    # again: descending, from the first page
    browser.do("click", selector="table.deliveries th:nth-child(3) button")
    browser.do("waitFor", js=f"() => {first_cell} === '{want[-1]}@example.test'")
    assert browser.do("text", selector="div.pager span") == "Page 1"
    browser.shot("queue-sorted")


def test_pausing_a_domain_in_the_page_stops_and_resuming_releases(smtp_sink, zmta, browser):
    sink = smtp_sink("127.0.0.2")
    d = zmta(extra_config={"zones": {"default": {"host": sink.host, "port": sink.port,
                                                 "disabled": False}}})
    browser.do("goto", url=ui(d) + "#/operations")
    browser.do("fill", selector="#pause-domain", value="example.test")
    browser.do("fill", selector="input[name=reason]", value="their MX is struggling")
    browser.do("click", selector="#pause-submit")
    browser.do("waitFor", js="() => document.querySelector('table.pauses')?.innerText.includes('example.test')")
    assert call(d, "GET", "/pauses")[1]["pauses"][0]["domain"] == "example.test"
    with d.smtp() as c:
        c.sendmail("a@tenant.test", ["one@example.test"], b"Subject: paused\r\n\r\nx\r\n")
        c.sendmail("a@tenant.test", ["two@other.test"], b"Subject: flows\r\n\r\nx\r\n")
    assert sink.wait_for(1)[0]["rcpt_tos"] == ["two@other.test"]
    time.sleep(1.5)
    assert len(sink.messages()) == 1  # the paused domain's mail waits
    browser.shot("operations-paused")
    browser.do("click", selector="table.pauses button:text('Resume')")
    wait_until(lambda: len(sink.messages()) == 2, 15, what="the paused message")
    assert sink.messages()[1]["rcpt_tos"] == ["one@example.test"]
    browser.do("waitFor", js="() => document.querySelector('table.pauses')?.innerText.includes('No pauses')")
    audit = browser.do("text", selector="table.audit")
    assert re.search(r"resume\s+domain=example\.test", audit), audit
    assert re.search(r"pause\s+domain=example\.test reason=their MX is struggling", audit)


def test_bouncing_from_the_page_sends_a_dsn(world, dns_server, zmta, browser):
    mx1, mx2 = world
    cfg = dsn_config(dns_server, mx1)
    cfg["zones"]["default"]["disabled"] = True  # it waits in the queue
    d = zmta(extra_config=cfg)
    qid = send(d, ["bob@example.test", "carol@example.test"])
    browser.do("goto", url=ui(d) + f"#/message/{qid}")
    browser.do("wait", selector="table.message-deliveries")
    browser.do("click", selector="button[data-action=bounce]")
    browser.do("wait", selector="#confirm[open]")
    assert browser.do("text", selector="#confirm-text") == f"Bounce 2 deliveries of {qid}?"
    browser.shot("bounce-confirm")
    browser.do("click", selector="#confirm-ok")
    dsn = mx2.wait_for(1)[0]
    assert dsn["mail_from"] == "" and dsn["rcpt_tos"] == ["alice@origin.test"]
    text = dsn["data"].decode()
    assert "Bounced by the queue's operator: bounced from the web page" in text
    assert "bob@example.test" in text and "carol@example.test" in text
    assert mx1.messages() == []
    browser.do("waitFor", js="() => location.hash === '#/queue'")
    ops = call(d, "GET", "/ops")[1]["ops"]
    assert ops[0]["action"] == "bounce" and ops[0]["affected"] == 2
    assert ops[0]["target"] == {"ids": [qid]}


def test_the_page_and_the_api_refuse_cross_site_use(zmta):
    d = zmta()
    with urllib.request.urlopen(ui(d)) as res:
        csp = res.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert res.headers["X-Content-Type-Options"] == "nosniff"
        assert b'<script type="module" src="app.js">' in res.read()
    req = urllib.request.Request(ui(d)[:-1])  # /ui → /ui/
    with urllib.request.urlopen(req) as res:
        assert res.url.endswith("/ui/")
    # A form on another site posting to the API (CSRF) is refused; the
    # same request from the page's own origin, or from a client that is
    # not a browser, is not.
    body = {"zone": "default"}
    status, reply = call(d, "POST", "/pauses", body, headers={"Origin": "https://evil.test"})
    assert status == 403 and "cross-site" in reply["error"]
    status, _ = call(d, "POST", "/pauses", body, headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    assert call(d, "GET", "/pauses")[1]["pauses"] == []
    own = f"http://127.0.0.1:{d.api_port}"
    assert call(d, "POST", "/pauses", body, headers={"Origin": own})[0] == 200
    assert call(d, "POST", "/pauses", body)[0] == 200


def test_signing_in_with_the_api_key(zmta, browser):
    d = zmta(extra_config={"api": {"auth": {"apiKey": "ui-key-123"}}})
    browser.do("goto", url=ui(d) + "#/operations")
    browser.do("wait", selector="#signin[open]")
    browser.shot("signin")
    browser.do("fill", selector="#signin input[name=key]", value="ui-key-123")
    browser.do("click", selector="#signin button")
    browser.do("wait", selector="table.audit")
    assert browser.do("eval", js="() => document.body.dataset.ready") == "operations"
    # the first requests were refused (401) until the key was given; none since
    refused = browser.do("errors", clear=True)
    assert refused and all("status of 401" in e for e in refused), refused
    browser.do("click", selector="nav a[data-nav=queue]")
    browser.do("wait", selector="table.deliveries")
    assert browser.do("errors") == []


def test_selecting_deliveries_and_holding_them(zmta, browser):
    d = zmta()
    with d.smtp() as c:
        for i in range(3):
            c.sendmail("alice@origin.test", [f"user{i}@example.test"],
                       b"From: <alice@origin.test>\r\nSubject: hold me\r\n\r\nbody\r\n")
    browser.do("goto", url=ui(d) + "#/queue")
    browser.do("wait", selector="table.deliveries tbody tr")
    browser.do("click", selector="input[aria-label^='Select user0@example.test of ']")
    browser.do("click", selector="input[aria-label^='Select user2@example.test of ']")
    browser.do("click", selector="button[data-action=hold]")
    browser.do("wait", selector="#confirm[open]")
    assert browser.do("text", selector="#confirm-text") == "Hold 2 deliveries?"
    browser.do("click", selector="#confirm-ok")
    browser.do("waitFor", js="() => [...document.querySelectorAll('table.deliveries td.state-held')]"
               ".length === 2")
    held = sorted(r["recipient"] for r in
                  call(d, "GET", "/deliveries?status=held")[1]["deliveries"])
    assert held == ["user0@example.test", "user2@example.test"]
    # everything the filter matches: the count comes from the daemon
    browser.do("select", selector="select[name=scope]", value="filter")
    browser.do("select", selector="select[name=status]", value="held")
    browser.do("click", selector="form.filters button[type=submit]")
    browser.do("waitFor", js="() => location.hash.includes('status=held')")
    browser.do("wait", selector="table.deliveries td.state-held")
    browser.do("select", selector="select[name=scope]", value="filter")
    browser.do("click", selector="button[data-action=release]")
    browser.do("wait", selector="#confirm[open]")
    assert browser.do("text", selector="#confirm-text") == "Release 2 deliveries?"
    browser.shot("queue-release-confirm")
    browser.do("click", selector="#confirm-ok")
    browser.do("waitFor", js="() => document.querySelector('table.deliveries')?.innerText"
               ".includes('No deliveries match.')")
    assert call(d, "GET", "/deliveries?status=held")[1]["deliveries"] == []
