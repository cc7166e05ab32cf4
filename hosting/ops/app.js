// Avalo ops dashboard: calls pack391_getOpsDashboard and pack391_getHistoricalMetrics (the
// callable protocol: {"data": ...} in, {"result"} or {"error": {status, message, details}}
// out) and shows them.
//
// Two ways to call, both on this page's own origin only (the ID token is never sent
// anywhere else, and nothing comes from the query string: there is no ?region= and no
// ?token=):
//
// - On Firebase Hosting (its /__/firebase/init.json has no pack391 keys): Firebase JS SDK 8
//   (the only version Hosting serves, at its reserved /__/firebase/8.10.1/ URLs), signed in
//   with Google through Firebase Auth, calls each function with
//   firebase.app().functions(location.origin).httpsCallable(name): the SDK takes the ID
//   token from firebase.auth() itself. SDK 8 keeps only the ORIGIN of a custom domain
//   (new URL(domain).origin; a path such as /ops/api is dropped; firebase 13 keeps it), so it
//   posts to <this origin>/<name>, and firebase.json hosting.rewrites sends
//   /pack391_getOpsDashboard and /pack391_getHistoricalMetrics to the functions. The ops
//   page is deployed to its own Hosting site (target "ops"), so those root paths are its
//   own.
//
// - On the local stack (init.json has pack391Local and pack391FunctionsBase,
//   "/<project>/<region>"): there is no Auth emulator, so there is no Firebase Auth user
//   for the SDK to take a token from, and SDK 8 has no public way to hand httpsCallable a
//   token from anywhere else (it reads only firebase.auth()'s current user). The operator
//   pastes an emulator ID token (`pack391 token --role ops`, kept in sessionStorage), and
//   tokenCall() below does what httpsCallable does, with fetch(): POST {"data": ...} with
//   "Authorization: Bearer <token>" to <this origin>/<project>/<region>/<name>, the URL SDK
//   8's functions.useEmulator(location.hostname, location.port) builds
//   ("http://host:port/{projectId}/{region}/{name}", the local stack's scheme), and errors
//   decoded as the SDK decodes them (code, message, details). pack391FunctionsBase must
//   be a path on this origin: anything else (an absolute or protocol-relative URL) is
//   refused and nothing is called. (Not chosen: wrapping window.fetch or setting the SDK's
//   private contextProvider to slip the token into httpsCallable; the token mode is ~30
//   explicit lines on public APIs, and Hosting's mode is the real SDK path, tested against
//   the local stack too.) The SDK scripts load locally as well (the local stack serves
//   them from node_modules/firebase8): the page runs the scripts Hosting runs, and one
//   whose SDK did not load says so instead of failing later on Hosting.
"use strict";

const REFRESH_MS = 60 * 1000;
const STALE_SEC = 180;
const SDK_VERSION = "8.10.1";
const TOKEN_KEY = "pack391Token";
const state = { mode: null, base: null, functions: null, token: sessionStorage.getItem(TOKEN_KEY),
                user: null, fetchedAt: null, snapshotAt: null, timer: null };

const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const num = (v, digits = 0) => (v === null || v === undefined ? "–" :
  Number(v).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 }));

// An error as httpsCallable reports it (code such as "permission-denied", message, details),
// plus its wire name ("PERMISSION_DENIED"), which the page puts in body[data-error].
class CallError extends Error {
  constructor(code, message, details) {
    super(message);
    this.code = code;
    this.details = details;
    this.status = String(code).toUpperCase().replace(/-/g, "_");
  }
}

// The callable error codes (google.rpc.Code names -> the SDK's codes), and the SDK's
// fallback from the HTTP status when the body has none (firebase-functions 0.6 in SDK 8).
const CODES = { OK: "ok", CANCELLED: "cancelled", UNKNOWN: "unknown", INVALID_ARGUMENT: "invalid-argument",
  DEADLINE_EXCEEDED: "deadline-exceeded", NOT_FOUND: "not-found", ALREADY_EXISTS: "already-exists",
  PERMISSION_DENIED: "permission-denied", UNAUTHENTICATED: "unauthenticated",
  RESOURCE_EXHAUSTED: "resource-exhausted", FAILED_PRECONDITION: "failed-precondition", ABORTED: "aborted",
  OUT_OF_RANGE: "out-of-range", UNIMPLEMENTED: "unimplemented", INTERNAL: "internal",
  UNAVAILABLE: "unavailable", DATA_LOSS: "data-loss" };
const HTTP_CODES = { 200: "ok", 400: "invalid-argument", 401: "unauthenticated", 403: "permission-denied",
  404: "not-found", 409: "aborted", 429: "resource-exhausted", 499: "cancelled", 500: "internal",
  501: "unimplemented", 503: "unavailable", 504: "deadline-exceeded" };

// A path on this origin, normalised ("/a/b"), or null: never "//host", "/\\host",
// "https://host" or anything else the URL parser resolves to another origin.
function sameOriginBase(value) {
  if (typeof value !== "string" || !/^\/(?![/\\])/.test(value)) return null;
  let url;
  try { url = new URL(value, location.origin); } catch { return null; }
  if (url.origin !== location.origin || url.search || url.hash) return null;
  return url.pathname.replace(/\/+$/, "");
}

