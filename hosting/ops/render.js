// Rendering: HTML strings of escaped values only, no inline style (the CSP has style-src
// 'self'); every action is a <button data-act=...> whose data-* attributes name what it
// acts on (actions.js). Pure functions of the data they are given.
"use strict";

export const $ = (id) => document.getElementById(id);
export const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
export const num = (v, digits = 0) => (v === null || v === undefined ? "–" :
  Number(v).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 }));
const hhmm = (iso) => (iso ? `${new Date(iso).toISOString().slice(11, 16)}Z` : "");
const hhmmss = (iso) => (iso ? `${new Date(iso).toISOString().slice(11, 19)}Z` : "");

function button(act, label, attrs) {
  const data = Object.entries(attrs).map(([k, v]) => ` data-${k}="${esc(v)}"`).join("");
  return `<button class="act" data-act="${esc(act)}"${data}>${esc(label)}</button>`;
}

function card(title, big, sub, metric) {
  return `<div class="card"><div class="title">${esc(title)}</div>` +
    `<div class="big" data-metric="${esc(metric)}">${big}</div><div class="sub">${sub}</div></div>`;
}

function sub(pairs) {
  return pairs.map(([label, metric, value, digits]) =>
    `${esc(label)} <span data-metric="${esc(metric)}">${num(value, digits)}</span>`).join(" · ");
}

