// The chat: conversation list, messages, streamed replies, stop, regenerate and retry.
import { request, listIn } from "./api.js";
import { $, h, say, when } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { recallPanel } from "./memory.js";

const ACK_TIMEOUT_MS = 20000;
const RESYNC_DELAY_MS = 1500;
const BUSY_NOTICE = "A reply is being written: stop it (Esc) or let it finish, then change "
  + "conversations.";
// Why a complete reply ended early (the `finish` of its done event and meta): said under it.
const FINISH_NOTES = {
  length: "Cut short: the reply reached the model's length limit. Ask it to continue, or "
    + "regenerate.",
  content_filter: "Cut short by the model's content filter.",
};
/** What a reply says while the server waits `s` seconds before asking the LLM (again): `code`
 * is what it waits out (a `waiting` event's). */
const waitLabel = (code, s) => (code === "rate_limited"
  ? `Waiting for the LLM's rate limit (${s} s)…` : `The LLM failed; trying again in ${s} s…`);

/** If the focused control has just gone (hidden or removed), move the focus to `target`, so
 * that a keyboard user is not thrown back to the top of the page. */
function keepFocus(target) {
  const focused = document.activeElement;
  if (!focused || focused === document.body || !focused.isConnected || !focused.offsetParent) {
    target.focus();
  }
}

/** One assistant reply on screen, bound to its message id once the server gives it. */
class Reply {
  constructor(chat, message = {}) {
    this.chat = chat;
    this.id = message.id ?? null;
    this.text = message.text ?? "";
    this.content = h("div", { class: "content markdown" });
    this.status = h("div", { class: "status" });
    this.actions = h("div", { class: "actions" });
    this.memory = h("aside", { class: "memory-panel", "aria-label": "Memory for this reply" });
    this.el = h("article", { class: "message assistant", "aria-label": "Assistant" },
      h("div", { class: "bubble" }, this.content, this.status, this.actions), this.memory);
    this.renderRequested = false;
    this.render();
    if (Array.isArray(message.meta?.recalled)) this.showRecall(message.meta);
    if (message.status === "streaming") this.setBusy("Still writing…");
    if (message.status === "stopped") this.note("Stopped.");
    if (message.status === "complete") this.note(FINISH_NOTES[message.meta?.finish] ?? "");
    if (message.status === "error") {
      this.fail(message.meta?.error ?? { message: "This reply failed." });
    }
  }

  bind(id) {
    this.id = id;
    this.el.dataset.messageId = id;
  }

  render() {
    this.renderRequested = false;
    renderMarkdown(this.content, this.text);
    this.chat.stickToBottom();
  }

  /** Re-render at most once per animation frame while tokens stream in. */
  scheduleRender() {
    if (this.renderRequested) return;
    this.renderRequested = true;
    requestAnimationFrame(() => this.render());
  }

  /** Show the typing indicator; aria-busy lets screen readers read the reply once, whole.
   * `shown`: the label is also written beside the dots (a wait the user should know of). */
  setBusy(label, shown = false) {
    clearTimeout(this.countdown);
    if (this.el.classList.contains("busy") && this.status.title === label) return;
    this.el.classList.add("busy");
    this.el.setAttribute("aria-busy", "true");
    this.status.replaceChildren(
      h("span", { class: "typing", "aria-hidden": "true" }, h("i"), h("i"), h("i")),
      h("span", { class: shown ? "note" : "visually-hidden" }, label));
    this.status.title = label;
  }

