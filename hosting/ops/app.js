// Avalo ops console: shows the platform (pack391_getOpsDashboard every minute,
// pack391_getOpsLive every few seconds, pack391_getOpsTimeline) and acts on it from the row
// that shows the evidence (actions.js), signed in through Firebase Auth the same way
// locally and deployed:
//
// - deployed (Hosting's /__/firebase/init.json): the project's providers (email and
//   password, Google), Google's Identity Toolkit;
// - locally (init.json has pack391Local; pack391AuthEmulator when `make run` runs the Auth
//   emulator): auth.useEmulator(location.origin), so sign-in goes to the local stack, which
//   hands it to the Firebase Auth emulator: no request leaves the origin.
//
// Staff roles are custom claims (`pack391 grant --role ops EMAIL`), read by the functions
// from the ID token the SDK sends with every call (calls.js).
"use strict";

import { CallError, describeError, makeCaller, sameOriginBase } from "./calls.js";
import { $, CHARTS, renderCharts, renderDashboard, renderLive } from "./render.js";
import { timelineSvg } from "./timeline.js";
import { toast, wireActions } from "./actions.js";

const DASHBOARD_MS = 60 * 1000;
const LIVE_MS = 5 * 1000;
const TIMELINE_MS = 60 * 1000;
const STALE_SEC = 180;
const SDK_VERSION = "8.10.1";
const state = { call: null, user: null, refreshedToken: false, fetchedAt: null, snapshotAt: null,
                ageAtFetch: null, etag: null, live: null, liveAt: null, statuses: {}, timers: [],
                actions: 0 };

function loaded() {
  document.body.dataset.loaded = String(Date.now());
}

function showMessage(text, status) {
  if (status) document.body.dataset.error = status;
  $("message").textContent = text;
  $("message").hidden = false;
  $("dashboard").hidden = true;
}

function showError(err) {
  const status = err instanceof CallError ? err.status : "ERROR";
  if (status === "PERMISSION_DENIED") {
    showMessage("This console is for the ops team: your account does not have the ops or admin role. " +
      `Ask an admin for access (\`pack391 grant --role ops EMAIL\`), then sign in again. ${describeError(err)}`);
  } else if (status === "UNAUTHENTICATED") {
    showMessage(`Sign in to see the ops console. ${describeError(err)}`);
  } else {
    showMessage(`Could not load the dashboard ${describeError(err)} Retrying every minute.`);
  }
  document.body.dataset.error = status;
  document.body.dataset.errorDetails = err.details === undefined ? "" : JSON.stringify(err.details);
}

function signedOut() {
  return !state.user;
}

// A role granted after sign-in is in the next ID token: on the first refusal, the page
// asks Firebase Auth for a fresh token once and tries again.
async function withFreshClaims(run) {
  try {
    return await run();
  } catch (err) {
    if (!(err instanceof CallError) || err.status !== "PERMISSION_DENIED" || state.refreshedToken) throw err;
    state.refreshedToken = true;
    try {
      await state.user.getIdToken(true);
    } catch {
      throw err;  // no fresh token: the refusal stands
    }
    await showWho();
    return run();
  }
}

async function refreshDashboard(markLoaded = true) {
  if (signedOut()) return false;
  try {
    const [dash, history] = await withFreshClaims(() => Promise.all([
      state.call("pack391_getOpsDashboard", {}),
      state.call("pack391_getHistoricalMetrics", { range: $("range").value, fields: CHARTS.map(([f]) => f) }),
    ]));
    state.snapshotAt = dash.live.at ? Date.parse(dash.live.at) : null;
    state.fetchedAt = Date.now();
    state.ageAtFetch = dash.live.ageSec;
    state.statuses = Object.fromEntries(
      (dash.live.metrics ? dash.live.metrics.systemHealth.services : []).map((s) => [s.name, s.status]));
    renderDashboard(dash);
    renderCharts(history);
    if (state.live) renderLive(state.live, state.statuses);
    delete document.body.dataset.error;
    delete document.body.dataset.errorDetails;
    $("message").hidden = true;
    $("dashboard").hidden = false;
    tickAge();
  } catch (err) {
    showError(err);
    if (markLoaded) loaded();
    return false;
  }
  if (markLoaded) loaded();
  return true;
}

// Every few seconds: the alerts, DDoS state, deployments, services and the activity. The
// function answers notModified (and nothing else) when the etag the page holds is current.
async function refreshLive() {
  if (signedOut() || document.body.dataset.error) return;
  try {
    const live = await state.call("pack391_getOpsLive", state.etag ? { etag: state.etag } : {});
    state.liveAt = Date.now();
    if (!live.notModified) {
      state.etag = live.etag;
      state.live = live;
      renderLive(live, state.statuses);
      document.body.dataset.live = live.etag;
    }
  } catch (err) {
    $("liveAge").textContent = `live updates failed ${describeError(err)}`;
    $("liveAge").classList.add("stale");
  }
}

async function refreshTimeline() {
  if (signedOut() || document.body.dataset.error) return;
  try {
    const view = await state.call("pack391_getOpsTimeline", { minutes: 60 });
    $("timeline").innerHTML = timelineSvg(view);
    document.body.dataset.timeline = String(view.events.length);
  } catch (err) {
    $("timeline").textContent = `The timeline did not load ${describeError(err)}`;
  }
}

async function refreshAll() {
  if (await refreshDashboard(false)) await Promise.all([refreshLive(), refreshTimeline()]);
  loaded();
}

