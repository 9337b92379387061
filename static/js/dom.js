// Tiny DOM helpers: build elements from data, never from HTML strings.

/** h("li", {class: "x", onclick: fn}, "text", child) -> HTMLElement. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Show `message` in an element that has role="alert" or "status"; empty hides it. */
export function say(el, message) {
  el.textContent = message || "";
  el.hidden = !message;
}

/** "2 min ago"-style label for an ISO or epoch timestamp; "" when unknown. */
export function when(timestamp) {
  if (timestamp === null || timestamp === undefined || timestamp === "") return "";
  const date = typeof timestamp === "number"
    ? new Date(timestamp < 1e12 ? timestamp * 1000 : timestamp)
    : new Date(timestamp);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}
