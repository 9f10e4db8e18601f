// The train-a-model page: name a model, give one folder of images per class (or an
// archive), start a job on the service and follow it live until its version is published.
// Each section says what it shows in data-state: idle, loading, ready, running, done, error.
"use strict";

const $ = (id) => document.getElementById(id);
const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/; // models/store.py NAME_PATTERN
const IMAGE = /\.(jpe?g|jpe|jfif|png|gif|bmp|dib|tiff?|webp|ppm|pgm|pbm|pnm)$/i; // IMAGE_SUFFIXES
const ARCHIVE = /\.(zip|tar\.gz|tgz|tar)$/i;
const SPLITS = ["train", "val", "test"];
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const THUMBNAILS = 4; // shown per class
const NUMBERS = [["image-size", "image_size"], ["epochs", "epochs"], ["batch-size", "batch_size"],
  ["fine-tune-epochs", "fine_tune_epochs"]];

const classes = new Map(); // class name -> Map(path inside the class -> File)
let archive = null; // an archive the user gave: uploaded as it is
let splitLayout = false; // whether the classes came from a train/val(/test) folder: their paths start with the split
let upload = null; // the AbortController of the upload under way
let job = null; // the job followed: { id, rows, lastEventId, done, controller }

function setState(section, state) {
  section.dataset.state = state;
  section.setAttribute("aria-busy", String(state === "loading"));
}

function say(id, message) {
  $(id).textContent = message;
  $(id).hidden = !message;
}

// 1234567 -> "1.2 MB"
function bytes(n) {
  const units = ["bytes", "kB", "MB", "GB"];
  let unit = 0;
  while (n >= 1000 && unit < units.length - 1) [n, unit] = [n / 1000, unit + 1];
  return (unit ? n.toFixed(1) : String(n)) + "\u00a0" + units[unit];
}

