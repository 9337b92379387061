// Boot: who is signed in, then wire the chat, memory and network views to one socket.
import { AdminView } from "./admin.js";
import { setupAccount, takeNotice } from "./account.js";
import { request } from "./api.js";
import { currentUser, setupAuth, showSignup } from "./auth.js";
import { Chat } from "./chat.js";
import { $, say } from "./dom.js";
import { MemoryView } from "./memory.js";
import { NetworkView } from "./network.js";
import { connect } from "./socket.js";

const ACTIVITY_LABELS = {
  recalling: "Recalling memories…", thinking: "Thinking…", streaming: "Writing…",
};
const CONNECTION_LABELS = {
  connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…",
  offline: "Offline",
};
const narrow = window.matchMedia("(max-width: 899px)");

const network = new NetworkView(document);
const memoryView = new MemoryView(document);
let adminView = null; // the admin's only
let chat = null;

function showView(view) {
  document.body.dataset.view = view;
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const selected = tab.dataset.view === view;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
  }
  if (view === "memory") memoryView.search($("#memory-query").value.trim());
  if (view === "admin") adminView?.load();
  network.invalidate();
}

/** Tabs follow the ARIA tabs pattern: click, or arrow keys between the visible ones. */
function setupTabs() {
  const tabs = () => [...document.querySelectorAll("[role=tab]")].filter((t) => t.offsetParent);
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => showView(tab.dataset.view));
    tab.addEventListener("keydown", (event) => {
      const visible = tabs();
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = visible[(visible.indexOf(tab) + step + visible.length) % visible.length];
      next.focus();
      showView(next.dataset.view);
    });
  }
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest?.("input, textarea, select, [contenteditable]");
    if (event.key === "/" && !typing) {
      event.preventDefault();
      showView("chat");
      $("#composer-input").focus();
    }
  });
}

function setConnection(state, detail) {
  const el = $("#connection");
  el.dataset.state = state;
  el.textContent = CONNECTION_LABELS[state];
  el.title = detail ? `${CONNECTION_LABELS[state]} (${detail})` : CONNECTION_LABELS[state];
  // Said again under the message box, where one looks when Send does nothing (not on the
  // first connect, which is quick).
  $("#composer-offline").hidden = state === "connected" || state === "connecting";
  chat?.setConnected(state === "connected");
}

function setActivity(state) {
  const el = $("#activity");
  el.dataset.state = state ?? "idle";
  el.textContent = el.title = state ? ACTIVITY_LABELS[state] : ""; // title: phones show a dot
}

async function refreshNetwork() {
  try {
    await network.fetchStats();
  } catch (error) {
    console.warn("network stats:", error.message);
  }
}

function showAuth(message) {
  $("#boot").hidden = true;
  $("#app").hidden = true;
  $("#auth").hidden = false;
  say($("#auth-notice"), takeNotice());
  say($("#auth-error"), message);
  showSignup(document);
  $("#auth-username").focus();
}

function start(user) {
  $("#boot").hidden = true;
  $("#auth").hidden = true;
  $("#app").hidden = false;
  $("#user-name").textContent = user.username;
  if (user.is_admin) {
    adminView = new AdminView(document, user);
    $("#user-admin").hidden = false;
    $("[role=tab][data-view=admin]").hidden = false;
  }
  const socket = connect({
    onStatus: setConnection,
    onReconnected: () => {
      chat.reconnected();
      refreshNetwork();
    },
    onRefused: async (error) => {
      setConnection("offline", error.message);
      const stillSignedIn = await currentUser().catch(() => true);
      if (!stillSignedIn) location.reload(); // the session ended: back to the login screen
      else setTimeout(() => socket.connect(), 3000);
    },
  });
  socket.on("spikes", (data) => {
    if (data instanceof Blob) data.arrayBuffer().then((buffer) => network.addFrame(buffer));
    else network.addFrame(data);
  });
  socket.on("stats", (stats) => network.setStats(stats));
  chat = new Chat(document, {
    socket,
    onActivity: setActivity,
    onConversationChange: () => narrow.matches && showView("chat"),
  });
  chat.setConnected(socket.connected);
  chat.newConversation();
  chat.loadConversations();
  refreshNetwork();
  showView("chat");
}

async function logout() {
  await request("POST", "/api/auth/logout").catch(() => null);
  location.reload();
}

setupAuth(document, start);
setupTabs();
setupAccount(document);
$("#logout").addEventListener("click", logout);
document.addEventListener("memorychange", refreshNetwork);
currentUser().then((user) => (user ? start(user) : showAuth()), (error) => showAuth(error.message));
