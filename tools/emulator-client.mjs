// An app's view of the bundle under the real Firebase CLI emulators, through the official
// Firebase JS SDK (modular, v13): sign-in against the Auth emulator, callables through
// connectFunctionsEmulator. Driven by tests/test_firebase_cli.py:
//
//   node tools/emulator-client.mjs '{"project", "region", "functionsPort", "authPort",
//     "loadTarget", "loadTestTimeoutMs", "triggerUrl", "schedulerHeaders"}'
//
// Prints one JSON object: {"<case>": {"result": ...} | {"error": {code, message, details}},
// "timings": {...}}.
// Roles are custom claims set through the Auth emulator's REST API (accounts:update with
// customAttributes, authorized by the emulator's "Bearer owner" convention), then the ID
// token is refreshed, as an app does after an admin changes a user's claims.

import { deleteApp, initializeApp } from "firebase/app";
import {
  connectAuthEmulator,
  createUserWithEmailAndPassword,
  getAuth,
  signInWithEmailAndPassword,
} from "firebase/auth";
import { connectFunctionsEmulator, getFunctions, httpsCallable } from "firebase/functions";

const config = JSON.parse(process.argv[2]);
const HOST = "127.0.0.1";
const PASSWORD = "pack391-cli-test";
const apps = [];

function newApp(name) {
  const app = initializeApp(
    { projectId: config.project, apiKey: "fake-api-key", authDomain: `${config.project}.firebaseapp.com` },
    name,
  );
  apps.push(app);
  const auth = getAuth(app);
  connectAuthEmulator(auth, `http://${HOST}:${config.authPort}`, { disableWarnings: true });
  const functions = getFunctions(app, config.region);
  connectFunctionsEmulator(functions, HOST, config.functionsPort);
  return { app, auth, functions };
}

async function setClaims(uid, claims) {
  const url =
    `http://${HOST}:${config.authPort}/identitytoolkit.googleapis.com/v1/` +
    `projects/${config.project}/accounts:update`;
  const response = await fetch(url, {
    method: "POST",
    headers: { Authorization: "Bearer owner", "Content-Type": "application/json" },
    body: JSON.stringify({ localId: uid, customAttributes: JSON.stringify(claims) }),
  });
  if (!response.ok) {
    throw new Error(`accounts:update ${uid}: HTTP ${response.status} ${await response.text()}`);
  }
}

// A signed-in client; claims (admin/ops) set on the Auth emulator, then the token refreshed.
async function client(name, claims) {
  const c = newApp(name);
  const email = `${name}@pack391.test`;
  const created = await createUserWithEmailAndPassword(c.auth, email, PASSWORD);
  if (claims) {
    await setClaims(created.user.uid, claims);
    // sign in again as an app would, then force a fresh ID token carrying the claims
    const signedIn = await signInWithEmailAndPassword(c.auth, email, PASSWORD);
    const token = await signedIn.user.getIdTokenResult(true);
    for (const [claim, value] of Object.entries(claims)) {
      if (token.claims[claim] !== value) {
        throw new Error(`${name}: refreshed token lacks ${claim}=${value}: ${JSON.stringify(token.claims)}`);
      }
    }
  }
  return c;
}

async function call(c, name, data) {
  try {
    const res = await httpsCallable(c.functions, name, { timeout: 120_000 })(data);
    return { result: res.data };
  } catch (err) {
    return { error: { code: err.code, message: err.message, details: err.details ?? null } };
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A scheduled run as the Functions emulator takes it (its trigger URL, a POST with Cloud
// Scheduler's headers), then the backup catalog as an ops caller sees it.
async function scheduledBackup(ops, out) {
  const response = await fetch(config.triggerUrl, {
    method: "POST",
    headers: config.schedulerHeaders,
    body: "{}",
  });
  out.scheduledRun = { status: response.status, body: await response.text() };
  out.backupStatus = await call(ops, "pack391_getBackupStatus", {});
}

// A load test: the run's shard goes through the Cloud Tasks emulator into the task-queue
// function, which reports back through Firestore; the results are polled as ops.
async function loadTest(admin, ops, out) {
  out.runLoadTest = await call(admin, "pack391_runLoadTest", {
    scenarioId: "swipe_load",
    overrides: { target: config.loadTarget, rps: 5, durationSec: 2, shards: 1 },
  });
  if (!out.runLoadTest.result) return;
  const runId = out.runLoadTest.result.runId;
  const deadline = Date.now() + config.loadTestTimeoutMs;
  out.loadTestPolls = 0;
  for (;;) {
    out.loadTestResults = await call(ops, "pack391_getLoadTestResults", { runId });
    out.loadTestPolls += 1;
    const status = out.loadTestResults.result?.status;
    if (out.loadTestResults.error || status === "completed" || status === "aborted") return;
    if (Date.now() > deadline) return;
    await sleep(1000);
  }
}

async function main() {
  const out = { timings: {} };
  const timed = async (name, work) => {
    const started = Date.now();
    await work();
    out.timings[name] = (Date.now() - started) / 1000;
  };
  let admin, ops, user;
  await timed("signIn", async () => {
    [admin, ops, user] = await Promise.all([
      client("admin", { admin: true }),
      client("ops", { ops: true }),
      client("user", null),
    ]);
  });
  const anonymous = newApp("nobody"); // never signed in

  // Independent chains run side by side (each function's cold worker starts once; calls
  // to one function stay sequential, so the emulator never starts a second worker for it).
  await Promise.all([
    timed("loadTest", () => loadTest(admin, ops, out)),
    timed("scheduled", () => scheduledBackup(ops, out)),
    timed("readCalls", async () => {
      out.success = await call(ops, "pack391_getMarketControls", {});
      out.unauthenticated = await call(anonymous, "pack391_getMarketControls", {});
    }),
    timed("writeCalls", async () => {
      out.invalidArgument = await call(admin, "pack391_updateMarketControl", {
        country: "PL",
        config: { launchStatus: "soft_launch", trafficLimit: "many" },
      });
      out.permissionDenied = await call(user, "pack391_updateMarketControl", {
        country: "PL",
        config: { launchStatus: "soft_launch", trafficLimit: 10 },
        reason: "not allowed",
      });
    }),
  ]);
  return out;
}

try {
  const out = await main();
  process.stdout.write(JSON.stringify(out) + "\n");
} finally {
  await Promise.all(apps.map((app) => deleteApp(app)));
}