const plural = (n, one, many = one + "s") => `${n} ${n === 1 ? one : many}`;
const hidden = (part) => part.startsWith(".");
// Items in a Map of lists, by key(item).
function group(items, key) {
  const groups = new Map();
  for (const item of items) {
    if (!groups.has(key(item))) groups.set(key(item), []);
    groups.get(key(item)).push(item);
  }
  return groups;
}
// [key, value] pairs by key, as Python sorts strings (ktl lists classes and files so).
const sorted = (pairs) => [...pairs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

// --- the service and the key ------------------------------------------------------

async function checkService() {
  setState($("setup"), "loading");
  say("setup-error", "");
  say("setup-status", "Asking the service whether it trains …");
  try {
    await ktl.json("/v1/jobs");
    say("setup-status", "");
    setTrainingOff("");
    setState($("setup"), "ready");
    markBackbones();
    return true;
  } catch (error) {
    say("setup-status", "");
    if (error.code === "unauthorized" || error.status === 401) {
      say("setup-error", "This service needs a training key: type it under “API key”.");
      $("key-box").open = true;
    } else {
      const reason = error.status === 403 ? error.message : "The service cannot train: " + error.message;
      say("setup-error", reason);
      setTrainingOff(reason);
    }
    setState($("setup"), "error");
    return false;
  }
}

// With training off, nothing here can be used: every control but the key is disabled
// and Start says why ("" turns them on again).
let trainingOff = "";
function setTrainingOff(reason) {
  trainingOff = reason;
  for (const control of document.querySelectorAll("#name, #data button, #options input, #options select, #start")) {
    control.disabled = Boolean(reason);
  }
  if (!$("cancel").hidden) $("start").disabled = true; // a job or an upload under way
  document.querySelector("main").dataset.training = reason ? "off" : "on";
  if (reason) $("job-status").textContent = "Training is off on this service: " + reason;
  else if ($("job-status").textContent.startsWith("Training is off")) $("job-status").textContent = "";
}

// Each backbone marked with whether its weights are on the service (GET /v1/backbones):
// one that must download them fails on a service without internet.
async function markBackbones() {
  let listed;
  try {
    listed = new Map((await ktl.json("/v1/backbones")).backbones.map((b) => [b.name, b]));
  } catch (_) {
    return; // an older service: the list stays unmarked
  }
  for (const option of $("backbone").options) {
    const known = listed.get(option.value);
    if (!known) continue;
    option.dataset.label ??= option.textContent;
    option.dataset.offline = String(known.offline);
    option.textContent = `${option.dataset.label} (${known.offline ? "offline" : "downloads its weights"})`;
  }
  const chosen = $("backbone").selectedOptions[0];
  if (!backboneTouched && chosen.dataset.offline === "false") {
    const offline = [...$("backbone").options].filter((o) => o.dataset.offline === "true");
    const better = offline.find((o) => o.dataset.recipe === "transfer") || offline[0];
    if (better) $("backbone").value = better.value;
  }
  describeBackbone();
}
let backboneTouched = false;

function nameProblem(name) {
  if (!name) return "Give the model a name.";
  if (NAME.test(name)) return "";
  const lower = name.toLowerCase();
  return "Use 1–64 characters: lower-case letters, digits, “-” and “_”, starting with a letter or digit" +
    (NAME.test(lower) ? ` (did you mean “${lower}”?).` : ".");
}

function showNameProblem(problem) {
  say("name-error", problem);
  $("name").setAttribute("aria-invalid", String(Boolean(problem)));
}

// A folder's name as a model name, if it makes one: "My Cats" -> "my-cats".
function suggestName(folder) {
  if ($("name").value.trim()) return;
  const name = folder.toLowerCase().replace(/[^a-z0-9_-]+/g, "-").replace(/^[-_]+|-+$/g, "").slice(0, 64);
  if (NAME.test(name)) $("name").value = name;
}

// --- the images: folders (chosen or dropped) or an archive --------------------------

// The classes under one chosen or dropped folder, from its files ({parts: [root, ..., name], file}):
// its sub-folders holding images are the classes (images at any depth below them); a folder
// holding images and no such sub-folder is a class itself. A folder with train/ and val/ or
// test/ keeps its splits, as ktl train reads it: the classes are the folders inside each split.
function classesOf(root, files) {
  const shown = files.filter((item) => !item.parts.slice(1).some(hidden));
  const loose = shown.filter((item) => item.parts.length === 2);
  const below = group(shown.filter((item) => item.parts.length > 2), (item) => item.parts[1]);
  if (below.has("train") && [...below.keys()].some((k) => k !== "train" && SPLITS.includes(k))) {
    const inSplits = shown.filter((i) => SPLITS.includes(i.parts[1]) && i.parts.length > 3 && IMAGE.test(i.file.name));
    const found = [...group(inSplits, (item) => item.parts[2])].map(([name, items]) => [name, items, "split"]);
    return { found, ignored: files.length - inSplits.length, split: true };
  }
  const found = [...below].filter(([, items]) => items.some((i) => IMAGE.test(i.file.name)))
    .map(([name, items]) => [name, items, 2]);
  if (!found.length && loose.some((i) => IMAGE.test(i.file.name))) found.push([root, loose, 1]);
  const kept = found.flatMap(([, items]) => items).filter((i) => IMAGE.test(i.file.name)).length;
  return { found, ignored: files.length - kept, split: false };
}

// Where a file of a class goes in the class's Map: its path below the class folder, after
// its split (train/, val/, test/) in a split folder.
const memberPath = (parts, depth) => (depth === "split" ? [parts[1], ...parts.slice(3)] : parts.slice(depth)).join("/");

// Files of one or more folders ({parts, file}) into the classes.
function addFiles(files) {
  const roots = group(files, (item) => item.parts[0]);
  if ([...roots.values()].every((items) => items.every((i) => i.parts.length === 1))) {
    throw new Error("These are files, not folders: give one folder of images per class (or a folder of such folders, or a .zip).");
  }
  let ignored = 0;
  let added = 0;
  for (const [root, items] of roots) {
    if (items.length === 1 && items[0].parts.length === 1) {
      ignored += 1; // a loose file dropped beside the folders
      continue;
    }
    const result = classesOf(root, items);
    ignored += result.ignored;
    if (result.found.length && result.split !== splitLayout) {
      classes.clear(); // a train/val folder and class folders do not mix: the later one replaces
      splitLayout = result.split;
    }
    for (const [name, members, depth] of result.found) {
      const files = classes.get(name) || new Map();
      for (const { parts, file } of members) {
        if (IMAGE.test(file.name)) files.set(memberPath(parts, depth), file);
      }
      classes.set(name, files);
      added += 1;
    }
    if (result.found.length && result.found[0][2] !== 1) suggestName(root); // a folder of class folders
  }
  if (!added) throw new Error("No images found: give one folder of images per class (JPEG, PNG, WebP, GIF, BMP, TIFF).");
  if (archive) useArchive(null);
  return ignored;
}

// Every file under a dropped entry (FileSystemEntry), hidden ones left out.
async function walk(entry, parts, out) {
  if (hidden(entry.name)) return;
  if (entry.isFile) {
    out.push({ parts: [...parts, entry.name], file: await new Promise((ok, fail) => entry.file(ok, fail)) });
    return;
  }
  const reader = entry.createReader();
  for (;;) { // readEntries gives a folder's entries in batches, then an empty one
    const batch = await new Promise((ok, fail) => reader.readEntries(ok, fail));
    if (!batch.length) return;
    for (const child of batch) await walk(child, [...parts, entry.name], out);
  }
}

// What the reading of folders found, in words; or its problem.
async function reading(collect) {
  setState($("data"), "loading");
  say("data-error", "");
  $("data-status").textContent = "Reading the folders …";
  try {
    const ignored = addFiles(await collect());
    renderData(ignored ? `; ${plural(ignored, "other file")} left out` : "");
  } catch (error) {
    renderData();
    say("data-error", error.message);
    if (!classes.size && !archive) setState($("data"), "error");
  }
}

function takeDrop(dropped) {
  const archives = dropped.filter((d) => d.file && ARCHIVE.test(d.file.name) && !(d.entry && d.entry.isDirectory));
  if (archives.length) {
    if (dropped.length > 1) say("data-error", "Drop one archive alone, or folders without an archive.");
    else useArchive(archives[0].file);
    return;
  }
  reading(async () => {
    const files = [];
    for (const { entry, file } of dropped) {
      if (entry) await walk(entry, [], files);
      else if (file) files.push({ parts: [file.name], file });
    }
    return files;
  });
}

function useArchive(file) {
  archive = file;
  say("data-error", "");
  if (file) {
    classes.clear();
    splitLayout = false;
  }
  renderData();
}

function renderData(note = "") {
  const images = [...classes.values()].reduce((n, files) => n + files.size, 0);
  $("classes").replaceChildren(...sorted(classes).map(([name, files]) => classItem(name, files)));
  $("archive").replaceChildren();
  $("archive").hidden = !archive;
  if (archive) {
    const remove = ktl.make("button", "Remove", "remove");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove ${archive.name}`);
    remove.addEventListener("click", () => {
      useArchive(null);
      $("choose-zip").focus();
    });
    $("archive").append(ktl.make("strong", archive.name), ` — ${bytes(archive.size)}, sent as it is: ` +
      "the service reads its class folders. ", remove);
    $("archive").dataset.size = archive.size;
  }
  const splits = splitLayout && classes.size
    ? ` in their own splits (${splitCounts([...classes.values()].flatMap((files) => [...files.keys()]))})` : "";
  $("data-status").textContent = archive ? "" : classes.size
    ? `${plural(classes.size, "class", "classes")}, ${plural(images, "image")}${splits}${note}.` : "No images yet.";
  $("data").dataset.images = images;
  $("data").dataset.layout = splitLayout && classes.size ? "splits" : "classes";
  setState($("data"), classes.size || archive ? "ready" : "idle");
}

function classItem(name, files) {
  const li = document.createElement("li");
  li.className = "class";
  li.dataset.class = name;
  li.dataset.count = files.size;
  const remove = ktl.make("button", "Remove", "remove");
  remove.type = "button";
  remove.setAttribute("aria-label", `Remove class ${name}`);
  remove.addEventListener("click", () => {
    classes.delete(name);
    renderData();
    ($("classes").querySelector(".remove") || $("choose-folder")).focus();
  });
  const head = ktl.make("p", "", "class-head");
  const count = plural(files.size, "image") + (splitLayout ? `: ${splitCounts(files.keys())}` : "");
  head.append(ktl.make("strong", name, "class-name"), ktl.make("span", count, "count"), remove);
  const thumbnails = ktl.make("div", "", "thumbnails");
  for (const [path, file] of sorted(files).slice(0, THUMBNAILS)) {
    const img = document.createElement("img");
    const url = URL.createObjectURL(file);
    img.alt = `${name}/${path}`;
    img.onload = () => URL.revokeObjectURL(url);
    img.onerror = () => {
      URL.revokeObjectURL(url);
      img.removeAttribute("src"); // a file this browser cannot draw: no broken frame
    };
    img.src = url;
    thumbnails.append(img);
  }
  li.append(head, thumbnails);
  return li;
}

// [[path in the zip, File], ...]: class/path, or split/class/path for a train/val folder
// (the service then keeps its splits, as ktl train does).
function zipEntries() {
  const entries = sorted(classes).flatMap(([name, files]) => sorted(files).map(([path, file]) => {
    if (!splitLayout) return [`${name}/${path}`, file];
    const [split, ...rest] = path.split("/");
    return [[split, name, ...rest].join("/"), file];
  }));
  return sorted(entries);
}

// "train 8, val 2, test 2": the images of each split of a train/val folder.
function splitCounts(paths) {
  const counts = group([...paths], (path) => path.split("/")[0]);
  return SPLITS.filter((s) => counts.has(s)).map((s) => `${s} ${counts.get(s).length}`).join(", ");
}

// --- a zip of the classes, made here: STORE method (images are compressed already) ----

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(data) {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// Little-endian fields, each [bytes (2 or 4), value].
function le(fields) {
  const out = new Uint8Array(fields.reduce((n, [size]) => n + size, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const [size, value] of fields) {
    if (size === 2) view.setUint16(at, value, true);
    else view.setUint32(at, value, true);
    at += size;
  }
  return out;
}

function dosTime(ms) {
  const d = new Date(ms);
  if (!(d.getFullYear() >= 1980)) return [0, (1 << 5) | 1]; // before DOS time: 1 Jan 1980
  return [(d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1),
    ((d.getFullYear() - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate()];
}

// [[path, File], ...] -> a Blob of a zip holding them. Only the CRC needs the bytes, one
// file at a time: the Blob refers to the files rather than copying them.
async function storeZip(entries, onFile = () => {}) {
  if (entries.length > 0xffff) {
    throw new Error(`${entries.length} images are more than this page can zip (65,535): zip them yourself and choose the .zip.`);
  }
  const encoder = new TextEncoder();
  const parts = [];
  const directory = [];
  let offset = 0;
  for (const [index, [path, file]] of entries.entries()) {
    const name = encoder.encode(path);
    const crc = crc32(new Uint8Array(await file.arrayBuffer()));
    const [time, date] = dosTime(file.lastModified);
    // version 1.0, flags: UTF-8 names, method 0 (stored), ... sizes, name length, no extra field
    const common = [[2, 10], [2, 0x0800], [2, 0], [2, time], [2, date], [4, crc], [4, file.size], [4, file.size],
      [2, name.length], [2, 0]];
    const local = le([[4, 0x04034b50], ...common]);
    parts.push(local, name, file);
    // made by 2.0; no comment, disk 0, no attributes; where its local header is
    directory.push(le([[4, 0x02014b50], [2, 20], ...common, [2, 0], [2, 0], [2, 0], [4, 0], [4, offset]]), name);
    offset += local.length + name.length + file.size;
    if (offset > 0xffffffff) throw new Error("The images add up to more than 4 GB: zip them yourself and choose the .zip.");
    onFile(index + 1, entries.length);
  }
  const size = directory.reduce((n, part) => n + part.length, 0);
  const end = le([[4, 0x06054b50], [2, 0], [2, 0], [2, entries.length], [2, entries.length], [4, size], [4, offset], [2, 0]]);
  return new Blob([...parts, ...directory, end], { type: "application/zip" });
}

// --- options and start --------------------------------------------------------------

function describeBackbone() {
  const chosen = $("backbone").selectedOptions[0];
  const scratch = chosen.dataset.recipe === "scratch";
  $("image-size").placeholder = chosen.dataset.size;
  $("image-size-hint").textContent = `Empty: ${chosen.dataset.size} px, the backbone's own. Smaller trains faster.`;
  $("epochs").placeholder = scratch ? "40" : "10";
  $("epochs-hint").textContent = scratch
    ? "Empty: 40. Training stops early once the validation loss stops falling."
    : "Empty: 10 (more when there are few images). Training stops early once the validation loss stops falling.";
}

// The options as JSON names of the job file; what is left empty is the service's default.
function options() {
  const chosen = { name: $("name").value.trim(), backbone: $("backbone").value };
  for (const [id, key] of NUMBERS) {
    if ($(id).value.trim() !== "") chosen[key] = Number($(id).value);
  }
  if (!$("augment").checked) chosen.augment = false;
  return chosen;
}

// What keeps the job from starting, with the field to fix: [message, element] or null.
function startProblem() {
  const problem = nameProblem($("name").value.trim());
  showNameProblem(problem);
  if (problem) return [problem, $("name")];
  if (!archive && classes.size < 2) {
    return [classes.size ? "Add another class: a model learns to tell at least two apart." : "Add the classes first.",
      $("choose-folder")];
  }
  for (const [id] of NUMBERS) {
    if (!$(id).checkValidity()) {
      const details = $(id).closest("details");
      if (details) details.open = true;
      return [`${$(id).labels[0].textContent}: ${$(id).validationMessage}`, $(id)];
    }
  }
  return null;
}

// An error of an XMLHttpRequest, as api.js makes those of fetch.
function xhrError(xhr) {
  return ktl.error(xhr.status, xhr.statusText, xhr.responseText);
}

// POST /v1/jobs with a progress bar (fetch cannot tell how much of a body went out).
function send(dataset, filename, chosen, signal) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("options", JSON.stringify(chosen));
    form.append("dataset", dataset, filename);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/jobs");
    for (const [header, value] of Object.entries(ktl.headers())) xhr.setRequestHeader(header, value);
    xhr.upload.onprogress = (event) => {
      if (!event.lengthComputable) return;
      $("upload-progress").value = event.loaded / event.total;
      $("job-status").textContent = `Uploading: ${bytes(event.loaded)} of ${bytes(event.total)} …`;
    };
    xhr.onload = () => (xhr.status >= 200 && xhr.status < 300 ? resolve(JSON.parse(xhr.responseText)) : reject(xhrError(xhr)));
    xhr.onerror = () => reject(xhrError(xhr));
    xhr.onabort = () => reject(new DOMException("The upload was cancelled.", "AbortError"));
    signal.addEventListener("abort", () => xhr.abort());
    xhr.send(form);
  });
}

