// The try-a-model page: choose a model and version, give a photo, see the answer.
// Each section says what it shows in data-state (loading, ready, error, ...).
"use strict";

const $ = (id) => document.getElementById(id);
const wanted = new URLSearchParams(location.search); // ?model=&version= (a report's link)
let models = [];
let current = null; // the photo last given (File or Blob); sent again when the version changes
let previewShown = Promise.resolve(); // settles once the photo's preview is laid out (or failed)

// One kind of request at a time: starting one aborts the one before it, and an answer
// that still comes late is recognised as stale and dropped.
function latest() {
  let controller = null;
  return () => {
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    return { signal: mine.signal, stale: () => controller !== mine };
  };
}
const versionRequests = latest();
const predictRequests = latest();
const overlayRequests = latest();

function setState(section, state) {
  section.dataset.state = state;
  section.setAttribute("aria-busy", String(state === "loading"));
}

// An image element has a source or is hidden: never an empty frame with its alt text.
function setImage(img, url) {
  const old = img.getAttribute("src");
  if (old && old.startsWith("blob:")) URL.revokeObjectURL(old);
  if (url) {
    img.src = url;
  } else {
    img.removeAttribute("src");
    img.hidden = true;
  }
}

// What went wrong, in the words of someone choosing a photo.
const PLAIN = {
  invalid_image: "it is not an image this service can read. Try a JPEG, PNG, WebP, GIF, BMP or TIFF photo.",
  image_too_large: "the photo has more pixels than this service takes. Try a smaller one.",
  payload_too_large: "the file is too big to send. Try a smaller photo.",
  unsupported_media_type: "the page sent it in a way the service does not take.",
  unauthorized: "this service needs an API key: type it under “API key” above.",
  overloaded: "the service is busy. Try again in a moment.",
};
const FILE_PROBLEMS = new Set(["invalid_image", "image_too_large", "payload_too_large", "bad_request"]);

function showError(message, detail = "") {
  $("error-text").textContent = message;
  $("error-detail").textContent = detail;
  $("error-details").hidden = !detail || detail === message;
  $("error").hidden = !message;
}

function showModelError(message) {
  $("model-error").textContent = message;
  $("model-error").hidden = !message;
  if (message.includes("API key")) $("key-box").open = true;
}

function status(id, message) {
  $(id).textContent = message;
  $(id).hidden = !message;
}

function selected() {
  return { name: $("model").value, version: $("version").value };
}

function base() {
  const { name, version } = selected();
  return `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`;
}

function chosenModel() {
  return models.find((m) => m.name === $("model").value);
}

async function loadModels() {
  setState($("model-card"), "loading");
  status("model-status", "Loading the models …");
  showModelError("");
  try {
    models = (await ktl.json("/v1/models")).models;
  } catch (error) {
    setState($("model-card"), "error");
    status("model-status", "");
    showModelError("Could not list the models: " + (PLAIN[error.code] || error.message));
    return;
  }
  $("model").replaceChildren(...models.map((m) =>
    new Option(m.name + (m.status === "available" ? "" : " (unavailable)"), m.name)));
  if (!models.length) {
    setState($("model-card"), "empty");
    status("model-status", "This service has no models yet: train one with `ktl train`.");
    return;
  }
  status("model-status", "");
  setState($("model-card"), "ready");
  if (models.some((m) => m.name === wanted.get("model"))) $("model").value = wanted.get("model");
  fillVersions(wanted.get("version"));
}

// A version's labels (stable, canary, ...), from the model's {label: version}.
const labelsOf = (model, version) =>
  Object.entries((model && model.version_labels) || {}).filter(([, v]) => v === version).map(([label]) => label).sort();

// "2 · stable · default · 92 % test": short enough for a phone's select; the date and the
// rest go under it (versionNote).
function versionText(model, version, details) {
  const parts = [String(version), ...labelsOf(model, version)];
  if (version === model.default_version) parts.push("default");
  if (details && details.accuracy !== null && details.accuracy !== undefined) {
    parts.push(`${ktl.percent(details.accuracy, 0)} ${details.accuracy_split || "validation"}`);
  }
  return parts.join(" · ");
}

// "Version 2: trained 2 Dec 2026, labelled stable, the default; 92 % on its test images."
function versionNote(model, version, details) {
  const facts = [];
  if (details && ktl.date(details.created_at)) facts.push(`trained ${ktl.date(details.created_at)}`);
  const labels = labelsOf(model, version);
  if (labels.length) facts.push(`labelled ${labels.join(" and ")}`);
  if (version === model.default_version) facts.push("the default");
  let text = `Version ${version}` + (facts.length ? `: ${facts.join(", ")}` : "");
  if (details && details.accuracy !== null && details.accuracy !== undefined) {
    text += `; ${ktl.percent(details.accuracy, 0)} right on its ${details.accuracy_split || "validation"} images`;
  }
  return text + ".";
}

