/* Shared by the chat pages: one Socket.IO connection per page, and what this browser has read.
 *
 * Read state lives in localStorage, per user and conversation: {seen, upto, count} where
 * `seen` is the newest message id the user has had on screen, `upto` the newest id counted and
 * `count` the messages from others after `seen` up to `upto`. Message ids are time-ordered
 * strings (UUIDv7), so comparing them as strings compares their times.
 */
(function () {
  "use strict";
  var userId = document.body.dataset.userId || "";
  var socket = null;

  function getSocket() {
    if (!socket) {
      socket = io("/chat", { transports: ["websocket"], reconnectionDelayMax: 5000 });
    }
    return socket;
  }

  function newer(a, b) { return !!a && (!b || a > b); }
  function newest(a, b) { return newer(a, b) ? a : (b || null); }

  var PREFIX = "simplechat:" + userId + ":read:";

  function readState(conversationId) {
    try {
      var state = JSON.parse(window.localStorage.getItem(PREFIX + conversationId) || "null");
      if (state && typeof state === "object") {
        return {
          seen: typeof state.seen === "string" ? state.seen : null,
          upto: typeof state.upto === "string" ? state.upto : null,
          count: typeof state.count === "number" && state.count > 0 ? Math.floor(state.count) : 0
        };
      }
    } catch (e) { /* unreadable or blocked storage: treat as unknown */ }
    return null;
  }

  function announce(conversationId) {
    document.dispatchEvent(new CustomEvent("simplechat:read-state",
      { detail: { conversationId: conversationId } }));
  }

  function writeState(conversationId, state) {
    try {
      window.localStorage.setItem(PREFIX + conversationId, JSON.stringify(state));
    } catch (e) { /* storage full or blocked: counts just will not survive a reload */ }
    announce(conversationId);
  }

  // The user has had every message up to `id` on screen.
  function markSeen(conversationId, id) {
    if (!id) { return; }
    var state = readState(conversationId) || { seen: null, upto: null, count: 0 };
    state.seen = newest(state.seen, id);
    if (!newer(state.upto, state.seen)) {
      state.upto = state.seen;
      state.count = 0;
    }
    writeState(conversationId, state);
  }

  // A message from someone else arrived and nobody saw it: count it once.
  function countUnread(conversationId, id) {
    var state = readState(conversationId) || { seen: null, upto: null, count: 0 };
    if (!newer(id, state.upto) || !newer(id, state.seen)) { return; }
    state.upto = id;
    state.count += 1;
    writeState(conversationId, state);
  }

  // Another tab changed the read state: tell this page's list.
  window.addEventListener("storage", function (e) {
    if (e.key && e.key.indexOf(PREFIX) === 0) {
      announce(parseInt(e.key.slice(PREFIX.length), 10));
    }
  });

  window.SimpleChat = {
    userId: userId ? parseInt(userId, 10) : null,
    socket: getSocket,
    newer: newer,
    newest: newest,
    readState: readState,
    writeState: writeState,
    markSeen: markSeen,
    countUnread: countUnread
  };
})();
