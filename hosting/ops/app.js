// Avalo ops dashboard: calls pack391_getOpsDashboard and pack391_getHistoricalMetrics
// with fetch() and the callable protocol ({"data": ...} in, {"result"|"error"} out).
//
// Same origin only. The callables are always called on this page's own origin, and the
// ID token is never sent anywhere else:
// - in production, Firebase Hosting rewrites /ops/api/<name> to the function
//   (firebase.json hosting.rewrites), so the base is /ops/api;
// - the local stack's /__/firebase/init.json gives pack391FunctionsBase, which must be a
//   path on this origin ("/project/region"); anything else (an absolute or
//   protocol-relative URL) is refused and nothing is called.
// Nothing comes from the query string (there is no ?region= and no ?token=).
// ID token: in production, Firebase Auth (SDK 8 from Hosting's reserved /__/firebase/8.10.1/
// URLs, the only SDK versions Hosting serves); locally, a token from
// `pack391 token --role ops` typed in the token field (kept in sessionStorage).
"use strict";

const REFRESH_MS = 60 * 1000;
const STALE_SEC = 180;
const PRODUCTION_BASE = "/ops/api";
const TOKEN_KEY = "pack391Token";
const state = { base: null, token: sessionStorage.getItem(TOKEN_KEY), user: null,
                fetchedAt: null, snapshotAt: null, timer: null };

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const num = (v, digits = 0) => (v === null || v === undefined ? "–" :
  Number(v).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 }));

class CallError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// A path on this origin, normalised ("/a/b"), or null: never "//host", "/\\host",
// "https://host" or anything else the URL parser resolves to another origin.
function sameOriginBase(value) {
  if (typeof value !== "string" || !/^\/(?![/\\])/.test(value)) return null;
  let url;
  try { url = new URL(value, location.origin); } catch { return null; }
  if (url.origin !== location.origin || url.search || url.hash) return null;
  return url.pathname.replace(/\/+$/, "");
}

async function idToken() {
  if (state.user) return state.user.getIdToken();
  return state.token;
}

async function call(name, data) {
  const token = await idToken();
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const url = new URL(`${state.base}/${encodeURIComponent(name)}`, location.origin);
  if (url.origin !== location.origin) throw new CallError("CONFIG", "refusing to call another origin");
  const response = await fetch(url, { method: "POST", headers, body: JSON.stringify({ data }),
                                      credentials: "same-origin", referrerPolicy: "no-referrer" });
  let body;
  try { body = await response.json(); } catch { throw new CallError("UNAVAILABLE", `HTTP ${response.status}`); }
  if (body.error) throw new CallError(body.error.status, body.error.message);
  return body.result;
}

function showMessage(text, status) {
  if (status) document.body.dataset.error = status;
  $("message").textContent = text;
  $("message").hidden = false;
  $("dashboard").hidden = true;
}

// ------------------------------------------------------------------ rendering

function card(title, big, sub, metric) {
  return `<div class="card"><div class="title">${esc(title)}</div>` +
    `<div class="big" data-metric="${esc(metric)}">${big}</div><div class="sub">${sub}</div></div>`;
}

function sub(pairs) {
  return pairs.map(([label, metric, value, digits]) =>
    `${esc(label)} <span data-metric="${esc(metric)}">${num(value, digits)}</span>`).join(" · ");
}

function renderCards(m) {
  const tv = m.tokenVelocity, fa = m.fraudAlerts, pq = m.payoutQueue, sq = m.supportQueue, pa = m.panicActivations;
  $("cards").innerHTML = [
    card("Active users", num(m.activeUsers), sub([["paying", "payingUsers", m.payingUsers]]), "activeUsers"),
    card("Token velocity /min", num(tv.transactionsPerMinute, 2),
      sub([["earned", "tokenVelocity.earned", tv.earned, 2], ["spent", "tokenVelocity.spent", tv.spent, 2], ["net", "tokenVelocity.net", tv.net, 2]]),
      "tokenVelocity.transactionsPerMinute"),
    card("Fraud alerts", num(fa.active), sub([["critical", "fraudAlerts.critical", fa.critical], ["resolved today", "fraudAlerts.resolvedToday", fa.resolvedToday]]), "fraudAlerts.active"),
    card("Payout queue", num(pq.pending), sub([["processing", "payoutQueue.processing", pq.processing], ["failed", "payoutQueue.failed", pq.failed], ["total", "payoutQueue.totalAmount", pq.totalAmount, 2]]), "payoutQueue.pending"),
    card("Support queue", num(sq.open), sub([["urgent", "supportQueue.urgent", sq.urgent], ["avg response s", "supportQueue.avgResponseTime", sq.avgResponseTime, 1]]), "supportQueue.open"),
    card("Panic passes 24h", num(pa.last24h), sub([["active", "panicActivations.active", pa.active]]), "panicActivations.last24h"),
  ].join("");
  $("health").textContent = m.systemHealth.status;
  $("health").dataset.health = m.systemHealth.status;
}