  /** The server waits `seconds` before asking the LLM (again): say so, counting down. */
  waitFor(seconds, code) {
    const until = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left <= 0) return this.setBusy("Thinking…");
      this.setBusy(waitLabel(code, left), true);
      this.countdown = setTimeout(tick, 1000);
    };
    tick();
  }

  note(text, ...extra) {
    clearTimeout(this.countdown);
    this.el.classList.remove("busy");
    this.el.removeAttribute("aria-busy");
    this.status.title = "";
    this.status.replaceChildren(...(text ? [h("span", { class: "note" }, text)] : []), ...extra);
  }

  /** `found`: the `memory` event, or the reply's meta after a reload. */
  showRecall(found) {
    this.memory.replaceChildren(recallPanel(found.recalled ?? [], found.query_tokens,
      found.error ?? found.recall_error));
  }

  append(delta) {
    this.text += delta;
    this.scheduleRender();
  }

  /** `finish`: why a complete reply ended, when it was cut short ("length"). */
  finish(text, stopped, finish) {
    if (typeof text === "string") this.text = text;
    this.render();
    this.note(stopped ? "Stopped." : FINISH_NOTES[finish] ?? "");
    this.el.classList.remove("error");
  }

  fail(error, retry = () => this.chat.regenerate(this)) {
    this.el.classList.add("error");
    const retryButton = h("button", { type: "button", class: "small", onclick: retry }, "Retry");
    const message = error.message ?? "Something went wrong.";
    this.note("", h("span", { class: "error", role: "alert" }, message), " ", retryButton);
  }
}

