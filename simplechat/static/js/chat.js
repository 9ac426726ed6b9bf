/* The chat page: history, live messages, sending, rate-limit countdown, reconnect catch-up,
 * read state and "Seen", presence, typing, editing and deleting (owners and admins of a group
 * or channel delete anyone's message), group changes, an archived conversation's read-only
 * composer, and jumping to a message found by search (?message=<id>). */
(function () {
  "use strict";
  var root = document.getElementById("chat");
  if (!root) { return; }
  var SC = window.SimpleChat;
  var socket = SC.socket();
  var conversationId = parseInt(root.dataset.conversationId, 10);
  var myId = parseInt(root.dataset.userId, 10);
  var isGroup = root.dataset.isGroup === "true";
  var kind = root.dataset.kind || (isGroup ? "group" : "conversation");
  // My role and the archived state: channel.js keeps them on #chat as the server tells.
  function isModerator() { return isGroup && (root.dataset.role === "owner" || root.dataset.role === "admin"); }
  function isArchived() { return root.dataset.archived === "true"; }
  var maxLength = parseInt(root.dataset.maxLength, 10);
  var historyUrl = root.dataset.historyUrl;
  var editWindowMs = (parseInt(root.dataset.editWindow, 10) || 0) * 1000;
  var listUrl = root.dataset.listUrl;
  var target = new URLSearchParams(window.location.search).get("message");

  var list = document.getElementById("messages");
  var scroller = document.getElementById("messages-scroll");
  var input = document.getElementById("message-input");
  var form = document.getElementById("send-form");
  var statusBox = document.getElementById("chat-status");
  var historyStatus = document.getElementById("history-status");
  var pill = document.getElementById("new-messages-pill");
  var counter = document.getElementById("char-counter");
  var typingBox = document.getElementById("typing-indicator");
  var membersBox = document.getElementById("chat-members");
  var presenceBox = document.getElementById("chat-presence");
  var titleBox = document.getElementById("chat-title");

  var rows = new Map();      // message id -> its element
  var readMarkers = {};      // user id -> last-read message id
  var statuses = {};         // user id -> {online, last_seen}
  var newestId = null;
  var oldestId = null;
  var hasMore = false;
  var loadingOlder = false;
  // Messages typed but not yet acknowledged, in the order they go out: {text, clientId, el,
  // limited, unavailable}. Each shows as a "pending" bubble until its message arrives.
  var outbox = [];
  var sending = false;
  var countdownTimer = null;
  var joined = false;
  var clientSeq = 0;
  var clientPrefix = Math.random().toString(36).slice(2, 10);

  // ---- rendering -------------------------------------------------------------------------
  var parseUtc = SC.parseUtc;
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function timeElement(className, when) { return P.timeElement(className, when); }
  function dayKey(d) { return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()); }
  // A day key back to that local day (noon, clear of any clock change).
  function dayOf(key) {
    var parts = key.split("-");
    return new Date(+parts[0], +parts[1] - 1, +parts[2], 12);
  }
  function dayLabel(key) {
    var today = new Date();
    var yesterday = new Date(); yesterday.setDate(today.getDate() - 1);
    if (key === dayKey(today)) { return "Today"; }
    if (key === dayKey(yesterday)) { return "Yesterday"; }
    return SC.formatDay(dayOf(key));
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

  var P = SC.parts;
  var payloads = new Map();  // message id -> its latest payload (the raw text for editing)

  // A system line: what happened to the group, centred and muted, no sender, no actions.
  function buildSystemLine(m, when) {
    var row = document.createElement("div");
    row.className = "message message-system";
    row.dataset.id = m.id;
    row.dataset.day = dayKey(when);
    row.dataset.sender = "system";
    var body = document.createElement("div");
    body.className = "message-text message-system-text";
    P.renderBody(body, m, myId);
    row.appendChild(body);
    timeElement("message-time", when).forEach(function (el) { row.appendChild(el); });
    return row;
  }

  function buildMessage(m) {
    var mine = m.sender === myId;
    var when = parseUtc(m.timestamp);
    payloads.set(m.id, m);
    if (m.kind === "system") { return buildSystemLine(m, when); }
    var row = document.createElement("div");
    row.className = "message " + (mine ? "message-mine" : "message-theirs") + (m.deleted ? " message-deleted" : "");
    row.dataset.id = m.id;
    row.dataset.day = dayKey(when);
    row.dataset.sender = String(m.sender);
    var bubble = document.createElement("div");
    bubble.className = "message-bubble";
    if (!mine && (isGroup || m.ephemeral)) {
      var name = document.createElement("div");
      name.className = "message-sender";
      name.textContent = m.sender_name || ("User " + m.sender);
      bubble.appendChild(name);
    }
    if (m.reply_to && typeof m.reply_to.id === "string" && !m.deleted) {
      bubble.appendChild(P.replyQuote(m.reply_to, function (id) { jumpTo(id, true); }));
    }
    P.content(m, myId, deletedText(m)).forEach(function (el) { bubble.appendChild(el); });
    var meta = document.createElement("div");
    meta.className = "message-meta";
    var edited = P.editedMark(m);
    if (edited) { meta.appendChild(edited); }
    if (m.ephemeral) {
      var only = document.createElement("span");
      only.className = "message-ephemeral-label";
      only.textContent = "Only visible to you";
      meta.appendChild(only);
    }
    timeElement("message-time", when).forEach(function (el) { meta.appendChild(el); });
    bubble.appendChild(meta);
    var reactions = !m.deleted && !m.ephemeral && P.reactionsBar(m, myId, memberNames(), function (emoji, on) { react(m.id, emoji, on); });
    if (reactions) { bubble.appendChild(reactions); }
    var threadLine = SC.threads && SC.threads.summary(m);  // threads.js: "3 replies", or the reply's thread
    if (threadLine) { bubble.appendChild(threadLine); }
    var changeable = mine && !m.deleted && Date.now() - when.getTime() < editWindowMs;
    var actions = !m.deleted && !m.ephemeral && !isArchived() && buildActions(m, changeable);
    if (actions && mine) { row.appendChild(actions); }
    if (!mine && isGroup) {
      row.appendChild(SC.avatar(m.sender, m.sender_name || ("User " + m.sender), "message-avatar"));
    }
    row.appendChild(bubble);
    if (actions && !mine) { row.appendChild(actions); }
    return row;
  }

  function pickReaction(m, emoji) {
    var current = (payloads.get(m.id) || m).reactions || {};
    var ids = current[emoji] || [];
    react(m.id, emoji, ids.indexOf(myId) === -1);
  }

  function react(id, emoji, on) {
    change("react", { conversation_id: conversationId, message_id: id, emoji: emoji, on: on }, function () {});
  }

  // A tombstone says who deleted the message when it was not its sender (an owner or admin).
  function deletedText(m) {
    if (typeof m.deleted_by !== "number" || m.deleted_by === m.sender) { return "This message was deleted"; }
    if (m.deleted_by === myId) { return "This message was deleted by you"; }
    var name = memberNames()[m.deleted_by];
    return "This message was deleted by " + (name || "a moderator");
  }

  // A menu on every message (one stop for the keyboard): Reply and React, and on one's own
  // messages, while they can still be changed, Edit and Delete; an owner or admin of a group
  // or channel deletes any message, at any time.
  function buildActions(m, changeable) {
    var box = document.createElement("div");
    box.className = "dropdown message-actions";
    var toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "btn btn-sm btn-link message-actions-toggle";
    toggle.setAttribute("data-bs-toggle", "dropdown");
    toggle.setAttribute("aria-expanded", "false");
    toggle.setAttribute("aria-label", "Message actions");
    toggle.textContent = "⋯";
    var menu = document.createElement("ul");
    menu.className = "dropdown-menu dropdown-menu-end";
    toggle.dataset.focusKey = "actions";
    var entries = [["Reply", "reply", function () { startReply(m); }],
                   ["React…", "react", function () {
                     // After this click is done with (it would close the picker at once).
                     setTimeout(function () { P.togglePicker(toggle, function (emoji) { pickReaction(m, emoji); }); }, 0);
                   }]];
    if (SC.threads && !m.thread_id) {
      entries.splice(1, 0, ["Reply in thread", "thread", function () { SC.threads.open(m.id, toggle); }]);
    }
    if (changeable) {
      entries.push(["Edit", "edit", function () { startEdit(m.id); }],
                   ["Delete", "delete", function () { confirmDelete(m.id); }]);
    } else if (isModerator()) {
      entries.push(["Delete", "delete", function () { confirmDelete(m.id); }]);
    }
    // Other scripts' entries (unread.js: Mark unread): functions of the message, [label, key, fn].
    (SC.messageMenuEntries || []).forEach(function (more) {
      var entry = more(m);
      if (entry) { entries.push(entry); }
    });
    entries.forEach(function (entry) {
      var li = document.createElement("li");
      var item = document.createElement("button");
      item.type = "button";
      item.className = "dropdown-item message-" + entry[1] + (entry[1] === "delete" ? " text-danger" : "");
      item.textContent = entry[0];
      item.addEventListener("click", entry[2]);
      li.appendChild(item);
      menu.appendChild(li);
    });
    box.appendChild(toggle);
    box.appendChild(menu);
    return box;
  }

  function daySeparator(key) {
    var sep = document.createElement("div");
    sep.className = "day-separator";
    sep.dataset.day = key;
    sep.setAttribute("role", "separator");
    sep.textContent = dayLabel(key);
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
        list.insertBefore(daySeparator(el.dataset.day), el);
        previous = el.dataset.day;
        previousSender = null;
      }
      el.classList.toggle("message-continued", el.dataset.sender === previousSender);
      previousSender = el.dataset.sender;
    });
  }

  // Both read the layout, which makes the browser lay out whatever changed at once: a page of
  // messages scrolls once, after all of it is in.
  function atBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  }
  function scrollToBottom() { scroller.scrollTop = scroller.scrollHeight; pill.classList.add("d-none"); }

  // Insert messages in id order (ids are time-ordered), before the bubbles still waiting to go
  // out; skip ones already shown. One pass: the new rows are built off the page and go in
  // with one insertion per gap between the rows already shown (one in all, usually).
  function addMessages(messages, opts) {
    opts = opts || {};
    var stick = !opts.hold && (opts.forceScroll || atBottom());
    var added = 0;
    var fresh = [];
    // History (the first page, older pages) goes in without being read out message by message.
    if (opts.quiet) { list.setAttribute("aria-live", "off"); }
    messages.forEach(function (m) {
      if (!m || m.conversation_id !== conversationId) { return; }
      var settled = settle(m);
      if (rows.has(m.id)) { if (settled) { added += 1; } return; }
      var el = buildMessage(m);
      rows.set(m.id, el);
      fresh.push({ id: m.id, el: el });
      if (newestId === null || m.id > newestId) { newestId = m.id; }
      if (oldestId === null || m.id < oldestId) { oldestId = m.id; }
      added += 1;
    });
    if (fresh.length) {
      fresh.sort(function (a, b) { return a.id < b.id ? -1 : (a.id > b.id ? 1 : 0); });
      // Each goes right after the last row shown with a smaller id (the first row when none).
      var shown = list.querySelectorAll(".message[data-id]");
      var k = 0;
      var batch = document.createDocumentFragment();
      fresh.forEach(function (item, n) {
        while (k < shown.length && shown[k].dataset.id < item.id) { k += 1; }
        batch.appendChild(item.el);
        var next = fresh[n + 1];
        if (next && !(k < shown.length && shown[k].dataset.id < next.id)) { return; }  // same gap
        var before = k ? shown[k - 1].nextSibling : (shown[0] || list.querySelector(".message.pending"));
        list.insertBefore(batch, before);
      });
    }
    if (opts.quiet) { setTimeout(function () { list.setAttribute("aria-live", "polite"); }, 0); }
    if (!added) { return 0; }
    refreshSeparators();
    renderSeen();
    if (opts.prepend || opts.hold) { return added; }  // hold: the unread landing places the view
    if (stick) { scrollToBottom(); } else if (opts.live) { pill.classList.remove("d-none"); }
    if (stick || !opts.live) { markRead(); }
    return added;
  }

  // A message changed (edited, deleted): redraw it in place.
  function updateMessage(m) {
    var old = m && m.conversation_id === conversationId && rows.get(m.id);
    if (!old || old.classList.contains("message-editing")) {
      if (old) { old.dataset.pendingUpdate = "1"; pendingUpdates[m.id] = m; }
      return;
    }
    var focused = old.contains(document.activeElement) && document.activeElement.dataset.focusKey;
    var el = buildMessage(m);
    if (old.classList.contains("message-highlight")) { el.classList.add("message-highlight"); }
    old.replaceWith(el);
    if (focused) {
      var again = el.querySelector('[data-focus-key="' + CSS.escape(focused) + '"]') || el.querySelector(".message-react");
      if (again) { again.focus(); }
    }
    rows.set(m.id, el);
    refreshSeparators();
    renderSeen();
  }
  var pendingUpdates = {};

  // ---- read state and "Seen" ---------------------------------------------------------------
  // What is on screen counts as read: tell the server (at most once a second), which clears
  // the unread count on every device and shows "Seen" to the others.
  var lastReadSent = null;
  var readTimer = null;
  var readSentAt = 0;
  // Held after "Mark unread" (here or on another device) until the person sends or jumps to
  // the newest: what they marked stays unread while the page is open.
  var readHeld = false;
  function holdRead(lastRead) {
    readHeld = true;
    lastReadSent = lastRead || null;
    clearTimeout(readTimer);
    readTimer = null;
  }
  function releaseRead() { readHeld = false; markReadIfVisible(); }
  function markRead() {
    if (readTimer || !joined || readHeld) { return; }
    readTimer = setTimeout(sendRead, Math.max(0, readSentAt + 1000 - Date.now()));
  }
  function sendRead() {
    readTimer = null;
    var id = newestId;
    if (document.hidden || !socket.connected || !SC.newer(id, lastReadSent)) { return; }
    lastReadSent = id;
    readSentAt = Date.now();
    socket.emit("read", { conversation_id: conversationId, message_id: id }, function (ack) {
      if (!ack || !ack.ok) { lastReadSent = null; }
    });
  }
  function markReadIfVisible() { if (!document.hidden && atBottom()) { markRead(); } }
  document.addEventListener("visibilitychange", markReadIfVisible);
  window.addEventListener("focus", markReadIfVisible);

  // Under my latest message: "Seen" once the other person of a direct conversation read it; in
  // a group, who read it ("Seen by Ann, Bob", or "Seen by 5" past three), from the read markers
  // the join answer and `read` events bring.
  var seenBox = document.createElement("div");
  seenBox.className = "message-seen";
  function memberNames() {
    var names = {};
    membersBox.querySelectorAll(".member").forEach(function (el) {
      var a = el.querySelector("a");
      names[el.dataset.userId] = a ? a.textContent.trim() : "";
    });
    return names;
  }
  function renderSeen() {
    var mine = list.querySelectorAll(".message-mine:not(.pending):not(.failed)");
    var last = mine.length ? mine[mine.length - 1] : null;
    var names = memberNames();
    var readers = Object.keys(readMarkers).filter(function (uid) {
      return parseInt(uid, 10) !== myId && Object.prototype.hasOwnProperty.call(names, uid) &&
        last && readMarkers[uid] && readMarkers[uid] >= last.dataset.id;
    });
    if (!last || !readers.length) { seenBox.remove(); return; }
    var text = "Seen";
    var full = readers.map(function (uid) { return names[uid]; }).sort();
    if (isGroup) {
      var firstNames = full.map(function (n) { return n.split(/\s+/)[0] || n; });
      text = "Seen by " + (readers.length > 3 ? readers.length : firstNames.join(", "));
    }
    seenBox.title = isGroup ? "Seen by " + full.join(", ") : "";
    if (seenBox.textContent !== text) { seenBox.textContent = text; }
    if (last.nextSibling !== seenBox) { list.insertBefore(seenBox, last.nextSibling); }
  }

  socket.on("read", function (r) {
    if (!r || r.conversation_id !== conversationId || typeof r.message_id !== "string") { return; }
    if (SC.newer(r.message_id, readMarkers[r.user_id])) { readMarkers[r.user_id] = r.message_id; }
    if (r.user_id === myId && SC.newer(r.message_id, lastReadSent)) { lastReadSent = r.message_id; }
    renderSeen();
  });

  function setStatus(text, kind) {
    statusBox.textContent = text || "";
    statusBox.className = "small mb-1" + (kind ? " text-" + kind : "");
  }

  // ---- joining and catching up -----------------------------------------------------------
  // A join the server asks to wait for (rate_limited: many tabs catching up at once) is sent
  // again after retry_after, a few times; a newer join (a reconnect) replaces a waiting one.
  var JOIN_RETRIES = 5;
  // The presence state join reads (see "presence" below). Set before anything can call join:
  // when the socket connected before this script ran, onConnect joins at once.
  var PRESENCE_MAX = 100;
  var presencePushed = true;
  var presenceShownBy = {};  // source -> the user ids it follows
  var presenceFollowing = false;  // whether this socket holds a subscription
  var presenceTimer = null;
  var joinRetry = null;
  function join(after, attempt) {
    attempt = attempt || 0;
    if (joinRetry) { clearTimeout(joinRetry); joinRetry = null; }
    var payload = { conversation_id: conversationId };
    if (after) { payload.after = after; }
    // The members this page shows: a big room's answer carries their presence (a small
    // room's carries every member's anyway).
    var shown = askedPresenceIds();
    if (shown.length) { payload.presence_of = shown; }
    socket.emit("join", payload, function (ack) {
      if (ack && ack.error === "rate_limited" && attempt < JOIN_RETRIES) {
        var wait = Math.min(Math.max(Number(ack.retry_after) || 1, 0.5), 30);
        setStatus("Busy: opening this conversation again in a moment…", "muted");
        joinRetry = setTimeout(function () { joinRetry = null; join(after, attempt + 1); }, wait * 1000);
        return;
      }
      if (!ack || !ack.ok) {
        setStatus("Could not open this conversation (" + ((ack && ack.error) || "no answer") + ").", "danger");
        return;
      }
      var first = !joined;
      joined = true;
      takeMarkers(ack.read);
      presencePushed = ack.presence_pushed !== false;
      if (presencePushed) { takeStatuses(ack.presence); } else { takePresenceAnswer(ack.presence); }
      // unread.js opens the page at the first unread message (a function to call once the
      // messages are in), or leaves it at the newest (null).
      var landing = first && !target && SC.unreadLanding ? SC.unreadLanding(ack) : null;
      addMessages(ack.messages, { forceScroll: first && !landing, live: !first, quiet: first, hold: !!landing });
      if (first) { hasMore = ack.has_more; }
      if (landing) { landing(); }
      if (first && target) { jumpTo(target); }
      if (after && ack.has_more && ack.messages.length) {
        join(ack.messages[ack.messages.length - 1].id);  // more missed messages: keep catching up
        return;
      }
      if (!presencePushed) {  // a big group: follow the panel's members again
        schedulePresenceSubscription();
      }
      if (!countdownTimer) { setStatus(""); }
      if (!list.querySelector(".message") && first) { historyStatus.textContent = "No messages yet. Say hello!"; }
      flushPending();
    });
  }

  function takeMarkers(read) {
    if (!read || typeof read !== "object") { return; }
    Object.keys(read).forEach(function (uid) {
      if (SC.newer(read[uid], readMarkers[uid])) { readMarkers[uid] = read[uid]; }
    });
    if (SC.newer(readMarkers[myId], lastReadSent)) { lastReadSent = readMarkers[myId]; }
    renderSeen();
  }

  SC.onConnect(function () {
    join(SC.catchUpFrom(newestId));
  });
  // The server's fan-out missed messages while this socket stayed connected (Redis restarted
  // or failed over): catch up as after a reconnect.
  socket.on("resync", function () {
    if (joined) { join(SC.catchUpFrom(newestId)); }
  });
  var ENDED_BECAUSE = {
    logged_out: "You logged out of this session.",
    password_changed: "Your password was changed, which signed this session out.",
    signed_out: "This session was signed out.",
    deactivated: "Your account has been deactivated.",
    expired: "This session expired."
  };
  var sessionEnded = false;
  socket.on("session_ended", function (data) {
    sessionEnded = true;
    var why = data && Object.prototype.hasOwnProperty.call(ENDED_BECAUSE, data.reason)
      ? ENDED_BECAUSE[data.reason] : "Your session has ended.";
    setStatus(why + " Reload the page to log in again.", "danger");
    input.disabled = true;  // nothing typed now could be sent
    var button = document.getElementById("send-button");
    if (button) { button.disabled = true; }
  });
  socket.on("disconnect", function () {
    sending = false;
    if (!sessionEnded) { setStatus("Connection lost. Reconnecting…", "warning"); }
    // Offline, we cannot know who is online: say so rather than show a stale "Online".
    Object.keys(statuses).forEach(function (uid) { statuses[uid] = { unknown: true }; });
    renderPresence();
  });
  socket.on("connect_error", function () {
    if (socket.active) {
      setStatus("Connection lost. Reconnecting…", "warning");
    } else {  // refused by the server: the session has ended
      setStatus("You are logged out. Reload the page to log in again.", "danger");
    }
  });
  socket.on("message", function (m) {
    // A thread reply belongs to its thread (threads.js), unless also sent to the conversation.
    if (m && m.conversation_id === conversationId && !(m.thread_id && !m.also_to_conversation)) {
      historyStatus.textContent = "";
      stopTyping(m.sender);
      addMessages([m], { live: true });
    }
  });
  socket.on("message_updated", updateMessage);
  // A slash command's answer for me alone: shown in its place in time, marked "Only visible to
  // you", never stored (gone when the page reloads) and not counted as read or newest.
  socket.on("ephemeral", function (e) {
    var m = e && e.message;
    if (!m || e.conversation_id !== conversationId || typeof m.id !== "string") { return; }
    var stick = atBottom();
    var el = buildMessage(m);
    el.classList.add("message-ephemeral");
    var after = Array.prototype.find.call(list.querySelectorAll(".message[data-id]"),
                                          function (row) { return row.dataset.id > m.id; });
    list.insertBefore(el, after || list.querySelector(".message.pending"));
    refreshSeparators();
    renderSeen();
    if (stick) { scrollToBottom(); } else { pill.classList.remove("d-none"); }
  });

  // ---- older messages on scroll up -------------------------------------------------------
  var olderRequest = null;
  function loadOlder(limit) {
    if (olderRequest) { return olderRequest; }
    if (!hasMore || !oldestId) { return Promise.resolve(false); }
    historyStatus.textContent = "Loading older messages…";
    var url = historyUrl + "?limit=" + (limit || 50) + "&before=" + encodeURIComponent(oldestId);
    olderRequest = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!data.ok) { throw new Error(data.error || "failed"); }
        var oldHeight = scroller.scrollHeight;
        var oldTop = scroller.scrollTop;
        addMessages(data.messages, { prepend: true, quiet: true });
        scroller.scrollTop = oldTop + (scroller.scrollHeight - oldHeight);
        hasMore = data.has_more;
        historyStatus.textContent = hasMore ? "" : "This is the beginning of the conversation.";
        return true;
      })
      .catch(function () { historyStatus.textContent = "Could not load older messages."; return false; })
      .finally(function () { olderRequest = null; });
    return olderRequest;
  }
  scroller.addEventListener("scroll", function () {
    if (scroller.scrollTop < 60 && !jumping) { loadOlder(); }
    if (atBottom()) { pill.classList.add("d-none"); markRead(); }
  });

  // Opened from a search result: page back (at most 20 pages) until the message is here, then
  // show it in the middle of the view, highlighted.
  var jumping = false;
  // From a reply's quote (`brief`): the same, the highlight fading after a moment.
  var highlightTimer = null;
  function jumpTo(id, brief) {
    var pages = 0;
    jumping = true;
    function step() {
      var el = rows.get(id);
      if (el) {
        jumping = false;
        list.querySelectorAll(".message-highlight").forEach(function (old) { old.classList.remove("message-highlight"); });
        el.classList.add("message-highlight");
        clearTimeout(highlightTimer);
        if (brief) {
          highlightTimer = setTimeout(function () {
            var now = rows.get(id);
            if (now) { now.classList.remove("message-highlight"); }
          }, 2500);
        }
        el.scrollIntoView({ block: "center" });
        el.setAttribute("tabindex", "-1");
        el.focus({ preventScroll: true });
        return;
      }
      if (!hasMore || pages >= 20 || (oldestId && id > oldestId)) {
        jumping = false;
        setStatus("That message is no longer here.", "warning");
        return;
      }
      pages += 1;
      loadOlder(100).then(function (ok) {
        if (ok) { step(); } else { jumping = false; }
      });
    }
    step();
  }
  pill.addEventListener("click", scrollToBottom);

  // ---- sending: the outbox ----------------------------------------------------------------
  // A message shows at once as a pending bubble and goes out in order, one at a time, with
  // its client_id; a retry (after a lost connection, a timeout, rate_limited) reuses the id, so
  // the server stores it once. The bubble gives way to the real message when the ack or the
  // `message` event brings it, whichever comes first. A refusal marks it failed, with Retry.
  var REFUSED = { empty: "Empty messages are not sent.", too_long: "That message is too long.",
    forbidden: "You cannot post in this conversation.", invalid: "That message could not be sent.",
    archived: "This " + kind + " is archived: nobody can write in it.",
    conflict: "That message could not be sent.", rate_limited: "The server kept refusing: too many messages.",
    unavailable: "The server could not take the message." };
  var MAX_LIMITED = 10;      // rate_limited answers in a row before a message counts as failed
  var MAX_UNAVAILABLE = 5;   // and unavailable ones

  function newClientId() {
    clientSeq += 1;
    return clientPrefix + "-" + Date.now() + "-" + clientSeq;
  }
  function saveOutbox() {
    SC.saveOutbox(conversationId, outbox.map(function (i) {
      return { text: i.text, clientId: i.clientId, replyTo: i.replyTo || null, attachments: i.attachments || [] };
    }));
  }

  function buildPending(item) {
    var now = new Date();
    var row = document.createElement("div");
    row.className = "message message-mine pending";
    row.dataset.clientId = item.clientId;
    row.dataset.day = dayKey(now);
    row.dataset.sender = String(myId);
    var bubble = document.createElement("div");
    bubble.className = "message-bubble";
    if (item.replyTo && item.replyTo.id) {
      bubble.appendChild(P.replyQuote(item.replyTo, function (id) { jumpTo(id, true); }));
    }
    var body = document.createElement("div");
    body.className = "message-text";
    appendLinkified(body, item.text);
    bubble.appendChild(body);
    var fileBox = P.attachmentsBlock(item.attachments);
    if (fileBox) { bubble.appendChild(fileBox); }
    var meta = document.createElement("div");
    meta.className = "message-meta message-state";
    meta.textContent = "Sending…";
    bubble.appendChild(meta);
    row.appendChild(bubble);
    return row;
  }

  function queue(item) {
    historyStatus.textContent = "";
    item.limited = 0;
    item.unavailable = 0;
    item.el = buildPending(item);
    outbox.push(item);
    list.appendChild(item.el);
    refreshSeparators();
    renderSeen();
    saveOutbox();
  }

  // The message of an outbox item arrived (ack, live event or catch-up): drop the bubble.
  function settle(m) {
    if (m.sender !== myId || typeof m.client_id !== "string") { return false; }
    for (var i = 0; i < outbox.length; i++) {
      if (outbox[i].clientId === m.client_id) {
        var item = outbox.splice(i, 1)[0];
        if (item.el) { item.el.remove(); }
        saveOutbox();
        return true;
      }
    }
    return false;
  }

  function fail(item, code) {
    var at = outbox.indexOf(item);
    if (at !== -1) { outbox.splice(at, 1); saveOutbox(); }
    var reason = REFUSED[code] || "That message could not be sent.";
    setStatus(reason, "danger");
    var el = item.el;
    el.classList.remove("pending");
    el.classList.add("failed");
    var meta = el.querySelector(".message-state");
    meta.replaceChildren();
    var label = document.createElement("span");
    label.textContent = "Failed — ";
    label.title = reason;
    var why = document.createElement("span");
    why.className = "visually-hidden";
    why.textContent = reason + " ";
    var retry = document.createElement("button");
    retry.type = "button";
    retry.className = "btn btn-link btn-sm message-retry";
    retry.textContent = "Retry";
    var discard = document.createElement("button");
    discard.type = "button";
    discard.className = "btn btn-link btn-sm message-discard";
    discard.textContent = "Discard";
    discard.setAttribute("aria-label", "Discard this message");
    meta.appendChild(label);
    meta.appendChild(why);
    meta.appendChild(retry);
    meta.appendChild(discard);
    retry.addEventListener("click", function () {
      el.remove();
      setStatus("");
      queue({ text: item.text, clientId: newClientId(), replyTo: item.replyTo, attachments: item.attachments });  // nothing was stored: a new id
      flushPending();
      input.focus();
    });
    discard.addEventListener("click", function () {
      el.remove();
      setStatus("");
      refreshSeparators();
      renderSeen();
      input.focus();
    });
  }

  function flushPending() {
    if (sending || countdownTimer || !outbox.length || !socket.connected || !joined) { return; }
    sending = true;
    var item = outbox[0];
    var payload = { conversation_id: conversationId, message: item.text, client_id: item.clientId };
    if (item.replyTo && item.replyTo.id) { payload.reply_to = item.replyTo.id; }
    if (item.attachments && item.attachments.length) {
      payload.attachments = item.attachments.map(function (a) { return a.id; });
    }
    socket.timeout(10000).emit("send_message", payload, function (err, ack) {
      sending = false;
      if (outbox.indexOf(item) === -1 && !(ack && ack.ok)) { flushPending(); return; }  // settled meanwhile
      if (err) {
        if (socket.connected) { setStatus("No answer from the server; retrying…", "warning"); }
        setTimeout(flushPending, 1000);
        return;
      }
      if (ack && ack.ok && ack.command) {
        // A slash command ran: nothing was stored; its answer comes as `ephemeral` or a message.
        var ran = outbox.indexOf(item);
        if (ran !== -1) { outbox.splice(ran, 1); item.el.remove(); saveOutbox(); }
        refreshSeparators();
        renderSeen();
        if (!countdownTimer) { setStatus(""); }
        flushPending();
      } else if (ack && ack.ok) {
        if (!settle(ack.message)) {
          var at = outbox.indexOf(item);
          if (at !== -1) { outbox.splice(at, 1); item.el.remove(); saveOutbox(); }
        }
        addMessages([ack.message], { forceScroll: true });
        if (!countdownTimer) { setStatus(""); }
        flushPending();
      } else if (ack && ack.error === "rate_limited" && ++item.limited <= MAX_LIMITED) {
        startCountdown(ack.retry_after || 1);
      } else if (ack && ack.error === "unavailable" && ++item.unavailable <= MAX_UNAVAILABLE) {
        setStatus("The server could not take the message; retrying…", "warning");
        setTimeout(flushPending, 2000 * item.unavailable);
      } else {
        fail(item, ack && ack.error);
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
    if (files.busy()) { setStatus("Wait for the files to finish uploading.", "warning"); return; }
    var attachments = files.ready();
    if (!text.trim() && !attachments.length) { return; }
    if (text.length > maxLength) { setStatus("That message is too long.", "danger"); return; }
    queue({ text: text, clientId: newClientId(), replyTo: replyingTo, attachments: attachments });
    input.value = "";
    document.dispatchEvent(new CustomEvent("simplechat:sent", { detail: { text: text } }));
    files.clear();
    cancelReply(false);
    updateCounter();
    endTyping();
    scrollToBottom();
    flushPending();
  }

  // ---- replying ------------------------------------------------------------------------------
  var replyBar = document.getElementById("reply-bar");
  var replyingTo = null;  // {id, sender_name, preview}
  function startReply(m) {
    replyingTo = { id: m.id, sender: m.sender, sender_name: m.sender_name || ("User " + m.sender),
                   preview: (m.message || (m.attachments && m.attachments.length ? "(files)" : "")).slice(0, 120) };
    replyBar.querySelector(".reply-bar-name").textContent = replyingTo.sender_name;
    replyBar.querySelector(".reply-bar-preview").textContent = replyingTo.preview;
    replyBar.classList.remove("d-none");
    input.focus();
  }
  function cancelReply(refocus) {
    replyingTo = null;
    replyBar.classList.add("d-none");
    if (refocus) { input.focus(); }
  }
  document.getElementById("reply-cancel").addEventListener("click", function () { cancelReply(true); });

  // ---- files ----------------------------------------------------------------------------------
  var fileInput = document.getElementById("attach-input");
  var files = SC.uploads({
    url: fileInput.dataset.uploadUrl, chips: document.getElementById("attachment-chips"),
    input: fileInput, button: document.getElementById("attach-button"),
    dropZone: scroller, pasteTarget: input, onStatus: setStatus
  });

  // What this tab typed before a reload and never got acknowledged goes out again (the same
  // client ids: the server keeps whatever it already took once).
  SC.loadOutbox(conversationId).forEach(function (saved) { queue(saved); });

  form.addEventListener("submit", function (e) { e.preventDefault(); submit(); input.focus(); });
  input.addEventListener("keydown", function (e) {
    if (e.defaultPrevented) { return; }  // taken by the mention list
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
    else if (e.key === "Escape" && replyingTo) { e.preventDefault(); cancelReply(true); }
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

  // ---- typing --------------------------------------------------------------------------------
  // Mine: "typing" at most every 3 s while keys come, "stopped" on send or leaving the box.
  // Theirs: shown until they stop, send, or 6 s pass without a refresh.
  var TYPING_EVERY_MS = 3000;
  var TYPING_SHOWN_MS = 6000;
  var typingSentAt = 0;
  function sendTyping(on) {
    if (!socket.connected || !joined) { return; }
    socket.emit("typing", { conversation_id: conversationId, typing: on });
  }
  input.addEventListener("input", function () {
    if (!input.value.trim()) { return; }
    var now = Date.now();
    if (now - typingSentAt >= TYPING_EVERY_MS) { typingSentAt = now; sendTyping(true); }
  });
  function endTyping() {
    if (typingSentAt) { typingSentAt = 0; sendTyping(false); }
  }
  input.addEventListener("blur", endTyping);

  var typists = new Map();  // user id -> {name, timer}
  function renderTyping() {
    var names = Array.from(typists.values()).map(function (t) { return t.name; });
    var text = "";
    if (names.length === 1) { text = names[0] + " is typing…"; }
    else if (names.length === 2) { text = names[0] + " and " + names[1] + " are typing…"; }
    else if (names.length > 2) { text = names.slice(0, -1).join(", ") + " and " + names[names.length - 1] + " are typing…"; }
    if (typingBox.textContent !== text) { typingBox.textContent = text; }
  }
  function stopTyping(userId) {
    var t = typists.get(userId);
    if (!t) { return; }
    clearTimeout(t.timer);
    typists.delete(userId);
    renderTyping();
  }
  socket.on("typing", function (t) {
    if (!t || t.conversation_id !== conversationId || t.user_id === myId) { return; }
    if (!t.typing) { stopTyping(t.user_id); return; }
    var known = typists.get(t.user_id);
    if (known) { clearTimeout(known.timer); }
    typists.set(t.user_id, {
      name: typeof t.name === "string" && t.name ? t.name : "Someone",
      timer: setTimeout(function () { stopTyping(t.user_id); }, TYPING_SHOWN_MS)
    });
    renderTyping();
  });

  // ---- presence --------------------------------------------------------------------------------
  function takeStatuses(map) {
    if (!map || typeof map !== "object") { return; }
    Object.keys(map).forEach(function (uid) { statuses[uid] = map[uid]; });
    renderPresence();
  }
  function renderPresence() {
    var connected = socket.connected;
    membersBox.querySelectorAll(".member").forEach(function (el) {
      var status = connected ? statuses[el.dataset.userId] : { unknown: true };
      var online = connected && (!!(status && status.online) || parseInt(el.dataset.userId, 10) === myId);
      el.querySelector(".presence-dot").classList.toggle("unknown", !connected);
      el.querySelector(".presence-dot").classList.toggle("online", online);
      el.querySelector(".presence-dot").title = status ? SC.presenceText(status) : "";
      el.querySelector(".presence-label").textContent = online ? " (online)" : (connected ? "" : " (status unknown)");
    });
    if (presenceBox) {
      var peer = Object.keys(statuses).filter(function (uid) { return parseInt(uid, 10) !== myId; })[0];
      var status = connected ? statuses[peer] : { unknown: true };
      var text = peer ? SC.presenceText(status) : "";
      if (presenceBox.textContent !== text) { presenceBox.textContent = text; }
      presenceBox.classList.toggle("is-online", !!(peer && status && status.online));
    }
  }
  socket.on("presence", function (p) {
    if (!p || typeof p.user_id !== "number" || !membersBox.querySelector('.member[data-user-id="' + p.user_id + '"]')) { return; }
    statuses[p.user_id] = { online: !!p.online, last_seen: p.last_seen || null };
    renderPresence();
  });
  // A process that dies sends no "offline": ask now and then (cheap: one Redis round trip).
  function askPresence() {
    var payload = { conversation_id: conversationId };
    if (!presencePushed) { payload.user_ids = askedPresenceIds(); }
    socket.emit("presence", payload, function (ack) {
      if (ack && ack.ok) { takePresenceAnswer(ack.presence); }
    });
  }
  setInterval(function () {
    if (!socket.connected || !joined || document.hidden) { return; }
    askPresence();
  }, 30000);

  // In a big group (more members than the server's CHAT_PRESENCE_PUSH_MAX_MEMBERS: the join
  // answer says presence_pushed: false) nobody's presence is pushed to the room. The header
  // asks for the members it shows in each join (presence_of) and every 30 s (presence with
  // user_ids):
  // every page of a big room shows the same first members, so following them would cost a
  // delivery per open page each time one of them comes or goes (a room of 5,000 filling up
  // after a deploy: 50 x 5,000). What shows members only while it is open (the members panel)
  // follows them live: SimpleChat.showPresenceOf("members-panel", [ids]) subscribes this
  // socket to them (presence_subscribe, at most 100; [] ends it). Statuses answered reach
  // takeStatuses here and the document's `simplechat:presence` event (detail: {user id:
  // status}); changes of the members followed arrive as `presence` events.
  // (PRESENCE_MAX and the presence state are set above, before join: a page whose socket
  // connected before this script ran joins while the script is still running.)
  function firstIds(lists) {
    var seen = {};
    var ids = [];
    lists.forEach(function (list) {
      list.forEach(function (id) {
        if (!seen[id] && ids.length < PRESENCE_MAX) { seen[id] = true; ids.push(id); }
      });
    });
    return ids;
  }
  function followedIds() {
    return firstIds(Object.keys(presenceShownBy).map(function (source) { return presenceShownBy[source]; }));
  }
  function headerMemberIds() {
    return Array.prototype.map.call(membersBox.querySelectorAll(".member"), function (el) {
      return parseInt(el.dataset.userId, 10);
    });
  }
  function askedPresenceIds() { return firstIds([headerMemberIds(), followedIds()]); }
  function takePresenceAnswer(map) {
    takeStatuses(map);
    if (map && typeof map === "object") {
      document.dispatchEvent(new CustomEvent("simplechat:presence", { detail: map }));
    }
  }
  function subscribePresence() {
    presenceTimer = null;
    if (presencePushed || !joined || !socket.connected) { return; }
    var ids = followedIds();
    if (!ids.length && !presenceFollowing) { return; }  // nothing to follow, nothing to end
    presenceFollowing = ids.length > 0;
    socket.emit("presence_subscribe", { conversation_id: conversationId, user_ids: ids }, function (ack) {
      if (ack && ack.ok) { takePresenceAnswer(ack.presence); }
    });
  }
  // Changes close together (a list scrolling, a catch-up's joins) make one subscription.
  function schedulePresenceSubscription() {
    if (!presenceTimer) { presenceTimer = setTimeout(subscribePresence, 200); }
  }
  function showPresenceOf(source, ids) {
    presenceShownBy[source] = (Array.isArray(ids) ? ids : []).map(Number).filter(function (id) {
      return id > 0 && Math.floor(id) === id;
    });
    if (!presencePushed) { schedulePresenceSubscription(); }
  }
  socket.on("disconnect", function () { presenceFollowing = false; });  // a new socket follows no one
  SC.showPresenceOf = showPresenceOf;
  // "Last seen" reads relative to today: keep it fresh.
  setInterval(renderPresence, 60000);

  // ---- editing and deleting my messages --------------------------------------------------------
  var CHANGE_ERRORS = {
    edit_window_closed: "Too late: messages can only be changed for a while after sending.",
    not_found: "That message is gone.", empty: "A message cannot be blank; delete it instead.",
    too_long: "That message is too long.", forbidden: "You cannot change that message.",
    not_allowed: "Only this " + kind + "’s owners and admins can delete others’ messages.",
    archived: "This " + kind + " is archived: its messages cannot be changed.",
    unavailable: "The server could not take the change; try again.", invalid: "That change could not be saved."
  };
  function changeRefused(ack) {
    if (ack && ack.error === "rate_limited") {
      setStatus("Too many changes at once; try again in a moment.", "warning");
    } else {
      setStatus(CHANGE_ERRORS[ack && ack.error] || "That change could not be saved.", "danger");
    }
  }
  // An edit or a delete the server asks to wait for (rate_limited) is sent again after the
  // wait it names, a few times, rather than dropped: the person asked for it once.
  var CHANGE_RETRIES = 5;
  function change(event, payload, done, attempt) {
    attempt = attempt || 0;
    socket.timeout(10000).emit(event, payload, function (err, ack) {
      if (err) { setStatus("No answer from the server; try again.", "warning"); done(false); return; }
      if (ack && ack.ok) { setStatus(""); updateMessage(ack.message); done(true); return; }
      if (ack && ack.error === "rate_limited" && attempt < CHANGE_RETRIES) {
        setTimeout(function () { change(event, payload, done, attempt + 1); },
                   Math.max(100, (ack.retry_after || 1) * 1000));
        return;
      }
      changeRefused(ack);
      done(false);
    });
  }

  function finishEdit(row) {
    row.classList.remove("message-editing");
    var id = row.dataset.id;
    var editor = row.querySelector(".message-editor");
    if (editor) { editor.remove(); }
    row.querySelector(".message-text").classList.remove("d-none");
    if (pendingUpdates[id]) { var m = pendingUpdates[id]; delete pendingUpdates[id]; updateMessage(m); }
  }

  function startEdit(id) {
    var row = rows.get(id);
    if (!row || row.classList.contains("message-editing")) { return; }
    var textEl = row.querySelector(".message-text");
    var original = (payloads.get(id) || {}).message || textEl.textContent;
    row.classList.add("message-editing");
    var editor = document.createElement("div");
    editor.className = "message-editor";
    var box = document.createElement("textarea");
    box.className = "form-control form-control-sm message-edit-input";
    box.rows = 2;
    box.maxLength = maxLength;
    box.value = original;
    box.setAttribute("aria-label", "Edit message");
    var hint = document.createElement("div");
    hint.className = "message-edit-hint";
    hint.textContent = "Enter saves, Escape cancels";
    editor.appendChild(box);
    editor.appendChild(hint);
    textEl.classList.add("d-none");
    textEl.after(editor);
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
    var busy = false;
    function cancel() { finishEdit(row); focusActions(id); }
    box.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { e.preventDefault(); cancel(); return; }
      if (e.key !== "Enter" || e.shiftKey || e.isComposing) { return; }
      e.preventDefault();
      var text = box.value;
      if (busy) { return; }
      if (text.trim() === original.trim()) { cancel(); return; }
      if (!text.trim()) { setStatus(CHANGE_ERRORS.empty, "danger"); return; }
      busy = true;
      change("edit_message", { conversation_id: conversationId, message_id: id, message: text }, function (ok) {
        busy = false;
        if (ok) { finishEdit(row); input.focus(); } else { box.focus(); }
      });
    });
  }
  function focusActions(id) {
    var row = rows.get(id);
    var toggle = row && row.querySelector(".message-actions-toggle");
    if (toggle) { toggle.focus(); } else { input.focus(); }
  }

  // Deleting asks once more, in place, so a slip of the menu costs nothing.
  function confirmDelete(id) {
    var row = rows.get(id);
    if (!row || row.querySelector(".message-delete-confirm")) { return; }
    var bar = document.createElement("div");
    bar.className = "message-delete-confirm";
    var question = document.createElement("span");
    question.textContent = "Delete this message?";
    var yes = document.createElement("button");
    yes.type = "button";
    yes.className = "btn btn-sm btn-danger message-delete-yes";
    yes.textContent = "Delete";
    var no = document.createElement("button");
    no.type = "button";
    no.className = "btn btn-sm btn-light message-delete-no";
    no.textContent = "Keep";
    bar.appendChild(question);
    bar.appendChild(yes);
    bar.appendChild(no);
    row.querySelector(".message-bubble").appendChild(bar);
    yes.focus();
    no.addEventListener("click", function () { bar.remove(); focusActions(id); });
    bar.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { e.preventDefault(); bar.remove(); focusActions(id); }
    });
    yes.addEventListener("click", function () {
      yes.disabled = true;
      no.disabled = true;
      question.textContent = "Deleting…";
      change("delete_message", { conversation_id: conversationId, message_id: id }, function (ok) {
        if (ok) { input.focus(); return; }
        // Refused: the bar stays, so the person sees the message was kept and can try again.
        yes.disabled = false;
        no.disabled = false;
        question.textContent = "Not deleted. Delete this message?";
        yes.focus();
      });
    });
  }

  // ---- group changes -----------------------------------------------------------------------
  function renderMembers(participants) {
    var url = membersBox.dataset.profileUrl;
    var nodes = [];
    participants.forEach(function (p, i) {
      var span = document.createElement("span");
      span.className = "member";
      span.dataset.userId = String(p.id);
      span.dataset.username = p.username;
      var dot = document.createElement("span");
      dot.className = "presence-dot";
      dot.setAttribute("aria-hidden", "true");
      var a = document.createElement("a");
      a.className = "text-muted";
      a.href = url.replace("USERNAME", encodeURIComponent(p.username));
      a.textContent = p.name;
      var label = document.createElement("span");
      label.className = "visually-hidden presence-label";
      span.appendChild(dot);
      span.appendChild(a);
      span.appendChild(label);
      if (i) { nodes.push(document.createTextNode(", ")); }
      nodes.push(span);
    });
    membersBox.replaceChildren.apply(membersBox, nodes);
    renderPresence();
  }
  socket.on("conversation_updated", function (state) {
    if (!state || state.conversation_id !== conversationId || !Array.isArray(state.participants)) { return; }
    var others = state.participants.filter(function (p) { return p.id !== myId; })
      .map(function (p) { return p.name; });
    var title = state.title || others.join(", ") || "Just you";
    titleBox.textContent = title;
    var avatarBox = document.getElementById("chat-avatar");
    if (avatarBox && isGroup) {
      avatarBox.replaceChildren(SC.avatar(conversationId, title, "avatar-group chat-header-avatar"));
    }
    renderMembers(state.participants);
    renderSeen();
    askPresence();
  });
  socket.on("conversation_left", function (data) {
    if (!data || data.conversation_id !== conversationId) { return; }
    if (typeof data.removed_by === "number") {
      var by = memberNames()[data.removed_by];
      SC.leaveNotice("You were removed from “" + titleBox.textContent + "”" + (by ? " by " + by : "") + ".");
    } else {
      SC.leaveNotice("You left “" + titleBox.textContent + "”.");
    }
    window.location.href = listUrl;
  });

  // ---- archived, and my role ---------------------------------------------------------------
  // Archived, the conversation is read-only: the composer is off and messages have no menu.
  // A new role changes what the menus hold. Both redraw the messages shown.
  var sendButton = document.getElementById("send-button");
  var attachButton = document.getElementById("attach-button");
  function applyArchived() {
    var off = isArchived() || sessionEnded;
    input.disabled = off;
    sendButton.disabled = off;
    attachButton.disabled = off;
    input.placeholder = isArchived() ? "Archived: read-only" : "Write a message…";
  }
  document.addEventListener("simplechat:conversation-state", function (e) {
    var before = (e.detail && e.detail.before) || {};
    if (before.archived !== isArchived()) { applyArchived(); }
    rows.forEach(function (el, id) {
      var m = payloads.get(id);
      if (m && m.kind !== "system" && !el.classList.contains("message-editing")) { updateMessage(m); }
    });
  });

  // ---- for unread.js, drafts.js and keyboard.js -------------------------------------------
  SC.chatPage = {
    conversationId: conversationId, myId: myId, list: list, scroller: scroller, input: input,
    rows: rows, payloads: payloads, hasMore: function () { return hasMore; },
    oldestId: function () { return oldestId; }, loadOlder: loadOlder, atBottom: atBottom,
    scrollToBottom: scrollToBottom, jumpTo: jumpTo, startEdit: startEdit, setStatus: setStatus,
    updateCounter: updateCounter, markReadIfVisible: markReadIfVisible, holdRead: holdRead,
    releaseRead: releaseRead, socket: socket
  };
  input.focus();
})();