function setBusy(busy) {
  $("start").disabled = busy || Boolean(trainingOff);
  $("cancel").hidden = !busy;
  $("cancel").disabled = false;
}

function resetJob() {
  if (job) job.controller.abort();
  job = null;
  say("job-error-text", "");
  $("job-error").hidden = true;
  $("log-box").hidden = true;
  $("job-links").hidden = true;
  $("job-info").hidden = true;
  $("curves").hidden = true;
  delete $("job").dataset.jobState;
  delete $("job").dataset.id;
}

async function start() {
  const problem = startProblem();
  if (problem) {
    $("job-status").textContent = problem[0];
    problem[1].focus();
    return;
  }
  resetJob();
  setBusy(true);
  setState($("job"), "loading");
  upload = new AbortController();
  const signal = upload.signal;
  try {
    const entries = zipEntries();
    const dataset = archive || await storeZip(entries, (done, all) => {
      $("job-status").textContent = `Packing the images: ${done} of ${all} …`;
    });
    if (signal.aborted) throw new DOMException("The upload was cancelled.", "AbortError");
    $("upload-progress").value = 0;
    $("upload-progress").hidden = false;
    const accepted = await send(dataset, archive ? archive.name : "dataset.zip", options(), signal);
    history.replaceState(null, "", "?" + new URLSearchParams({ job: accepted.id }));
    follow(accepted);
  } catch (error) {
    setBusy(false);
    if (ktl.aborted(error)) {
      $("job-status").textContent = "Cancelled before the upload ended: nothing was started.";
      setState($("job"), "idle");
    } else {
      failed("The service did not start the job: " + error.message);
      if (error.status === 401 || error.status === 403) checkService();
    }
  } finally {
    upload = null;
    $("upload-progress").hidden = true;
  }
}

