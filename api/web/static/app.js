// ownkey web UI: the few things a server-rendered page cannot do by itself.
// Calls to the JSON API send the session's CSRF token in a header.
"use strict";

const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (options.method && options.method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  const response = await fetch(`/api/v1${path}`, { credentials: "same-origin", ...options, headers });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const detail = body && body.detail;
    throw new Error(typeof detail === "string" ? detail : `HTTP ${response.status}`);
  }
  return body;
}

// Forms asking "are you sure?" before they post.
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});


// Formats for live pages (run.js, batch.js), matching the server's Jinja filters in
// api/web/render.py.
const format = {
  tokens: (n) => (n === null || n === undefined ? "—" : n.toLocaleString("en-US")),
  usd(amount) {
    if (amount === null || amount === undefined) return "—";
    if (amount === 0) return "$0";
    if (Math.abs(amount) < 0.01) return `$${amount.toFixed(6).replace(/0+$/, "")}`;
    if (Math.abs(amount) >= 1) {
      return `$${amount.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
    }
    return `$${amount.toFixed(4)}`;
  },
  // API times are ISO 8601 with microseconds; Date wants at most milliseconds.
  parseTime(s) {
    if (!s) return null;
    const trimmed = s.replace(/(\.\d{3})\d+/, "$1");
    return new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(trimmed) ? trimmed : `${trimmed}Z`);
  },
  when(s) {
    const t = format.parseTime(s);
    return t ? `${t.toISOString().slice(0, 19).replace("T", " ")} UTC` : "—";
  },
  duration(start, end) {
    const [a, b] = [format.parseTime(start), format.parseTime(end)];
    if (!a || !b) return "—";
    const seconds = (b - a) / 1000;
    if (seconds < 1) return `${(seconds * 1000).toFixed(0)} ms`;
    if (seconds < 120) return `${seconds.toFixed(1)} s`;
    return `${(seconds / 60).toFixed(1)} min`;
  },
};

// Rewrites an element's text, and its raw data-value for tests and scripts (a global:
// the page scripts loaded after this one call it).
function setText(element, text, value) {
  if (!element) return;
  element.textContent = text;
  if (value !== undefined) element.dataset.value = value === null ? "" : String(value);
}

window.ownkey = { api, csrfToken, format, setText };
