// SPDX-License-Identifier: EUPL-1.2
// zone-mta's web page: the dashboard, the queue browser, a message, and
// the operations (pauses, the audit log).  Everything it shows and does
// goes through the HTTP API (docs/api.md); credentials, when api.auth asks
// for them, are kept in this tab's sessionStorage and sent as headers,
// never as cookies.  No framework: plain DOM, built with textContent only.

const main = document.getElementById("main");
const statusLine = document.getElementById("status");
const REFRESH_MS = 3000;
let timer = null;
let chart = null;

// --- the API ---

function credentials() {
  const headers = { "X-Requested-With": "zone-mta-ui" };
  const key = sessionStorage.getItem("zmta-key");
  const basic = sessionStorage.getItem("zmta-basic");
  if (key) headers["X-API-Key"] = key;
  else if (basic) headers.Authorization = "Basic " + basic;
  return headers;
}

async function signIn() {
  const dialog = document.getElementById("signin");
  const form = document.getElementById("signin-form");
  form.reset();
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  const data = new FormData(form);
  sessionStorage.removeItem("zmta-key");
  sessionStorage.removeItem("zmta-basic");
  if (data.get("key")) sessionStorage.setItem("zmta-key", data.get("key"));
  else if (data.get("user"))
    sessionStorage.setItem("zmta-basic", btoa(`${data.get("user")}:${data.get("password")}`));
}

async function api(method, path, body) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const init = { method, headers: credentials() };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (res.status === 401) {
      await signIn();
      continue;
    }
    const answer = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(answer.error || `${method} ${path}: ${res.status}`);
    return answer;
  }
  throw new Error("not signed in");
}

function say(text) {
  statusLine.textContent = text;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => (statusLine.textContent = ""), 6000);
}

// --- building the page ---

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function table(headers, rows, opts = {}) {
  const thead = h("thead", {}, h("tr", {}, headers.map((x, i) => {
    const th = h("th", { scope: "col", class: opts.numeric?.includes(i) ? "num" : null });
    if (opts.sortable && x) {
      th.append(h("button", { type: "button", onclick: () => opts.onsort(i) }, x,
        opts.sorted === i ? (opts.descending ? " ▼" : " ▲") : ""));
      th.setAttribute("aria-sort", opts.sorted === i ? (opts.descending ? "descending" : "ascending") : "none");
    } else th.append(x);
    return th;
  })));
  const tbody = h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) =>
    c instanceof Node && c.tagName === "TD" ? c
      : h("td", { class: opts.numeric?.includes(i) ? "num" : null }, c)))));
  if (rows.length === 0)
    tbody.append(h("tr", {}, h("td", { colspan: headers.length }, opts.empty || "Nothing here.")));
  return h("table", { class: opts.class }, thead, tbody);
}

function age(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

const when = (ms) => (ms ? new Date(ms).toISOString().replace(".000", "") : "–");

function stateOf(row) {
  if (row.held) return "held";
  if (row.paused) return "paused";
  return row.deferred ? "deferred" : "queued";
}

function confirmDialog(text, action = "Go ahead") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("confirm-cancel").focus();
  return new Promise((resolve) => dialog.addEventListener("close",
    () => resolve(dialog.returnValue === "ok"), { once: true }));
}

async function zones() {
  return (await api("GET", "/zones?includeDisabled=true")).map((z) => z.name);
}

function zoneSelect(name, names, selected, anyLabel = "any") {
  return h("select", { name, id: `f-${name}` },
    h("option", { value: "" }, anyLabel),
    names.map((z) => h("option", { value: z, selected: z === selected }, z)));
}

// An operation: on the chosen deliveries (ids) or what a filter matches.
async function operate(action, target, extra = {}) {
  const body = { action, ...extra, ...target };
  const started = await api("POST", "/ops", body);
  let op = started.op;
  while (op.state === "running") {
    await new Promise((r) => setTimeout(r, 250));
    op = await api("GET", `/ops/${op.id}`);
  }
  const later = op.afterAttempt ? `; ${op.afterAttempt} in flight, acted on if their attempt defers` : "";
  say(`${action}: ${op.affected} of ${op.matched} affected${later}`);
  return op;
}

// --- the dashboard ---

const seriesNames = [["delivered", "Delivered", "#1e7d32"], ["deferred", "Deferred", "#c77800"],
  ["bounced", "Bounced", "#b3261e"]];