function failed(message, log = []) {
  say("job-error-text", pageWords(withoutTensorFlowLogs(message)));
  $("job-error").hidden = false;
  const lines = log.filter((line) => !TF_LOG.test(line));
  $("log").textContent = lines.join("\n");
  $("log-box").hidden = !lines.length;
  $("log-box").open = lines.length > 0;
  $("job-status").textContent = "";
  setState($("job"), "error");
}

// TensorFlow's own start-up lines (absl, oneDNN, CPU instructions): noise, not the job's words.
const TF_LOG = new RegExp([
  String.raw`^\s*[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]`, // absl: I0000 00:00:17.5 123 file.cc:42]
  String.raw`^\s*WARNING: All log messages before absl::InitializeLog`,
  String.raw`^\s*(\S+ )?\S+: [IWEF] (tensorflow|external|xla)\/\S+:\d+\]`, // 2024-12-07 10:00:00.1: I tensorflow/...]
  String.raw`oneDNN custom operations are on`,
  String.raw`This TensorFlow binary is optimized`,
  String.raw`^\s*To enable the following instructions:`,
  String.raw`^\s*WARNING:absl:`,
].join("|"));
const withoutTensorFlowLogs = (text) => text.split("\n").filter((line) => !TF_LOG.test(line)).join("\n").trim();

