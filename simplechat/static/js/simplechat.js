/* Shared by the chat pages: one Socket.IO connection per page, kept counted as online by a
 * heartbeat, and small helpers. Read state and unread counts live on the server. Message ids
 * are time-ordered strings (UUIDv7), so comparing them as strings compares their times.
 */
(function () {
  "use strict";
  var userId = document.body.dataset.userId || "";
  var socket = null;
  var HEARTBEAT_MS = 25000;

  function getSocket() {
    if (!socket) {
      socket = io("/chat", { transports: ["websocket"], reconnectionDelayMax: 5000 });
      setInterval(function () {
        if (socket.connected) { socket.emit("heartbeat", {}); }
      }, HEARTBEAT_MS);
    }
    return socket;
  }

  function newer(a, b) { return !!a && (!b || a > b); }

  // Server timestamps are UTC 'YYYY-MM-DD HH:MM:SS'.
  function parseUtc(ts) { return new Date(String(ts).replace(" ", "T") + "Z"); }

  // "Online", or "Last seen 14:05" / "Last seen 3 Mar, 14:05" in the viewer's zone.
  function presenceText(status) {
    if (!status) { return ""; }
    if (status.online) { return "Online"; }
    if (!status.last_seen) { return "Offline"; }
    var d = parseUtc(status.last_seen);
    if (isNaN(d)) { return "Offline"; }
    var time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (d.toDateString() === new Date().toDateString()) { return "Last seen " + time; }
    return "Last seen " + d.toLocaleDateString([], { day: "numeric", month: "short" }) + ", " + time;
  }

  // A notice for the next page (like a server flash), kept for this tab only.
  var NOTICE_KEY = "simplechat:notice";
  function leaveNotice(text) {
    try { window.sessionStorage.setItem(NOTICE_KEY, text); } catch (e) { /* no storage: no notice */ }
  }
  function takeNotice() {
    try {
      var text = window.sessionStorage.getItem(NOTICE_KEY);
      window.sessionStorage.removeItem(NOTICE_KEY);
      return text;
    } catch (e) { return null; }
  }

  function showNotice() {
    var text = takeNotice();
    var main = document.querySelector("main");
    if (!text || !main) { return; }
    var box = document.createElement("div");
    box.className = "flash-messages";
    box.setAttribute("role", "status");
    var alert = document.createElement("div");
    alert.className = "alert alert-info alert-dismissible fade show";
    alert.textContent = text;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "btn-close";
    close.setAttribute("data-bs-dismiss", "alert");
    close.setAttribute("aria-label", "Close");
    alert.appendChild(close);
    box.appendChild(alert);
    main.insertBefore(box, main.firstChild);
  }
  showNotice();

  window.SimpleChat = {
    userId: userId ? parseInt(userId, 10) : null,
    socket: getSocket,
    newer: newer,
    parseUtc: parseUtc,
    presenceText: presenceText,
    leaveNotice: leaveNotice
  };
})();