function drawChart(el, s) {
  const xs = s.delivered.map((_, i) => (s.start + i * s.step) / 1000);
  const data = [xs, ...seriesNames.map(([k]) => s[k])];
  if (chart && chart.root.isConnected && chart.root.parentNode === el) {
    chart.setData(data);
    return;
  }
  chart?.destroy();
  const width = Math.max(280, el.clientWidth - 8);
  chart = new uPlot({
    width, height: 240,
    series: [{}, ...seriesNames.map(([, label, stroke]) => ({ label, stroke, width: 2, points: { show: false } }))],
    axes: [{}, { label: "per minute" }],
    scales: { x: { time: true } },
  }, data, el);
}

async function dashboard(range, zone) {
  const minutes = range === "day" ? 1440 : 60;
  const names = await zones();
  const here = (r, z) => `#/?${new URLSearchParams({ ...(r ? { range: r } : {}), ...(z ? { zone: z } : {}) })}`;
  const chartBox = h("div", { class: "chart", id: "rates-chart", role: "img",
    "aria-label": `Deliveries, deferrals and bounces per minute over the last ${range === "day" ? "day" : "hour"}` });
  const totals = h("div", { class: "totals" });
  const zoneBody = h("div");
  const domainBody = h("div");
  const reasonBody = h("div");
  const rangeButtons = h("div", { class: "range", role: "group", "aria-label": "Range" },
    h("button", { type: "button", "aria-pressed": String(range !== "day"), onclick: () => (location.hash = here(null, zone)) }, "Last hour"),
    h("button", { type: "button", "aria-pressed": String(range === "day"), onclick: () => (location.hash = here("day", zone)) }, "Last day"),
    h("label", {}, "Zone", zoneSelect("chart-zone", names, zone, "all zones")));
  rangeButtons.querySelector("select").addEventListener("change", (e) => (location.hash = here(range, e.target.value)));
  main.replaceChildren(h("h1", {}, "Dashboard"),
    h("section", { class: "card", "aria-labelledby": "rates-title" },
      h("h2", { id: "rates-title" }, "Delivery, deferral and bounce rates"), rangeButtons, totals, chartBox),
    h("section", { class: "card", "aria-labelledby": "zones-title" },
      h("h2", { id: "zones-title" }, "Zones"), zoneBody),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "domains-title" },
        h("h2", { id: "domains-title" }, "Top recipient domains by backlog"), domainBody),
      h("section", { class: "card", "aria-labelledby": "reasons-title" },
        h("h2", { id: "reasons-title" }, "Top deferral reasons"), reasonBody)));
  chart = null;
  async function refresh() {
    const [series, summary, counts] = await Promise.all([
      api("GET", `/stats/series?minutes=${minutes}${zone ? `&zone=${encodeURIComponent(zone)}` : ""}`),
      api("GET", "/summary?limit=10"),
      Promise.all(names.map((z) => api("GET", `/queue/${encodeURIComponent(z)}`))),
    ]);
    const sum = (k) => series[k].reduce((a, b) => a + b, 0);
    // messages are accepted by the daemon, not by a zone
    totals.replaceChildren(...[...(zone ? [] : [["accepted", "Accepted"]]), ...seriesNames].map(([k, label]) =>
      h("div", {}, h("span", {}, label), h("strong", { id: `total-${k}` }, sum(k)))));
    drawChart(chartBox, series);
    zoneBody.replaceChildren(table(["Zone", "Queued", "Deferred", "Held", "Paused"],
      names.map((z, i) => [h("td", {}, h("a", { href: `#/queue?zone=${encodeURIComponent(z)}` }, z)),
        counts[i].queued, counts[i].deferred, counts[i].held, counts[i].paused]),
      { numeric: [1, 2, 3, 4], class: "zones" }));
    domainBody.replaceChildren(table(["Domain", "Deliveries"],
      summary.domains.map((d) => [h("td", {}, h("a", { href: `#/queue?domain=${encodeURIComponent(d.domain)}` }, d.domain)), d.total]),
      { numeric: [1], empty: "The queue is empty." }));
    reasonBody.replaceChildren(table(["Reply", "Deliveries"],
      summary.reasons.map((r) => [h("td", { class: "reply mono" }, r.reason), r.count]),
      { numeric: [1], empty: "No deferrals." }));
  }
  await refresh();
  timer = setInterval(() => refresh().catch((e) => say(e.message)), REFRESH_MS);
}

// --- the queue browser ---

const FILTERS = ["zone", "domain", "recipient", "sender", "status", "olderThan"];

