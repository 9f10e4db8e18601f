// The JSON API, with the optional bearer key the user typed (sessionStorage only).
"use strict";

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
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        message = (await response.json()).error || message;
      } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  },
  async json(path, options) {
    return (await ktl.request(path, options)).json();
  },
  async objectUrl(path, options) {
    return URL.createObjectURL(await (await ktl.request(path, options)).blob());
  },
  percent(p) {
    return (100 * p).toFixed(1) + " %";
  },
};
