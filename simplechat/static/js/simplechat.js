/* Shared by the chat pages: one Socket.IO connection per page, kept counted as online by a
 * heartbeat, the connection state in the navbar, and small helpers (times, avatars, the outbox
 * of unsent messages). Read state and unread counts live on the server. Message ids are
 * time-ordered strings (UUIDv7), so comparing them as strings compares their times.
 */
(function () {
  "use strict";
  var userId = document.body.dataset.userId || "";
  var socket = null;
  var HEARTBEAT_MS = 25000;

  // ---- connection state -------------------------------------------------------------------
  // "connecting" until the first connect, then "connected", "reconnecting" (the socket is
  // trying again), "offline" (the browser has no network) or "ended" (the server refused us).
  var STATE_TEXT = {
    connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…",
    offline: "Offline", ended: "Signed out"
  };
  var state = "connecting";
  var stateBox = null;

  function buildIndicator() {
    var nav = document.querySelector(".navbar .navbar-nav");
    if (!nav) { return null; }
    var li = document.createElement("li");
    li.className = "nav-item connection-item";
    var box = document.createElement("span");
    box.id = "connection-state";
    box.className = "connection-state";
    box.setAttribute("role", "status");
    var dot = document.createElement("span");
    dot.className = "connection-dot";
    dot.setAttribute("aria-hidden", "true");
    var text = document.createElement("span");
    text.className = "connection-text";
    box.appendChild(dot);
    box.appendChild(text);
    li.appendChild(box);
    nav.insertBefore(li, nav.firstChild);
    return box;
  }

  function setState(next) {
    if (next === "reconnecting" && navigator.onLine === false) { next = "offline"; }
    var changed = next !== state;
    state = next;
    if (stateBox) {
      stateBox.dataset.state = state;
      var text = stateBox.querySelector(".connection-text");
      if (text.textContent !== STATE_TEXT[state]) { text.textContent = STATE_TEXT[state]; }
      stateBox.title = "Connection: " + STATE_TEXT[state];
    }
    if (changed) {
      document.dispatchEvent(new CustomEvent("simplechat:connection", { detail: { state: state } }));
    }
  }

  function getSocket() {
    if (socket) { return socket; }
    socket = io("/chat", { transports: ["websocket"], reconnectionDelayMax: 5000 });
    stateBox = buildIndicator();
    setState("connecting");
    socket.on("connect", function () { setState("connected"); });
    socket.on("disconnect", function () { setState(socket.active ? "reconnecting" : "ended"); });
    socket.on("connect_error", function () { setState(socket.active ? "reconnecting" : "ended"); });
    socket.on("session_ended", function () { clearOutboxes(); setState("ended"); });
    // A web process that is stopping (a deploy) says when to come back: reconnect after that
    // time (plus a jitter of our own), not at once; the pages then catch up with `join` +
    // `after` as after any reconnect.
    var restartTimer = null;
    socket.on("server_restart", function (data) {
      var wait = Number(data && data.reconnect_in_ms);
      wait = Math.min(isFinite(wait) && wait > 0 ? wait : 0, 60000) + Math.random() * 500;
      socket.io.reconnection(false);  // the server closes this socket: no retry before `wait`
      if (restartTimer) { clearTimeout(restartTimer); }
      restartTimer = setTimeout(function () {
        restartTimer = null;
        socket.io.reconnection(true);
        if (!socket.connected) { socket.connect(); }
      }, wait);
    });
    setInterval(function () {
      if (socket.connected) { socket.emit("heartbeat", {}); }
    }, HEARTBEAT_MS);
    // A socket can outlive the network (the browser keeps it until a ping times out, which
    // takes most of a minute): when the browser says it is offline, close it now, so what is
    // typed meanwhile waits in the outbox, and the socket reconnects once the network is back.
    window.addEventListener("offline", function () {
      if (socket.connected) { socket.io.engine.close(); }
      setState("offline");
    });
    // Back online: reconnect now. While the client waits out its backoff (up to 7.5 s after a
    // few failed tries offline), connect() alone would wait for that timer, so the pending
    // try is dropped first. A server that asked us to wait (server_restart) is still waited for.
    window.addEventListener("online", function () {
      if (socket.connected || state === "ended" || restartTimer) { return; }
      setState("reconnecting");
      socket.disconnect();
      socket.connect();
    });
    return socket;
  }

  function connectionState() { return state; }

  // Run `handler` on every connect, and now if the socket is connected already. The page's
  // scripts are deferred: while the browser fetches a later one, it may run the socket's
  // events, so a script that only listened for "connect" could come too late for the first.
  function onConnect(handler) {
    var sock = getSocket();
    sock.on("connect", handler);
    if (sock.connected) { handler(); }
  }

  function newer(a, b) { return !!a && (!b || a > b); }

  // Where a catch-up (`join` with `after`) starts: CATCH_UP_MARGIN_MS before the newest
  // message held. An id is given when a send starts, so a message with a slightly older id can
  // arrive after a newer one (a slow send, another web process); asking from a little earlier
  // brings it too, and what is shown already is skipped by id.
  var CATCH_UP_MARGIN_MS = 5000;
  function catchUpFrom(id) {
    if (!id || !/^[0-9a-f]{8}-[0-9a-f]{4}-/.test(id)) { return id || null; }
    var ms = parseInt(id.slice(0, 8) + id.slice(9, 13), 16) - CATCH_UP_MARGIN_MS;
    if (!(ms > 0)) { return null; }
    var hex = ms.toString(16).padStart(12, "0");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-7000-8000-000000000000";
  }

  // The page's CSRF token, for the JSON writes a cookie session makes (header X-CSRFToken).
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // ---- times --------------------------------------------------------------------------------
  // Server timestamps are UTC 'YYYY-MM-DD HH:MM:SS'.
  function parseUtc(ts) { return new Date(String(ts).replace(" ", "T") + "Z"); }

  // In the viewer's locale and zone: "8:21 PM" (no leading zero where the locale has none).
  // Each formatter is made once: making one costs (the first loads the locale's data),
  // formatting with it is cheap.
  var timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
  var fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });
  var dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric" });
  var shortDateFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });
  var yearDateFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });
  function formatTime(d) { return timeFormat.format(d); }
  function formatFull(d) { return fullFormat.format(d); }
  function formatDay(d) { return dayFormat.format(d); }
  function formatShortDate(d) {
    return (d.getFullYear() === new Date().getFullYear() ? shortDateFormat : yearDateFormat).format(d);
  }

  // "Online", or "Last seen 2:05 PM" / "Last seen 3 Mar, 2:05 PM" in the viewer's zone.
  function presenceText(status) {
    if (!status) { return ""; }
    if (status.unknown) { return "Status unknown while offline"; }
    if (status.online) { return "Online"; }
    if (!status.last_seen) { return "Offline"; }
    var d = parseUtc(status.last_seen);
    if (isNaN(d)) { return "Offline"; }
    var time = formatTime(d);
    if (d.toDateString() === new Date().toDateString()) { return "Last seen " + time; }
    return "Last seen " + shortDateFormat.format(d) + ", " + time;
  }

  // ---- avatars ------------------------------------------------------------------------------
  // Initials on a colour chosen by the user id (the same on every page and in the server's
  // list): chat-ui.css holds the palette, each colour at least 4.5:1 against its initials.
  var AVATAR_COLOURS = 12;
  function initials(name) {
    var words = String(name || "").trim().split(/\s+/).filter(Boolean);
    if (!words.length) { return "?"; }
    var first = Array.from(words[0])[0] || "";
    var last = words.length > 1 ? Array.from(words[words.length - 1])[0] || "" : "";
    return (first + last).toUpperCase();
  }
  function avatar(id, name, extraClass) {
    var el = document.createElement("span");
    el.className = "avatar avatar-c" + (Math.abs(parseInt(id, 10) || 0) % AVATAR_COLOURS) +
      (extraClass ? " " + extraClass : "");
    el.setAttribute("aria-hidden", "true");
    el.textContent = initials(name);
    return el;
  }

  // ---- the outbox: messages typed but not yet acknowledged, kept for this tab -----------------
  // Keyed by user and conversation, so another login in this tab never sees them; dropped at
  // logout and when the session ends.
  var OUTBOX_PREFIX = "simplechat:outbox:";
  function outboxKey(conversationId) { return OUTBOX_PREFIX + userId + ":" + conversationId; }
  function loadOutbox(conversationId) {
    try {
      var items = JSON.parse(window.sessionStorage.getItem(outboxKey(conversationId)) || "[]");
      return Array.isArray(items) ? items.filter(function (i) {
        return i && typeof i.text === "string" && typeof i.clientId === "string";
      }) : [];
    } catch (e) { return []; }
  }
  function saveOutbox(conversationId, items) {
    try {
      if (items.length) {
        window.sessionStorage.setItem(outboxKey(conversationId), JSON.stringify(items));
      } else {
        window.sessionStorage.removeItem(outboxKey(conversationId));
      }
    } catch (e) { /* no storage: the outbox lives as long as the page */ }
  }
  function clearOutboxes() {
    try {
      var doomed = [];
      for (var i = 0; i < window.sessionStorage.length; i++) {
        var key = window.sessionStorage.key(i);
        if (key && key.indexOf(OUTBOX_PREFIX) === 0) { doomed.push(key); }
      }
      doomed.forEach(function (key) { window.sessionStorage.removeItem(key); });
    } catch (e) { /* nothing stored */ }
  }
  var logout = document.getElementById("logout-button");
  if (logout && logout.form) { logout.form.addEventListener("submit", clearOutboxes); }

  // ---- notices ------------------------------------------------------------------------------
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

  // A listbox of suggestions that the composer's textarea controls (aria-activedescendant: a
  // textarea may not take the combobox role): arrows move, Enter or Tab picks, Escape closes,
  // leaving the textarea closes. `insert(item)` puts the picked item into the text;
  // `enterSends(item)`, if given, says when Enter is left to send the message instead. `show`
  // takes the items and `render(item, i)`, which makes each one's <li>.
  function suggestions(input, box, insert, enterSends) {
    var items = [];
    var active = -1;
    function close() {
      items = [];
      active = -1;
      box.classList.add("d-none");
      box.replaceChildren();
      input.removeAttribute("aria-activedescendant");
    }
    function highlight(n) {
      active = n;
      box.querySelectorAll('[role="option"]').forEach(function (li, i) {
        li.setAttribute("aria-selected", i === n ? "true" : "false");
        li.classList.toggle("active", i === n);
        if (i === n) { input.setAttribute("aria-activedescendant", li.id); li.scrollIntoView({ block: "nearest" }); }
      });
    }
    function pick(n) {
      var item = items[n];
      if (!item) { return; }
      insert(item);
      close();
      input.dispatchEvent(new Event("input", { bubbles: true }));
      input.focus();
    }
    function show(list, render) {
      items = list;
      if (!items.length) { close(); return; }
      box.replaceChildren.apply(box, items.map(function (item, i) {
        var li = render(item, i);
        li.setAttribute("role", "option");
        li.addEventListener("mousedown", function (e) { e.preventDefault(); pick(i); });
        return li;
      }));
      box.classList.remove("d-none");
      highlight(0);
    }
    input.addEventListener("blur", function () { setTimeout(close, 0); });
    input.addEventListener("keydown", function (e) {
      if (!items.length || e.defaultPrevented) { return; }
      if (e.key === "ArrowDown") { e.preventDefault(); highlight((active + 1) % items.length); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight((active - 1 + items.length) % items.length); }
      else if ((e.key === "Enter" && !e.shiftKey && !e.isComposing) || e.key === "Tab") {
        if (e.key === "Enter" && enterSends && enterSends(items[active])) { close(); return; }
        e.preventDefault(); pick(active);
      }
      else if (e.key === "Escape") { e.preventDefault(); close(); }
    });
    return { show: show, close: close };
  }

  window.SimpleChat = {
    userId: userId ? parseInt(userId, 10) : null,
    socket: getSocket,
    onConnect: onConnect,
    connectionState: connectionState,
    newer: newer,
    catchUpFrom: catchUpFrom,
    csrfToken: csrfToken,
    parseUtc: parseUtc,
    formatTime: formatTime,
    formatFull: formatFull,
    formatDay: formatDay,
    formatShortDate: formatShortDate,
    presenceText: presenceText,
    initials: initials,
    avatar: avatar,
    loadOutbox: loadOutbox,
    saveOutbox: saveOutbox,
    leaveNotice: leaveNotice,
    suggestions: suggestions
  };
})();
