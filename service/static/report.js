// The training report of one version, built from its metadata and reports/ files.
// main#report says what it shows in data-state: loading, ready or error.
"use strict";

const el = (id) => document.getElementById(id);
const [, , name, , version] = location.pathname.split("/").map(decodeURIComponent);
const api = `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`;
const SECTIONS = ["summary", "accuracy", "training", "classes", "calibration", "decision", "worst", "dataset", "config"];
// A multi-label version: its labels' figures replace the single-label sections.
const MULTILABEL_SECTIONS = ["summary", "labels", "training", "config"];
// Settings a recipe never reads: listing them would say they shaped the model.
const FINE_TUNING = ["fine_tune_epochs", "fine_tune_lr", "unfreeze_from"];
// What training adds to the configuration; shown in their own sections.
const DETAILS = ["phases", "recipe", "trainable_params", "total_params", "batchnorm_recalibrated", "distribution"];

function setState(state) {
  el("report").dataset.state = state;
  el("report").setAttribute("aria-busy", String(state === "loading"));
}

function row(values, numeric = [], header = false) {
  const tr = document.createElement("tr");
  values.forEach((value, i) => {
    const cell = ktl.make(header && i === 0 ? "th" : "td", value ?? "—", numeric.includes(i) ? "num" : "");
    if (header && i === 0) cell.scope = "row";
    tr.append(cell);
  });
  return tr;
}

const fixed = (x, digits = 3) => (Number.isFinite(x) ? x.toFixed(digits) : "—");
const pct = (x, digits = 1) => (typeof x === "number" ? ktl.percent(x, digits) : "—");
const count = (x) => (Array.isArray(x) ? x.length : x || 0);
const quoted = (label) => `“${label}”`;

function show(section, on = true) {
  el(section).hidden = !on;
}

// The split the summary figures come from: test, or validation (format 1: always).
function mainSplit(meta) {
  return (meta.metrics && meta.metrics.split) || "validation";
}

// --exclude/--relabel: the figures on DATA's own test split, before the CSVs.
const ORIGINAL_TEST = "original test";

function splitsOf(meta) {
  const evaluation = meta.evaluation || {};
  const splits = ["validation", "test", "original_test"].filter((s) => evaluation[s])
    .map((s) => [s === "original_test" ? ORIGINAL_TEST : s, evaluation[s]]);
  return splits.length ? splits : [[mainSplit(meta), meta.metrics || {}]];
}

function recipeText(training) {
  if (training.recipe === "scratch") return "trained from scratch (random weights)";
  if (training.recipe === "transfer") return `transfer learning from ${training.weights} weights`;
  return training.weights ? `${training.weights} weights` : "";
}

function baselineText(baseline) {
  return `always ${quoted(baseline.majority_class)}: ${ktl.percent(baseline.majority_accuracy, 0)}; ` +
    `chance ${ktl.percent(baseline.chance, 0)}`;
}

function renderSummary(meta) {
  const metrics = meta.metrics || {};
  const training = meta.training || {};
  const split = mainSplit(meta);
  const baseline = metrics.baseline;
  const rows = [
    ["Model", `${meta.name}, version ${meta.version}`],
    ["Backbone", [meta.backbone, recipeText(training)].filter(Boolean).join(", ")],
    ["Image size", (meta.image_size || []).join(" × ") + " px"],
    ["Trained", ktl.date(meta.created_at) || "—"],
    ["Labels", (meta.labels || []).join(", ")],
    [`Accuracy (${split})`, ktl.accuracy(metrics, split)],
  ];
  const original = (meta.evaluation || {}).original_test;
  if (original) rows.push([`Accuracy (${ORIGINAL_TEST})`, ktl.accuracy(original, ORIGINAL_TEST)]);
  if (baseline) rows.push(["Baseline", baselineText(baseline)]);
  if (meta.decision) rows.push(["Answers when", `at least ${ktl.percent(meta.decision.threshold)} sure`]);
  ktl.describe(el("summary"), rows);

  const dataset = meta.dataset || {};
  if (split !== "test") {
    const why = dataset.test_note || (meta.evaluation ? "" : "this version was published before ktl kept test images apart.");
    el("split-note").textContent = "These figures come from the validation images only: the same images chose " +
      "the kept epoch and the threshold, so they may be optimistic." + (why ? " Why no test split: " + why : "");
    el("split-note").hidden = false;
  }
  const changes = dataset.original_test;
  if (changes) {
    el("split-note").textContent = `--exclude/--relabel changed ${changes.excluded + changes.relabelled} of the ` +
      `${changes.images} original test images (${changes.excluded} excluded, ${changes.relabelled} relabelled): ` +
      `the test figures leave them out; the ${ORIGINAL_TEST} figures score DATA's test split as it was, with its labels.`;
    el("split-note").hidden = false;
  }
  if (baseline && typeof metrics.accuracy === "number") {
    const low = metrics.accuracy_interval ? metrics.accuracy_interval[0] : metrics.accuracy;
    if (metrics.accuracy <= baseline.majority_accuracy) {
      el("baseline-warning").textContent = `This model is no better than always answering ${quoted(baseline.majority_class)} ` +
        `(${ktl.percent(metrics.accuracy, 0)} against ${ktl.percent(baseline.majority_accuracy, 0)} on the ${split} images).`;
      el("baseline-warning").hidden = false;
    } else if (low <= baseline.majority_accuracy) {
      el("baseline-warning").textContent = `This model is not clearly better than always answering ${quoted(baseline.majority_class)}: ` +
        `its 95 % interval reaches down to ${ktl.percent(low, 0)}, and that answer gets ${ktl.percent(baseline.majority_accuracy, 0)}.`;
      el("baseline-warning").hidden = false;
    }
  }
}