async function queueView(params) {
  const names = await zones();
  const filter = {};
  for (const k of FILTERS) if (params.get(k)) filter[k] = params.get(k);
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter the queue" },
    h("label", {}, "Zone", zoneSelect("zone", names, filter.zone)),
    h("label", {}, "Recipient domain", h("input", { name: "domain", value: filter.domain || "" })),
    h("label", {}, "Recipient", h("input", { name: "recipient", type: "search", value: filter.recipient || "" })),
    h("label", {}, "Sender", h("input", { name: "sender", value: filter.sender || "" })),
    h("label", {}, "Status", h("select", { name: "status" },
      ["", "queued", "deferred", "held"].map((s) => h("option", { value: s, selected: s === (filter.status || "") }, s || "any")))),
    h("label", {}, "Older than", h("input", { name: "olderThan", placeholder: "1 h", value: filter.olderThan || "" })),
    h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = `#/queue?${q}`;
  });
  const results = h("div", { id: "results" });
  const scope = h("select", { name: "scope", "aria-label": "Act on" },
    h("option", { value: "selected" }, "the selected deliveries"),
    h("option", { value: "filter" }, "everything the filter matches"));
  const rebindTo = zoneSelect("rebind-to", names, null, "rebind to…");
  rebindTo.setAttribute("aria-label", "Zone to move them to");
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Act" },
    h("span", {}, "Act on"), scope,
    ...[["hold", "Hold"], ["release", "Release"], ["flush", "Retry now"], ["bounce", "Bounce"],
      ["delete", "Delete"]].map(([a, label]) =>
      h("button", { type: "button", class: a === "bounce" || a === "delete" ? "danger" : "secondary",
        "data-action": a, onclick: () => act(a) }, label)),
    rebindTo, h("button", { type: "button", class: "secondary", onclick: () => act("rebind") }, "Rebind"));
  main.replaceChildren(h("h1", {}, "Queue"), h("section", { class: "card" }, form, actions, results));

  let cursors = [null];
  let page = 0;
  let rows = [];
  let sort = { col: -1, descending: false };
  // Each column's sort in GET /deliveries, and whether it runs the other way.
  const sortBy = [null, ["id", false], ["recipient", false], ["zone", false], ["from", false],
    ["created", true], ["state", false], ["attempts", false], ["response", false]];
  const chosen = new Set();

  async function act(action) {
    const extra = {};
    if (action === "rebind") {
      if (!rebindTo.value) return say("Choose the zone to rebind to first.");
      extra.zone = rebindTo.value;
    }
    let target;
    let count;
    if (scope.value === "selected") {
      if (chosen.size === 0) return say("Select deliveries first.");
      target = { ids: [...chosen] };
      count = chosen.size;
    } else {
      if (Object.keys(filter).length === 0) return say("Give a filter first.");
      target = { filter };
      count = (await api("GET", `/summary?limit=1&${new URLSearchParams(filter)}`)).total;
    }
    const what = `${count} ${count === 1 ? "delivery" : "deliveries"}`;
    if (!(await confirmDialog(`${action[0].toUpperCase()}${action.slice(1)} ${what}?`, action))) return;
    await operate(action, target, extra);
    chosen.clear();
    await load();
  }

  function render() {
    const cols = ["", "Message", "Recipient", "Zone", "From", "Age", "State", "Tries", "Last reply"];
    const all = h("input", { type: "checkbox", "aria-label": "Select all on this page",
      checked: rows.length > 0 && rows.every((r) => chosen.has(`${r.id}/${r.seq}`)),
      onchange: (e) => { for (const r of rows) e.target.checked ? chosen.add(`${r.id}/${r.seq}`) : chosen.delete(`${r.id}/${r.seq}`); render(); } });
    const t = table(cols, rows.map((r) => {
      const ref = `${r.id}/${r.seq}`;
      const state = stateOf(r);
      return [
        h("td", {}, h("input", { type: "checkbox", "aria-label": `Select ${r.recipient} of ${r.id}`,
          checked: chosen.has(ref), onchange: (e) => { e.target.checked ? chosen.add(ref) : chosen.delete(ref); } })),
        h("td", { class: "mono" }, h("a", { href: `#/message/${r.id}` }, r.id), `/${r.seq}`),
        r.recipient, r.zone, r.from || "<>", age(r.created),
        h("td", { class: `state-${state}` }, state),
        r.deferred?.count || 0,
        h("td", { class: "reply" }, r.deferred?.response || "")];
    }), { sortable: true, sorted: sort.col, descending: sort.descending, numeric: [7],
      onsort: (i) => {
        if (i === 0) return;
        sort = { col: i, descending: sort.col === i && !sort.descending };
        cursors = [null];
        page = 0;
        load();
      },
      empty: "No deliveries match.", class: "deliveries" });
    t.querySelector("thead th").replaceChildren(all);
    const pager = h("div", { class: "pager" },
      h("button", { type: "button", class: "secondary", disabled: page === 0, onclick: () => { page--; load(); } }, "Previous"),
      h("span", {}, `Page ${page + 1}`),
      h("button", { type: "button", class: "secondary", disabled: !cursors[page + 1], onclick: () => { page++; load(); } }, "Next"));
    results.replaceChildren(t, pager);
  }

  async function load() {
    const q = new URLSearchParams({ ...filter, limit: "50" });
    if (sort.col > 0) {
      // Sorted by the API over every match, not just this page. Age
      // ascending is the newest first.
      const [by, flip] = sortBy[sort.col];
      q.set("sort", by);
      q.set("order", sort.descending !== flip ? "desc" : "asc");
    }
    if (cursors[page]) q.set("after", cursors[page]);
    const answer = await api("GET", `/deliveries?${q}`);
    rows = answer.deliveries;
    cursors = cursors.slice(0, page + 1);
    cursors[page + 1] = answer.next;
    render();
  }
  await load();
}