export function renderCards(m) {
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

export const CHARTS = [
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

export function renderCharts(history) {
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

// The slow part of the dashboard (every minute): the KPI cards, the other areas' panels
// and the markets.
export function renderDashboard(dash) {
  const live = dash.live;
  if (live.metrics) renderCards(live.metrics);
  else $("cards").innerHTML = '<div class="card">No live metrics yet: pack391_updateLiveMetrics runs every minute.</div>';
  const detections = dash.ddos.recentDetections;
  $("detections").innerHTML = `<h3>Recent detections (${detections.length})</h3>` +
    detections.slice(0, 5).map((d) => `<div>${esc(d.kind)} · ${esc(d.severity)} · ${esc(hhmm(d.minute))}</div>`).join("");
  renderPanel("loadTests", dash.loadTests, (d) => `${esc(d.scenarioId ?? d.id)} · ${esc(d.status ?? "")}`);
  renderPanel("backups", dash.backups, (d) =>
    `${esc(d.id)} · ${esc(d.status ?? "")} · ${esc(d.documentCount ?? 0)} docs`);
  table("markets", ["country", "status", "limit", ""], dash.markets.map((m) => {
    const paused = !!m.emergencyPaused;
    return `<tr data-market="${esc(m.country)}"><td>${esc(m.country)}</td>` +
      `<td data-paused="${paused ? "1" : "0"}">${esc(paused ? "paused (emergency)" : m.launchStatus)}</td>` +
      `<td>${esc(m.trafficLimit ?? "")}</td><td>` +
      (paused ? button("market-resume", "Resume", { country: m.country })
        : button("market-pause", "Pause", { country: m.country })) + "</td></tr>";
  }), "no markets configured");
}

// The live part (every few seconds): alerts, services, DDoS, deployments, activity.
// `statuses` are the services' health from the last snapshot (name -> status).
export function renderLive(live, statuses) {
  table("alerts", ["severity", "alert", "source", "status", "since", ""], live.alerts.map((a) =>
    `<tr data-alert="${esc(a.id)}"><td class="sev-${esc(a.severity)}">${esc(a.severity)}</td><td>${esc(a.title)}` +
    `${a.value !== null && a.value !== undefined ? ` <span class="muted">(${num(a.value, 2)})</span>` : ""}</td>` +
    `<td>${esc(a.source)}</td><td data-alert-status="${esc(a.status)}">${esc(a.status)}` +
    `${a.acknowledgedBy ? ` by ${esc(a.acknowledgedBy)}` : ""}</td><td>${esc(hhmm(a.openedAt))}</td><td>` +
    (a.status === "acknowledged" ? "" : button("alert-ack", "Acknowledge", { id: a.id, title: a.title, source: a.source })) +
    "</td></tr>"), "no open alerts");
  // every service the snapshot judged (dependencies such as Firestore too), then any
  // registered since; only registered services scale
  const registered = Object.fromEntries(live.services.map((s) => [s.name, s]));
  const names = [...Object.keys(statuses), ...live.services.map((s) => s.name).filter((n) => !(n in statuses))];
  table("services", ["service", "status", "instances", "last action", ""], names.map((name) => {
    const s = registered[name];
    const status = statuses[name] || (s ? s.status : "");
    return `<tr data-service="${esc(name)}"><td>${esc(name)}</td><td class="status" data-status="${esc(status)}">${esc(status)}</td>` +
      `<td data-instances="${esc(s?.instances ?? "")}">${esc(s?.instances ?? "")}</td><td>${esc(s?.lastAction ?? "")}</td><td>` +
      (s ? button("scale", "Scale…", { service: name, instances: s.instances ?? "" }) : "") + "</td></tr>";
  }), "no services registered");
  renderDdos(live.ddos);
  renderSlo(live.slo);
  renderDeployments(live.deployments);
  table("activity", ["when", "who", "action", "target", "reason"], live.activity.map((e) =>
    `<tr data-activity="${esc(e.id)}" data-action-name="${esc(e.action)}"><td>${esc(hhmmss(e.at))}</td>` +
    `<td>${esc(e.actorEmail || e.actorUid)}</td><td>${esc(e.action)}</td><td>${esc(e.target)}</td>` +
    `<td>${esc(e.reason ?? "")}</td></tr>`), "no audited actions yet");
}

function renderDdos(ddos) {
  const on = ddos.modeActive;
  const blocks = ddos.blocks.map((b) =>
    `<li data-block="${esc(b.scope)}:${esc(b.subject)}">${esc(b.scope)} <b>${esc(b.subject)}</b> · ${esc(b.reason ?? "")}` +
    `${b.until ? ` · until ${esc(hhmm(b.until))}` : ""} ` +
    button("block-lift", "Lift", { scope: b.scope, subject: b.subject }) + "</li>");
  const allow = ddos.allowlist.map((a) =>
    `<li data-allow="${esc(a.entry)}"><b>${esc(a.entry)}</b> · ${esc(a.reason ?? "")} ` +
    button("allow-remove", "Remove", { entry: a.entry }) + "</li>");
  $("ddos").innerHTML =
    `<div>mode: <b data-ddos-mode="${on ? "on" : "off"}" class="${on ? "sev-critical" : ""}">` +
    `${on ? `ON until ${esc(hhmm(ddos.modeUntil))} (${esc(ddos.modeReason)})` : "off"}</b> ` +
    (on ? button("ddos-end", "End DDoS mode", {}) : "") + "</div>" +
    `<h3>Blocks (${blocks.length})</h3>${blocks.length ? `<ul id="blocks">${blocks.join("")}</ul>` : '<div class="muted">none</div>'}` +
    `<h3>Allowlist (${allow.length}) ${button("allow-add", "Add…", {})}</h3>` +
    (allow.length ? `<ul id="allowlist">${allow.join("")}</ul>` : '<div class="muted">empty</div>');
}

// The error budgets: a row per scope (burn over 1 h and 5 min, what is left of the 30-day
// budget), and each automatic action with its mode; an action in force can be lifted.
function renderSlo(slo) {
  if (!slo) {
    $("sloMinute").textContent = "";
    table("slo", ["scope", "level", "burn 1h / 5m", "budget left"], [], "no SLO evaluation yet");
    $("sloActions").innerHTML = '<span class="muted">none</span>';
    return;
  }
  $("sloMinute").textContent = `(minute ${hhmm(slo.minute)})`;
  const sev = { page: "sev-critical", ticket: "sev-warning", none: "" };
  table("slo", ["scope", "level", "burn 1h / 5m", "budget left"], slo.scopes.map((s) =>
    `<tr data-slo-scope="${esc(s.scope)}"><td>${esc(s.scope)}</td>` +
    `<td class="${sev[s.level] ?? ""}" data-slo-level="${esc(s.level)}" title="${esc(s.why)}">${esc(s.level)}</td>` +
    `<td>${num(s.burn1h, 1)}x / ${num(s.burn5m, 1)}x</td>` +
    `<td>${num(s.availabilityBudgetLeftPct, 1)} %</td></tr>`), "no traffic recorded yet");
  $("sloActions").innerHTML = slo.actions.map((a) => {
    const state = a.enforced ? "in force" : a.wanted ? (a.liftedUntil ? `lifted until ${hhmm(a.liftedUntil)}` : `would act (${a.mode})`) : "off";
    const what = a.classes.length ? ` · shedding ${a.classes.join(", ")}` : a.scopes.length ? ` · ${a.scopes.join(", ")}` : "";
    return `<div data-slo-action="${esc(a.action)}" data-enforced="${a.enforced ? "1" : "0"}">` +
      `<b>${esc(a.action.replace("_", " "))}</b> · ${esc(state)}${esc(what)} ` +
      (a.enforced ? button("slo-lift", "Lift…", { action: a.action }) : "") + "</div>";
  }).join("");
}

const STEERABLE = new Set(["pending", "validating", "progressing", "paused", "promoting"]);

function renderDeployments(items) {
  $("deployments").innerHTML = items.length ? items.map((d) => {
    const id = d.id ?? d.deploymentId;
    const phase = d.phase ?? "";
    const acts = [];
    if (STEERABLE.has(phase)) {
      if (phase === "paused") acts.push(button("deploy-resume", "Resume", { id }));
      else acts.push(button("deploy-pause", "Pause", { id }));
      if (phase !== "promoting") acts.push(button("deploy-promote", "Promote", { id }));
      acts.push(button("deploy-rollback", "Roll back", { id }));
    }
    return `<div data-deployment="${esc(id)}" data-phase="${esc(phase)}">${esc(d.version ?? id)} · ` +
      `${esc(d.environment ?? "")} · ${esc(phase)} · ${esc(d.trafficPercent ?? 0)}% ${acts.join(" ")}</div>`;
  }).join("") : '<span class="muted">none</span>';
}
