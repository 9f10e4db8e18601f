// The training report of one version, built from its metadata and reports/ files.
"use strict";

const el = (id) => document.getElementById(id);
const [, , name, , version] = location.pathname.split("/").map(decodeURIComponent);
const api = `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`;

function cells(tag, values, numeric = []) {
  const row = document.createElement("tr");
  values.forEach((value, i) => {
    const cell = document.createElement(tag);
    cell.textContent = value;
    if (numeric.includes(i)) cell.className = "num";
    row.append(cell);
  });
  return row;
}

async function render() {
  document.title = `ktl — ${name} v${version} report`;
  el("title").textContent = `${name} version ${version}: training report`;
  const meta = await ktl.json(api);
  const metrics = meta.metrics || {};
  const training = meta.training || {};
  const summary = [
    ["Backbone", `${meta.backbone} (${training.weights}, ${training.recipe})`],
    ["Image size", (meta.image_size || []).join(" × ") + " px"],
    ["Created", meta.created_at],
    ["Validation accuracy", ktl.percent(metrics.accuracy)],
    [`Top-${metrics.top_k} accuracy`, ktl.percent(metrics.top_k_accuracy)],
    ["Validation loss", metrics.loss],
    ["Macro F1", metrics.macro_f1],
    ["Phases", (training.phases || []).map((p) => `${p.name}: ${p.epochs} epochs`).join(", ")],
  ];
  el("summary").replaceChildren(...summary.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    return [dt, dd];
  }));
  el("classes").tBodies[0].replaceChildren(...Object.entries(metrics.per_class || {}).map(([label, c]) =>
    cells("td", [label, c.precision.toFixed(3), c.recall.toFixed(3), c.f1.toFixed(3), c.support], [1, 2, 3, 4])));
  const dataset = meta.dataset || {};
  el("dataset").tBodies[0].replaceChildren(...Object.entries(dataset.classes || {}).map(([label, c]) =>
    cells("td", [label, c.train, c.val], [1, 2])));
  el("dataset-notes").textContent =
    `${(dataset.skipped || []).length} files skipped (undecodable), ${dataset.ignored_files || 0} non-image files ignored, ` +
    `${(dataset.duplicates || []).length} groups of duplicates, ${(dataset.removed_from_val || []).length} copies kept out of validation.`;
  el("config").textContent = JSON.stringify(training, null, 2);

  const files = meta.files || {};
  const report = (file) => api + "/reports/" + file;
  if ("reports/curves.png" in files) el("curves").src = await ktl.objectUrl(report("curves.png"));
  if ("reports/confusion_matrix.png" in files) el("confusion").src = await ktl.objectUrl(report("confusion_matrix.png"));
  if ("reports/worst.json" in files) {
    const worst = await ktl.json(report("worst.json"));
    el("worst").replaceChildren(...await Promise.all(worst.map(async (w) => {
      const li = document.createElement("li");
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.src = await ktl.objectUrl(report(w.thumbnail));
      img.alt = `validation image ${w.file}`;
      const caption = document.createElement("figcaption");
      caption.textContent = `true ${w.true} (${ktl.percent(w.true_probability)}), predicted ${w.predicted} (${ktl.percent(w.predicted_probability)})`;
      figure.append(img, caption);
      li.append(figure);
      return li;
    })));
  }
}

render().catch((error) => {
  el("error").textContent = "Could not load the report: " + error.message +
    (error.message.includes("API key") ? " (enter the key on the start page)" : "");
  el("error").hidden = false;
});
