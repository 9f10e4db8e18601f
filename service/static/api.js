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
  // up to two more decimals, then cut rather than round.
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
      const step = 10 ** shown;
      text = (p < 1 && p > 0.5 ? Math.floor(scaled * step) : Math.ceil(scaled * step)) / step + "";
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
