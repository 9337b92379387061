// The Socket.IO connection (authenticated by the session cookie) and its status.
import { io } from "../vendor/socket.io-client/socket.io.esm.min.js";

/**
 * Connect and report the connection state through onStatus(state, detail), with state one of
 * "connecting", "connected", "reconnecting", "offline". onReconnected() runs after a connection
 * came back (to re-sync what was missed); onRefused(error) when the server turned us away.
 */
export function connect({ onStatus, onReconnected, onRefused }) {
  const socket = io({
    transports: ["websocket", "polling"],
    tryAllTransports: true,
    reconnectionDelayMax: 8000,
  });
  let connectedBefore = false;
  onStatus("connecting");
  socket.on("connect", () => {
    onStatus("connected");
    if (connectedBefore) onReconnected();
    connectedBefore = true;
  });
  socket.on("disconnect", (reason) => {
    if (reason === "io client disconnect") onStatus("offline");
    else if (reason === "io server disconnect") onRefused(new Error("disconnected by the server"));
    else onStatus("reconnecting", reason);
  });
  socket.on("connect_error", (error) => {
    if (socket.active) onStatus("reconnecting", error.message);
    else onRefused(error); // refused by the server's connect handler: no automatic retry
  });
  socket.io.on("reconnect_attempt", (attempt) => onStatus("reconnecting", `attempt ${attempt}`));
  return socket;
}
