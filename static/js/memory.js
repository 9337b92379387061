// What the memory recalled and why, and the memory page (search, browse, delete, export, import).
import { request, listIn } from "./api.js";
import { $, h, say, when } from "./dom.js";

const WORD = /[\p{L}\p{M}\p{N}_]+(?:'[\p{L}\p{M}\p{N}_]+)*/gu;

/** Whether a word of the text is the (stemmed, casefolded) token the server reported. */
function wordIs(word, token) {
  const w = word.toLowerCase().replace(/'s$/u, "");
  return w === token
    || (token.length >= 3 && w.startsWith(token))
    || (token.length >= 4 && /[ey]$/u.test(token) && w.startsWith(token.slice(0, -1)));
}

const tokensOf = (pairs) => (pairs ?? []).map((p) => (Array.isArray(p) ? String(p[0]) : String(p)));

/** The memory's text with matched words and SORN-associated words marked apart. */
function highlighted(text, matched, associated) {
  const parts = [];
  let last = 0;
  for (const m of text.matchAll(WORD)) {
    const kind = matched.some((t) => wordIs(m[0], t)) ? "matched"
      : associated.some((t) => wordIs(m[0], t)) ? "associated" : null;
    if (!kind) continue;
    parts.push(text.slice(last, m.index), h("mark", { class: kind }, m[0]));
    last = m.index + m[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

function chips(pairs, kind) {
  return (pairs ?? []).map((p) => {
    const [token, weight] = Array.isArray(p) ? p : [p, null];
    const title = typeof weight === "number" ? `weight ${weight.toFixed(3)}` : null;
    return h("span", { class: `chip ${kind}`, title }, String(token));
  });
}

/** Tell the page the memory changed (the network panel re-reads its counts). */
const announceChange = () => document.dispatchEvent(new CustomEvent("memorychange"));

const fixed = (x, digits = 3) => (typeof x === "number" ? x.toFixed(digits) : "–");

/** Button that deletes after a second, confirming click; calls onDeleted(). */
function deleteButton(hit, onDeleted) {
  const preview = String(hit.text ?? "").slice(0, 40);
  const label = `Delete memory: ${preview}`;
  const button = h("button",
    { type: "button", class: "small danger", "aria-label": label }, "Delete");
  let armed = null;
  const disarm = () => {
    armed = null;
    button.textContent = "Delete";
    button.setAttribute("aria-label", label);
  };
  button.addEventListener("click", async () => {
    if (!armed) {
      button.textContent = "Really delete?";
      button.setAttribute("aria-label", `Confirm: ${label}`);
      armed = setTimeout(disarm, 4000);
      return;
    }
    clearTimeout(armed);
    button.disabled = true;
    try {
      await request("DELETE", `/api/memory/${encodeURIComponent(hit.episode_id)}`);
      onDeleted();
      announceChange();
    } catch (error) {
      button.disabled = false;
      disarm();
      button.after(h("span", { class: "error", role: "alert" }, ` ${error.message}`));
    }
  });
  return button;
}

const LONG_TEXT_CHARS = 600; // longer memories (a pasted log, say) start folded

/** The episode's text, highlighted; a long one folded to a few lines with "Show all". */
function memoryText(text, matched, associated) {
  const body = h("p", { class: "memory-text" }, highlighted(text, matched, associated));
  if (text.length <= LONG_TEXT_CHARS && text.split("\n").length <= 6) return [body];
  const more = `Show all (${text.length.toLocaleString()} characters)`;
  body.classList.add("folded");
  const toggle = h("button", {
    type: "button", class: "small secondary", "aria-expanded": "false",
    onclick: () => {
      const folded = body.classList.toggle("folded");
      toggle.setAttribute("aria-expanded", String(!folded));
      toggle.textContent = folded ? more : "Show less";
    },
  }, more);
  return [body, toggle];
}

/** One recalled episode: its text with highlights, score, why, and a delete button. */
export function memoryItem(hit) {
  const matched = tokensOf(hit.matched);
  const associated = tokensOf(hit.associated);
  const item = h("li", { class: "memory-item", dataset: { episodeId: String(hit.episode_id) } });
  const why = [];
  if (matched.length) {
    why.push(h("span", { class: "why-label" }, "matched"), ...chips(hit.matched, "matched"));
  }
  if (associated.length) {
    why.push(h("span", { class: "why-label" }, "SORN-associated"),
      ...chips(hit.associated, "associated"));
  }
  const meta = [
    typeof hit.score === "number" ? `score ${fixed(hit.score)}` : null,
    typeof hit.sorn_score === "number" ? `network ${fixed(hit.sorn_score)}` : null,
    hit.role, when(hit.timestamp),
  ].filter(Boolean).join(" · ");
  item.append(
    ...memoryText(String(hit.text ?? ""), matched, associated),
    h("p", { class: "memory-meta" }, meta),
    h("p", { class: "why" }, why),
    deleteButton(hit, () => {
      item.classList.add("deleted");
      // The pressed button is gone: its note takes the focus, so Tab goes on from here.
      const note = h("p", { class: "memory-meta", tabindex: "-1" }, "Memory deleted.");
      item.replaceChildren(note);
      note.focus();
    }),
  );
  return item;
}

/** The panel shown with a reply: what the memory recalled for it (or why it could not). */
export function recallPanel(recalled, queryTokens, error) {
  const count = recalled.length;
  const summary = error ? "Memory unavailable for this reply"
    : count ? `Recalled ${count} ${count === 1 ? "memory" : "memories"}` : "No memories recalled";
  return h("details", { class: "recall", open: count > 0 || Boolean(error) },
    h("summary", {}, summary),
    error ? h("p", { class: "error", role: "alert" }, error.message ?? String(error)) : null,
    queryTokens?.length
      ? h("p", { class: "memory-meta" }, "Query words: ", queryTokens.join(", ")) : null,
    h("ol", { class: "memory-list" }, recalled.map(memoryItem)));
}

/** What an import did, in words: {"imported": n, "skipped": m} from the server. */
function importReport({ imported = 0, skipped = 0 } = {}) {
  const memories = (n) => `${n} ${n === 1 ? "memory" : "memories"}`;
  const kept = skipped ? `; ${skipped} already here, skipped` : "";
  return `Imported ${memories(imported)}${kept}.`;
}

/** The memory page: search with explanations, browse, export and import. */
export class MemoryView {
  constructor(root) {
    this.list = $("#memory-results", root);
    this.status = $("#memory-status", root);
    this.query = $("#memory-query", root);
    $("#memory-search", root).addEventListener("submit", (event) => {
      event.preventDefault();
      this.search(this.query.value.trim());
    });
    $("#memory-import", root).addEventListener("change", (event) => this.importFile(event.target));
  }

  /** Show progress or an outcome under the search box; a failure in the error colour. */
  report(message, failed = false) {
    say(this.status, message);
    this.status.classList.toggle("error", failed);
  }

  async search(q = "") {
    this.report(q ? "Searching…" : "Loading…");
    try {
      const data = await request("GET", `/api/memory?q=${encodeURIComponent(q)}&limit=50`);
      const hits = listIn(data, "results", "recalled", "hits", "episodes", "memories");
      this.list.replaceChildren(...hits.map(memoryItem));
      const tokens = data?.query_tokens ?? [];
      const words = tokens.length ? ` (query words: ${tokens.join(", ")})` : "";
      this.report(hits.length ? `${hits.length} ${q ? "matching" : "recent"} memories${words}`
        : q ? `Nothing recalled for that${words}.`
          : "No memories yet: chat and they will appear here.");
    } catch (error) {
      this.report(error.message, true);
    }
  }

  async importFile(input) {
    const file = input.files?.[0];
    if (!file) return;
    input.value = "";
    this.report(`Importing ${file.name}…`);
    try {
      const form = new FormData();
      form.append("file", file);
      const data = await request("POST", "/api/memory/import", form);
      announceChange();
      await this.search(this.query.value.trim());
      this.report(importReport(data));
    } catch (error) {
      this.report(`Import failed: ${error.message}`, true);
    }
  }
}