// A message of the training code, in this page's terms: its choices rather than ktl train's flags.
const FLAG_WORDS = [[/--backbone (\S+)/g, "the backbone $1"], [/--image-size/g, "Image size"], [/--epochs/g, "Epochs"],
  [/--batch-size/g, "Batch size"], [/--fine-tune-epochs/g, "Fine-tuning epochs"], [/--weights none/g, "Small CNN (from scratch)"]];
function pageWords(message) {
  const offline = /ImageNet weights for (\S+) could not be obtained/.exec(message);
  if (offline) {
    return `${message.split(":")[0]}: the ImageNet weights of ${offline[1]} could not be downloaded (the service may have no ` +
      "internet access). Choose a backbone marked “offline” under Options, such as EfficientNet-Lite0, and start again.";
  }
  return FLAG_WORDS.reduce((text, [flag, words]) => text.replace(flag, words), message);
}

// --- following a job: its event stream, read with fetch so the key goes along -------

const STATE_WORDS = {
  queued: "waiting for its turn", running: "training", succeeded: "done", failed: "failed", cancelled: "cancelled",
};
const PHASE_WORDS = { head: "new head on the frozen backbone", fine_tune: "fine-tuning", scratch: "whole network from scratch" };
const jobPath = (id, rest = "") => `/v1/jobs/${encodeURIComponent(id)}${rest}`;
const pause = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

