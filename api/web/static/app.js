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

window.ownkey = { api, csrfToken };
