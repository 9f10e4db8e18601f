// The try-a-model page: choose a model, give an image, see the top labels.
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];
let current = null; // the last image sent, as a Blob

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function selected() {
  return { name: $("model").value, version: $("version").value };
}

function base() {
  const { name, version } = selected();
  return `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`;
}

async function loadModels() {
  try {
    models = (await ktl.json("/v1/models")).models;
  } catch (error) {
    showError("Could not list the models: " + error.message);
    $("key-box").open = true;
    return;
  }
  $("model").replaceChildren(...models.map((m) => new Option(m.name + (m.status === "available" ? "" : " (unavailable)"), m.name)));
  if (!models.length) showError("This service has no models yet: train one with `ktl train`.");
  fillVersions();
}

function fillVersions() {
  const model = models.find((m) => m.name === $("model").value);
  const versions = model ? [...model.versions].reverse() : [];
  $("version").replaceChildren(...versions.map((v) => new Option(v === model.default_version ? `${v} (default)` : String(v), v)));
  showInfo();
}

async function showInfo() {
  const { name, version } = selected();
  if (!name || !version) return;
  $("report-link").href = `/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/report`;
  try {
    const meta = await ktl.json(base());
    const metrics = meta.metrics || {};
    const rows = [
      ["Labels", (meta.labels || []).join(", ")],
      ["Backbone", meta.backbone],
      ["Image size", (meta.image_size || []).join(" × ") + " px"],
      ["Validation accuracy", metrics.accuracy === undefined ? "—" : ktl.percent(metrics.accuracy)],
      ["Validation images", metrics.val_images ?? "—"],
    ];
    $("model-info").replaceChildren(...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      return [dt, dd];
    }));
    showError("");
  } catch (error) {
    showError(error.message);
  }
  if (current) classify(current);
}

async function classify(blob) {
  current = blob;
  showError("");
  $("preview").src = URL.createObjectURL(blob);
  $("figure").hidden = false;
  const form = new FormData();
  form.append("image", blob, blob.name || "pasted-image");
  try {
    const body = await ktl.json(base() + "/predict?top_k=5", { method: "POST", body: form });
    renderBars(body.predictions[0].top);
    if ($("gradcam").checked) await showGradcam();
  } catch (error) {
    $("bars").replaceChildren();
    $("overlay").hidden = true;
    showError("The image was rejected: " + error.message);
  }
}

function renderBars(top) {
  $("bars").replaceChildren(...top.map((t) => {
    const li = document.createElement("li");
    li.className = "bar";
    li.dataset.label = t.label;
    li.dataset.probability = t.probability;
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = t.label;
    const meter = document.createElement("span");
    meter.className = "meter";
    meter.style.setProperty("--p", t.probability);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = ktl.percent(t.probability);
    li.setAttribute("aria-label", `${t.label}: ${ktl.percent(t.probability)}`);
    li.append(label, meter, value);
    return li;
  }));
}

async function showGradcam() {
  if (!current) return;
  const form = new FormData();
  form.append("image", current, current.name || "pasted-image");
  try {
    $("overlay").src = await ktl.objectUrl(base() + "/explain", { method: "POST", body: form });
    $("overlay").hidden = false;
  } catch (error) {
    $("overlay").hidden = true;
    showError("Grad-CAM is not available: " + error.message);
  }
}

function pick(files) {
  const file = [...(files || [])].find((f) => f.type.startsWith("image/")) || (files || [])[0];
  if (file) classify(file);
}

$("model").addEventListener("change", fillVersions);
$("version").addEventListener("change", showInfo);
$("pick").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", (event) => pick(event.target.files));
$("drop").addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    $("file").click();
  }
});
$("drop").addEventListener("dragover", (event) => {
  event.preventDefault();
  $("drop").classList.add("over");
});
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop").classList.remove("over");
  pick(event.dataTransfer.files);
});
document.addEventListener("paste", (event) => pick(event.clipboardData && event.clipboardData.files));
$("gradcam").addEventListener("change", () => {
  if ($("gradcam").checked) showGradcam();
  else $("overlay").hidden = true;
});
$("api-key").value = ktl.key();
$("api-key").addEventListener("change", () => {
  sessionStorage.setItem("ktl-api-key", $("api-key").value.trim());
  loadModels();
});
loadModels();
