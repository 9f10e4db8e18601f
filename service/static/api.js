// The JSON API, with the optional bearer key the user typed (sessionStorage only),
// and the few helpers both pages use to put its figures into words.
"use strict";

// An answer of the API that is not a success: the service's message, its machine code
// (invalid_image, unauthorized, model_not_found, ...) and the HTTP status.
class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

const ktl = {
  key() {
    return sessionStorage.getItem("ktl-api-key") || "";
  },
  headers() {
    const key = ktl.key();
    return key ? { Authorization: "Bearer " + key } : {};
  },
  async request(path, options = {}) {
    const response = await fetch(path, { ...options, headers: { ...ktl.headers(), ...(options.headers || {}) } });
    if (!response.ok) throw ktl.error(response.status, response.statusText, await response.text());
    return response;
  },
  // The ApiError of an answer that is not a success, from its status and body text
  // ({"error": message, "code": code}, or anything else).
  error(status, statusText, text) {
    let message = status ? `${status} ${statusText}` : "the service could not be reached";
    let code = "http_" + status;
    try {
      const body = JSON.parse(text);
      message = body.error || message;
      code = body.code || code;
    } catch (_) { /* not JSON */ }
    return new ApiError(message, code, status);
  },
  async json(path, options) {
    return (await ktl.request(path, options)).json();
  },
  async objectUrl(path, options) {
    return URL.createObjectURL(await (await ktl.request(path, options)).blob());
  },
  // Whether an error only says that a newer request replaced this one.
  aborted(error) {
    return error && error.name === "AbortError";
  },

  // 0.973 -> "97.3 %". Never "100 %" for less than all nor "0 %" for more than none:
  // up to two more decimals, then a bound: 7.7e-30 -> "< 0.001 %", 0.9999999 -> "> 99.999 %".
  percent(p, digits = 1) {
    const scaled = 100 * p;
    let shown = digits;
    const misleading = (d) => {
      const rounded = Number(scaled.toFixed(d));
      return (p < 1 && rounded >= 100) || (p > 0 && rounded <= 0);
    };
    while (misleading(shown) && shown < digits + 2) shown += 1;
    let text = scaled.toFixed(shown);
    if (misleading(shown)) {
      const step = (1 / 10 ** shown).toFixed(shown);
      text = p > 0.5 ? "> " + (100 - step).toFixed(shown) : "< " + step;
    }
    return text + "\u00a0%";
  },
  // Decimals enough to show two different probabilities as different (at most 4).
  digitsApart(a, b, digits = 1) {
    while (digits < 4 && ktl.percent(a, digits) === ktl.percent(b, digits)) digits += 1;
    return digits;
  },
  // A 95 % interval [lo, hi] as "85–96 %".
  interval([lo, hi], digits = 0) {
    return ktl.percent(lo, digits).replace("\u00a0%", "") + "–" + ktl.percent(hi, digits);
  },
  // "92 % (85–96 %, 153 test images)": a split's accuracy with what it rests on, and a
  // note inside the brackets when given.
  accuracy(figures, split, note = "") {
    if (!figures || figures.accuracy === undefined || figures.accuracy === null) return "not measured";
    const images = figures.images ?? figures.val_images;
    const basis = [];
    if (figures.accuracy_interval) basis.push(ktl.interval(figures.accuracy_interval));
    if (images !== undefined && images !== null) basis.push(`${images} ${split} images`);
    else basis.push(split);
    return `${ktl.percent(figures.accuracy, 0)} (${basis.join(", ")}${note ? "; " + note : ""})`;
  },
  // An ISO 8601 time as a date in the reader's language ("2 Dec 2026"), "" if none.
  date(iso) {
    const when = iso ? new Date(iso) : null;
    if (!when || Number.isNaN(when.getTime())) return "";
    return when.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  },
  // Fill a <dl> with [term, description] pairs (descriptions as text or nodes).
  describe(list, rows) {
    list.replaceChildren(...rows.flatMap(([term, description]) => {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.append(description ?? "—");
      return [dt, dd];
    }));
  },
  // An element with text: ktl.make("p", "hello", "note").
  make(tag, text = "", className = "") {
    const node = document.createElement(tag);
    node.textContent = text;
    if (className) node.className = className;
    return node;
  },
};

// A box that scrolls sideways (.scroll) says so while its content is wider than it:
// data-overflow="true" (a shadow at the cut edge, a scroll bar that stays) and a hint
// under it. Watched as tables fill and images load, and as the screen turns.
(() => {
  const check = (box) => {
    const wider = box.scrollWidth > box.clientWidth + 1;
    box.dataset.overflow = String(wider);
    box.nextElementSibling.hidden = !wider;
  };
  const watcher = new ResizeObserver((entries) => {
    for (const entry of entries) check(entry.target.closest(".scroll"));
  });
  for (const box of document.querySelectorAll(".scroll")) {
    const hint = ktl.make("p", "Scroll sideways for the rest →", "scroll-hint");
    hint.hidden = true;
    box.after(hint);
    watcher.observe(box);
    for (const child of box.children) watcher.observe(child);
  }
})();