export class Chat {
  constructor(root, { socket, onActivity, onConversationChange }) {
    this.socket = socket;
    this.onActivity = onActivity;
    this.onConversationChange = onConversationChange;
    this.list = $("#conversation-list", root);
    this.messages = $("#messages", root);
    this.title = $("#chat-title", root);
    this.form = $("#composer", root);
    this.input = $("#composer-input", root);
    this.sendButton = $("#send", root);
    this.stopButton = $("#stop", root);
    this.composerError = $("#composer-error", root);
    this.conversationId = null;
    this.replies = new Map(); // message id -> Reply in the open conversation
    this.early = new Map(); // message id -> events that arrived before the id was bound
    this.active = null; // the Reply being generated
    this.pinned = true; // the view follows the newest message: the user has not scrolled up

    this.messages.addEventListener("scroll", () => {
      const box = this.messages;
      if (box.clientHeight) this.pinned = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
    });
    // Shown again (a phone's Chat tab, or back from the Memory view) or resized: a hidden box
    // cannot scroll, so this is where it catches up with what arrived meanwhile.
    new ResizeObserver(() => this.stickToBottom()).observe(this.messages);

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendFromComposer();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.sendFromComposer();
      }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.active) this.stop();
    });
    this.stopButton.addEventListener("click", () => this.stop());
    $("#new-conversation", root).addEventListener("click", () => this.newConversation());

    socket.on("memory", (p) => this.dispatch(p, (r) => {
      r.showRecall(p);
      if (!r.text) r.setBusy("Thinking…");
      this.setActivity(r, "thinking");
    }));
    socket.on("waiting", (p) => this.dispatch(p, (r) => {
      r.waitFor(Number(p.seconds) || 0, p.code);
    }));
    socket.on("token", (p) => this.dispatch(p, (r) => {
      r.append(p.delta ?? "");
      r.setBusy("Writing…");
      this.setActivity(r, "streaming");
    }));
    socket.on("done", (p) => this.dispatch(p, (r) => {
      r.finish(p.text, p.status === "stopped" || r.stopping, p.finish);
      this.settle(r);
      this.loadConversations();
    }));
    socket.on("error", (p) => {
      const fail = (r) => {
        r.fail(p);
        this.settle(r);
      };
      if (p?.message_id) this.dispatch(p, fail);
      else if (this.active) fail(this.active);
    });
  }

  /** Run handle(reply) for the event's message, or keep it until that id is bound (events
   * can overtake the ack that tells us the id). */
  dispatch(payload, handle) {
    const id = payload?.message_id;
    const reply = this.replies.get(id);
    if (reply) return handle(reply);
    if (!id) return;
    if (this.early.size > 20) this.early.delete(this.early.keys().next().value);
    this.early.set(id, [...(this.early.get(id) ?? []), handle]);
  }

  bindReply(reply, id) {
    reply.bind(id);
    this.replies.set(id, reply);
    for (const handle of this.early.get(id) ?? []) handle(reply);
    this.early.delete(id);
  }

  setActivity(reply, state) {
    if (reply === this.active) this.onActivity(state);
  }

  /** A reply is over (done, stopped or failed): free the composer. */
  settle(reply) {
    if (reply !== this.active) return;
    this.active = null;
    this.onActivity(null);
    this.stopButton.hidden = true;
    this.sendButton.hidden = false;
    this.updateRegenerate();
    if (this.composerError.textContent === BUSY_NOTICE) say(this.composerError, "");
    keepFocus(this.input);
  }

  /** `focusTarget` takes the focus if the pressed button (Send, Regenerate, Retry) goes. */
  startActive(reply, focusTarget = this.input) {
    this.active = reply;
    reply.setBusy("Recalling memories…");
    this.onActivity("recalling");
    this.stopButton.hidden = false;
    this.sendButton.hidden = true;
    this.updateRegenerate();
    keepFocus(focusTarget);
  }

  stickToBottom() {
    if (this.pinned || this.active) this.messages.scrollTop = this.messages.scrollHeight;
  }

  setConnected(connected) {
    this.sendButton.disabled = !connected;
    this.sendButton.title = connected
      ? "" : "Not connected: your text is kept until the connection is back";
  }

  sendFromComposer() {
    const text = this.input.value.trim();
    if (!text || this.active || this.sendButton.disabled) return;
    say(this.composerError, "");
    this.input.value = "";
    this.send(text);
  }

  send(text) {
    const hint = this.messages.querySelector(".empty");
    hint?.remove();
    const userEl = this.userMessage({ text });
    const reply = new Reply(this);
    this.messages.append(userEl, reply.el);
    this.startActive(reply);
    const payload = { conversation_id: this.conversationId, text };
    const unsend = () => {
      userEl.remove();
      reply.el.remove();
      if (hint && !this.messages.children.length) this.messages.append(hint);
    };
    this.emitWithAck("chat", payload, reply, {
      retry: () => {
        unsend();
        this.send(text);
      },
      // Refused, so nothing was stored: the text goes back into the box to edit and resend.
      refused: (error) => {
        unsend();
        if (!this.input.value.trim()) this.input.value = text;
        say(this.composerError, error.message ?? "The server refused the message.");
        this.input.focus();
      },
    });
  }

  /** Emit a chat/regenerate event and bind `reply` to the id in the ack. A refusal goes to
   * `refused(error)` when given, else shows in the reply with Retry, as a missing ack does. */
  emitWithAck(event, payload, reply, { retry, refused }) {
    this.socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (timeout, ack) => {
      if (!timeout && !ack?.ok && refused) {
        refused(ack?.error ?? {});
        this.settle(reply);
        return;
      }
      if (timeout || !ack?.ok) {
        const error = timeout
          ? { message: "The server did not answer in time. Your message is kept: retry." }
          : ack?.error ?? { message: "The server refused the message." };
        reply.fail(error, () => {
          this.settle(reply);
          retry();
        });
        this.settle(reply);
        return;
      }
      const isNew = ack.conversation_id && ack.conversation_id !== this.conversationId;
      this.conversationId = ack.conversation_id ?? this.conversationId;
      this.bindReply(reply, ack.message_id);
      if (isNew) this.loadConversations();
    });
  }

  stop() {
    if (!this.active?.id) return;
    this.active.stopping = true;
    this.socket.emit("stop", { message_id: this.active.id });
    this.active.setBusy("Stopping…");
  }

  regenerate(reply) {
    if (this.active || !reply.id) return;
    const oldId = reply.id;
    this.replies.delete(oldId);
    reply.text = "";
    reply.stopping = false;
    reply.el.classList.remove("error");
    reply.memory.replaceChildren();
    reply.actions.replaceChildren(); // no longer in `replies`, so updateRegenerate misses it
    reply.render();
    reply.el.tabIndex = -1; // focusable from script: it replaces the pressed button
    this.startActive(reply, reply.el);
    this.emitWithAck("regenerate", { message_id: oldId }, reply, {
      retry: () => {
        this.bindReply(reply, oldId);
        this.regenerate(reply);
      },
    });
  }

  /** Only the last reply offers "Regenerate", and not while one is being written. */
  updateRegenerate() {
    for (const reply of this.replies.values()) reply.actions.replaceChildren();
    const last = [...this.messages.querySelectorAll(".message.assistant")].at(-1);
    const reply = last && [...this.replies.values()].find((r) => r.el === last);
    if (!reply || this.active || reply.el.classList.contains("error")) return;
    reply.actions.append(h("button", {
      type: "button", class: "small", title: "Write a new reply to the same message",
      onclick: () => this.regenerate(reply),
    }, "↻ Regenerate"));
  }

  userMessage(message) {
    return h("article", { class: "message user", "aria-label": "You" },
      h("div", { class: "bubble" }, h("p", { class: "text" }, message.text ?? ""),
        message.created_at ? h("time", {}, when(message.created_at)) : null));
  }

  async loadConversations() {
    try {
      const data = await request("GET", "/api/conversations");
      this.renderConversations(listIn(data, "conversations"));
    } catch (error) {
      this.list.replaceChildren(h("li", { class: "error", role: "alert" }, error.message));
    }
  }

  /** The server lists conversations most recently updated first. */
  renderConversations(conversations) {
    this.list.replaceChildren(...conversations.map((c) => h("li", {},
      h("button", {
        type: "button", class: "conversation",
        "aria-current": c.id === this.conversationId ? "true" : false,
        onclick: () => this.openConversation(c.id),
      }, h("span", { class: "conversation-title" }, c.title || "Untitled"),
      h("time", {}, when(c.updated_at ?? c.created_at))))));
    if (!conversations.length) {
      this.list.append(h("li", { class: "hint" }, "No conversations yet."));
    }
    const current = conversations.find((c) => c.id === this.conversationId);
    this.title.textContent = current?.title || "New conversation";
  }

  /** One reply at a time: while one is written, say why another conversation does not open
   * (on a phone, back on the Chat tab, where the notice and the reply are). */
  busyWriting() {
    if (!this.active) return false;
    say(this.composerError, BUSY_NOTICE);
    this.onConversationChange?.();
    return true;
  }

  newConversation() {
    if (this.busyWriting()) return;
    say(this.composerError, "");
    this.conversationId = null;
    this.replies.clear();
    this.messages.replaceChildren(this.emptyHint());
    this.title.textContent = "New conversation";
    this.list.querySelectorAll("[aria-current]").forEach((b) => b.removeAttribute("aria-current"));
    this.onConversationChange?.();
    this.input.focus();
  }

  emptyHint() {
    return h("p", { class: "hint empty" },
      "Say something about yourself: it is stored in your memory, and recalled when it matters.");
  }

  async openConversation(id, { keepFocus = false } = {}) {
    if (this.busyWriting()) return;
    this.conversationId = id;
    try {
      const data = await request("GET", `/api/conversations/${encodeURIComponent(id)}/messages`);
      this.renderMessages(listIn(data, "messages"));
    } catch (error) {
      this.messages.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
    }
    this.list.querySelectorAll(".conversation").forEach((b) => b.removeAttribute("aria-current"));
    await this.loadConversations();
    this.onConversationChange?.();
    if (!keepFocus) this.input.focus();
  }

  renderMessages(messages) {
    this.replies.clear();
    this.messages.replaceChildren();
    let streaming = false;
    for (const message of messages) {
      if (message.role === "user") {
        this.messages.append(this.userMessage(message));
        continue;
      }
      const reply = new Reply(this, message);
      if (message.id) this.replies.set(message.id, reply);
      this.messages.append(reply.el);
      streaming ||= message.status === "streaming";
    }
    if (!messages.length) this.messages.append(this.emptyHint());
    this.updateRegenerate();
    this.pinned = true;
    this.stickToBottom();
    // A reply still being written elsewhere (or missed while offline): look again shortly.
    if (streaming && !this.active) setTimeout(() => this.resync(), RESYNC_DELAY_MS);
  }

  /** The connection came back: what streamed meanwhile was missed, so reload from the server. */
  reconnected() {
    if (this.active && !this.active.id) return; // the chat ack's timeout decides that one
    if (this.active) this.settle(this.active);
    this.resync();
  }

  /** Reload the open conversation (or just the list) from the server. */
  resync() {
    if (this.active) return;
    if (this.conversationId) this.openConversation(this.conversationId, { keepFocus: true });
    else this.loadConversations();
  }
}