// Server-Sent Events from a byte stream: onEvent(type, data, id) for each, in order,
// until the stream ends or onEvent returns false.
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = { type: "", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const raw of lines) {
      const line = raw.replace(/\r$/, "");
      if (line === "") {
        if (event.data.length && onEvent(event.type || "message", event.data.join("\n"), event.id) === false) {
          reader.cancel().catch(() => {});
          return;
        }
        event = { type: "", data: [], id: null };
        continue;
      }
      const colon = line.indexOf(":");
      if (colon === 0) continue; // a comment: the server keeping the line open
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event.type = text;
      else if (field === "data") event.data.push(text);
      else if (field === "id") event.id = text;
    }
  }
}

// One connection to the job's events; whether any came.
async function stream(followed) {
  const headers = followed.lastEventId ? { "Last-Event-ID": followed.lastEventId } : {};
  const response = await ktl.request(jobPath(followed.id, "/events"),
    { headers, cache: "no-store", signal: followed.controller.signal });
  let progressed = false;
  await readEvents(response.body, (type, data, id) => {
    if (id !== null) followed.lastEventId = id;
    let value;
    try {
      value = JSON.parse(data);
    } catch (_) {
      return true;
    }
    progressed = true;
    if (type === "state") showSummary(value);
    else if (type === "epoch") addRow(value);
    return !followed.done; // the stream ends after the last state; no need to wait for it
  });
  return progressed;
}

// GET /v1/jobs/<id> every few seconds, for when the stream keeps failing.
async function poll(followed) {
  while (!followed.done && !followed.controller.signal.aborted) {
    try {
      showSummary(await ktl.json(jobPath(followed.id), { signal: followed.controller.signal }));
    } catch (error) {
      if (ktl.aborted(error) || final(error)) throw error;
    }
    if (!followed.done) await pause(3000, followed.controller.signal);
  }
}

// A 4xx other than "too many": asking again will not help.
const final = (error) => error.status >= 400 && error.status < 500 && error.status !== 429;

async function follow(summary) {
  resetJob();
  const followed = { id: summary.id, rows: [], lastEventId: null, done: false, controller: new AbortController() };
  job = followed;
  $("job").dataset.id = summary.id;
  setBusy(true);
  showSummary(summary);
  let failures = 0;
  try {
    while (!followed.done) {
      try {
        failures = (await stream(followed)) ? 0 : failures + 1;
      } catch (error) {
        if (ktl.aborted(error) || final(error)) throw error;
        failures += 1;
      }
      if (followed.done) break;
      if (failures >= 3) {
        $("job-status").textContent = "The live stream keeps failing: asking every few seconds instead.";
        await poll(followed);
        break;
      }
      await pause(1000 * (failures + 1), followed.controller.signal); // the server ends streams after a while
    }
    if (job === followed) await ended(followed);
  } catch (error) {
    if (job !== followed || ktl.aborted(error)) return;
    setBusy(false);
    failed("Lost track of the job: " + error.message);
  }
}

// The job record (from the stream, a poll or the API) on the page.
function showSummary(record) {
  if (!job || record.id !== job.id) return;
  job.record = { ...job.record, ...record };
  if (Array.isArray(record.epochs)) setRows(record.epochs);
  describeJob();
  $("job").dataset.jobState = record.state;
  if (TERMINAL.has(record.state)) {
    job.done = true;
  } else {
    setState($("job"), "running");
    $("job-status").textContent = record.state === "queued"
      ? "Queued: it starts when the jobs before it end." : "Training: the curves grow with each epoch.";
  }
}

function describeJob() {
  const record = job.record;
  const rows = [["Model", record.name || (record.options || {}).name], ["State", STATE_WORDS[record.state] || record.state]];
  if (record.phase) rows.push(["Phase", PHASE_WORDS[record.phase] || record.phase]);
  if (record.epoch) rows.push(["Epoch", epochText(record)]);
  ktl.describe($("job-info"), rows);
  $("job-info").hidden = false;
}