function renderSplits(meta) {
  const splits = splitsOf(meta);
  const topK = splits.map(([, f]) => f.top_k).find(Boolean);
  el("top-k-head").textContent = topK ? `top-${topK} accuracy` : "top-k accuracy";
  el("splits").tBodies[0].replaceChildren(...splits.map(([split, f]) => row([
    split,
    f.images ?? f.val_images ?? "—",
    pct(f.accuracy, 0),
    f.accuracy_interval ? ktl.interval(f.accuracy_interval) : "—",
    pct(f.top_k_accuracy, 0),
    fixed(f.loss),
    fixed(f.macro_f1),
    f.baseline ? `${ktl.percent(f.baseline.majority_accuracy, 0)} (${f.baseline.majority_class})` : "—",
  ], [1, 2, 3, 4, 5, 6, 7], true)));
}

const PHASE_NAMES = {
  head: "New head on the frozen backbone",
  fine_tune: "Fine-tuning",
  scratch: "Whole network from random weights",
};

function phaseText(phase, training) {
  let title = PHASE_NAMES[phase.name] || phase.name;
  if (phase.name === "fine_tune" && training.unfreeze_from) title += ` from layer ${training.unfreeze_from} on`;
  const parts = [];
  if (phase.max_epochs === undefined) {
    parts.push(`${phase.epochs} epochs`);
  } else if (phase.stopped_early) {
    parts.push(`stopped early after ${phase.epochs} of up to ${phase.max_epochs} epochs (the validation loss stopped improving)`);
  } else {
    parts.push(`ran all ${phase.max_epochs} epochs`);
  }
  if (phase.kept_epoch !== undefined && phase.kept_epoch !== null) {
    parts.push(`kept the weights of epoch ${phase.kept_epoch} (lowest validation loss)`);
  }
  return `${title}: ${parts.join("; ")}.`;
}

function renderTraining(meta) {
  const training = meta.training || {};
  el("phases").replaceChildren(...(training.phases || []).map((p) => {
    const li = ktl.make("li", phaseText(p, training));
    if (p.kept_epoch !== undefined && p.kept_epoch !== null) li.dataset.keptEpoch = p.kept_epoch;
    return li;
  }));
}

async function renderHistory(report) {
  const lines = (await (await ktl.request(report("history.csv"))).text()).trim().split("\n");
  const columns = lines[0].split(",");
  const value = (cells, column) => cells[columns.indexOf(column)];
  el("history").tBodies[0].replaceChildren(...lines.slice(1).map((line) => {
    const cells = line.split(",");
    const kept = value(cells, "kept") === "1";
    const tr = row([
      value(cells, "phase"), value(cells, "epoch"),
      ...["loss", "accuracy", "val_loss", "val_accuracy"].map((c) => fixed(Number(value(cells, c)), 4)),
      kept ? "★ kept" : "",
    ], [1, 2, 3, 4, 5]);
    if (kept) tr.className = "kept";
    return tr;
  }));
  el("history-box").hidden = false;
}

function renderClasses(meta) {
  const split = mainSplit(meta);
  el("classes-heading").textContent = `Classes on the ${split} images`;
  el("classes").tBodies[0].replaceChildren(...Object.entries((meta.metrics || {}).per_class || {}).map(([label, c]) =>
    row([label, fixed(c.precision), fixed(c.recall), fixed(c.f1), c.support], [1, 2, 3, 4])));
}

