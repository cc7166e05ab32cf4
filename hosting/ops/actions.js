// Actions where the evidence is: every <button data-act> of the page opens one confirmation
// that states the effect and asks for the reason the audit log records, then calls the
// function. A refusal (role, validation, precondition) is shown verbatim in the dialog,
// which stays open; success closes it and refreshes what the page shows.
"use strict";

import { $, esc } from "./render.js";
import { describeError } from "./calls.js";

// act -> what the dialog says and how it calls. `input` asks for one more value.
export const ACTIONS = {
  "alert-ack": {
    title: (d) => `Acknowledge "${d.title}"`,
    effect: (d) => `The ${d.source} alert is marked acknowledged by you. ` +
      (d.source === "deploy" ? "A rollback alert resolves on acknowledgement." :
        "It stays listed until its condition clears."),
    call: (d, reason) => ["pack391_acknowledgeAlert", { alertId: d.id, note: reason }],
  },
  "scale": {
    title: (d) => `Scale ${d.service}`,
    input: { name: "Instances", type: "number", initial: (d) => d.instances },
    effect: (d) => `${d.service} is set to the number of instances below now (within its minimum and ` +
      "maximum), and automatic scale-down is held off for 30 minutes.",
    call: (d, reason, value) => ["pack391_manualScale",
      { serviceId: d.service, action: "scale_to", instanceCount: Number(value), reason }],
  },
  "ddos-end": {
    title: () => "End DDoS mode",
    effect: () => "Rate limits go back to their normal values now. The detector turns DDoS mode on " +
      "again if the attack goes on.",
    call: (d, reason) => ["pack391_liftBlock", { scope: "ddos_mode", reason }],
  },
  "block-lift": {
    title: (d) => `Lift the block on ${d.subject}`,
    effect: (d) => `Every block on the ${d.scope === "ip" ? "address" : "user"} ${d.subject} (DDoS and ` +
      "brute force) is lifted now. Its offence history stays.",
    call: (d, reason) => ["pack391_liftBlock", { scope: d.scope, subject: d.subject, reason }],
  },
  "allow-add": {
    title: () => "Add to the allowlist",
    input: { name: "Address or CIDR", type: "text", initial: () => "" },
    effect: () => "DDoS auto-mitigation never blocks this address or network; adding it lifts its " +
      "current DDoS block.",
    call: (d, reason, value) => ["pack391_setAllowlist", { action: "add", entry: value.trim(), reason }],
  },
  "allow-remove": {
    title: (d) => `Remove ${d.entry} from the allowlist`,
    effect: (d) => `DDoS auto-mitigation may block ${d.entry} again.`,
    call: (d, reason) => ["pack391_setAllowlist", { action: "remove", entry: d.entry, reason }],
  },
  "deploy-pause": {
    title: (d) => `Pause deployment ${d.id}`,
    effect: () => "Traffic stays where it is and the canary is not judged until it is resumed.",
    call: (d, reason) => ["pack391_controlDeployment", { deploymentId: d.id, action: "pause", reason }],
  },
  "deploy-resume": {
    title: (d) => `Resume deployment ${d.id}`,
    effect: () => "The canary is judged again every minute and moves on through its steps.",
    call: (d, reason) => ["pack391_controlDeployment", { deploymentId: d.id, action: "resume", reason }],
  },
  "deploy-promote": {
    title: (d) => `Promote deployment ${d.id}`,
    effect: () => "The remaining steps are skipped: 100 % of traffic goes to the new revision now.",
    call: (d, reason) => ["pack391_controlDeployment", { deploymentId: d.id, action: "promote", reason }],
  },
  "deploy-rollback": {
    title: (d) => `Roll back deployment ${d.id}`,
    effect: () => "100 % of traffic goes back to the stable revisions now, and an alert is raised.",
    call: (d, reason) => ["pack391_rollbackController", { deploymentId: d.id, reason }],
  },
  "slo-lift": {
    title: (d) => `Lift ${d.action.replace("_", " ")}`,
    input: { name: "Minutes", type: "number", initial: () => 30 },
    effect: (d) => `The automatic ${d.action.replace("_", " ")} stops for the minutes below, ` +
      "whatever the error budgets say; it takes effect at once and ends by itself.",
    call: (d, reason, value) => ["pack391_liftSloAction", { action: d.action, minutes: Number(value), reason }],
  },
  "market-pause": {
    title: (d) => `Pause market ${d.country}`,
    effect: (d) => `New users in ${d.country} are refused from the next access check until it is resumed.`,
    call: (d, reason) => ["pack391_emergencyPauseMarkets", { country: d.country, paused: true, reason }],
  },
  "market-resume": {
    title: (d) => `Resume market ${d.country}`,
    effect: (d) => `${d.country} admits users again under its launch status and limits.`,
    call: (d, reason) => ["pack391_emergencyPauseMarkets", { country: d.country, paused: false, reason }],
  },
};

// Wires the dialog once. `call(name, data)` calls a function; `done(text)` is told after
// a success.
export function wireActions(call, done) {
  const dialog = $("confirm");
  let pending = null;

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target.closest("button[data-act]") : null;
    if (!target) return;
    const spec = ACTIONS[target.dataset.act];
    if (!spec) return;
    const data = { ...target.dataset };
    pending = { act: target.dataset.act, spec, data };
    $("confirmTitle").textContent = spec.title(data);
    $("confirmEffect").textContent = spec.effect(data);
    $("confirmInputLabel").hidden = !spec.input;
    if (spec.input) {
      $("confirmInputName").textContent = spec.input.name;
      $("confirmInput").type = spec.input.type;
      $("confirmInput").value = String(spec.input.initial(data) ?? "");
    }
    $("confirmReason").value = "";
    $("confirmError").hidden = true;
    $("confirmOk").disabled = false;
    dialog.dataset.act = pending.act;
    delete dialog.dataset.result;
    dialog.showModal();
  });

  $("confirmCancel").onclick = () => { pending = null; dialog.close(); };

  $("confirmOk").onclick = async () => {
    if (!pending) return;
    const reason = $("confirmReason").value.trim();
    if (!reason) {
      showDialogError("A reason is required: it is recorded in the audit log with your name.", "REASON");
      return;
    }
    const value = pending.spec.input ? $("confirmInput").value : undefined;
    const [name, body] = pending.spec.call(pending.data, reason, value);
    $("confirmOk").disabled = true;
    try {
      await call(name, body);
      dialog.dataset.result = "ok";
      const title = $("confirmTitle").textContent;
      pending = null;
      dialog.close();
      done(`Done: ${title}.`);
    } catch (err) {
      showDialogError(`${name} refused ${describeError(err)}`, err.status || "ERROR");
      $("confirmOk").disabled = false;
    }
  };

  function showDialogError(text, status) {
    $("confirmError").textContent = text;
    $("confirmError").hidden = false;
    dialog.dataset.result = status;
  }
}

export function toast(text) {
  $("toast").innerHTML = esc(text);
  $("toast").hidden = false;
}