function tickAge() {
  if (state.fetchedAt !== null) {
    const el = $("age");
    if (state.snapshotAt === null) {
      el.textContent = "no snapshot yet";
    } else {
      const age = Math.round((state.ageAtFetch ?? 0) + (Date.now() - state.fetchedAt) / 1000);
      el.textContent = `metrics ${age} s old (snapshot ${new Date(state.snapshotAt).toISOString().slice(11, 19)}Z)`;
      el.dataset.ageSec = String(age);
      el.classList.toggle("stale", age > STALE_SEC);
    }
  }
  if (state.liveAt !== null) {
    const age = Math.round((Date.now() - state.liveAt) / 1000);
    $("liveAge").textContent = `live ${age} s ago`;
    $("liveAge").dataset.ageSec = String(age);
    $("liveAge").classList.toggle("stale", age > 3 * LIVE_MS / 1000);
  }
}

async function showWho() {
  if (!state.user) { $("who").hidden = true; return; }
  const claims = (await state.user.getIdTokenResult()).claims;
  const role = claims.admin === true ? "admin" : claims.ops === true ? "ops" : "no staff role";
  $("who").textContent = `${state.user.email || state.user.uid} · ${role}`;
  $("who").dataset.role = role;
  $("who").hidden = false;
}

function showSignIn(signedIn) {
  for (const id of ["email", "password", "signinPassword", "signin"]) $(id).hidden = signedIn;
  $("signout").hidden = !signedIn;
}

function sdkLoaded() {
  return !!(window.firebase && typeof firebase.initializeApp === "function" &&
            typeof firebase.auth === "function" && typeof firebase.functions === "function");
}

async function readInit() {
  try {
    const init = await (await fetch("/__/firebase/init.json", { credentials: "same-origin" })).json();
    return init && typeof init === "object" ? init : {};
  } catch {
    return {};
  }
}

async function configure() {
  const init = await readInit();
  const local = init.pack391Local === true || init.pack391FunctionsBase !== undefined;
  let region = null;
  if (local) {
    const base = sameOriginBase(init.pack391FunctionsBase);
    const parts = base ? base.split("/").filter(Boolean) : [];
    if (!base || parts.length !== 2 || parts[0] !== init.projectId) {
      showMessage("Refusing the functions base from /__/firebase/init.json: pack391FunctionsBase must be " +
        "a path on this site, /<project>/<region>, not another origin. Nothing was called.", "CONFIG");
      return false;
    }
    region = parts[1];
  }
  if (!sdkLoaded()) {
    showMessage(`The Firebase JS SDK ${SDK_VERSION} did not load from /__/firebase/${SDK_VERSION}/ ` +
      "(firebase-app.js, firebase-auth.js, firebase-functions.js). On the local stack it is served from " +
      "tools/node_modules/firebase8: run `make setup` (npm ci in tools/) and reload.", "SDK");
    return false;
  }
  if (local && init.pack391AuthEmulator !== true) {
    showMessage("The local stack runs without the Firebase Auth emulator, so nobody can sign in: " +
      "start it with `make run` (`pack391 serve` without --no-auth-emulator).", "NO_AUTH_EMULATOR");
    return false;
  }
  const { pack391Local, pack391FunctionsBase, pack391AuthEmulator, pack391RehearsalReport, ...options } = init;
  firebase.initializeApp(options);
  const auth = firebase.auth();
  let functions;
  if (local) {
    auth.useEmulator(location.origin, { disableWarnings: true });
    functions = firebase.app().functions(region);
    functions.useEmulator(location.hostname, Number(location.port || (location.protocol === "https:" ? 443 : 80)));
    $("emulatorNote").hidden = false;
  } else {
    functions = firebase.app().functions(location.origin);
  }
  const report = sameOriginBase(pack391RehearsalReport);
  if (report) { $("rehearsal").href = report; $("rehearsal").hidden = false; }
  state.call = makeCaller(functions);
  $("signin").onclick = () => auth.signInWithPopup(new firebase.auth.GoogleAuthProvider())
    .catch((err) => showMessage(`Sign-in failed (${err.code}): ${err.message}`, "SIGNIN"));
  $("signinPassword").onclick = () => auth.signInWithEmailAndPassword($("email").value.trim(), $("password").value)
    .catch((err) => { showMessage(`Sign-in failed (${err.code}): ${err.message}`, "SIGNIN"); loaded(); });
  $("signout").onclick = () => auth.signOut();
  auth.onAuthStateChanged(async (user) => {
    state.user = user;
    state.refreshedToken = false;
    state.etag = null;
    state.live = null;
    showSignIn(!!user);
    await showWho();
    if (!user) {
      showMessage("Sign in to see the ops console.", "UNAUTHENTICATED");
      loaded();
      return;
    }
    await refreshAll();
  });
  return true;
}

// Tokens and settings do not belong in the address bar (history, logs, Referer): anything
// an old link put there is ignored and taken out of the URL.
function scrubQuery() {
  if (!location.search) return;
  history.replaceState(null, "", location.pathname + location.hash);
}

async function start() {
  scrubQuery();
  $("refresh").onclick = refreshAll;
  $("range").onchange = () => refreshDashboard();
  if (!(await configure())) { loaded(); return; }
  wireActions((name, data) => state.call(name, data), async (text) => {
    toast(text);
    state.etag = null;
    await refreshAll();
    state.actions += 1;
    document.body.dataset.actions = String(state.actions);  // refreshed after the action
  });
  state.timers.push(setInterval(() => refreshDashboard(), DASHBOARD_MS));
  state.timers.push(setInterval(refreshLive, LIVE_MS));
  state.timers.push(setInterval(refreshTimeline, TIMELINE_MS));
  setInterval(tickAge, 1000);
}

if (document.readyState === "loading") window.addEventListener("DOMContentLoaded", start);
else start();