function renderCalibration(meta) {
  const calibration = meta.calibration;
  if (!calibration) {
    el("calibration-text").textContent = "Not calibrated: the probabilities are the network's own " +
      "(trained with calibration off, or published before ktl calibrated).";
    el("calibration-box").hidden = true;
    return;
  }
  const images = ((meta.evaluation || {})[calibration.split] || {}).images;
  el("calibration-text").textContent = `Temperature scaling: the scores are divided by ${fixed(calibration.temperature, 3)} ` +
    `(fitted on the validation images) inside the model, so every probability it gives is the calibrated one. ` +
    `Measured on the ${images ? images + " " : ""}${calibration.split} images, before and after:`;
  const rows = [
    ["expected calibration error (ECE)", calibration.before.ece, calibration.after.ece],
    ["negative log-likelihood (NLL)", calibration.before.nll, calibration.after.nll],
    ["Brier score", calibration.before.brier, calibration.after.brier],
  ];
  if (calibration.validation_nll) {
    rows.push(["NLL on validation (where fitted)", calibration.validation_nll.before, calibration.validation_nll.after]);
  }
  el("calibration").tBodies[0].replaceChildren(...rows.map(([measure, before, after]) =>
    row([measure, fixed(before, 4), fixed(after, 4)], [1, 2], true)));
}

function offClassText(decision) {
  const ood = decision.ood;
  if (!ood) return "not measured (give training images of none of the classes with --ood to measure it)";
  if (!ood.images) return "not measured: " + (ood.note || "no such images");
  return `${ood.images} images of none of the classes: ${pct(ood.rejected, 0)} of them answered “not sure” ` +
    `(AUROC ${fixed(ood.auroc, 2)}); ${pct(ood.in_scope_rejected, 0)} of the images of its classes too`;
}

function renderDecision(meta) {
  const decision = meta.decision;
  if (!decision) {
    ktl.describe(el("decision"), [["Threshold", "none: this version always answers (published before thresholds existed)"]]);
    return;
  }
  const rows = [
    ["Threshold", `${ktl.percent(decision.threshold)}: below it the answer is “not sure”`],
    ["Rule", decision.rule],
  ];
  if (decision.note) rows.push(["Note", decision.note]);
  if (decision.split) {
    const answered = decision.answered !== undefined && decision.images !== undefined
      ? `${decision.answered} of ${decision.images} images (${pct(decision.coverage, 0)})` : pct(decision.coverage, 0);
    const right = typeof decision.selective_accuracy === "number"
      ? `, ${ktl.percent(decision.selective_accuracy, 0)} of them right` : ", none answered";
    rows.push([`On the ${decision.split} images`, `answered ${answered}${right}`]);
  }
  rows.push(["Images of none of the classes", offClassText(decision)]);
  ktl.describe(el("decision"), rows);
}

function renderDataset(meta) {
  const dataset = meta.dataset || {};
  const classes = Object.entries(dataset.classes || {});
  const withTest = classes.some(([, c]) => c.test);
  const heads = ["class", "train", "validation", ...(withTest ? ["test"] : [])];
  el("dataset").tHead.rows[0].replaceChildren(...heads.map((h, i) => {
    const th = ktl.make("th", h, i ? "num" : "");
    th.scope = "col";
    return th;
  }));
  el("dataset").tBodies[0].replaceChildren(...classes.map(([label, c]) =>
    row([label, c.train, c.val, ...(withTest ? [c.test ?? 0] : [])], [1, 2, 3], true)));
  const notes = [
    `${count(dataset.skipped)} files skipped (not readable as images), ${dataset.ignored_files || 0} other files ignored, ` +
    `${count(dataset.duplicates)} groups of duplicates, ` +
    `${count(dataset.removed_from_val) + count(dataset.removed_near_copies)} copies of training images kept out of validation and test.`,
  ];
  if (dataset.test_note) notes.push("No test split: " + dataset.test_note);
  const reviewed = dataset.reviewed;
  if (reviewed) {
    const versions = Object.entries(reviewed.by_version || {}).map(([v, n]) => `${v}: ${n}`).join(", ");
    const split = reviewed.by_split || {};
    notes.push(`${reviewed.images} images from the review of ${reviewed.model} (predictions of versions ${versions}): ` +
      `${split.train || 0} train, ${split.val || 0} validation, ${split.test || 0} test.`);
  }
  el("dataset-notes").textContent = notes.join(" ");
}

