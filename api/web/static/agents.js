// Agent form: the model dropdown lists the chosen key's models, asked from its provider
// through the API. "Other…" shows a text box for any name; so does a provider that
// lists nothing or cannot be reached. The price line follows the model picked.
"use strict";

(() => {
  const key = document.getElementById("f-key_id");
  const choice = document.getElementById("f-model_choice");
  const other = document.getElementById("f-model_other");
  const otherField = document.getElementById("model-other-field");
  const status = document.getElementById("model-status");
  const price = document.getElementById("model-price");
  if (!key || !choice || !other || !otherField) return;
  const OTHER = choice.dataset.other;
  let wanted = choice.dataset.current || ""; // the model to keep across model lists
  let asked = 0; // answers to older requests are dropped

  const model = () => (choice.value === OTHER ? other.value.trim() : choice.value);
  const showOther = () => { otherField.hidden = choice.value !== OTHER; };

  function fill(models) {
    const options = models.map((name) => new Option(name, name));
    if (!wanted && models.length) options.unshift(new Option("Choose a model…", ""));
    options.push(new Option("Other…", OTHER));
    choice.replaceChildren(...options);
    if (models.includes(wanted)) {
      choice.value = wanted;
    } else if (wanted || !models.length) {
      choice.value = OTHER;
      other.value = wanted;
    } else {
      choice.value = "";
    }
    showOther();
  }

  async function updatePrice() {
    const provider = key.selectedOptions[0]?.dataset.provider;
    const name = model();
    const ticket = ++asked;
    if (!provider || !name) { price.textContent = "no price known"; return; }
    const query = new URLSearchParams({ provider, model: name });
    const response = await fetch(`/agents/price?${query}`, { headers: { Accept: "application/json" } });
    const type = response.headers.get("content-type") || "";
    if (ticket === asked && response.ok && type.includes("json")) {
      price.textContent = (await response.json()).text;
    }
  }

  async function loadModels() {
    const keyId = key.value;
    if (!keyId) return;
    status.textContent = "Asking the provider for its models…";
    try {
      const body = await window.ownkey.api(`/keys/${encodeURIComponent(keyId)}/models`);
      if (key.value !== keyId) return;
      fill(body.data);
      status.textContent = body.count
        ? `${body.count} models from this key's provider, or “Other…” to type a name.`
        : "This provider lists no models: type the model name.";
    } catch (error) {
      if (key.value !== keyId) return;
      fill([]);
      status.textContent = `Could not list the models (${error.message}): type the model name.`;
    }
    updatePrice();
  }

  showOther();
  if (choice.matches(":disabled")) return; // a viewer's read-only form

  key.addEventListener("change", () => { wanted = model(); loadModels(); });
  choice.addEventListener("change", () => {
    if (choice.value === OTHER) {
      other.value = other.value || wanted;
      showOther();
      other.focus();
    } else {
      showOther();
    }
    wanted = model();
    updatePrice();
  });
  other.addEventListener("change", () => { wanted = other.value.trim(); updatePrice(); });
  loadModels();
})();
