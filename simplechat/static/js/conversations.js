/* The conversation list (its own page and the chat page's left pane): local times, and live
 * previews, ordering and unread counts from the `conversation_activity` event. */
(function () {
  "use strict";

  function formatTimes(scope) {
    scope.querySelectorAll("time.utc-time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) { showTime(el, d); }
    });
  }

  function showTime(el, d) {
    var today = new Date();
    var sameDay = d.toDateString() === today.toDateString();
    el.textContent = sameDay
      ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : d.toLocaleDateString([], { day: "numeric", month: "short", year: d.getFullYear() === today.getFullYear() ? undefined : "numeric" });
    el.title = d.toLocaleString();
  }

  formatTimes(document);

  var list = document.getElementById("conversation-list");
  var SC = window.SimpleChat;
  if (!list || !SC || typeof io === "undefined") { return; }

  var me = SC.userId;
  var chatRoot = document.getElementById("chat");
  var openId = chatRoot ? parseInt(chatRoot.dataset.conversationId, 10) : null;
  var baseTitle = document.title;

  function items() { return list.querySelectorAll(".conversation-item"); }
  function itemFor(conversationId) {
    return list.querySelector('.conversation-item[data-conversation-id="' + conversationId + '"]');
  }
  function idOf(el) { return parseInt(el.dataset.conversationId, 10); }
  function onScreen(conversationId) { return conversationId === openId && !document.hidden; }

  function unreadOf(conversationId) {
    if (onScreen(conversationId)) { return 0; }
    var state = SC.readState(conversationId);
    return state ? state.count : 0;
  }

  function renderBadge(el) {
    var n = unreadOf(idOf(el));
    var badge = el.querySelector(".unread-count");
    var label = el.querySelector(".unread-label");
    badge.textContent = n > 99 ? "99+" : String(n);
    badge.classList.toggle("d-none", n === 0);
    label.textContent = n ? (n === 1 ? ", 1 unread message" : ", " + badge.textContent + " unread messages") : "";
    el.classList.toggle("has-unread", n > 0);
  }

  function renderTitle() {
    var total = 0;
    items().forEach(function (el) { total += unreadOf(idOf(el)); });
    document.title = total ? "(" + (total > 99 ? "99+" : total) + ") " + baseTitle : baseTitle;
  }

  function renderAll() {
    items().forEach(renderBadge);
    renderTitle();
  }

  // On load (and after a reconnect) the server's latest message may be newer than anything this
  // browser counted: count the unread ones from the recent history.
  function reconcile(el) {
    var conversationId = idOf(el);
    var lastId = el.dataset.lastId || null;
    var state = SC.readState(conversationId);
    if (!lastId || conversationId === openId) { return; }  // the chat page marks what it shows
    if (parseInt(el.dataset.lastSender, 10) === me) { SC.markSeen(conversationId, lastId); return; }
    if (state && (!SC.newer(lastId, state.upto) || !SC.newer(lastId, state.seen))) { return; }
    fetch(el.dataset.historyUrl + "?limit=100", {
      credentials: "same-origin", headers: { Accept: "application/json" }
    })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!data || !data.ok || !Array.isArray(data.messages)) { return; }
        var current = SC.readState(conversationId) || { seen: null, upto: null, count: 0 };
        var floor = current.seen;
        data.messages.forEach(function (m) {
          if (m.sender === me) { floor = SC.newest(floor, m.id); }  // I wrote after reading those
        });
        var count = 0;
        var upto = SC.newest(current.upto, lastId);
        data.messages.forEach(function (m) {
          upto = SC.newest(upto, m.id);
          if (m.sender !== me && SC.newer(m.id, floor)) { count += 1; }
        });
        SC.writeState(conversationId, { seen: floor, upto: upto, count: count });
      })
      .catch(function () { /* the badge stays as it was; the next event or reload corrects it */ });
  }

  function markActive() {
    items().forEach(function (el) {
      var active = idOf(el) === openId;
      el.classList.toggle("active", active);
      if (active) { el.setAttribute("aria-current", "page"); } else { el.removeAttribute("aria-current"); }
    });
  }

  // Fetch the list again (a conversation we have not heard of, or events missed while away).
  var refreshing = null;
  function refreshList() {
    if (refreshing) { return refreshing; }
    refreshing = fetch(list.dataset.listUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("conversation-list");
        if (!fresh) { return; }
        list.replaceChildren.apply(list, Array.prototype.slice.call(fresh.childNodes).map(function (n) {
          return document.adoptNode(n);
        }));
        formatTimes(list);
        markActive();
        items().forEach(reconcile);
        renderAll();
      })
      .catch(function () { /* keep the list we have */ })
      .finally(function () { refreshing = null; });
    return refreshing;
  }

  function onActivity(a, afterRefresh) {
    if (!a || typeof a.conversation_id !== "number" || typeof a.id !== "string") { return; }
    var el = itemFor(a.conversation_id);
    if (!el) {
      // A conversation new to this page: fetch the list, then apply the event to it (the
      // server renders the list from SQL, which may not hold this message yet).
      if (!afterRefresh) { refreshList().then(function () { onActivity(a, true); }); }
      return;
    }
    if (!SC.newer(el.dataset.lastId, a.id)) { showActivity(el, a); }
    if (a.sender === me || onScreen(a.conversation_id)) {
      SC.markSeen(a.conversation_id, a.id);
    } else {
      SC.countUnread(a.conversation_id, a.id);
    }
    renderBadge(el);
    renderTitle();
  }

  // The preview, time and place of a conversation after a new message.
  function showActivity(el, a) {
    el.dataset.lastId = a.id;
    el.dataset.lastSender = String(a.sender);
    var preview = el.querySelector(".conversation-preview");
    var who = a.sender === me ? "You: " : (el.dataset.isGroup === "true" && a.sender_name ? a.sender_name + ": " : "");
    preview.textContent = who + (a.preview || "");
    var time = el.querySelector(".conversation-time");
    var when = new Date(String(a.timestamp).replace(" ", "T") + "Z");
    if (time && !isNaN(when)) {
      time.setAttribute("datetime", when.toISOString());
      showTime(time, when);
    }
    if (list.firstElementChild !== el) { list.insertBefore(el, list.firstElementChild); }
  }

  document.addEventListener("simplechat:read-state", function (e) {
    var el = itemFor(e.detail.conversationId);
    if (el) { renderBadge(el); }
    renderTitle();
  });
  document.addEventListener("visibilitychange", renderAll);

  var socket = SC.socket();
  var connectedBefore = false;
  socket.on("connect", function () {
    if (connectedBefore) { refreshList(); }  // catch up on whatever happened while away
    connectedBefore = true;
  });
  socket.on("conversation_activity", function (a) { onActivity(a, false); });

  items().forEach(reconcile);
  renderAll();
})();