function renderConfig(meta) {
  const training = meta.training || {};
  const fineTuned = (training.phases || []).some((p) => p.name === "fine_tune");
  const unused = training.recipe === "scratch" ? FINE_TUNING
    : training.recipe === "transfer" && !fineTuned ? FINE_TUNING.filter((k) => k !== "fine_tune_epochs") : [];
  const settings = Object.entries(training).filter(([key]) => !DETAILS.includes(key));
  const unset = settings.filter(([key, value]) => value === null && !unused.includes(key)).map(([key]) => key);
  const config = Object.fromEntries(settings.filter(([key, value]) => value !== null && !unused.includes(key)));
  el("config").textContent = JSON.stringify(config, null, 2);
  const notes = [];
  if (unused.length) {
    const why = training.recipe === "scratch" ? "training from scratch has no fine-tuning phase" : "no fine-tuning phase ran";
    notes.push(`Not used, as ${why}: ${unused.join(", ")}.`);
  }
  if (unset.length) notes.push(`Not set (the defaults applied): ${unset.join(", ")}.`);
  el("config-note").textContent = notes.join(" ");
  el("config-note").hidden = !notes.length;
}

function renderWorst(meta, worst) {
  const split = mainSplit(meta);
  el("worst-heading").textContent = `Most wrong on the ${split} images`;
  el("worst-empty").textContent = `No misclassified images: the model got every one of the ${split} images right.`;
  el("worst-empty").hidden = worst.length > 0;
}

// An image of reports/ into img, or a line saying the version has none.
async function plot(img, file, files, report) {
  const missing = el(img.id + "-missing");
  try {
    if (!(`reports/${file}` in files)) throw new Error("not in this version");
    img.src = await ktl.objectUrl(report(file));
  } catch (error) {
    img.parentElement.hidden = true;
    if (missing) missing.hidden = false;
  }
}

async function worstImages(worst, split, report) {
  el("worst").replaceChildren(...await Promise.all(worst.map(async (w) => {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = `${split} image ${w.file}`;
    try {
      img.src = await ktl.objectUrl(report(w.thumbnail));
    } catch (_) { /* left without a source: hidden, the caption still says what it was */ }
    const caption = ktl.make("figcaption", `${w.file}: true ${w.true} (${ktl.percent(w.true_probability)}), ` +
      `predicted ${w.predicted} (${ktl.percent(w.predicted_probability)})`);
    figure.append(img, caption);
    const li = document.createElement("li");
    li.append(figure);
    return li;
  })));
}

// "Against version 1: +2.1 points": the version below this one, each scored on its
// own test split (or both on validation); a link to its report.
async function renderPrevious() {
  const { models } = await ktl.json("/v1/models");
  const model = (models || []).find((m) => m.name === name);
  const details = (model && model.version_details) || [];
  const current = details.find((d) => d.version === Number(version));
  const previous = details.filter((d) => d.version < Number(version)).sort((a, b) => b.version - a.version)[0];
  if (!current || !previous || typeof current.accuracy !== "number" || typeof previous.accuracy !== "number") return;
  const box = el("previous");
  const link = ktl.make("a", `version ${previous.version}`);
  link.href = `/models/${encodeURIComponent(name)}/versions/${previous.version}/report`;
  if (current.accuracy_split !== previous.accuracy_split) {
    box.append(`Against `, link, `: not comparable (this version's accuracy is on ${current.accuracy_split || "validation"}, ` +
      `that one's on ${previous.accuracy_split || "validation"}).`);
  } else {
    const points = (current.accuracy - previous.accuracy) * 100;
    const sign = points > 0 ? "+" : points < 0 ? "−" : "±";
    box.append(`Against `, link, `: ${sign}${Math.abs(points).toFixed(1)} points of ${current.accuracy_split || "validation"} accuracy ` +
      `(${pct(current.accuracy)} vs ${pct(previous.accuracy)}).`);
  }
  box.dataset.points = (current.accuracy - previous.accuracy) * 100;
  box.hidden = false;
}

const span = (interval) => (interval ? `${interval[0].toFixed(2)}–${interval[1].toFixed(2)}` : "—");

