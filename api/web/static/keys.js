// Settings → API keys: the base URL field shows the chosen provider's default (left
// empty, that default is used), and the secret is required only where the provider
// needs one. The server checks both again; this only saves a round trip.
"use strict";

(() => {
  const provider = document.getElementById("f-provider");
  const baseUrl = document.getElementById("f-base_url");
  const secret = document.getElementById("f-api_key");
  if (!provider || !baseUrl || !secret) return;
  const defaults = new Set([...provider.options].map((o) => o.dataset.baseUrl).filter(Boolean));

  function update() {
    const chosen = provider.selectedOptions[0];
    const fallback = chosen.dataset.baseUrl || "";
    // A default typed in (or left over from another provider) gives way to this one's.
    if (defaults.has(baseUrl.value.trim())) baseUrl.value = "";
    baseUrl.placeholder = fallback || "http://host:8000/v1";
    baseUrl.required = !fallback;
    secret.required = chosen.dataset.needsSecret === "true";
  }

  provider.addEventListener("change", update);
  update();
})();
