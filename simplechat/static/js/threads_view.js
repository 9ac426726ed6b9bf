/* The Threads view (/chat/threads): the threads the user follows, newest reply first, with
 * their unread replies (GET /api/threads, `?unread=1` with "Unread only"); each opens its
 * conversation with the thread panel open. Redrawn when thread_counts.js hears of a change. */
(function () {
  "use strict";
  var SC = window.SimpleChat;
  var view = document.getElementById("threads-view");
  if (!SC || !SC.parts || !SC.threadText || !view) { return; }
  var P = SC.parts;
  var list = document.getElementById("threads-list");
  var statusBox = document.getElementById("threads-status");
  var unreadOnly = document.getElementById("threads-unread");
  var more = document.getElementById("threads-more");
  var titles = {};
  try { titles = JSON.parse(view.dataset.titles || "{}") || {}; } catch (e) { titles = {}; }
  var PREVIEW = 160;
  var nextBefore = null;
  var asking = 0;

  // The root as one line of plain text: drawn as the chat draws it, then read as text.
  function preview(root) {
    if (root.deleted) { return "This message was deleted"; }
    var box = document.createElement("div");
    P.renderBody(box, root, SC.userId);
    var text = box.textContent.replace(/\s+/g, " ").trim();
    if (!text && Array.isArray(root.attachments) && root.attachments.length) {
      text = "📎 " + root.attachments.map(function (a) { return a && a.name; }).filter(Boolean).join(", ");
    }
    return text.length > PREVIEW ? text.slice(0, PREVIEW - 1) + "…" : text;
  }

  function item(t) {
    var root = t.root || {};
    var li = document.createElement("li");
    li.className = "list-group-item p-0 thread-item";
    li.dataset.threadId = t.thread_id;
    var a = document.createElement("a");
    a.className = "list-group-item-action d-block px-3 py-2 thread-link";
    a.href = view.dataset.conversationUrl + encodeURIComponent(t.conversation_id) + "?thread=" + encodeURIComponent(t.thread_id);
    var top = document.createElement("div");
    top.className = "d-flex justify-content-between align-items-center gap-2";
    var where = document.createElement("span");
    where.className = "fw-semibold text-truncate thread-where";
    where.textContent = titles[String(t.conversation_id)] || "A conversation";
    top.appendChild(where);
    var badges = document.createElement("span");
    badges.className = "d-flex gap-1 flex-shrink-0";
    if (t.unread_mentions > 0) {
      var at = document.createElement("span");
      at.className = "badge rounded-pill mention-badge";
      at.textContent = "@";
      at.title = t.unread_mentions === 1 ? "A mention of you" : t.unread_mentions + " mentions of you";
      badges.appendChild(at);
    }
    if (t.unread > 0) {
      var unread = document.createElement("span");
      unread.className = "badge rounded-pill text-bg-danger thread-item-unread";
      unread.textContent = (t.unread > 99 ? "99+" : t.unread) + " unread";
      badges.appendChild(unread);
    }
    top.appendChild(badges);
    var line = document.createElement("div");
    line.className = "small text-truncate thread-item-root";
    var who = document.createElement("span");
    who.className = "fw-semibold";
    who.textContent = (root.sender === SC.userId ? "You" : (root.sender_name || "Someone")) + ": ";
    line.appendChild(who);
    line.appendChild(document.createTextNode(preview(root)));
    var meta = document.createElement("div");
    meta.className = "small thread-item-meta";
    var count = root.thread && typeof root.thread.reply_count === "number" ? root.thread.reply_count : 0;
    var when = SC.threadText.lastReply(t.last_reply_at);
    meta.textContent = SC.threadText.replies(count) + (when ? " · " + when : "");
    a.appendChild(top);
    a.appendChild(line);
    a.appendChild(meta);
    li.appendChild(a);
    return li;
  }

  function load(append) {
    var ask = ++asking;
    var url = view.dataset.threadsUrl + "?limit=50" + (unreadOnly.checked ? "&unread=1" : "") +
      (append && nextBefore ? "&before=" + encodeURIComponent(nextBefore) : "");
    if (!append && !list.children.length) { statusBox.textContent = "Loading…"; }
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (ask !== asking) { return; }
        if (!data || !data.ok || !Array.isArray(data.threads)) { throw new Error("failed"); }
        var focusedId = document.activeElement && list.contains(document.activeElement) &&
          document.activeElement.closest(".thread-item").dataset.threadId;
        var items = data.threads.filter(function (t) {
          return t && typeof t.conversation_id === "number" && typeof t.thread_id === "string";
        }).map(item);
        if (append) { items.forEach(function (li) { list.appendChild(li); }); }
        else { list.replaceChildren.apply(list, items); }
        if (focusedId) {  // redrawn under the keyboard: keep its place
          var again = list.querySelector('.thread-item[data-thread-id="' + CSS.escape(focusedId) + '"] a');
          if (again) { again.focus(); }
        }
        nextBefore = data.next_before || null;
        more.classList.toggle("d-none", !nextBefore);
        statusBox.textContent = list.children.length ? "" :
          (unreadOnly.checked ? "No unread replies in the threads you follow." : "You follow no threads yet. Reply in one, or open one and press Follow.");
      })
      .catch(function () { if (ask === asking) { statusBox.textContent = "Could not load your threads."; } });
  }

  unreadOnly.addEventListener("change", function () {
    var url = new URL(window.location.href);
    if (unreadOnly.checked) { url.searchParams.set("unread", "1"); } else { url.searchParams.delete("unread"); }
    window.history.replaceState(window.history.state, "", url.pathname + url.search);
    nextBefore = null;
    load(false);
  });
  more.addEventListener("click", function () { load(true); });
  // A reply, a read or a follow anywhere (thread_counts.js): the list from the server again.
  var redraw = null;
  document.addEventListener("simplechat:threads", function () {
    clearTimeout(redraw);
    redraw = setTimeout(function () { if (!nextBefore) { load(false); } }, 300);
  });
  load(false);
})();
