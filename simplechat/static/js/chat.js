/* The chat page: history, live messages, sending, rate-limit countdown, reconnect catch-up. */
(function () {
  "use strict";
  var root = document.getElementById("chat");
  if (!root) { return; }
  var conversationId = parseInt(root.dataset.conversationId, 10);
  var myId = parseInt(root.dataset.userId, 10);
  var isGroup = root.dataset.isGroup === "true";
  var maxLength = parseInt(root.dataset.maxLength, 10);
  var historyUrl = root.dataset.historyUrl;

  var list = document.getElementById("messages");
  var scroller = document.getElementById("messages-scroll");
  var input = document.getElementById("message-input");
  var form = document.getElementById("send-form");
  var statusBox = document.getElementById("chat-status");
  var historyStatus = document.getElementById("history-status");
  var pill = document.getElementById("new-messages-pill");
  var counter = document.getElementById("char-counter");

  var seen = new Set();
  var newestId = null;
  var oldestId = null;
  var hasMore = false;
  var loadingOlder = false;
  var pending = [];          // messages waiting to be sent, in order: {text, clientId}
  var sending = false;
  var countdownTimer = null;
  var joined = false;
  var clientSeq = 0;
  var clientPrefix = Math.random().toString(36).slice(2, 10);

  var SC = window.SimpleChat;
  var socket = SC.socket();

  // ---- rendering -------------------------------------------------------------------------
  function parseUtc(ts) { return new Date(ts.replace(" ", "T") + "Z"); }
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function localTime(d) { return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
  function dayKey(d) { return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()); }
  function dayLabel(d) {
    var today = new Date();
    var yesterday = new Date(); yesterday.setDate(today.getDate() - 1);
    if (dayKey(d) === dayKey(today)) { return "Today"; }
    if (dayKey(d) === dayKey(yesterday)) { return "Yesterday"; }
    return d.toLocaleDateString(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric" });
  }

  var URL_RE = /\bhttps?:\/\/[^\s<>"']+/gi;
  // Text goes in as text nodes; only http(s) links become anchors, built element by element.
  function appendLinkified(parent, text) {
    var last = 0;
    text.replace(URL_RE, function (url, index) {
      var trimmed = url.replace(/[.,;:!?)\]]+$/, "");
      if (index > last) { parent.appendChild(document.createTextNode(text.slice(last, index))); }
      var a = document.createElement("a");
      a.href = trimmed;
      a.textContent = trimmed;
      a.rel = "noopener noreferrer nofollow";
      a.target = "_blank";
      parent.appendChild(a);
      last = index + trimmed.length;
      return url;
    });
    if (last < text.length) { parent.appendChild(document.createTextNode(text.slice(last))); }
  }

  function buildMessage(m) {
    var mine = m.sender === myId;
    var when = parseUtc(m.timestamp);
    var row = document.createElement("div");
    row.className = "message " + (mine ? "message-mine" : "message-theirs");
    row.dataset.id = m.id;
    row.dataset.day = dayKey(when);
    row.dataset.sender = String(m.sender);
    var bubble = document.createElement("div");
    bubble.className = "message-bubble";
    if (!mine && isGroup) {
      var name = document.createElement("div");
      name.className = "message-sender";
      name.textContent = m.sender_name || ("User " + m.sender);
      bubble.appendChild(name);
    }
    var body = document.createElement("div");
    body.className = "message-text";
    appendLinkified(body, m.message);
    bubble.appendChild(body);
    var time = document.createElement("time");
    time.className = "message-time";
    time.dateTime = when.toISOString();
    time.title = when.toLocaleString();
    time.textContent = localTime(when);
    bubble.appendChild(time);
    row.appendChild(bubble);
    return row;
  }

  function daySeparator(when) {
    var sep = document.createElement("div");
    sep.className = "day-separator";
    sep.dataset.day = dayKey(when);
    sep.setAttribute("role", "separator");
    sep.textContent = dayLabel(when);
    return sep;
  }

  // Rebuild day separators (one before the first message of each local day), and mark runs of
  // messages from one sender so a group shows the name once per run.
  function refreshSeparators() {
    list.querySelectorAll(".day-separator").forEach(function (el) { el.remove(); });
    var previous = null;
    var previousSender = null;
    list.querySelectorAll(".message").forEach(function (el) {
      if (el.dataset.day !== previous) {
        var t = el.querySelector("time");
        list.insertBefore(daySeparator(new Date(t.dateTime)), el);
        previous = el.dataset.day;
        previousSender = null;
      }
      el.classList.toggle("message-continued", el.dataset.sender === previousSender);
      previousSender = el.dataset.sender;
    });
  }

  function atBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  }
  function scrollToBottom() { scroller.scrollTop = scroller.scrollHeight; pill.classList.add("d-none"); }

  // Insert messages in id order (ids are time-ordered); skip ones already shown.
  function addMessages(messages, opts) {
    opts = opts || {};
    var stick = opts.forceScroll || atBottom();
    var added = 0;
    // History (the first page, older pages) goes in without being read out message by message.
    if (opts.quiet) { list.setAttribute("aria-live", "off"); }
    messages.forEach(function (m) {
      if (!m || m.conversation_id !== conversationId || seen.has(m.id)) { return; }
      seen.add(m.id);
      var el = buildMessage(m);
      var next = null;
      var nodes = list.querySelectorAll(".message");
      for (var i = nodes.length - 1; i >= 0; i--) {
        if (nodes[i].dataset.id < m.id) { next = nodes[i].nextSibling; break; }
        next = nodes[i];
      }
      list.insertBefore(el, next);
      if (newestId === null || m.id > newestId) { newestId = m.id; }
      if (oldestId === null || m.id < oldestId) { oldestId = m.id; }
      added += 1;
    });
    if (opts.quiet) { setTimeout(function () { list.setAttribute("aria-live", "polite"); }, 0); }
    if (!added) { return 0; }
    refreshSeparators();
    markSeen();
    if (opts.prepend) { return added; }
    if (stick) { scrollToBottom(); } else if (opts.live) { pill.classList.remove("d-none"); }
    return added;
  }

  // Everything shown counts as read, but only while someone can see it.
  function markSeen() {
    if (!document.hidden && newestId) { SC.markSeen(conversationId, newestId); }
  }
  document.addEventListener("visibilitychange", markSeen);

  function setStatus(text, kind) {
    statusBox.textContent = text || "";
    statusBox.className = "small mb-1" + (kind ? " text-" + kind : "");
  }

  // ---- joining and catching up -----------------------------------------------------------
  function join(after) {
    var payload = { conversation_id: conversationId };
    if (after) { payload.after = after; }
    socket.emit("join", payload, function (ack) {
      if (!ack || !ack.ok) {
        setStatus("Could not open this conversation (" + ((ack && ack.error) || "no answer") + ").", "danger");
        return;
      }
      var first = !joined;
      joined = true;
      addMessages(ack.messages, { forceScroll: first, live: !first, quiet: first });
      if (first) { hasMore = ack.has_more; }
      if (after && ack.has_more && ack.messages.length) {
        join(ack.messages[ack.messages.length - 1].id);  // more missed messages: keep catching up
        return;
      }
      if (!countdownTimer) { setStatus(""); }
      if (!list.querySelector(".message") && first) { historyStatus.textContent = "No messages yet. Say hello!"; }
      flushPending();
    });
  }

  socket.on("connect", function () {
    join(newestId);
  });
  socket.on("disconnect", function () {
    setStatus("Connection lost. Reconnecting…", "warning");
    sending = false;
  });
  socket.on("connect_error", function () {
    if (socket.active) {
      setStatus("Connection lost. Reconnecting…", "warning");
    } else {  // refused by the server: the session has ended
      setStatus("You are logged out. Reload the page to log in again.", "danger");
    }
  });
  socket.on("message", function (m) {
    if (m && m.conversation_id === conversationId) {
      historyStatus.textContent = "";
      addMessages([m], { live: true });
    }
  });

  // ---- older messages on scroll up -------------------------------------------------------
  function loadOlder() {
    if (loadingOlder || !hasMore || !oldestId) { return; }
    loadingOlder = true;
    historyStatus.textContent = "Loading older messages…";
    var url = historyUrl + "?limit=50&before=" + encodeURIComponent(oldestId);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!data.ok) { throw new Error(data.error || "failed"); }
        var oldHeight = scroller.scrollHeight;
        var oldTop = scroller.scrollTop;
        addMessages(data.messages, { prepend: true, quiet: true });
        scroller.scrollTop = oldTop + (scroller.scrollHeight - oldHeight);
        hasMore = data.has_more;
        historyStatus.textContent = hasMore ? "" : "This is the beginning of the conversation.";
      })
      .catch(function () { historyStatus.textContent = "Could not load older messages."; })
      .finally(function () { loadingOlder = false; });
  }
  scroller.addEventListener("scroll", function () {
    if (scroller.scrollTop < 60) { loadOlder(); }
    if (atBottom()) { pill.classList.add("d-none"); }
  });
  pill.addEventListener("click", scrollToBottom);

  // ---- sending ---------------------------------------------------------------------------
  function flushPending() {
    if (sending || countdownTimer || !pending.length || !socket.connected || !joined) { return; }
    sending = true;
    var item = pending[0];
    socket.timeout(10000).emit("send_message", {
      conversation_id: conversationId, message: item.text, client_id: item.clientId
    }, function (err, ack) {
      sending = false;
      if (err) { setStatus("No answer from the server; retrying…", "warning"); setTimeout(flushPending, 1000); return; }
      if (ack && ack.ok) {
        pending.shift();
        historyStatus.textContent = "";
        addMessages([ack.message], { forceScroll: true });
        if (!countdownTimer) { setStatus(""); }
        flushPending();
      } else if (ack && ack.error === "rate_limited") {
        startCountdown(ack.retry_after || 1);
      } else if (ack && ack.error === "unavailable") {
        setStatus("The server could not take the message; retrying…", "warning");
        setTimeout(flushPending, 2000);
      } else {
        pending.shift();
        var reasons = { empty: "Empty messages are not sent.", too_long: "That message is too long.",
          forbidden: "You cannot post in this conversation.", invalid: "That message could not be sent." };
        setStatus(reasons[ack && ack.error] || "That message could not be sent.", "danger");
        flushPending();
      }
    });
  }

  function startCountdown(seconds) {
    var until = Date.now() + seconds * 1000;
    function tick() {
      var left = Math.max(0, until - Date.now());
      if (left <= 0) {
        clearInterval(countdownTimer); countdownTimer = null;
        setStatus("");
        flushPending();
        return;
      }
      setStatus("Slow down: sending in " + (left / 1000).toFixed(1) + " s…", "warning");
    }
    clearInterval(countdownTimer);
    countdownTimer = setInterval(tick, 100);
    tick();
  }

  function submit() {
    var text = input.value;
    if (!text.trim()) { return; }
    if (text.length > maxLength) { setStatus("That message is too long.", "danger"); return; }
    clientSeq += 1;
    pending.push({ text: text, clientId: clientPrefix + "-" + Date.now() + "-" + clientSeq });
    input.value = "";
    updateCounter();
    flushPending();
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); submit(); input.focus(); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });

  function updateCounter() {
    var n = input.value.length;
    if (n >= maxLength * 0.8) {
      counter.textContent = n + " / " + maxLength;
      counter.classList.remove("d-none");
      counter.classList.toggle("text-danger", n >= maxLength);
    } else {
      counter.classList.add("d-none");
    }
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 160) + "px";
  }
  input.addEventListener("input", updateCounter);
  input.focus();
})();