function fillVersions(preferred) {
  const model = chosenModel();
  const details = new Map(((model && model.version_details) || []).map((d) => [d.version, d]));
  const versions = model ? [...model.versions].reverse() : []; // newest first
  $("version").replaceChildren(...versions.map((v) => new Option(versionText(model, v, details.get(v)), v)));
  const choice = versions.find((v) => String(v) === preferred) ?? model?.default_version ?? versions[0];
  if (choice !== undefined) $("version").value = String(choice);
  showVersion();
}

function noteVersion() {
  const model = chosenModel();
  const version = Number($("version").value);
  const details = ((model && model.version_details) || []).find((d) => d.version === version);
  const shown = model && $("version").value ? versionNote(model, version, details) : "";
  $("version-note").textContent = shown;
  $("version-note").hidden = !shown;
}

function accuracyText(meta) {
  const metrics = meta.metrics || {};
  const split = metrics.split || "validation";
  if (meta.task === "multilabel") {
    return `mAP ${metrics.map.toFixed(3)}, micro F1 ${metrics.micro_f1.toFixed(3)} (${metrics.images} ${split} images)`;
  }
  return ktl.accuracy(metrics, split, split === "test" ? "" : "no test split, so possibly optimistic");
}

function decisionText(meta) {
  if (meta.multilabel) return `each label at its own threshold (${meta.multilabel.rule}); the set may be empty`;
  const decision = meta.decision;
  if (!decision) return "always (this version has no threshold)";
  let text = `at least ${ktl.percent(decision.threshold)} sure`;
  if (decision.coverage !== undefined && decision.split) {
    text += ` (it answered ${ktl.percent(decision.coverage, 0)} of the ${decision.split} images)`;
  }
  return text;
}

async function showVersion() {
  const { name, version } = selected();
  const request = versionRequests();
  noteVersion();
  $("model-info").replaceChildren();
  delete $("model-info").dataset.version;
  $("report-link").hidden = true;
  if (!name || !version) {
    setState($("about"), "empty");
    status("about-status", name ? "This model has no version that loads." : "");
    return;
  }
  setState($("about"), "loading");
  status("about-status", `Loading version ${version} of ${name} …`);
  showModelError("");
  history.replaceState(null, "", "?" + new URLSearchParams({ model: name, version }));
  $("report-link").href = `/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/report`;
  $("review-link").href = "/review?" + new URLSearchParams({ model: name });
  if (current) classify(false); // the answer on screen was another version's
  try {
    const meta = await ktl.json(base(), { signal: request.signal });
    if (request.stale()) return;
    ktl.describe($("model-info"), [
      ["Labels", (meta.labels || []).join(", ")],
      ["Backbone", meta.backbone],
      ["Image size", (meta.image_size || []).join(" × ") + " px"],
      [meta.task === "multilabel" ? "Figures" : "Accuracy", accuracyText(meta)],
      ["Answers when", decisionText(meta)],
      ["Trained", ktl.date(meta.created_at) || "—"],
    ]);
    $("model-info").dataset.version = version;
    $("report-link").hidden = false;
    status("about-status", "");
    setState($("about"), "ready");
  } catch (error) {
    if (request.stale() || ktl.aborted(error)) return;
    status("about-status", "Not loaded.");
    showModelError(`Could not load version ${version}: ` + (PLAIN[error.code] || error.message));
    setState($("about"), "error");
  }
}

// A new photo: the old one, its heatmap and its answer go at once.
function usePhoto(blob) {
  current = blob;
  showError("");
  overlayRequests();
  setImage($("overlay"), null);
  $("figure").dataset.overlay = "off";
  $("overlay-status").textContent = "";
  const preview = $("preview");
  $("figure").hidden = true;
  const url = URL.createObjectURL(blob);
  setImage(preview, url);
  preview.hidden = true; // shown once it decodes: a file the browser cannot read shows nothing
  previewShown = preview.decode().then(() => {
    if (preview.getAttribute("src") !== url) return;
    preview.hidden = false;
    $("figure").hidden = false;
  }, () => {});
  classify(true);
}

function forgetPhoto() {
  current = null;
  overlayRequests();
  setImage($("preview"), null);
  setImage($("overlay"), null);
  $("figure").hidden = true;
  $("figure").dataset.overlay = "off";
  $("overlay-status").textContent = "";
  $("gradcam").checked = false;
}

// Ask the selected version about the current photo; reveal: bring the answer into view.
async function classify(reveal) {
  const request = predictRequests();
  const blob = current;
  overlayRequests();
  setImage($("overlay"), null);
  setState($("result"), "loading");
  delete $("result").dataset.version;
  $("answer").textContent = "Asking the model …";
  $("bars").replaceChildren();
  const form = new FormData();
  form.append("image", blob, blob.name || "pasted-image");
  try {
    const body = await ktl.json(base() + "/predict?top_k=5", { method: "POST", body: form, signal: request.signal });
    if (request.stale()) return;
    const prediction = body.predictions[0];
    renderAnswer(prediction);
    renderBars(prediction.top, prediction.decision.thresholds);
    $("result").dataset.version = body.version;
    setState($("result"), "ready");
    if (reveal) {
      await previewShown; // the photo above the answer takes its room first
      if (request.stale()) return;
      bringIntoView($("result"));
    }
    if ($("gradcam").checked) showGradcam();
  } catch (error) {
    if (request.stale() || ktl.aborted(error)) return;
    const plain = PLAIN[error.code];
    if (FILE_PROBLEMS.has(error.code)) {
      forgetPhoto();
      showError("The file was rejected: " + (plain || error.message), error.message);
    } else {
      showError("No answer: " + (plain || error.message), error.message);
    }
    $("answer").textContent = "No answer for this file.";
    setState($("result"), "error");
  }
}

