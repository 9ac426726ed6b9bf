/* The chat page's threads: "3 replies · last reply 5 min ago" under a root (chat.js asks
 * SimpleChat.threads.summary for it), "Reply in thread" in a message's menu, and the thread
 * panel beside the conversation (a full-screen dialog at phone width): the root and its
 * replies (`thread`, older pages from the REST route), live replies, its own composer
 * (`send_message` with `thread_id`) and its draft, following (`follow_thread`) and reading
 * (`thread_read`).
 * Messages are drawn with message_parts.js, as in the main flow. */
(function () {
  "use strict";
  var SC = window.SimpleChat;
  var chat = document.getElementById("chat");
  var panel = document.getElementById("thread-panel");
  if (!SC || !SC.parts || !SC.threadText || !chat || !panel) { return; }
  var P = SC.parts;
  var socket = SC.socket();
  var conversationId = parseInt(chat.dataset.conversationId, 10);
  var myId = parseInt(chat.dataset.userId, 10);
  var maxLength = parseInt(panel.dataset.maxLength, 10) || 4000;
  var ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

  var layout = panel.parentElement;
  var rootBox = document.getElementById("thread-root");
  var countBox = document.getElementById("thread-count");
  var replies = document.getElementById("thread-replies");
  var scroller = document.getElementById("thread-scroll");
  var olderButton = document.getElementById("thread-older");
  var followButton = document.getElementById("thread-follow");
  var closeButton = document.getElementById("thread-close");
  var form = document.getElementById("thread-form");
  var input = document.getElementById("thread-input");
  var also = document.getElementById("thread-also");
  var statusBox = document.getElementById("thread-status");

  function isId(value) { return typeof value === "string" && ID_RE.test(value); }
  function names() {
    var found = {};
    document.querySelectorAll("#chat-members .member").forEach(function (el) {
      var a = el.querySelector("a");
      found[el.dataset.userId] = a ? a.textContent.trim() : "";
    });
    return found;
  }
  function nameOf(uid, fallback) { return names()[uid] || fallback || ("User " + uid); }

  // ---- "N replies · last reply 5 min ago" ---------------------------------------------------
  // Two updates of one root may cross between web processes: the higher reply_count wins.
  var best = {};  // root id -> the newest summary seen
  function summaryOf(m) {
    var t = m.thread;
    var kept = best[m.id];
    if (t && typeof t.reply_count === "number" && (!kept || t.reply_count >= kept.reply_count)) {
      best[m.id] = t;
      kept = t;
    }
    return kept || null;
  }
  var repliesText = SC.threadText.replies;
  function renderWhen(el) {
    var text = SC.threadText.lastReply(el.dataset.at);
    if (el.textContent !== text) { el.textContent = text; }
  }

  // The line under a root (a button opening its thread), or under a reply also sent to the
  // conversation (a link to its thread). Null for anything else.
  function summary(m) {
    if (!m || !isId(m.id) || m.kind === "system" || m.ephemeral) { return null; }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "thread-summary";
    if (isId(m.thread_id)) {
      button.classList.add("thread-summary-reply");
      button.dataset.threadId = m.thread_id;
      button.dataset.focusKey = "thread";
      button.textContent = "Replied in a thread";
      button.title = "Open the thread";
      button.addEventListener("click", function () { open(m.thread_id, button); });
      return button;
    }
    var t = summaryOf(m);
    if (!t || !(t.reply_count > 0)) { return null; }
    button.dataset.threadId = m.id;
    button.dataset.focusKey = "thread";
    var faces = document.createElement("span");
    faces.className = "thread-summary-faces";
    (Array.isArray(t.participants) ? t.participants : []).slice(0, 5).forEach(function (uid) {
      if (typeof uid === "number") { faces.appendChild(SC.avatar(uid, nameOf(uid), "avatar-xs")); }
    });
    var count = document.createElement("span");
    count.className = "thread-summary-count";
    count.textContent = repliesText(t.reply_count);
    var when = document.createElement("span");
    when.className = "thread-summary-when";
    when.dataset.at = typeof t.last_reply_at === "string" ? t.last_reply_at : "";
    renderWhen(when);
    var dot = document.createElement("span");
    dot.setAttribute("aria-hidden", "true");
    dot.textContent = " · ";
    var tail = document.createElement("span");
    tail.className = "thread-summary-tail";
    tail.appendChild(dot);
    tail.appendChild(when);
    if (faces.childNodes.length) { button.appendChild(faces); }
    button.appendChild(count);
    if (when.textContent) { button.appendChild(tail); }
    button.title = "Open the thread";
    button.addEventListener("click", function () { open(m.id, button); });
    return button;
  }
  // "5 min ago" ages: keep it true.
  setInterval(function () {
    document.querySelectorAll(".thread-summary-when[data-at]").forEach(renderWhen);
  }, 30000);

  // ---- the panel: opening and closing ---------------------------------------------------------
  var phone = window.matchMedia("(max-width: 767.98px)");
  var state = null;  // the open thread: {rootId, opener, rows, newest, oldest, hasMore, ...}
  var madeInert = [];

  // At phone width the panel covers the page: a modal dialog, the rest of the page inert.
  function applyMode() {
    madeInert.forEach(function (el) { el.inert = false; });
    madeInert = [];
    var modal = !!state && phone.matches;
    if (modal) {
      panel.setAttribute("role", "dialog");
      panel.setAttribute("aria-modal", "true");
      for (var el = panel; el && el !== document.body; el = el.parentElement) {
        Array.prototype.forEach.call(el.parentElement.children, function (sibling) {
          if (sibling !== el && !sibling.inert && sibling.tagName !== "SCRIPT") {
            sibling.inert = true;
            madeInert.push(sibling);
          }
        });
      }
    } else {
      panel.removeAttribute("role");
      panel.removeAttribute("aria-modal");
    }
  }
  phone.addEventListener("change", applyMode);

  function setUrl(rootId) {
    var url = new URL(window.location.href);
    if (rootId) { url.searchParams.set("thread", rootId); } else { url.searchParams.delete("thread"); }
    window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
  }

  function setStatus(text, kind) {
    statusBox.textContent = text || "";
    statusBox.className = "small mb-1" + (kind ? " text-" + kind : "");
  }

  function open(rootId, opener) {
    if (!isId(rootId)) { return; }
    if (state && state.rootId === rootId) { input.focus(); return; }
    var keptOpener = state ? state.opener : null;
    if (state) { close(false); }
    state = {
      rootId: rootId, opener: opener || keptOpener || document.activeElement, rows: new Map(),
      newest: null, oldest: null, hasMore: false, loaded: false, readSent: null, readTimer: null,
      outbox: [], sending: false
    };
    rootBox.replaceChildren();
    replies.replaceChildren();
    countBox.textContent = "";
    olderButton.classList.add("d-none");
    setStatus("Opening the thread…", "muted");
    input.value = "";
    also.checked = false;
    panel.classList.remove("d-none");
    layout.classList.add("thread-open");
    applyMode();
    setUrl(rootId);
    showFollowing();
    restoreDraft(state);
    if (socket.connected) { load(null); }
    input.focus();
  }

  function close(refocus) {
    if (!state) { return; }
    saveDraftNow(false);
    var was = state;
    clearTimeout(was.readTimer);
    state = null;
    panel.classList.add("d-none");
    layout.classList.remove("thread-open");
    applyMode();
    setUrl(null);
    if (!refocus) { return; }
    var back = was.opener;
    if (!back || !document.contains(back) || back.closest("#thread-panel")) {
      // The root was redrawn meanwhile (its summary changed): the same control in it.
      var key = back && back.dataset && back.dataset.focusKey;
      var row = document.querySelector('#messages .message[data-id="' + was.rootId + '"]');
      back = row && ((key && row.querySelector('[data-focus-key="' + CSS.escape(key) + '"]')) ||
                     row.querySelector(".thread-summary") || row.querySelector(".message-actions-toggle"));
    }
    (back || document.getElementById("message-input")).focus();
  }
  closeButton.addEventListener("click", function () { close(true); });
  panel.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !e.defaultPrevented && !e.target.closest(".reaction-picker")) {
      e.preventDefault();
      close(true);
    }
  });

  // ---- reading the thread ------------------------------------------------------------------
  function load(after) {
    var asked = state;
    var payload = { conversation_id: conversationId, thread_id: asked.rootId };
    if (after) { payload.after = after; }
    socket.timeout(10000).emit("thread", payload, function (err, ack) {
      if (state !== asked) { return; }
      if (err || !ack || !ack.ok) {
        var why = err ? "no answer" : (ack && ack.error) || "no answer";
        setStatus(why === "invalid" ? "That thread is not here." : "Could not open the thread (" + why + ").", "danger");
        return;
      }
      if (!asked.loaded) { setStatus(""); }
      asked.loaded = true;
      showRoot(ack.root);
      var list = Array.isArray(ack.messages) ? ack.messages : [];
      addReplies(list, { stick: !after });
      if (!after) { asked.hasMore = !!ack.has_more; showOlder(); }
      if (after && ack.has_more && list.length) { load(list[list.length - 1].id); return; }
      flush();
    });
  }
  SC.onConnect(function () {
    if (state) { load(state.newest ? SC.catchUpFrom(state.newest) : null); }
  });
  socket.on("resync", function () { if (state && state.loaded) { load(SC.catchUpFrom(state.newest)); } });

  function showOlder() {
    olderButton.classList.toggle("d-none", !(state && state.hasMore && state.oldest));
  }
  olderButton.addEventListener("click", function () {
    var asked = state;
    if (!asked || !asked.oldest) { return; }
    var hadFocus = document.activeElement === olderButton;
    olderButton.disabled = true;
    var url = panel.dataset.threadUrl.replace("ROOT", encodeURIComponent(asked.rootId)) +
      "?limit=50&before=" + encodeURIComponent(asked.oldest);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (state !== asked) { return; }
        if (!data.ok) { throw new Error(data.error || "failed"); }
        var height = scroller.scrollHeight;
        var top = scroller.scrollTop;
        addReplies(data.messages || [], { quiet: true });
        scroller.scrollTop = top + (scroller.scrollHeight - height);
        asked.hasMore = !!data.has_more;
        showOlder();
        if (hadFocus) { (asked.hasMore ? olderButton : replies).focus(); }  // not lost to the page
      })
      .catch(function () { setStatus("Could not load earlier replies.", "danger"); })
      .finally(function () {
        olderButton.disabled = false;
        if (hadFocus && state === asked && asked.hasMore) { olderButton.focus(); }
      });
  });

  // ---- drawing messages (message_parts.js does the message itself) ---------------------------
  function deletedText(m) {
    if (typeof m.deleted_by === "number" && m.deleted_by !== m.sender) { return "This message was deleted by a moderator"; }
    return "This message was deleted";
  }
  function react(id, emoji, on) {
    socket.emit("react", { conversation_id: conversationId, message_id: id, emoji: emoji, on: on }, function (ack) {
      if (ack && ack.ok && ack.message) { takeUpdate(ack.message); }
      else if (ack && !ack.ok) { setStatus("That reaction could not be saved.", "danger"); }
    });
  }
  function buildRow(m, extraClass) {
    var mine = m.sender === myId;
    var row = document.createElement("div");
    row.className = "message " + (mine ? "message-mine" : "message-theirs") +
      (m.deleted ? " message-deleted" : "") + (extraClass ? " " + extraClass : "");
    row.dataset.id = m.id;
    if (!mine) { row.appendChild(SC.avatar(m.sender, m.sender_name || nameOf(m.sender), "message-avatar")); }
    var bubble = document.createElement("div");
    bubble.className = "message-bubble";
    if (!mine) {
      var who = document.createElement("div");
      who.className = "message-sender";
      who.textContent = m.sender_name || nameOf(m.sender);
      bubble.appendChild(who);
    }
    P.content(m, myId, deletedText(m)).forEach(function (el) { bubble.appendChild(el); });
    var meta = document.createElement("div");
    meta.className = "message-meta";
    var edited = P.editedMark(m);
    if (edited) { meta.appendChild(edited); }
    if (m.also_to_conversation) {
      var shared = document.createElement("span");
      shared.className = "message-edited";
      shared.textContent = "also sent to the conversation";
      meta.appendChild(shared);
    }
    var when = SC.parseUtc(m.timestamp);
    if (!isNaN(when)) { P.timeElement("message-time", when).forEach(function (el) { meta.appendChild(el); }); }
    bubble.appendChild(meta);
    var reactions = !m.deleted && P.reactionsBar(m, myId, names(), function (emoji, on) { react(m.id, emoji, on); });
    if (reactions) { bubble.appendChild(reactions); }
    row.appendChild(bubble);
    return row;
  }

  function showRoot(root) {
    if (!root || root.id !== state.rootId) { return; }
    summaryOf(root);
    var t = best[root.id];
    rootBox.replaceChildren(buildRow(root, "thread-root-message"));
    var n = t && t.reply_count > 0 ? t.reply_count : 0;
    countBox.textContent = n ? repliesText(n) : "No replies yet";
  }

  function atBottom() { return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40; }

  // Replies go in id order; ones shown already are redrawn.
  function addReplies(list, opts) {
    opts = opts || {};
    var stick = opts.stick || atBottom();
    if (opts.quiet) { replies.setAttribute("aria-live", "off"); }
    list.forEach(function (m) {
      if (!m || !isId(m.id) || m.thread_id !== state.rootId) { return; }
      settle(m);
      var el = buildRow(m);
      var old = state.rows.get(m.id);
      state.rows.set(m.id, el);
      if (old) { old.replaceWith(el); return; }
      var after = Array.prototype.find.call(replies.querySelectorAll(".message[data-id]"),
                                            function (row) { return row.dataset.id > m.id; });
      replies.insertBefore(el, after || replies.querySelector(".message.pending"));
      if (SC.newer(m.id, state.newest)) { state.newest = m.id; }
      if (!state.oldest || m.id < state.oldest) { state.oldest = m.id; }
    });
    if (opts.quiet) { setTimeout(function () { replies.setAttribute("aria-live", "polite"); }, 0); }
    if (stick) { scroller.scrollTop = scroller.scrollHeight; }
    markRead();
  }

  // ---- reading: thread_read as replies are seen (at most once a second) -----------------------
  function markRead() {
    if (!state || state.readTimer) { return; }
    state.readTimer = setTimeout(sendRead, 300);
  }
  function sendRead() {
    var asked = state;
    if (!asked) { return; }
    asked.readTimer = null;
    var id = asked.newest;
    if (!id || document.hidden || !socket.connected || !atBottom() || !SC.newer(id, asked.readSent)) { return; }
    // A marker without following would keep a root's author from following it on the first
    // reply (the server takes such a row for "stopped following"): read once followed.
    if (!SC.threadCounts || SC.threadCounts.following(conversationId, asked.rootId) !== true) { return; }
    asked.readSent = id;
    socket.emit("thread_read", { conversation_id: conversationId, thread_id: asked.rootId, message_id: id }, function (ack) {
      if (!ack || !ack.ok) { if (state === asked) { asked.readSent = null; } return; }
      if (SC.threadCounts) { SC.threadCounts.read(conversationId, asked.rootId); }
    });
    asked.readTimer = setTimeout(function () { asked.readTimer = null; }, 1000);
  }
  scroller.addEventListener("scroll", function () { if (atBottom()) { markRead(); } });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { markRead(); } });

  // Whether the person is looking at this thread's newest replies now (they are not unread).
  function reading(cid, rootId) {
    return !!state && cid === conversationId && state.rootId === rootId && !document.hidden && atBottom();
  }

  // ---- live --------------------------------------------------------------------------------
  socket.on("message", function (m) {
    if (!state || !m || m.conversation_id !== conversationId || m.thread_id !== state.rootId) { return; }
    addReplies([m]);
  });
  function takeUpdate(m) {
    if (!m || m.conversation_id !== conversationId) { return; }
    if (!isId(m.thread_id)) { summaryOf(m); }
    if (!state) { return; }
    if (m.id === state.rootId) { showRoot(m); } else if (state.rows.has(m.id)) { addReplies([m]); }
  }
  socket.on("message_updated", takeUpdate);

  // ---- following ---------------------------------------------------------------------------
  function showFollowing() {
    var following = state && SC.threadCounts ? SC.threadCounts.following(conversationId, state.rootId) : null;
    followButton.disabled = following === null;
    followButton.setAttribute("aria-pressed", following ? "true" : "false");
    followButton.textContent = following ? "Following" : "Follow";
    followButton.classList.toggle("active", !!following);
  }
  document.addEventListener("simplechat:threads", function () { showFollowing(); markRead(); });
  followButton.addEventListener("click", function () {
    var asked = state;
    if (!asked || !SC.threadCounts) { return; }
    var on = !SC.threadCounts.following(conversationId, asked.rootId);
    followButton.disabled = true;
    socket.timeout(10000).emit("follow_thread", { conversation_id: conversationId, thread_id: asked.rootId, on: on }, function (err, ack) {
      followButton.disabled = false;
      if (err || !ack || !ack.ok) { setStatus("Could not change following; try again.", "danger"); return; }
      SC.threadCounts.setFollowing(conversationId, asked.rootId, !!ack.following);
      setStatus(ack.following ? "Following: new replies count as unread." : "Not following: new replies do not count as unread.", "muted");
    });
  });

  // ---- the panel's composer ------------------------------------------------------------------
  var clientPrefix = Math.random().toString(36).slice(2, 10);
  var clientSeq = 0;
  function pendingRow(item) {
    var row = document.createElement("div");
    row.className = "message message-mine pending";
    row.dataset.clientId = item.clientId;
    var bubble = document.createElement("div");
    bubble.className = "message-bubble";
    var body = document.createElement("div");
    body.className = "message-text";
    body.textContent = item.text;
    var meta = document.createElement("div");
    meta.className = "message-meta message-state";
    meta.textContent = "Sending…";
    bubble.appendChild(body);
    bubble.appendChild(meta);
    row.appendChild(bubble);
    return row;
  }
  function settle(m) {
    if (m.sender !== myId || typeof m.client_id !== "string") { return; }
    state.outbox = state.outbox.filter(function (item) {
      if (item.clientId !== m.client_id) { return true; }
      item.el.remove();
      return false;
    });
  }
  var REFUSED = { empty: "Empty messages are not sent.", too_long: "That reply is too long.",
    forbidden: "You cannot post in this conversation.", invalid: "That reply could not be sent.",
    archived: "This conversation is archived: nobody can write in it.",
    unavailable: "The server could not take the reply." };
  function flush() {
    var asked = state;
    if (!asked || asked.sending || !asked.outbox.length || !socket.connected || !asked.loaded) { return; }
    var item = asked.outbox[0];
    asked.sending = true;
    var payload = { conversation_id: conversationId, message: item.text, client_id: item.clientId,
                    thread_id: asked.rootId, also_to_conversation: item.also };
    socket.timeout(10000).emit("send_message", payload, function (err, ack) {
      asked.sending = false;
      if (state !== asked) { return; }
      if (err) { setTimeout(flush, 1000); return; }  // the same client_id: stored once
      if (ack && ack.ok && ack.message) {
        addReplies([ack.message], { stick: true });
        if (SC.threadCounts) { SC.threadCounts.setFollowing(conversationId, asked.rootId, true); }
        setStatus("");
      } else if (ack && (ack.error === "rate_limited" || ack.error === "unavailable") && ++item.tries <= 10) {
        setStatus("Sending in a moment…", "muted");
        setTimeout(flush, Math.max(500, (Number(ack.retry_after) || 1) * 1000));
        return;
      } else {
        var at = asked.outbox.indexOf(item);
        if (at !== -1) { asked.outbox.splice(at, 1); }
        item.el.remove();
        if (!input.value) { input.value = item.text; }
        setStatus(REFUSED[ack && ack.error] || "That reply could not be sent.", "danger");
      }
      flush();
    });
  }
  function submit() {
    if (!state) { return; }
    var text = input.value;
    if (!text.trim()) { return; }
    if (text.length > maxLength) { setStatus("That reply is too long.", "danger"); return; }
    clientSeq += 1;
    var item = { text: text, clientId: clientPrefix + "-t" + Date.now() + "-" + clientSeq, also: also.checked, tries: 0 };
    item.el = pendingRow(item);
    state.outbox.push(item);
    replies.appendChild(item.el);
    scroller.scrollTop = scroller.scrollHeight;
    input.value = "";
    also.checked = false;
    clearTimeout(draftTimer);  // the server deletes the draft once the reply is stored
    savedText[state.rootId] = "";
    flush();
  }
  form.addEventListener("submit", function (e) { e.preventDefault(); submit(); input.focus(); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });

  // Opened by a link (the threads view): /chat/<id>?thread=<root id>.
  // ---- the thread's draft, kept on the server (PUT .../draft with thread_id) -----------------
  // Saved a moment after typing stops and when the page goes away, restored on opening the
  // thread and from `draft` events of the user's other pages and devices; sending clears it.
  var SAVE_AFTER_MS = 700;
  var draftTimer = null;
  var savedText = {};  // root id -> the text the server holds
  function putDraft(rootId, text, keepalive) {
    savedText[rootId] = text;
    return fetch(panel.dataset.draftUrl, {
      method: "PUT", credentials: "same-origin", keepalive: !!keepalive,
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": SC.csrfToken() },
      body: JSON.stringify({ message: text, thread_id: rootId })
    }).catch(function () { delete savedText[rootId]; });
  }
  function saveDraftNow(keepalive) {
    clearTimeout(draftTimer);
    draftTimer = null;
    if (!state || input.value === (savedText[state.rootId] || "")) { return; }
    if (!input.value.trim() && !savedText[state.rootId]) { return; }
    putDraft(state.rootId, input.value.trim() ? input.value : "", keepalive);
  }
  input.addEventListener("input", function () {
    clearTimeout(draftTimer);
    draftTimer = setTimeout(function () { saveDraftNow(false); }, SAVE_AFTER_MS);
  });
  window.addEventListener("pagehide", function () { saveDraftNow(true); });
  document.addEventListener("visibilitychange", function () { if (document.hidden) { saveDraftNow(true); } });
  function restoreDraft(asked) {
    fetch(panel.dataset.draftsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (state !== asked || !data || !Array.isArray(data.drafts)) { return; }
        var found = data.drafts.filter(function (d) {
          return d && d.conversation_id === conversationId && d.thread_id === asked.rootId && typeof d.message === "string";
        })[0];
        if (found && !input.value) { input.value = found.message; savedText[asked.rootId] = found.message; }
      })
      .catch(function () { /* no draft shown: typing still works */ });
  }
  socket.on("draft", function (d) {
    if (!state || !d || d.conversation_id !== conversationId || d.thread_id !== state.rootId ||
        typeof d.message !== "string") { return; }
    savedText[state.rootId] = d.message;
    if (document.activeElement !== input || !input.value) { input.value = d.message; }
  });

  // After the page's other scripts (chat.js focuses its composer last).
  document.addEventListener("DOMContentLoaded", function () {
    var wanted = new URLSearchParams(window.location.search).get("thread");
    if (isId(wanted)) { open(wanted, null); }
  });

  SC.threads = { summary: summary, open: open, close: close, reading: reading };
})();
