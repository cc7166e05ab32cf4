// The last hour on one time axis (pack391_getOpsTimeline): alerts, mitigation, deployments,
// scale events and staff actions, one lane each, like the rehearsal report's timeline.
// SVG attributes only (no inline style: the CSP has style-src 'self').
"use strict";

import { esc } from "./render.js";

export const LANES = [
  ["alert", "Alerts", "#ff6b6b"],
  ["mitigation", "Mitigation", "#ffa94d"],
  ["deployment", "Deployments", "#4aa3ff"],
  ["scale", "Scale", "#51cf66"],
  ["action", "Staff actions", "#cc5de8"],
];

export function timelineSvg(view) {
  const w = 1000, left = 110, right = 10, laneH = 26, top = 6, axisH = 20;
  const h = top + LANES.length * laneH + axisH;
  const t0 = Date.parse(view.from), t1 = Date.parse(view.to);
  const span = Math.max(1, t1 - t0);
  const x = (t) => left + Math.min(1, Math.max(0, (t - t0) / span)) * (w - left - right);
  const parts = [];
  LANES.forEach(([lane, label], i) => {
    const y = top + i * laneH;
    parts.push(`<text x="4" y="${y + 17}" fill="#8b95a7" font-size="12">${esc(label)}</text>`);
    parts.push(`<line x1="${left}" x2="${w - right}" y1="${y + laneH / 2}" y2="${y + laneH / 2}" stroke="#2a3140"/>`);
  });
  for (let m = 0; m <= 60; m += 10) {
    const t = t0 + (span * m) / 60;
    const tx = x(t).toFixed(1);
    parts.push(`<line x1="${tx}" x2="${tx}" y1="${top}" y2="${h - axisH}" stroke="#2a3140" stroke-dasharray="2,3"/>`);
    parts.push(`<text x="${tx}" y="${h - 5}" fill="#8b95a7" font-size="11" text-anchor="middle">` +
      `${new Date(t).toISOString().slice(11, 16)}</text>`);
  }
  for (const e of view.events) {
    const i = LANES.findIndex(([lane]) => lane === e.lane);
    if (i < 0) continue;
    const [, , color] = LANES[i];
    const y = top + i * laneH + laneH / 2;
    const at = Date.parse(e.at);
    const title = `<title>${esc(new Date(at).toISOString().slice(11, 19))}Z ${esc(e.title)}` +
      `${e.detail ? ` · ${esc(e.detail)}` : ""}</title>`;
    const attrs = `data-lane="${esc(e.lane)}" data-event-title="${esc(e.title)}"`;
    if (e.endAt || e.lane === "alert") {  // an open alert: until now
      const end = e.endAt ? Date.parse(e.endAt) : t1;
      const x0 = x(at), x1 = Math.max(x(end), x0 + 3);
      parts.push(`<rect ${attrs} x="${x0.toFixed(1)}" y="${y - 6}" width="${(x1 - x0).toFixed(1)}" height="12" ` +
        `rx="3" fill="${color}" fill-opacity="0.75">${title}</rect>`);
    } else {
      parts.push(`<circle ${attrs} cx="${x(at).toFixed(1)}" cy="${y}" r="5" fill="${color}">${title}</circle>`);
    }
  }
  return `<svg viewBox="0 0 ${w} ${h}" class="timeline-svg">${parts.join("")}</svg>` +
    `<div class="muted">${view.events.length} events · ${esc(view.from.slice(11, 16))}–${esc(view.to.slice(11, 16))} UTC</div>`;
}
