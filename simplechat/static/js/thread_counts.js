/* The threads the user follows and their unread replies (GET /api/threads), kept live by
 * `message`, `thread_read` and `thread_followed`: the small badge on each conversation of the
 * list, the thread panel's Follow button, and the Threads view (SimpleChat.threadCounts; the
 * document hears `simplechat:threads` after every change); how threads are worded
 * (SimpleChat.threadText). */
(function () {
  "use strict";
  var SC = window.SimpleChat;
  if (!SC) { return; }

  // "3 replies", "last reply 5 min ago": worded the same under a root and in the Threads view.
  function repliesText(n) { return n === 1 ? "1 reply" : n + " replies"; }
  function lastReplyText(at) {
    var when = typeof at === "string" && at ? SC.parseUtc(at) : null;
    if (!when || isNaN(when)) { return ""; }
    var minutes = Math.floor((Date.now() - when.getTime()) / 60000);
    if (!(minutes >= 1)) { return "last reply just now"; }
    if (minutes < 60) { return "last reply " + minutes + " min ago"; }
    if (minutes < 24 * 60) { return "last reply " + Math.floor(minutes / 60) + " h ago"; }
    return "last reply " + SC.formatShortDate(when);
  }
  SC.threadText = { replies: repliesText, lastReply: lastReplyText };

  var holder = document.querySelector("[data-threads-url]");
  if (typeof io === "undefined" || !holder) { return; }
  var url = holder.dataset.threadsUrl;
  var socket = SC.socket();
  var me = SC.userId;
  var MAX_PAGES = 10;  // 2,000 followed threads
  var followed = null;  // "conversation:root" -> {conversation_id, thread_id, unread, unread_mentions}
  var loading = null;

  function key(cid, rootId) { return cid + ":" + rootId; }

  function load() {
    if (loading) { return loading; }
    var found = {};
    function page(before, n) {
      var asked = url + "?limit=200" + (before ? "&before=" + encodeURIComponent(before) : "");
      return fetch(asked, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          if (!data || !data.ok || !Array.isArray(data.threads)) { throw new Error("failed"); }
          data.threads.forEach(function (t) {
            if (typeof t.conversation_id !== "number" || typeof t.thread_id !== "string") { return; }
            found[key(t.conversation_id, t.thread_id)] = {
              conversation_id: t.conversation_id, thread_id: t.thread_id,
              unread: Number(t.unread) || 0, unread_mentions: Number(t.unread_mentions) || 0
            };
          });
          if (data.next_before && n < MAX_PAGES) { return page(data.next_before, n + 1); }
          return null;
        });
    }
    loading = page(null, 1)
      .then(function () { followed = found; changed(); })
      .catch(function () { /* keep what we have */ })
      .finally(function () { loading = null; });
    return loading;
  }

  // A reply is counted by the server once stored (a flush after it is sent): ask again a little
  // later, and once more, when a reply came in a thread not known to be followed.
  var reloads = [];
  function reloadSoon() {
    reloads.forEach(clearTimeout);
    reloads = [setTimeout(load, 1500), setTimeout(load, 5000)];
  }

  function changed() {
    renderList();
    document.dispatchEvent(new CustomEvent("simplechat:threads"));
  }

  // A conversation's unread replies in the threads followed there, and how many mention me.
  function unreadIn(cid) {
    var sum = { unread: 0, mentions: 0 };
    Object.keys(followed || {}).forEach(function (k) {
      if (followed[k].conversation_id === cid) {
        sum.unread += followed[k].unread;
        sum.mentions += followed[k].unread_mentions;
      }
    });
    return sum;
  }

  // ---- the conversation list's badges ---------------------------------------------------------
  var list = document.getElementById("conversation-list");
  function renderItem(el) {
    var badge = el.querySelector(".thread-unread");
    if (!badge) { return; }
    var sum = unreadIn(parseInt(el.dataset.conversationId, 10));
    var n = sum.unread;
    var count = badge.querySelector(".thread-unread-count");
    var text = n > 99 ? "99+" : String(n);
    if (count.textContent !== text) { count.textContent = text; }
    badge.classList.toggle("d-none", n === 0);
    badge.classList.toggle("thread-unread-mention", n > 0 && sum.mentions > 0);
    var label = el.querySelector(".thread-unread-label");
    if (label) {
      label.textContent = !n ? "" : (n === 1 ? ", 1 unread thread reply" : ", " + text + " unread thread replies") +
        (sum.mentions ? ", mentioning you" : "");
    }
  }
  function renderList() {
    if (list && followed) { list.querySelectorAll(".conversation-item").forEach(renderItem); }
  }
  // The list is redrawn from the server now and then: badge the new items too.
  if (list) { new MutationObserver(renderList).observe(list, { childList: true }); }

  // ---- live ------------------------------------------------------------------------------------
  socket.on("message", function (m) {
    if (!m || typeof m.thread_id !== "string" || typeof m.conversation_id !== "number" || !followed) { return; }
    var entry = followed[key(m.conversation_id, m.thread_id)];
    if (m.sender === me) {
      if (!entry) { followed[key(m.conversation_id, m.thread_id)] = { conversation_id: m.conversation_id, thread_id: m.thread_id, unread: 0, unread_mentions: 0 }; changed(); }
      return;
    }
    reloadSoon();  // the root's author or someone mentioned may follow it now; the stored counts
    if (!entry || (SC.threads && SC.threads.reading(m.conversation_id, m.thread_id))) { return; }
    entry.unread += 1;
    changed();
  });
  socket.on("thread_read", function (r) {
    if (!r || r.user_id !== me || !followed) { return; }
    read(r.conversation_id, r.thread_id);
  });
  socket.on("thread_followed", function (f) {
    if (!f || typeof f.conversation_id !== "number" || typeof f.thread_id !== "string") { return; }
    setFollowing(f.conversation_id, f.thread_id, !!f.following);
    if (f.following) { reloadSoon(); }  // its unread count
  });
  SC.onConnect(load);  // and again after every reconnect: what was missed meanwhile
  socket.on("resync", load);

  // ---- for the thread panel and the Threads view ------------------------------------------------
  // Read up to its newest reply: nothing unread there.
  function read(cid, rootId) {
    var entry = followed && followed[key(cid, rootId)];
    if (entry && (entry.unread || entry.unread_mentions)) {
      entry.unread = 0;
      entry.unread_mentions = 0;
      changed();
    }
  }
  // Whether the user follows the thread: null while not known yet.
  function following(cid, rootId) {
    return followed ? Object.prototype.hasOwnProperty.call(followed, key(cid, rootId)) : null;
  }
  function setFollowing(cid, rootId, on) {
    if (!followed) { return; }
    var k = key(cid, rootId);
    if (on && !followed[k]) {
      followed[k] = { conversation_id: cid, thread_id: rootId, unread: 0, unread_mentions: 0 };
    } else if (!on && followed[k]) {
      delete followed[k];
    } else {
      return;
    }
    changed();
  }

  SC.threadCounts = { following: following, setFollowing: setFollowing, read: read, reload: load };
})();