const CHARTS = [
  ["activeUsers", "Active users"],
  ["tokenVelocity.transactionsPerMinute", "Transactions / min"],
  ["fraudAlerts.critical", "Critical fraud alerts"],
  ["payoutQueue.failed", "Failed payouts"],
  ["supportQueue.urgent", "Urgent tickets"],
  ["systemHealth.servicesDown", "Services down"],
];

function sparkline(buckets) {
  if (!buckets || buckets.length === 0) return '<span class="muted">no points</span>';
  const w = 240, h = 60, pad = 4;
  const xs = buckets.map((b) => Date.parse(b.at));
  const lo = Math.min(...buckets.map((b) => b.min)), hi = Math.max(...buckets.map((b) => b.max));
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const sx = (t) => pad + (x1 === x0 ? (w - 2 * pad) / 2 : ((t - x0) / (x1 - x0)) * (w - 2 * pad));
  const sy = (v) => h - pad - (hi === lo ? (h - 2 * pad) / 2 : ((v - lo) / (hi - lo)) * (h - 2 * pad));
  const line = (key) => buckets.map((b, i) => `${sx(xs[i]).toFixed(1)},${sy(b[key]).toFixed(1)}`).join(" ");
  const band = buckets.map((b, i) => `${sx(xs[i]).toFixed(1)},${sy(b.max).toFixed(1)}`).join(" ") + " " +
    buckets.slice().reverse().map((b, i) => `${sx(xs[xs.length - 1 - i]).toFixed(1)},${sy(b.min).toFixed(1)}`).join(" ");
  const dots = buckets.length === 1 ? `<circle cx="${sx(xs[0])}" cy="${sy(buckets[0].avg)}" r="3" fill="#4aa3ff"/>` : "";
  return `<svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none">` +
    `<polygon points="${band}" fill="#4aa3ff33"/><polyline points="${line("avg")}" fill="none" stroke="#4aa3ff" stroke-width="2"/>${dots}</svg>`;
}

function renderCharts(history) {
  $("charts").innerHTML = CHARTS.map(([field, title]) => {
    const buckets = history.series[field] || [];
    const last = buckets.length ? buckets[buckets.length - 1] : null;
    return `<div class="chart" data-chart="${esc(field)}"><div class="title">${esc(title)} ` +
      `<span class="muted">${last ? `last ${num(last.avg, 2)} (min ${num(last.min, 2)}, max ${num(last.max, 2)})` : ""}</span></div>` +
      `${sparkline(buckets)}<div class="muted">${buckets.length} points · ${history.bucketSec / 60}-min buckets</div></div>`;
  }).join("");
}

function table(id, head, rows, empty) {
  $(id).innerHTML = rows.length
    ? `<tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr>${rows.join("")}`
    : `<tr><td class="muted">${esc(empty)}</td></tr>`;
}

function renderPanel(id, panel, describe) {
  if (!panel.available) {
    $(id).innerHTML = `<span class="muted" data-unavailable="1">not available: ${esc(panel.reason)}</span>`;
    return;
  }
  $(id).innerHTML = panel.items.length ? panel.items.map(describe).join("<br>") : '<span class="muted">none</span>';
}

function render(dash) {
  const live = dash.live;
  state.snapshotAt = live.at ? Date.parse(live.at) : null;
  state.fetchedAt = Date.now();
  state.ageAtFetch = live.ageSec;
  if (live.metrics) renderCards(live.metrics);
  else $("cards").innerHTML = '<div class="card">No live metrics yet: pack391_updateLiveMetrics runs every minute.</div>';
  table("alerts", ["severity", "alert", "source", "status", "since"], dash.openAlerts.map((a) =>
    `<tr data-alert="${esc(a.id)}"><td class="sev-${esc(a.severity)}">${esc(a.severity)}</td><td>${esc(a.title)}` +
    `${a.value !== null && a.value !== undefined ? ` <span class="muted">(${num(a.value, 2)})</span>` : ""}</td>` +
    `<td>${esc(a.source)}</td><td>${esc(a.status)}${a.acknowledgedBy ? ` by ${esc(a.acknowledgedBy)}` : ""}</td>` +
    `<td>${esc(new Date(a.openedAt).toISOString().slice(11, 16))}Z</td></tr>`), "no open alerts");
  const services = live.metrics ? live.metrics.systemHealth.services : [];
  const details = Object.fromEntries(dash.services.map((s) => [s.name, s]));
  table("services", ["service", "status", "instances", "last action"], services.map((s) => {
    const d = details[s.name] || {};
    return `<tr data-service="${esc(s.name)}"><td>${esc(s.name)}</td><td class="status" data-status="${esc(s.status)}">${esc(s.status)}</td>` +
      `<td>${esc(d.instances ?? "")}</td><td>${esc(d.lastAction ?? "")}</td></tr>`;
  }), "no services registered");
  const ddos = dash.ddos;
  $("ddos").innerHTML = `<div>mode: <b data-ddos-mode="${ddos.modeActive ? "on" : "off"}" class="${ddos.modeActive ? "sev-critical" : ""}">` +
    `${ddos.modeActive ? `ON until ${esc(ddos.modeUntil)} (${esc(ddos.modeReason)})` : "off"}</b></div>` +
    `<div class="muted">recent detections: ${ddos.recentDetections.length}</div>` +
    ddos.recentDetections.slice(0, 5).map((d) => `<div>${esc(d.kind)} · ${esc(d.severity)} · ${esc(d.minute)}</div>`).join("");
  renderPanel("deployments", dash.deployments, (d) =>
    `${esc(d.version ?? d.id)} · ${esc(d.environment ?? "")} · ${esc(d.phase ?? "")} · ${esc(d.trafficPercent ?? 0)}%`);
  renderPanel("loadTests", dash.loadTests, (d) => `${esc(d.scenarioId ?? d.id)} · ${esc(d.status ?? "")}`);
  renderPanel("backups", dash.backups, (d) =>
    `${esc(d.id)} · ${esc(d.status ?? "")} · ${esc(d.documentCount ?? 0)} docs`);
  table("markets", ["country", "status", "limit"], dash.markets.map((m) =>
    `<tr><td>${esc(m.country)}</td><td>${esc(m.emergencyPaused ? "paused (emergency)" : m.launchStatus)}</td><td>${esc(m.trafficLimit ?? "")}</td></tr>`),
    "no markets configured");
  $("message").hidden = true;
  $("dashboard").hidden = false;
  tickAge();
}

