// Batches. On the new-batch form: a file too large for the form is refused before it
// is sent. On a batch's page: polls GET /api/v1/batches/{id} about once a second and
// rewrites the counts, tokens, cost and ETA, and reloads the items table when items
// close, until the batch has ended. The formats match the server's (api/web/render.py,
// api/web/batches.py).
"use strict";

const { tokens, usd, when, duration } = window.ownkey.format;

const POLL_MS = 1000;
const RETRY_MS = 5000;
const FINAL = new Set(["succeeded", "finished", "cancelled"]);



function eta(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds.toFixed(0)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(0)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}



// --- the new-batch form -----------------------------------------------------------------

const fileInput = document.querySelector('input[type="file"][data-max-bytes]');
fileInput?.addEventListener("change", () => {
  const file = fileInput.files[0];
  const tooLarge = file && file.size > Number(fileInput.dataset.maxBytes);
  fileInput.setCustomValidity(tooLarge ? fileInput.dataset.tooLarge : "");
  if (tooLarge) fileInput.reportValidity();
});

// --- a batch's page ---------------------------------------------------------------------

const root = document.getElementById("batch");

function setBadge(holder, status) {
  const badge = holder?.querySelector(".badge");
  if (!badge || badge.dataset.status === status) return;
  badge.className = `badge ${status}`;
  badge.dataset.status = status;
  badge.textContent = status.replaceAll("_", " ");
}

function updateBatch(batch) {
  const field = (name) => root.querySelector(`[data-batch-field="${name}"]`);
  setBadge(field("status"), batch.status);
  setText(field("done"), tokens(batch.done), batch.done);
  field("progress")?.setAttribute("value", String(batch.done));
  for (const name of ["succeeded", "failed", "cancelled", "running", "queued", "waiting"]) {
    setText(field(name), tokens(batch.progress[name]), batch.progress[name]);
  }
  for (const name of ["input_tokens", "output_tokens", "cached_tokens"]) {
    setText(field(name), tokens(batch[name]), batch[name]);
  }
  setText(field("cost_usd"), usd(batch.cost_usd), batch.cost_usd);
  const incomplete = field("cost_incomplete");
  if (incomplete) incomplete.hidden = !batch.cost_incomplete;
  setText(field("eta_seconds"), eta(batch.eta_seconds), batch.eta_seconds);
  setText(field("started_at"), when(batch.started_at));
  setText(field("finished_at"), when(batch.finished_at));
  setText(field("duration"), duration(batch.started_at, batch.finished_at));
  // The same rule as the server's (api/web/batches.py).
  const retry = root.querySelector("form[data-retry]");
  if (retry) retry.hidden = batch.status === "cancelled" || batch.progress.failed + batch.progress.cancelled === 0;
  if (batch.status !== "running") root.querySelector("form[data-cancel]")?.remove();
}

// The items table as the server renders it, for the page of items on show.
async function reloadItems() {
  const response = await fetch(window.location.href, { credentials: "same-origin" });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.querySelector("[data-batch-items]");
  if (fresh) root.querySelector("[data-batch-items]")?.replaceWith(fresh);
}

let shown = "";

async function poll() {
  const note = root.querySelector("[data-live-note]");
  let batch;
  try {
    batch = await window.ownkey.api(`/batches/${encodeURIComponent(root.dataset.batchId)}`);
  } catch (error) {
    setText(note, `Live updates paused (${error.message}); retrying…`);
    setTimeout(poll, RETRY_MS);
    return;
  }
  updateBatch(batch);
  const p = batch.progress;
  const state = [batch.status, p.waiting, p.queued, p.running, p.succeeded, p.failed, p.cancelled].join();
  if (state !== shown) {
    shown = state;
    await reloadItems().catch(() => {}); // the counts above are what matters; next time
  }
  if (FINAL.has(batch.status) && p.queued + p.running === 0) {
    root.dataset.live = "no";
    setText(note, "");
  } else {
    setText(note, "This page updates by itself until the batch ends.");
    setTimeout(poll, POLL_MS);
  }
}

if (root && root.dataset.live === "yes") setTimeout(poll, POLL_MS);