// "3 of up to 10": the phase's epochs as asked (early stopping may end it sooner). The
// head phase runs more epochs than asked when there are few images (training.phases
// sized_phases): its count is known only when the record gives it (phase_epochs).
function epochText(record) {
  const options = record.options || {};
  const planned = record.phase_epochs ?? { scratch: options.epochs ?? 40, fine_tune: options.fine_tune_epochs ?? 5 }[record.phase];
  return planned && planned >= record.epoch ? `${record.epoch} of up to ${planned}` : String(record.epoch);
}

// After the last state: the whole record (its log, every epoch), then what it came to.
async function ended(followed) {
  const record = await ktl.json(jobPath(followed.id)).catch(() => followed.record);
  showSummary(record);
  setBusy(false);
  if (record.state === "succeeded") {
    await published(record, followed);
  } else if (record.state === "cancelled") {
    $("job-status").textContent = "Cancelled: nothing was published.";
    setState($("job"), "idle");
  } else {
    failed("Training failed: " + (record.error || "the job did not say why."), record.log || []);
  }
}

// Links to the new version, once the service serves it (its reload takes a moment).
async function published(record, followed) {
  const { name, version } = record;
  $("job-status").textContent = `Published version ${version} of ${name}; waiting for the service to load it …`;
  for (let tries = 0; tries < 30 && job === followed; tries++) {
    const served = await ktl.json("/v1/models").then(({ models }) =>
      models.some((m) => m.name === name && m.versions.includes(version)), (error) => final(error));
    if (served) break;
    await pause(1000, followed.controller.signal);
  }
  if (job !== followed) return;
  const links = record.links || {};
  $("report-link").href = links.report || `/models/${encodeURIComponent(name)}/versions/${version}/report`;
  $("try-link").href = links.try || "/?" + new URLSearchParams({ model: name, version });
  $("job-links").hidden = false;
  // Its accuracy, as the report gives it: "test accuracy 92 % (85–96 %, 36 test images)".
  const metrics = await ktl.json(`/v1/models/${encodeURIComponent(name)}/versions/${version}`)
    .then((meta) => meta.metrics || {}, () => ({}));
  if (job !== followed) return;
  const measured = metrics.accuracy !== undefined && metrics.accuracy !== null;
  const split = metrics.split || "validation";
  $("job-status").textContent = `Done: version ${version} of ${name} is published` +
    (measured ? `, ${split} accuracy ${ktl.accuracy(metrics, split)}.` : ".");
  if (measured) $("job-status").dataset.accuracy = metrics.accuracy;
  setState($("job"), "done");
}

async function cancel() {
  if (upload) {
    upload.abort();
    return;
  }
  if (!job || job.done) return;
  $("cancel").disabled = true;
  $("job-status").textContent = "Cancelling …";
  try {
    showSummary(await ktl.json(jobPath(job.id), { method: "DELETE" }));
  } catch (error) {
    if (error.status !== 409) { // 409: it had ended already, as the stream will say
      $("job-status").textContent = "Could not cancel: " + error.message;
      $("cancel").disabled = false;
    }
  }
}

// --- the curves: loss and accuracy per epoch, training and validation --------------

function addRow(row) {
  if (!job) return;
  const kept = job.rows.filter((r) => r.phase !== row.phase || r.epoch < row.epoch); // a resumed epoch replaces its row
  setRows([...kept, row]);
  job.record = { ...job.record, phase: row.phase, epoch: row.epoch }; // state events come on changes of phase only
  describeJob();
}

function setRows(rows) {
  job.rows = rows;
  $("curves").hidden = !rows.length;
  chart($("loss-chart"), "loss", rows, null);
  chart($("accuracy-chart"), "accuracy", rows, [0, 1]);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes, text = "") {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.textContent = text;
  return node;
}

