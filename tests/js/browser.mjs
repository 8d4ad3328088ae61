// SPDX-License-Identifier: EUPL-1.2
// A browser for the end-to-end tests: Debian's chromium (/usr/bin/chromium)
// driven by playwright-core, taking one JSON command per line on stdin and
// answering each with one JSON line on stdout: {ok: true, value} or
// {ok: false, error}.  The pytest side (tests/e2e/test_web_ui.py) says what
// to do and checks what the real daemon and its peers did.
//
//   {"op": "goto", "url": "..."}                   load a page
//   {"op": "viewport", "width": 390, "height": 844}
//   {"op": "wait", "selector": "...", "state"?}     until it is there (visible)
//   {"op": "click", "selector": "..."}
//   {"op": "fill", "selector": "...", "value": "..."}
//   {"op": "select", "selector": "...", "value": "..."}
//   {"op": "press", "selector": "...", "key": "Enter"}
//   {"op": "text", "selector": "..."}               its innerText
//   {"op": "count", "selector": "..."}              how many match
//   {"op": "eval", "js": "() => ..."}               a function's value, in the page
//   {"op": "waitFor", "js": "() => ...", "timeout"?} until the function is truthy
//   {"op": "screenshot", "path": "..."}             the whole page, as PNG
//   {"op": "errors", "clear"?: true}                 console errors and page errors so far
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // CI runs as root, where chromium's sandbox cannot start.
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(15000);
const errors = [];
page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
page.on("pageerror", (e) => errors.push(String(e)));

const fn = (source) => new Function(`return (${source});`)();

async function run(c) {
  switch (c.op) {
    case "goto": await page.goto(c.url); return null;
    case "viewport": await page.setViewportSize({ width: c.width, height: c.height }); return null;
    case "wait": await page.locator(c.selector).first().waitFor({ state: c.state || "visible" }); return null;
    case "click": await page.locator(c.selector).first().click(); return null;
    case "fill": await page.locator(c.selector).first().fill(c.value); return null;
    case "select": await page.locator(c.selector).first().selectOption(c.value); return null;
    case "press": await page.locator(c.selector).first().press(c.key); return null;
    case "text": return await page.locator(c.selector).first().innerText();
    case "count": return await page.locator(c.selector).count();
    // As functions, not strings: a string is eval'd in the page, which its
    // Content Security Policy (rightly) forbids.
    case "eval": return await page.evaluate(fn(c.js));
    case "waitFor":
      await page.waitForFunction(fn(c.js), null, { timeout: c.timeout || 15000, polling: 100 });
      return null;
    case "screenshot": await page.screenshot({ path: c.path, fullPage: true }); return c.path;
    case "errors": return c.clear ? errors.splice(0) : errors;
    default: throw new Error(`unknown op ${c.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
process.stdout.write(JSON.stringify({ ok: true, value: "ready" }) + "\n");
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = { ok: true, value: await run(JSON.parse(line)) };
  } catch (e) {
    answer = { ok: false, error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