// --- a message ---

async function messageView(id) {
  const m = await api("GET", `/message/${encodeURIComponent(id)}`);
  const meta = m.meta;
  const rows = m.messages.map((d) => [d.seq, d.recipient, d.zone,
    h("td", { class: `state-${d.held ? "held" : d.deferred ? "deferred" : "queued"}` },
      d.held ? "held" : d.deferred ? "deferred" : "queued"),
    d.deferred?.count || 0, when(d.deferred?.first), when(d.deferred?.last), when(d.deferred?.next),
    h("td", { class: "reply" }, d.deferred?.response || "")]);
  async function run(action) {
    if ((action === "bounce" || action === "delete") &&
        !(await confirmDialog(`${action[0].toUpperCase()}${action.slice(1)} ${m.messages.length} ${m.messages.length === 1 ? "delivery" : "deliveries"} of ${id}?`, action)))
      return;
    await operate(action, { ids: [id] }, action === "bounce" ? { reason: "bounced from the web page" } : {});
    if (action === "bounce" || action === "delete") location.hash = "#/queue";
    else await messageView(id);
  }
  async function download() {
    const res = await fetch(`/fetch/${encodeURIComponent(id)}`, { headers: credentials() });
    if (!res.ok) return say(`The source could not be read: ${res.status}`);
    const url = URL.createObjectURL(await res.blob());
    const a = h("a", { href: url, download: `${id}.eml` });
    document.body.append(a);
    a.click();
    a.remove();
    URL.revokeObjectURL(url);
  }
  main.replaceChildren(
    h("h1", {}, "Message ", h("span", { class: "mono" }, id)),
    h("div", { class: "actions", role: "group", "aria-label": "Act on this message" },
      ...[["hold", "Hold"], ["release", "Release"], ["flush", "Retry now"], ["bounce", "Bounce"], ["delete", "Delete"]]
        .map(([a, label]) => h("button", { type: "button", "data-action": a,
          class: a === "bounce" || a === "delete" ? "danger" : "secondary", onclick: () => run(a).catch((e) => say(e.message)) }, label)),
      h("button", { type: "button", class: "secondary", onclick: download }, "Download source")),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "meta-title" }, h("h2", { id: "meta-title" }, "Envelope"),
        h("dl", { class: "meta" }, ...[["From", meta.from ? `<${meta.from}>` : "<>"], ["Message-ID", meta.messageId],
          ["Queued", when(meta.time)], ["Interface", meta.interface], ["Origin", meta.origin],
          ["User", meta.user], ["Body", `${meta.bodySize ?? "?"} bytes`]]
          .filter(([, v]) => v !== undefined && v !== null).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
      h("section", { class: "card", "aria-labelledby": "headers-title" }, h("h2", { id: "headers-title" }, "Headers"),
        h("pre", { class: "headers mono" }, meta.headers.map((x) => x.line).join("\n")))),
    h("section", { class: "card", "aria-labelledby": "dlv-title" }, h("h2", { id: "dlv-title" }, "Deliveries"),
      table(["Seq", "Recipient", "Zone", "State", "Tries", "First failure", "Last attempt", "Next attempt", "Last reply"],
        rows, { numeric: [4], class: "message-deliveries" })),
    h("section", { class: "card", "aria-labelledby": "attempts-title" }, h("h2", { id: "attempts-title" }, "Attempts"),
      table(["Seq", "When", "MX", "Address", "From", "TLS", "Reply"],
        m.messages.flatMap((d) => (d.history || []).map((a) => [d.seq, when(a.time), a.mx || "–",
          a.remoteAddress || "–", a.localAddress || "–", a.tls || "–", h("td", { class: "reply" }, a.response || "")])),
        { empty: "No failed attempts.", class: "attempts" })));
}