function renderMultilabel(meta) {
  const multi = meta.multilabel;
  const evaluation = multi.evaluation || {};
  const split = mainSplit(meta);
  const shown = evaluation[split] || {};
  ktl.describe(el("summary"), [
    ["Model", `${meta.name}, version ${meta.version} (multi-label)`],
    ["Backbone", [meta.backbone, recipeText(meta.training || {})].filter(Boolean).join(", ")],
    ["Image size", (meta.image_size || []).join(" × ") + " px"],
    ["Trained", ktl.date(meta.created_at) || "—"],
    ["Labels", (meta.labels || []).join(", ")],
    [`mAP (${split})`, `${fixed(shown.map)}; micro F1 ${fixed(shown.micro_f1)} (${shown.images} images)`],
    ["Answers", "every label whose probability reaches its own threshold; the set may be empty"],
  ]);
  el("multilabel-splits").tBodies[0].replaceChildren(...["validation", "test"].filter((s) => evaluation[s]).map((s) => {
    const f = evaluation[s];
    return row([s, f.images, fixed(f.map), fixed(f.micro_f1), fixed(f.macro_f1), pct(f.exact_match),
      fixed(f.hamming_loss), f.none_answered_empty === undefined ? "—" : `${pct(f.none_answered_empty, 0)} of ${f.none_images}`],
    [1, 2, 3, 4, 5, 6, 7], true);
  }));
  el("multilabel-rule").textContent = `Thresholds: ${multi.rule}. ` +
    (multi.calibration ? `Temperatures: ${multi.calibration}.` : "Not calibrated.");
  el("multilabel-labels").tBodies[0].replaceChildren(...Object.entries(shown.per_label || {}).map(([label, f]) => {
    const decided = multi.labels[label] || {};
    return row([label, fixed(decided.threshold), fixed(decided.temperature), `${fixed(f.precision)} (${span(f.precision_interval)})`,
      `${fixed(f.recall)} (${span(f.recall_interval)})`, fixed(f.f1),
      f.ap === null || f.ap === undefined ? "—" : `${fixed(f.ap)} (${span(f.ap_interval)})`, f.support],
    [1, 2, 3, 4, 5, 6, 7], true);
  }));
}

async function renderMultilabelReport(meta) {
  renderMultilabel(meta);
  renderTraining(meta);
  renderConfig(meta);
  const files = meta.files || {};
  const report = (file) => api + "/reports/" + file;
  el("loading").hidden = true;
  MULTILABEL_SECTIONS.forEach((section) => show(section + "-section"));
  await Promise.all([
    plot(el("curves"), "curves.png", files, report),
    plot(el("pr-curves"), "pr_curves.png", files, report),
    "reports/history.csv" in files ? renderHistory(report).catch(() => {}) : null,
  ]);
  setState("ready");
}

async function render() {
  document.title = `ktl — ${name} v${version} report`;
  el("title").textContent = `${name} version ${version}: training report`;
  el("try-link").href = "/?" + new URLSearchParams({ model: name, version });
  el("try-link").textContent = "Try this version";
  el("monitor-link").href = `/models/${encodeURIComponent(name)}/monitor`;
  el("review-link").href = "/review?" + new URLSearchParams({ model: name });
  const meta = await ktl.json(api);
  if (meta.task === "multilabel") return renderMultilabelReport(meta);
  renderSummary(meta);
  renderSplits(meta);
  renderTraining(meta);
  renderClasses(meta);
  renderCalibration(meta);
  renderDecision(meta);
  renderDataset(meta);
  renderConfig(meta);

  const files = meta.files || {};
  const report = (file) => api + "/reports/" + file;
  let worst = [];
  if ("reports/worst.json" in files) worst = await ktl.json(report("worst.json")).catch(() => []);
  worst = worst.filter((w) => w.true !== w.predicted); // format 1 listed right answers too
  renderWorst(meta, worst);
  el("loading").hidden = true;
  SECTIONS.forEach((section) => show(section + "-section"));
  await Promise.all([
    plot(el("curves"), "curves.png", files, report),
    plot(el("confusion"), "confusion_matrix.png", files, report),
    plot(el("reliability"), "reliability.png", files, report),
    plot(el("risk"), "risk_coverage.png", files, report),
    "reports/history.csv" in files ? renderHistory(report).catch(() => {}) : null,
    worstImages(worst, mainSplit(meta), report),
    renderPrevious().catch(() => {}),
  ]);
  setState("ready");
}

render().catch((error) => {
  el("loading").hidden = true;
  SECTIONS.forEach((section) => show(section + "-section", false));
  el("error").textContent = "Could not load the report: " + error.message +
    (error.code === "unauthorized" ? " (type the API key on the start page)" : "");
  el("error").hidden = false;
  setState("error");
});