function tickAge() {
  if (state.fetchedAt === null) return;
  const el = $("age");
  if (state.snapshotAt === null) { el.textContent = "no snapshot yet"; return; }
  const age = Math.round((state.ageAtFetch ?? 0) + (Date.now() - state.fetchedAt) / 1000);
  el.textContent = `data ${age} s old (snapshot ${new Date(state.snapshotAt).toISOString().slice(11, 19)}Z)`;
  el.dataset.ageSec = String(age);
  el.classList.toggle("stale", age > STALE_SEC);
}

async function refresh() {
  if (!state.base) return;
  try {
    const [dash, history] = await Promise.all([
      call("pack391_getOpsDashboard", {}),
      call("pack391_getHistoricalMetrics", { range: $("range").value, fields: CHARTS.map(([f]) => f) }),
    ]);
    render(dash);
    renderCharts(history);
    delete document.body.dataset.error;
    document.body.dataset.loaded = String(Date.now());
  } catch (err) {
    if (err.status === "PERMISSION_DENIED") {
      showMessage("This dashboard is for the ops team: your account does not have the ops or admin role. Ask an admin for access.");
    } else if (err.status === "UNAUTHENTICATED") {
      showMessage(!$("token").hidden
        ? "Sign in to see the ops dashboard: paste an ID token (`pack391 token --role ops`) in the token field."
        : "Sign in to see the ops dashboard.");
    } else {
      showMessage(`Could not load the dashboard (${err.status || "error"}): ${err.message}. Retrying every minute.`);
    }
    document.body.dataset.loaded = String(Date.now());
    document.body.dataset.error = err.status || "error";
  }
}

async function configure() {
  let init = {};
  try { init = await (await fetch("/__/firebase/init.json", { credentials: "same-origin" })).json(); } catch { init = {}; }
  if (!init || typeof init !== "object") init = {};
  if (init.pack391FunctionsBase === undefined) {
    state.base = PRODUCTION_BASE;
  } else {
    state.base = sameOriginBase(init.pack391FunctionsBase);
    if (!state.base) {
      showMessage("Refusing the functions base from /__/firebase/init.json: pack391FunctionsBase must be " +
        "a path on this site (such as /ops/api), not another origin. Nothing was called.", "CONFIG");
      document.body.dataset.loaded = String(Date.now());
      return null;
    }
  }
  if (window.firebase && !init.pack391Local) {
    firebase.initializeApp(init);
    const auth = firebase.auth();
    $("signin").hidden = false;
    $("signin").onclick = () => auth.signInWithPopup(new firebase.auth.GoogleAuthProvider());
    $("signout").onclick = () => auth.signOut();
    auth.onAuthStateChanged((user) => {
      state.user = user;
      $("signin").hidden = !!user;
      $("signout").hidden = !user;
      if (user) refresh(); else showMessage("Sign in to see the ops dashboard.");
    });
    return false;
  }
  $("token").hidden = false;
  $("token").value = state.token || "";
  $("token").onchange = () => {
    state.token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    refresh();
  };
  return true;
}

// Tokens and settings do not belong in the address bar (history, logs, Referer): anything
// an old link put there is ignored and taken out of the URL.
function scrubQuery() {
  if (!location.search) return;
  history.replaceState(null, "", location.pathname + location.hash);
}

window.addEventListener("DOMContentLoaded", async () => {
  scrubQuery();
  $("refresh").onclick = refresh;
  $("range").onchange = refresh;
  const local = await configure();
  if (local === null) return;
  if (local) refresh();
  state.timer = setInterval(refresh, REFRESH_MS);
  setInterval(tickAge, 1000);
});