function bringIntoView(node) {
  const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
  node.scrollIntoView({ behavior: still ? "auto" : "smooth", block: "nearest" });
}

// A multi-label version's answer: the set of labels that reached their own thresholds.
function renderSet(answer, decision) {
  answer.dataset.label = decision.labels.join(";");
  answer.replaceChildren(decision.labels.length
    ? ktl.make("strong", decision.labels.join(", "))
    : ktl.make("strong", "None of these"),
    decision.labels.length ? " — each reached its own threshold." : " — no label reached its threshold.");
  answer.classList.toggle("unsure", decision.labels.length === 0);
}

function renderAnswer({ decision, top }) {
  const answer = $("answer");
  if (decision.labels) return renderSet(answer, decision);
  answer.dataset.label = decision.label ?? "";
  if (decision.label === null) {
    const digits = ktl.digitsApart(decision.confidence, decision.threshold);
    answer.replaceChildren(ktl.make("strong", "Not sure"),
      ` — none of the classes reached ${ktl.percent(decision.threshold, digits)}` +
      ` (${top[0].label} came closest: ${ktl.percent(decision.confidence, digits)}).`);
  } else {
    answer.replaceChildren(ktl.make("strong", decision.label), ` — ${ktl.percent(decision.confidence)} sure.`);
  }
  answer.classList.toggle("unsure", decision.label === null);
}

function renderBars(top, thresholds = null) {
  $("bars").replaceChildren(...top.map((t) => {
    const li = document.createElement("li");
    li.className = "bar";
    li.dataset.label = t.label;
    li.dataset.probability = t.probability;
    const meter = ktl.make("span", "", "meter");
    meter.style.setProperty("--p", t.probability);
    if (thresholds && t.label in thresholds) { // a multi-label version: its threshold's mark
      li.dataset.threshold = thresholds[t.label];
      meter.style.setProperty("--t", thresholds[t.label]);
      meter.classList.add("marked");
      meter.title = `threshold ${ktl.percent(thresholds[t.label])}`;
    }
    li.append(ktl.make("span", t.label, "label"), meter, ktl.make("span", ktl.percent(t.probability), "value"));
    return li;
  }));
}

async function showGradcam() {
  const request = overlayRequests();
  if (!current) return;
  const form = new FormData();
  form.append("image", current, current.name || "pasted-image");
  $("figure").dataset.overlay = "loading";
  $("overlay-status").textContent = "Drawing the heatmap …";
  try {
    const url = await ktl.objectUrl(base() + "/explain", { method: "POST", body: form, signal: request.signal });
    if (request.stale()) {
      URL.revokeObjectURL(url);
      return;
    }
    setImage($("overlay"), url);
    await $("overlay").decode().catch(() => {});
    if (request.stale()) return;
    $("overlay").hidden = false;
    $("overlay-status").textContent = "";
    $("figure").dataset.overlay = "ready";
  } catch (error) {
    if (request.stale() || ktl.aborted(error)) return;
    setImage($("overlay"), null);
    $("overlay-status").textContent = "The heatmap is not available: " + (PLAIN[error.code] || error.message);
    $("figure").dataset.overlay = "error";
  }
}

function pick(files) {
  const list = [...(files || [])];
  const file = list.find((f) => f.type.startsWith("image/")) || list[0];
  if (file) usePhoto(file);
}

$("model").addEventListener("change", () => fillVersions(null));
$("version").addEventListener("change", showVersion);
// The heatmap over the photo, as strong as the reader wants it (the photo shows through).
const blend = () => $("overlay").style.setProperty("opacity", String(Number($("blend").value) / 100));
$("blend").addEventListener("input", blend);
blend();
$("drop").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", (event) => {
  pick(event.target.files);
  event.target.value = ""; // the same file again is a new choice
});
// A photo dropped anywhere is taken (rather than the browser leaving the page for it).
document.addEventListener("dragover", (event) => {
  event.preventDefault();
  $("drop").classList.add("over");
});
document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) $("drop").classList.remove("over");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop").classList.remove("over");
  pick(event.dataTransfer && event.dataTransfer.files);
});
document.addEventListener("paste", (event) => {
  if (event.target === $("api-key")) return;
  pick(event.clipboardData && event.clipboardData.files);
});
$("gradcam").addEventListener("change", () => {
  if ($("gradcam").checked) {
    showGradcam();
    return;
  }
  overlayRequests();
  setImage($("overlay"), null);
  $("overlay-status").textContent = "";
  $("figure").dataset.overlay = "off";
});
$("api-key").value = ktl.key();
$("api-key").addEventListener("change", () => {
  sessionStorage.setItem("ktl-api-key", $("api-key").value.trim());
  loadModels();
});
loadModels();
