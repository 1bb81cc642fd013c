// The run page, kept up to date without reloading: polls GET /api/v1/runs/{id} about
// once a second and rewrites the status badges, outputs, tokens and costs (and a step's
// "no live worker consumes queue …" note), until the run has ended. The formats match
// the server's Jinja filters (api/web/render.py).
"use strict";

const { tokens, usd, when, duration } = window.ownkey.format;

const POLL_MS = 1000;
const RETRY_MS = 5000;
const FINAL = new Set(["succeeded", "failed", "cancelled", "budget_exceeded"]);

const root = document.getElementById("run");

const latency = (ms) => (ms === null || ms === undefined ? "—" : `${ms.toLocaleString("en-US")} ms`);



function setBadge(holder, status) {
  const badge = holder?.querySelector(".badge");
  if (!badge || badge.dataset.status === status) return;
  badge.className = `badge ${status}`;
  badge.dataset.status = status;
  badge.textContent = status.replaceAll("_", " ");
}


function showIf(element, shown) {
  if (element) element.hidden = !shown;
}

function updateRun(run) {
  const field = (name) => root.querySelector(`[data-run-field="${name}"]`);
  setBadge(field("status"), run.status);
  setText(field("started_at"), when(run.started_at || run.created_at));
  setText(field("duration"), duration(run.started_at, run.finished_at));
  for (const name of ["input_tokens", "output_tokens", "cached_tokens"]) {
    setText(field(name), tokens(run[name]), run[name]);
  }
  setText(field("cost_usd"), usd(run.cost_usd), run.cost_usd);
  showIf(field("cost_incomplete"), run.cost_incomplete);
  showIf(field("error"), Boolean(run.error));
  setText(field("error_text"), run.error || "");
  const failed = field("failed_step");
  showIf(failed, Boolean(run.failed_step));
  const link = failed?.querySelector("a");
  if (link && run.failed_step) {
    link.href = `#step-${run.failed_step}`;
    link.textContent = run.failed_step;
  }
  if (FINAL.has(run.status)) root.querySelector("form[data-cancel]")?.remove();
}

function updateStep(step) {
  const card = root.querySelector(`section.step[data-step="${CSS.escape(step.id)}"]`);
  if (!card) return;
  const field = (name) => card.querySelector(`[data-step-field="${name}"]`);
  setBadge(field("status"), step.status);
  setText(field("attempts"), String(step.attempts), step.attempts);
  for (const name of ["input_tokens", "output_tokens", "cached_tokens"]) {
    setText(field(name), tokens(step[name]), step[name]);
  }
  setText(field("cost_usd"), usd(step.cost_usd), step.cost_usd);
  setText(field("latency_ms"), latency(step.latency_ms), step.latency_ms);
  setText(field("error"), step.error || "");
  showIf(field("error"), Boolean(step.error));
  // Queued on a queue no live worker consumes: say so rather than look stuck.
  setText(field("waiting_for"), step.waiting_for || "");
  showIf(field("waiting_for"), Boolean(step.waiting_for));
  setText(field("output"), step.output ?? "");
  showIf(field("output"), step.output !== null && step.output !== undefined);
  root.querySelector(`.graph g.node[data-step="${CSS.escape(step.id)}"]`)
    ?.setAttribute("class", `node ${step.status}`);
}

async function poll() {
  const note = root.querySelector("[data-live-note]");
  let run;
  try {
    run = await window.ownkey.api(`/runs/${encodeURIComponent(root.dataset.runId)}`);
  } catch (error) {
    setText(note, `Live updates paused (${error.message}); retrying…`);
    setTimeout(poll, RETRY_MS);
    return;
  }
  updateRun(run);
  run.steps.forEach(updateStep);
  if (FINAL.has(run.status) && run.finished_at) {
    root.dataset.live = "no";
    setText(note, "");
  } else {
    setText(note, "This page updates by itself until the run ends.");
    setTimeout(poll, POLL_MS);
  }
}

if (root && root.dataset.live === "yes") setTimeout(poll, POLL_MS);