function chart(box, metric, rows, range) {
  const [width, height, left, right, top, bottom] = [320, 190, 42, 10, 10, 30];
  const values = rows.flatMap((r) => [r[metric], r["val_" + metric]]).filter(Number.isFinite);
  if (!rows.length) {
    box.replaceChildren();
    return;
  }
  const [low, high] = range || [0, Math.max(...values, 0) * 1.1 || 1];
  const x = (i) => left + (rows.length > 1 ? (i * (width - left - right)) / (rows.length - 1) : (width - left - right) / 2);
  const y = (v) => top + (1 - (v - low) / (high - low)) * (height - top - bottom);
  const label = (v) => (range ? ktl.percent(v, 0) : v.toFixed(high < 1 ? 2 : 1));
  const parts = [svg("line", { x1: left, y1: top, x2: left, y2: height - bottom, class: "axis" }),
    svg("line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: "axis" })];
  for (const v of [low, (low + high) / 2, high]) {
    parts.push(svg("line", { x1: left, y1: y(v), x2: width - right, y2: y(v), class: "grid" }),
      svg("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end" }, label(v)));
  }
  parts.push(svg("text", { x: left, y: height - 10, "text-anchor": "middle" }, "1"),
    svg("text", { x: x(rows.length - 1), y: height - 10, "text-anchor": "middle" }, String(rows.length)),
    svg("text", { x: (left + width) / 2, y: height - 2, "text-anchor": "middle" }, "epoch"));
  rows.forEach((r, i) => {
    if (i && r.phase !== rows[i - 1].phase) {
      parts.push(svg("line", { x1: x(i - 0.5), y1: top, x2: x(i - 0.5), y2: height - bottom, class: "phase" }));
    }
  });
  for (const [key, kind] of [[metric, "train"], ["val_" + metric, "val"]]) {
    const points = rows.map((r, i) => [x(i), r[key]]).filter(([, v]) => Number.isFinite(v)).map(([px, v]) => [px, y(v)]);
    parts.push(svg("polyline", { points: points.map((p) => p.join(",")).join(" "), class: "line " + kind }));
    for (const [px, py] of points) parts.push(svg("circle", { cx: px, cy: py, r: 2.5, class: "dot " + kind }));
  }
  box.replaceChildren(...parts);
  const last = rows[rows.length - 1] || {};
  const shown = (v) => (Number.isFinite(v) ? label(v) : "—");
  box.setAttribute("aria-label", `${metric} per epoch, ${plural(rows.length, "epoch")}: last training ` +
    `${shown(last[metric])}, validation ${shown(last["val_" + metric])}`);
  box.dataset.points = rows.length;
}

// --- wiring ---------------------------------------------------------------------------

$("name").addEventListener("change", () => showNameProblem($("name").value.trim() ? nameProblem($("name").value.trim()) : ""));
$("name").addEventListener("input", () => {
  if ($("name").getAttribute("aria-invalid") === "true") showNameProblem(nameProblem($("name").value.trim()));
});
$("choose-folder").addEventListener("click", () => $("folder").click());
$("choose-zip").addEventListener("click", () => $("zip").click());
$("folder").addEventListener("change", (event) => {
  const files = [...event.target.files].map((file) => ({ parts: (file.webkitRelativePath || file.name).split("/"), file }));
  event.target.value = ""; // the same folder again is a new choice
  reading(async () => files);
});
$("zip").addEventListener("change", (event) => {
  if (event.target.files[0]) useArchive(event.target.files[0]);
  event.target.value = "";
});
// Folders or an archive dropped anywhere are taken (rather than the browser opening them).
document.addEventListener("dragover", (event) => {
  event.preventDefault();
  $("drop-zone").classList.add("over");
});
document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) $("drop-zone").classList.remove("over");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop-zone").classList.remove("over");
  // Entries must be taken before the handler returns: the list is emptied after it.
  const items = [...((event.dataTransfer && event.dataTransfer.items) || [])].filter((item) => item.kind === "file");
  takeDrop(items.map((item) => ({ entry: item.webkitGetAsEntry && item.webkitGetAsEntry(), file: item.getAsFile() })));
});
$("backbone").addEventListener("change", () => {
  backboneTouched = true;
  describeBackbone();
});
$("new-job").addEventListener("click", () => following(false));
$("start").addEventListener("click", start);
$("cancel").addEventListener("click", cancel);
window.addEventListener("beforeunload", (event) => {
  if (upload) event.preventDefault(); // leaving now loses the upload; a started job goes on
});
$("api-key").value = ktl.key();
$("api-key").addEventListener("change", () => {
  sessionStorage.setItem("ktl-api-key", $("api-key").value.trim());
  checkService();
});

describeBackbone();
// Following a job from its address: the job alone, the form folded away until asked for.
function following(on) {
  document.querySelector("main").classList.toggle("following", on);
  $("new-job").hidden = !on;
  if (on) return;
  history.replaceState(null, "", location.pathname);
  $("name").focus();
}

// ?job=ID (what the page puts in its address once a job starts): follow that job again.
checkService().then(async (trains) => {
  const id = new URLSearchParams(location.search).get("job");
  if (!trains || !id) return;
  following(true);
  try {
    follow(await ktl.json(jobPath(id)));
  } catch (error) {
    failed(`Could not find job ${id}: ` + error.message);
  }
});