// --- operations: pauses and the audit log ---

async function operationsView() {
  const names = await zones();
  const form = h("form", { class: "inline", "aria-label": "Pause deliveries" },
    h("label", {}, "Zone", zoneSelect("zone", names, null)),
    h("label", {}, "Recipient domain", h("input", { name: "domain", id: "pause-domain" })),
    h("label", {}, "Sender (address or domain)", h("input", { name: "sender" })),
    h("label", {}, "User", h("input", { name: "user" })),
    h("label", {}, "Until", h("input", { name: "until", placeholder: "2 h, or 2026-12-24T08:00:00Z" })),
    h("label", {}, "Reason", h("input", { name: "reason" })),
    h("button", { type: "submit", id: "pause-submit" }, "Pause"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {};
    for (const [k, v] of new FormData(form)) if (v) body[k] = v;
    try {
      const r = await api("POST", "/pauses", body);
      say(`Paused (${r.pause.id}).`);
      form.reset();
      await load();
    } catch (err) {
      say(err.message);
    }
  });
  const pauses = h("div", { id: "pauses" });
  const audit = h("div", { id: "audit" });
  main.replaceChildren(h("h1", {}, "Operations"),
    h("section", { class: "card", "aria-labelledby": "pause-title" }, h("h2", { id: "pause-title" }, "Pause deliveries"), form),
    h("section", { class: "card", "aria-labelledby": "pauses-title" }, h("h2", { id: "pauses-title" }, "Pauses in force"), pauses),
    h("section", { class: "card", "aria-labelledby": "audit-title" }, h("h2", { id: "audit-title" }, "Audit log"), audit));
  const describe = (o) => Object.entries(o || {}).filter(([k]) => !["id", "created", "by", "until"].includes(k))
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
  async function load() {
    const [p, ops] = await Promise.all([api("GET", "/pauses"), api("GET", "/ops")]);
    pauses.replaceChildren(table(["What", "Since", "Until", "By", ""], p.pauses.map((x) => [
      describe(x), when(x.created), x.until ? when(x.until) : "until resumed", `${x.by.principal} (${x.by.address || "-"})`,
      h("td", {}, h("button", { type: "button", class: "secondary", "aria-label": `Resume ${describe(x)}`,
        onclick: async () => { await api("DELETE", `/pauses/${x.id}`); say("Resumed."); await load(); } }, "Resume"))]),
      { empty: "No pauses.", class: "pauses" }));
    audit.replaceChildren(table(["When", "Action", "Target", "Affected", "State", "By"],
      ops.ops.slice(0, 100).map((o) => [when(o.time), o.action, h("td", { class: "mono" }, describe(o.target)),
        o.afterAttempt ? `${o.affected} (+${o.afterAttempt} in flight)` : o.affected,
        o.state || "done", `${o.by.principal} (${o.by.address || "-"})`]),
      { numeric: [3], empty: "Nothing done yet.", class: "audit" }));
  }
  await load();
}

// --- routing ---

async function route() {
  clearInterval(timer);
  timer = null;
  const [path, query] = location.hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const section = path.startsWith("/queue") ? "queue" : path.startsWith("/operations") ? "operations"
    : path.startsWith("/message/") ? "queue" : "dashboard";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (path.startsWith("/message/")) await messageView(decodeURIComponent(path.slice(9)));
    else if (section === "queue") await queueView(params);
    else if (section === "operations") await operationsView();
    else await dashboard(params.get("range"), params.get("zone"));
    document.body.dataset.ready = section;
  } catch (e) {
    main.replaceChildren(h("h1", {}, "Something went wrong"), h("p", { role: "alert" }, e.message));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("resize", () => {
  const box = document.getElementById("rates-chart");
  if (chart && box) chart.setSize({ width: Math.max(280, box.clientWidth - 8), height: 240 });
});
route();
