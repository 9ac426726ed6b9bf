/* The conversation list (its own page and the chat page's left pane): local times, unread counts
 * from the server kept live by `message` and `read`, peers' presence, group
 * changes, browser notifications and the title-bar count. */
(function () {
  "use strict";

  function formatTimes(scope) {
    scope.querySelectorAll("time.utc-time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) { showTime(el, d); }
    });
  }

  // Today's messages by time ("8:21 PM"), older ones by date; the full date on hover and for
  // screen readers.
  function showTime(el, d) {
    var SC = window.SimpleChat;
    var sameDay = d.toDateString() === new Date().toDateString();
    el.textContent = sameDay ? SC.formatTime(d) : SC.formatShortDate(d);
    el.title = SC.formatFull(d);
    el.setAttribute("aria-hidden", "true");  // the full date beside it is what is read out
    var spoken = el.nextElementSibling;
    if (spoken && spoken.classList.contains("conversation-time-full")) {
      spoken.textContent = SC.formatFull(d);
    }
  }

  formatTimes(document);

  var list = document.getElementById("conversation-list");
  var SC = window.SimpleChat;
  if (!list || !SC || typeof io === "undefined") { return; }

  var me = SC.userId;
  var socket = SC.socket();
  var PREVIEW_LENGTH = 120;  // what the server puts in the list it renders
  var chatRoot = document.getElementById("chat");
  var openId = chatRoot ? parseInt(chatRoot.dataset.conversationId, 10) : null;
  var baseTitle = document.title;

  function items() { return list.querySelectorAll(".conversation-item"); }
  function itemFor(conversationId) {
    return list.querySelector('.conversation-item[data-conversation-id="' + conversationId + '"]');
  }
  function idOf(el) { return parseInt(el.dataset.conversationId, 10); }
  // The open conversation counts as read, unless I marked it unread while it is open.
  var openMarkedUnread = false;
  function onScreen(conversationId) { return conversationId === openId && !document.hidden && !openMarkedUnread; }

  function countOf(el) { return parseInt(el.dataset.unread, 10) || 0; }
  function isMuted(el) { return el.dataset.muted === "true"; }
  function setCount(el, n) { el.dataset.unread = String(Math.max(0, n)); }
  function unreadOf(el) { return onScreen(idOf(el)) ? 0 : countOf(el); }

  function renderBadge(el) {
    var n = unreadOf(el);
    var badge = el.querySelector(".unread-count");
    var label = el.querySelector(".unread-label");
    badge.textContent = n > 99 ? "99+" : String(n);
    badge.classList.toggle("d-none", n === 0);
    // A muted conversation still counts its messages, quietly.
    badge.classList.toggle("text-bg-danger", !isMuted(el));
    badge.classList.toggle("text-bg-secondary", isMuted(el));
    label.textContent = n ? (n === 1 ? ", 1 unread message" : ", " + badge.textContent + " unread messages") : "";
    el.classList.toggle("has-unread", n > 0);
    var icon = el.querySelector(".muted-icon");
    if (icon) { icon.classList.toggle("d-none", !isMuted(el)); }
    var mutedLabel = el.querySelector(".muted-label");
    if (mutedLabel) { mutedLabel.textContent = isMuted(el) ? ", muted" : ""; }
    renderMentions(el);
  }

  // Mentions of me since I last read the conversation: "@" (and how many, past one). Kept by
  // this page from `mention` events; reading the conversation clears them.
  function renderMentions(el) {
    var badge = el.querySelector(".mention-badge");
    var label = el.querySelector(".mention-label");
    if (!badge || !label) { return; }
    var n = onScreen(idOf(el)) ? 0 : parseInt(el.dataset.mentions, 10) || 0;
    badge.textContent = n > 1 ? "@" + (n > 99 ? "99+" : n) : "@";
    badge.classList.toggle("d-none", n === 0);
    label.textContent = n ? (n === 1 ? ", you were mentioned" : ", you were mentioned " + n + " times") : "";
    el.classList.toggle("has-mention", n > 0);
  }

  function renderTitle() {
    var total = 0;
    items().forEach(function (el) { if (!isMuted(el)) { total += unreadOf(el); } });
    document.title = total ? "(" + (total > 99 ? "99+" : total) + ") " + baseTitle : baseTitle;
  }

  // The peer's dot says online; its tooltip and the hidden label say "last seen" too.
  // While our own connection is down, nobody's presence is known.
  function renderPresence(el) {
    var label = el.querySelector(".presence-label");
    var dot = el.querySelector(".presence-dot");
    if (!label || !dot) { return; }
    var connected = socket.connected;
    var status = connected
      ? { online: label.dataset.online === "true", last_seen: label.dataset.lastSeen || null }
      : { unknown: true };
    var text = SC.presenceText(status);
    dot.classList.toggle("online", !!status.online);
    dot.classList.toggle("unknown", !connected);
    dot.title = text;
    label.textContent = ", " + text.charAt(0).toLowerCase() + text.slice(1);
  }

  function renderAll() {
    items().forEach(function (el) { renderBadge(el); renderPresence(el); });
    renderTitle();
  }

  function markActive() {
    items().forEach(function (el) {
      var active = idOf(el) === openId;
      el.classList.toggle("active", active);
      if (active) { el.setAttribute("aria-current", "page"); } else { el.removeAttribute("aria-current"); }
    });
  }

  // A page of the list from the server (the first, or the one after `before`): its counts,
  // previews and presence after missed events, or more conversations.
  function fetchList(before) {
    var url = list.dataset.pageUrl + (before ? "?before=" + encodeURIComponent(before) : "");
    return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
      .then(function (html) {
        return new DOMParser().parseFromString(html, "text/html").getElementById("conversation-list");
      });
  }
  function adopt(nodes) {
    return Array.prototype.slice.call(nodes).map(function (n) { return document.adoptNode(n); });
  }
  var loadedMore = false;  // the list holds more than the server's first page
  var refreshing = null;
  function refreshList() {
    if (refreshing) { return refreshing; }
    refreshing = fetchList()
      .then(function (fresh) {
        if (!fresh) { return; }
        // The server counts mentions from SQL, which can trail the live `mention` events by a
        // write: keep the larger count (reading the conversation clears both).
        var mentions = {};
        items().forEach(function (el) { mentions[idOf(el)] = parseInt(el.dataset.mentions, 10) || 0; });
        var firstPage = {};
        fresh.querySelectorAll(".conversation-item").forEach(function (el) {
          var kept = mentions[idOf(el)] || 0;
          if (kept > (parseInt(el.dataset.mentions, 10) || 0)) { el.dataset.mentions = String(kept); }
          firstPage[idOf(el)] = true;
        });
        var nodes = adopt(fresh.childNodes);
        if (loadedMore) {
          // Keep what later pages brought (the conversations the first page does not hold,
          // after it) and the place they reached.
          nodes = nodes.filter(function (n) {
            return !(n.classList && (n.classList.contains("conversation-more") || n.id === "no-conversations"));
          }).concat(Array.prototype.filter.call(list.children, function (el) {
            return el.classList.contains("conversation-more") ||
              (el.classList.contains("conversation-item") && !firstPage[idOf(el)]);
          }));
        }
        list.replaceChildren.apply(list, nodes);
        formatTimes(list);
        markActive();
        renderAll();
        watchMore();
      })
      .catch(function () { /* keep the list we have */ })
      .finally(function () { refreshing = null; });
    return refreshing;
  }

  // ---- more of the list: the button at its end, pressed or scrolled to ---------------------
  var MORE_TEXT = "Show more conversations";
  var loadingMore = null;
  function loadMore() {
    var button = list.querySelector(".conversation-more");
    if (!button || loadingMore) { return; }
    var hadFocus = document.activeElement === button;
    button.setAttribute("aria-busy", "true");
    button.textContent = "Loading more conversations…";
    loadingMore = fetchList(button.dataset.before)
      .then(function (more) {
        if (!more) { throw new Error("no list"); }
        var first = null;
        adopt(more.querySelectorAll(".conversation-item")).forEach(function (el) {
          if (itemFor(idOf(el))) { return; }  // moved up since: the list has it already
          list.insertBefore(el, button);
          first = first || el;
        });
        loadedMore = true;
        var next = more.querySelector(".conversation-more");
        if (next) { button.dataset.before = next.dataset.before; } else { button.remove(); }
        if (hadFocus && first) { first.focus(); }  // on to what was asked for
        formatTimes(list);
        markActive();
        renderAll();
        watchMore();
      })
      .catch(function () { /* the button stays: pressing it tries again */ })
      .finally(function () {
        loadingMore = null;
        button.removeAttribute("aria-busy");
        button.textContent = MORE_TEXT;
      });
  }
  list.addEventListener("click", function (e) {
    if (e.target.closest && e.target.closest(".conversation-more")) { loadMore(); }
  });
  // Scrolling near the end of the list loads the next page (once the last one came in: a
  // failed load waits for the button).
  var moreObserver = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) { if (entry.isIntersecting) { loadMore(); } });
  }, { rootMargin: "200px 0px" }) : null;
  function watchMore() {
    if (!moreObserver) { return; }
    moreObserver.disconnect();
    var button = list.querySelector(".conversation-more");
    if (button) { moreObserver.observe(button); }
  }

  function onActivity(a, refreshes) {
    if (!a || typeof a.conversation_id !== "number" || typeof a.id !== "string") { return; }
    var el = itemFor(a.conversation_id);
    if (!el) {
      // A conversation new to this page: the server's list has it (and its count).
      // The server's list may not hold this message yet (SQL is written just after): apply it.
      // A refresh already under way may predate the conversation: then fetch once more.
      refreshes = refreshes || 0;
      if (refreshes < 3) {
        refreshList().then(function () { onActivity(a, refreshes + 1); });
      }
      return;
    }
    // The server's count holds the messages up to data-counted-upto, which can be older than
    // its last message (read in another statement, after this one was written): count from it.
    if (SC.newer(a.id, el.dataset.countedUpto) && a.sender !== me && a.kind !== "system" &&
        !onScreen(a.conversation_id)) {
      setCount(el, countOf(el) + 1);  // a system line is the timeline's, not an unread message
    }
    if (SC.newer(a.id, el.dataset.lastId)) {
      showActivity(el, a);
      notify(a);
    }
    renderBadge(el);
    renderTitle();
  }

  // The preview, time and place of a conversation after a new message.
  function showActivity(el, a) {
    el.dataset.lastId = a.id;
    el.dataset.lastSender = String(a.sender);
    var preview = el.querySelector(".conversation-preview");
    // A system line ("Cyd Charisse left the group") names its people itself.
    var who = a.kind === "system" ? "" : a.sender === me ? "You: " :
      (el.dataset.isGroup === "true" && a.sender_name ? a.sender_name + ": " : "");
    preview.textContent = who + (a.preview || "");
    var time = el.querySelector(".conversation-time");
    var when = SC.parseUtc(a.timestamp);
    if (time && !isNaN(when)) {
      time.setAttribute("datetime", when.toISOString());
      showTime(time, when);
    }
    if (list.firstElementChild !== el) { list.insertBefore(el, list.firstElementChild); }
  }

  // I read a conversation (here or on another device): up to its newest message means none left.
  function onRead(r) {
    if (!r || r.user_id !== me || typeof r.message_id !== "string") { return; }
    var el = itemFor(r.conversation_id);
    if (!el) { return; }
    if (r.conversation_id === openId) { openMarkedUnread = false; }
    if (SC.newer(el.dataset.lastId, r.message_id)) { refreshList(); return; }
    if (SC.newer(r.message_id, el.dataset.countedUpto)) { el.dataset.countedUpto = r.message_id; }
    setCount(el, 0);
    el.dataset.mentions = "0";
    renderBadge(el);
    renderTitle();
  }

  function onConversationUpdated(state) {
    if (!state || typeof state.conversation_id !== "number") { return; }
    var el = itemFor(state.conversation_id);
    if (!el) { refreshList(); return; }
    if (state.title) {
      el.querySelector(".conversation-name").textContent = state.title;
      if (state.conversation_id === openId) { baseTitle = state.title + " · Simple Chat"; renderTitle(); }
    }
  }

  function onConversationLeft(data) {
    var el = data && itemFor(data.conversation_id);
    if (el) { el.remove(); renderTitle(); }
  }

  // ---- browser notifications ---------------------------------------------------------------
  var canNotify = "Notification" in window;
  var notifyButton = document.getElementById("enable-notifications");
  function renderNotifyButton() {
    if (notifyButton) {
      notifyButton.classList.toggle("d-none", !canNotify || Notification.permission !== "default");
    }
  }
  if (notifyButton) {
    notifyButton.addEventListener("click", function () {
      Notification.requestPermission().then(renderNotifyButton, renderNotifyButton);
    });
  }
  renderNotifyButton();

  function notify(a) {
    if (!canNotify || Notification.permission !== "granted" || !document.hidden || a.sender === me) { return; }
    // A message mentioning me raises one notification: notifyMention's (the `mention` event).
    if (Array.isArray(a.mentions) && a.mentions.indexOf(me) !== -1) { return; }
    var el = itemFor(a.conversation_id);
    if (el && isMuted(el)) { return; }  // a mention of me in it still notifies (notifyMention)
    var title = el ? el.querySelector(".conversation-name").textContent : (a.sender_name || "Simple Chat");
    var body = (el && el.dataset.isGroup === "true" && a.sender_name ? a.sender_name + ": " : "") + (a.preview || "");
    try {
      var n = new Notification(title, { body: body, tag: "conversation-" + a.conversation_id });
      n.onclick = function () {
        window.focus();
        if (a.conversation_id !== openId) { window.location.href = el ? el.href : list.dataset.listUrl; }
        n.close();
      };
    } catch (e) { /* some browsers allow notifications only from a service worker */ }
  }

  function notifyMention(conversationId, m) {
    if (!canNotify || Notification.permission !== "granted" || onScreen(conversationId)) { return; }
    var el = itemFor(conversationId);
    var where = el ? el.querySelector(".conversation-name").textContent : "";
    var title = (m.sender_name || "Someone") + " mentioned you" + (where && el.dataset.isGroup === "true" ? " in " + where : "");
    try {
      var n = new Notification(title, { body: String(m.message || "").slice(0, PREVIEW_LENGTH),
                                        tag: "conversation-" + conversationId });
      n.onclick = function () {
        window.focus();
        if (conversationId !== openId) { window.location.href = el ? el.href : list.dataset.listUrl; }
        n.close();
      };
    } catch (e) { /* some browsers allow notifications only from a service worker */ }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { renderAll(); return; }
    var el = openId && itemFor(openId);
    if (el && !openMarkedUnread) { setCount(el, 0); el.dataset.mentions = "0"; }  // the chat page marks what is on screen as read
    renderAll();
  });

  // Presence that changed after the server rendered this page and before the socket first
  // connected (and joined our personal room) reached nobody here: take the peers' presence
  // from the server's list once, but not over a `presence` event that came in since asking.
  var presenceEvents = 0;
  var presenceEventOf = {};  // user id -> the number of the last `presence` event about them
  function refreshPresence() {
    var asked = presenceEvents;
    fetchList()
      .then(function (fresh) {
        if (!fresh) { return; }
        fresh.querySelectorAll(".presence-label[data-user-id]").forEach(function (given) {
          var uid = given.dataset.userId;
          if ((presenceEventOf[uid] || 0) > asked) { return; }
          list.querySelectorAll('.presence-label[data-user-id="' + uid + '"]').forEach(function (label) {
            label.dataset.online = given.dataset.online || "false";
            label.dataset.lastSeen = given.dataset.lastSeen || "";
          });
        });
        renderAll();
      })
      .catch(function () { /* the next refresh brings it */ });
  }

  var connectedBefore = false;
  SC.onConnect(function () {
    if (connectedBefore) { refreshList(); } else { refreshPresence(); }  // catch up
    connectedBefore = true;
    renderAll();
  });
  socket.on("disconnect", renderAll);
  socket.on("resync", refreshList);  // live events were missed: the list from the server again
  // A peer came or went: the server tells the personal rooms of the people one has a direct
  // conversation with (and the conversations' rooms, which the chat page's header reads).
  socket.on("presence", function (p) {
    if (!p || typeof p.user_id !== "number") { return; }
    presenceEventOf[p.user_id] = ++presenceEvents;
    list.querySelectorAll('.presence-label[data-user-id="' + p.user_id + '"]').forEach(function (label) {
      label.dataset.online = p.online ? "true" : "false";
      label.dataset.lastSeen = p.last_seen || "";
      renderPresence(label.closest(".conversation-item"));
    });
  });
  // Every new message of every conversation of ours reaches this socket once, as `message`
  // (through our personal room): the list takes its preview, time and unread count from it.
  socket.on("message", function (m) {
    if (!m || typeof m.message !== "string") { return; }
    if (m.thread_id && !m.also_to_conversation) { return; }  // its thread's (thread_counts.js)
    onActivity({
      conversation_id: m.conversation_id, id: m.id, sender: m.sender,
      sender_name: m.sender_name, preview: (m.message || filesPreview(m.attachments)).slice(0, PREVIEW_LENGTH),
      timestamp: m.timestamp, kind: m.kind, mentions: m.mentions
    }, 0);
  });
  // Someone mentioned me: a badge on the conversation, and a notification whenever the
  // conversation is not on screen (mentions are worth one even where messages are not).
  socket.on("mention", function (data) {
    var m = data && data.message;
    if (!m || typeof data.conversation_id !== "number" || m.sender === me) { return; }
    var el = itemFor(data.conversation_id);
    var inThread = m.thread_id && !m.also_to_conversation;  // counted for its thread, not here
    if (el && !inThread && !onScreen(data.conversation_id)) {
      el.dataset.mentions = String((parseInt(el.dataset.mentions, 10) || 0) + 1);
      renderMentions(el);
    }
    notifyMention(data.conversation_id, m);
  });
  // A message of files only: their names stand in for its text.
  function filesPreview(files) {
    if (!Array.isArray(files) || !files.length) { return ""; }
    return (files.length === 1 ? "File: " : "Files: ") + files.map(function (f) { return f && f.name; }).filter(Boolean).join(", ");
  }
  // ---- muting -------------------------------------------------------------------------------
  // The chat page's Mute button (a toggle: aria-pressed) asks the server; every page and device
  // of mine hears of it as `conversation_muted`, this one included.
  function showMuted(conversationId, muted) {
    var el = itemFor(conversationId);
    if (el) { el.dataset.muted = muted ? "true" : "false"; renderBadge(el); renderTitle(); }
    var button = document.getElementById("mute-button");
    if (button && conversationId === openId) {
      button.setAttribute("aria-pressed", muted ? "true" : "false");
      button.classList.toggle("active", muted);
    }
  }
  var muteButton = document.getElementById("mute-button");
  if (muteButton && openId) {
    muteButton.classList.toggle("active", muteButton.getAttribute("aria-pressed") === "true");
    muteButton.addEventListener("click", function () {
      var wanted = muteButton.getAttribute("aria-pressed") !== "true";
      muteButton.disabled = true;
      fetch(muteButton.dataset.muteUrl, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json",
                   "X-CSRFToken": SC.csrfToken() },
        body: JSON.stringify({ muted: wanted })
      })
        .then(function (r) { return r.json().then(function (data) { return { ok: r.ok && data.ok, data: data }; }); })
        .then(function (answer) {
          if (!answer.ok) { throw new Error((answer.data && answer.data.error) || "failed"); }
          showMuted(openId, answer.data.muted);
        })
        .catch(function () {
          var status = document.getElementById("chat-status");
          if (status) { status.textContent = "Could not change muting; try again."; }
        })
        .finally(function () { muteButton.disabled = false; });
    });
  }
  socket.on("conversation_muted", function (d) {
    if (!d || typeof d.conversation_id !== "number" || typeof d.muted !== "boolean") { return; }
    showMuted(d.conversation_id, d.muted);
  });
  socket.on("read", onRead);
  // I marked a message unread (here or on another device): the server's new counts, which hold
  // every message up to now.
  socket.on("marked_unread", function (d) {
    if (!d || d.user_id !== me || typeof d.conversation_id !== "number" || typeof d.unread !== "number") { return; }
    var el = itemFor(d.conversation_id);
    if (!el) { refreshList(); return; }
    if (d.conversation_id === openId) { openMarkedUnread = true; }
    setCount(el, d.unread);
    el.dataset.mentions = String(Math.max(0, Number(d.unread_mentions) || 0));
    if (SC.newer(el.dataset.lastId, el.dataset.countedUpto)) { el.dataset.countedUpto = el.dataset.lastId; }
    renderBadge(el);
    renderTitle();
  });
  socket.on("conversation_updated", onConversationUpdated);
  socket.on("conversation_left", onConversationLeft);
  // Peers' presence and counts drift while the page stays open: refresh now and then, unless
  // someone is moving through the list with the keyboard.
  setInterval(function () {
    if (!document.hidden && !list.contains(document.activeElement)) { refreshList(); }
  }, 60000);

  if (openId) { var open = itemFor(openId); if (open) { setCount(open, 0); } }
  renderAll();
  watchMore();
})();
