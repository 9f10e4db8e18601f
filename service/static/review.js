// The review page: a model's captured predictions, the most useful to label first
// (GET /v1/models/{name}/review), one at a time with the Grad-CAM of the answer beside
// it (POST .../versions/{v}/explain with the captured image), labelled with one key
// press (POST .../review). main#review says what it shows in data-state: loading,
// ready, saving, done (nothing left), off (capture is off) or error.
"use strict";

const $ = (id) => document.getElementById(id);
const wanted = new URLSearchParams(location.search).get("model");
let item = null; // the item on screen
let saving = false;
let loads = 0; // a newer load makes an older answer stale

function setState(state) {
  $("review").dataset.state = state;
  $("review").setAttribute("aria-busy", String(state === "loading" || state === "saving"));
}

const api = () => `/v1/models/${encodeURIComponent($("model").value)}`;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setImage(img, url) {
  const old = img.getAttribute("src");
  if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
  if (url) img.src = url;
  else img.removeAttribute("src");
}

async function loadModels() {
  let names = [];
  try {
    names = (await ktl.json("/v1/models")).models.map((m) => m.name);
  } catch (error) {
    if (!wanted) throw error; // the model list may need a predict key: ?model= does without
  }
  if (wanted && !names.includes(wanted)) names.unshift(wanted);
  $("model").replaceChildren(...names.map((name) => new Option(name, name)));
  if (wanted) $("model").value = wanted;
}

function progress(queue) {
  const left = `${queue.left} left to review`;
  $("progress").textContent = `${left}, ${queue.reviewed} labelled so far.`;
  $("review").dataset.left = String(queue.left);
}

async function next() {
  const mine = ++loads;
  setState("loading");
  showError("");
  if (!$("model").value) {
    $("progress").textContent = "This service has no models yet.";
    setState("error");
    return;
  }
  history.replaceState(null, "", "?" + new URLSearchParams({ model: $("model").value }));
  try {
    const queue = await ktl.json(`${api()}/review?limit=1`);
    if (mine !== loads) return;
    progress(queue);
    $("off").hidden = true;
    item = queue.items[0] || null;
    $("item").hidden = !item;
    $("done").hidden = Boolean(item);
    if (!item) {
      $("train-command").textContent = `ktl train DATA --name ${$("model").value} --add-reviewed ${$("model").value}`;
      setState("done");
      return;
    }
    await show(item, mine);
  } catch (error) {
    if (mine !== loads) return;
    $("item").hidden = true;
    $("done").hidden = true;
    $("off").hidden = error.code !== "capture_off";
    $("progress").textContent = "";
    if (error.code === "capture_off") return setState("off");
    showError(error.code === "unauthorized"
      ? "The review needs a training key: type it above. " + error.message
      : error.message);
    setState("error");
  }
}

async function show(shown, mine) {
  $("item").dataset.id = shown.id;
  setImage($("heatmap"), null);
  $("heatmap-caption").textContent = "Drawing where it looked …";
  const blob = await (await ktl.request(shown.image)).blob();
  if (mine !== loads) return;
  setImage($("image"), URL.createObjectURL(blob));
  const sure = ktl.percent(shown.confidence);
  $("answer").replaceChildren(ktl.make("strong", shown.predicted ?? "?"),
    shown.abstained ? ` — not sure enough to answer (${sure}).` : ` — ${sure} sure.`);
  $("answer").classList.toggle("unsure", shown.abstained);
  const copies = shown.near_duplicates.length;
  $("facts").textContent = `Version ${shown.version}` +
    (copies ? `; ${copies} near-duplicate${copies > 1 ? "s" : ""} get the same label.` : "; no near-duplicates.");
  renderChoices(shown);
  setState("ready");
  heatmap(shown, blob, mine);
}

function renderChoices(shown) {
  $("choices").replaceChildren(...shown.labels.map((label, i) => {
    const li = document.createElement("li");
    const button = ktl.make("button", "", label === shown.predicted ? "choice predicted" : "choice");
    button.type = "button";
    button.dataset.label = label;
    if (i < 9) button.append(ktl.make("kbd", String(i + 1)), " ");
    button.append(label);
    if (label === shown.predicted) button.append(ktl.make("span", " (Enter)", "muted"));
    button.addEventListener("click", () => label && give(label));
    li.append(button);
    return li;
  }));
}

// The Grad-CAM of the predicted label, from the explain route of the version that answered.
async function heatmap(shown, blob, mine) {
  const form = new FormData();
  form.append("image", blob, "captured");
  const path = `${api()}/versions/${shown.version}/explain?` + new URLSearchParams({ class: shown.predicted });
  try {
    const url = await ktl.objectUrl(path, { method: "POST", body: form });
    if (mine !== loads) return URL.revokeObjectURL(url);
    setImage($("heatmap"), url);
    $("heatmap-caption").textContent = `Where it looked for “${shown.predicted}” (Grad-CAM)`;
  } catch (error) {
    if (mine !== loads) return;
    $("heatmap-caption").textContent = "No heatmap: " + error.message;
  }
}

async function give(label) {
  if (!item || saving || $("review").dataset.state !== "ready") return;
  saving = true;
  setState("saving");
  try {
    await ktl.json(`${api()}/review`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: item.id, label }),
    });
    saving = false;
    await next();
  } catch (error) {
    saving = false;
    showError("Not recorded: " + error.message);
    setState("ready");
  }
}

document.addEventListener("keydown", (event) => {
  if (event.target.closest && event.target.closest("input, select, textarea")) return;
  if (event.ctrlKey || event.metaKey || event.altKey || !item) return;
  if (event.key === "Enter") {
    event.preventDefault(); // not also a click on a focused button
    if (item.predicted) give(item.predicted);
  } else if (/^[1-9]$/.test(event.key)) {
    const label = item.labels[Number(event.key) - 1];
    if (label) {
      event.preventDefault();
      give(label);
    }
  }
});

$("model").addEventListener("change", next);
$("api-key").value = ktl.key();
$("api-key").addEventListener("change", async () => {
  sessionStorage.setItem("ktl-api-key", $("api-key").value.trim());
  await start();
});

async function start() {
  try {
    await loadModels();
  } catch (error) {
    showError("Could not list the models: " + error.message);
    setState("error");
    return;
  }
  next();
}
start();