// Local token mode: the callable protocol with fetch() (see the top of this file).
async function tokenCall(name, data) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const url = new URL(`${state.base}/${encodeURIComponent(name)}`, location.origin);
  if (url.origin !== location.origin) throw new CallError("config", "refusing to call another origin");
  let response;
  try {
    response = await fetch(url, { method: "POST", headers, body: JSON.stringify({ data }),
                                  credentials: "same-origin", referrerPolicy: "no-referrer" });
  } catch (err) {
    throw new CallError("internal", `the request failed: ${err.message}`);
  }
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  const error = body && typeof body.error === "object" ? body.error : null;
  let code = HTTP_CODES[response.status] || (response.ok ? "ok" : "unknown");
  if (error && typeof error.status === "string") code = CODES[error.status] || "internal";
  if (code !== "ok") {
    throw new CallError(code, error && typeof error.message === "string" ? error.message : `HTTP ${response.status}`,
                        error ? error.details : undefined);
  }
  if (!body || !("result" in body)) throw new CallError("internal", "Response is missing data field.");
  return body.result;
}

// Hosting: the SDK's httpsCallable (token from firebase.auth(), same-origin rewrites).
async function sdkCall(name, data) {
  try {
    return (await state.functions.httpsCallable(name)(data)).data;
  } catch (err) {
    throw new CallError(err.code || "unknown", err.message, err.details);
  }
}

function call(name, data) {
  return state.mode === "sdk" ? sdkCall(name, data) : tokenCall(name, data);
}

function loaded() {
  document.body.dataset.loaded = String(Date.now());
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

function describeError(err) {
  const details = err.details === undefined || err.details === null ? "" : ` Details: ${JSON.stringify(err.details)}.`;
  return `(${err.code || "error"}): ${err.message}.${details}`;
}

async function refresh() {
  if (!state.mode) return;
  if (state.mode === "sdk" && !state.user) {
    showMessage("Sign in to see the ops dashboard.", "UNAUTHENTICATED");
    loaded();
    return;
  }
  try {
    const [dash, history] = await Promise.all([
      call("pack391_getOpsDashboard", {}),
      call("pack391_getHistoricalMetrics", { range: $("range").value, fields: CHARTS.map(([f]) => f) }),
    ]);
    render(dash);
    renderCharts(history);
    delete document.body.dataset.error;
    delete document.body.dataset.errorDetails;
    loaded();
  } catch (err) {
    const status = err instanceof CallError ? err.status : "ERROR";
    if (status === "PERMISSION_DENIED") {
      showMessage("This dashboard is for the ops team: your account does not have the ops or admin role. " +
        `Ask an admin for access. ${describeError(err)}`);
    } else if (status === "UNAUTHENTICATED") {
      showMessage(state.mode === "token"
        ? `Sign in to see the ops dashboard: paste an ID token (\`pack391 token --role ops\`) in the token field. ${describeError(err)}`
        : `Sign in to see the ops dashboard. ${describeError(err)}`);
    } else {
      showMessage(`Could not load the dashboard ${describeError(err)} Retrying every minute.`);
    }
    document.body.dataset.error = status;
    document.body.dataset.errorDetails = err.details === undefined ? "" : JSON.stringify(err.details);
    loaded();
  }
}

function sdkLoaded() {
  return !!(window.firebase && typeof firebase.initializeApp === "function" &&
            typeof firebase.auth === "function" && typeof firebase.functions === "function");
}

async function configure() {
  let init = {};
  try { init = await (await fetch("/__/firebase/init.json", { credentials: "same-origin" })).json(); } catch { init = {}; }
  if (!init || typeof init !== "object") init = {};
  const local = init.pack391Local === true || init.pack391FunctionsBase !== undefined;
  if (local) {
    state.base = sameOriginBase(init.pack391FunctionsBase);
    if (!state.base) {
      showMessage("Refusing the functions base from /__/firebase/init.json: pack391FunctionsBase must be " +
        "a path on this site (such as /<project>/<region>), not another origin. Nothing was called.", "CONFIG");
      loaded();
      return false;
    }
  }
  if (!sdkLoaded()) {
    showMessage(`The Firebase JS SDK ${SDK_VERSION} did not load from /__/firebase/${SDK_VERSION}/ ` +
      "(firebase-app.js, firebase-auth.js, firebase-functions.js). On the local stack it is served from " +
      "tools/node_modules/firebase8: run `make setup` (npm ci in tools/) and reload.", "SDK");
    loaded();
    return false;
  }
  if (!local) {
    firebase.initializeApp(init);
    const auth = firebase.auth();
    // A custom domain: SDK 8 posts to <origin>/<name> (it keeps the origin only), which
    // firebase.json rewrites to the function on this same site.
    state.functions = firebase.app().functions(location.origin);
    state.mode = "sdk";
    $("signin").hidden = false;
    $("signin").onclick = () => auth.signInWithPopup(new firebase.auth.GoogleAuthProvider());
    $("signout").onclick = () => auth.signOut();
    auth.onAuthStateChanged((user) => {
      state.user = user;
      $("signin").hidden = !!user;
      $("signout").hidden = !user;
      refresh();
    });
    return true;
  }
  state.mode = "token";
  $("token").hidden = false;
  $("token").value = state.token || "";
  $("token").onchange = () => {
    state.token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    refresh();
  };
  refresh();
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
  if (!(await configure())) return;
  state.timer = setInterval(refresh, REFRESH_MS);
  setInterval(tickAge, 1000);
});
