/* The chat page's unread landing: it opens at the first unread message under a "New messages"
 * line (.unread-divider), with "Jump to newest" and "Jump to first unread mention" while they
 * apply; "Mark unread" in a message's menu moves the reader's marker back (mark_unread), here
 * and on every device (marked_unread). Loaded before chat.js, which calls SC.unreadLanding on
 * its first join and takes SC.messageMenuEntries into each message's menu. */
(function () {
  "use strict";
  var SC = window.SimpleChat;
  var root = document.getElementById("chat");
  var bar = document.getElementById("unread-jumps");
  if (!SC || !root || !bar) { return; }
  var myId = parseInt(root.dataset.userId, 10);
  var conversationId = parseInt(root.dataset.conversationId, 10);
  var newestButton = document.getElementById("jump-newest");
  var mentionButton = document.getElementById("jump-mention");
  var MAX_PAGES = 10;        // older pages (100 each) read to reach the first unread message
  var mentionId = null;      // the first unread message that mentions me, until seen

  function page() { return SC.chatPage; }

  // Unread as the server counts it: another's message past my marker, not a system line or
  // deleted (a marker of null: nothing read yet).
  function isUnread(m, lastRead) {
    return m && m.sender !== myId && m.kind !== "system" && !m.deleted && !m.ephemeral &&
      (!lastRead || m.id > lastRead);
  }
  function mentionsMe(m) { return Array.isArray(m.mentions) && m.mentions.indexOf(myId) !== -1; }

  // The messages shown, oldest first, as their payloads.
  function shown() {
    var p = page();
    return Array.prototype.map.call(p.list.querySelectorAll(".message[data-id]:not(.message-ephemeral)"),
                                    function (el) { return p.payloads.get(el.dataset.id); })
      .filter(Boolean);
  }

  function removeDivider() {
    document.querySelectorAll("#messages .unread-divider").forEach(function (el) { el.remove(); });
  }
  // The line before the first unread message (and the first unread mention after it): the
  // row it stands before, or null when nothing shown is unread.
  function placeDivider(lastRead) {
    removeDivider();
    var messages = shown();
    var first = null;
    mentionId = null;
    messages.forEach(function (m) {
      if (!isUnread(m, lastRead)) { return; }
      if (!first) { first = m; }
      if (!mentionId && mentionsMe(m)) { mentionId = m.id; }
    });
    if (!first) { renderJumps(); return null; }
    var row = page().rows.get(first.id);
    var line = document.createElement("div");
    line.className = "unread-divider";
    line.setAttribute("role", "separator");
    line.dataset.before = first.id;
    var label = document.createElement("span");
    label.className = "unread-divider-label";
    label.textContent = "New messages";
    line.appendChild(label);
    // Above the day's separator when the first unread message opens a day.
    var before = row.previousElementSibling && row.previousElementSibling.classList.contains("day-separator")
      ? row.previousElementSibling : row;
    row.parentNode.insertBefore(line, before);
    return line;
  }

  function inView(el) {
    var box = el.getBoundingClientRect();
    var frame = page().scroller.getBoundingClientRect();
    return box.bottom > frame.top && box.top < frame.bottom;
  }

  function renderJumps() {
    var p = page();
    if (!p) { return; }
    var atBottom = p.atBottom();
    if (atBottom) { mentionId = null; }  // everything is on screen now: read
    var mentionRow = mentionId && p.rows.get(mentionId);
    newestButton.classList.toggle("d-none", atBottom);
    mentionButton.classList.toggle("d-none", !mentionRow || inView(mentionRow));
    bar.classList.toggle("d-none", atBottom && (!mentionRow || inView(mentionRow)));
  }

  // Page back until the marker's message is shown (the first unread is at most one page
  // older than it), at most MAX_PAGES pages.
  function loadBackTo(lastRead, pages) {
    var p = page();
    var oldest = p.oldestId();
    if (!p.hasMore() || pages >= MAX_PAGES || (lastRead && oldest && oldest <= lastRead)) {
      return Promise.resolve();
    }
    return p.loadOlder(100).then(function (ok) { return ok ? loadBackTo(lastRead, pages + 1) : null; });
  }

  function land(lastRead) {
    var line = placeDivider(lastRead);
    var p = page();
    if (!line) { p.scrollToBottom(); p.markReadIfVisible(); renderJumps(); return; }
    // Near the top of the messages, under the jump buttons over them (and the window stays).
    var frame = p.scroller.getBoundingClientRect();
    p.scroller.scrollTop += line.getBoundingClientRect().top - frame.top - 8;
    renderJumps();
    var covered = 0;
    bar.querySelectorAll(".btn").forEach(function (b) {
      if (!b.classList.contains("d-none")) { covered = Math.max(covered, b.getBoundingClientRect().bottom - frame.top); }
    });
    if (covered) { p.scroller.scrollTop -= covered; }
    p.markReadIfVisible();  // all of it on screen at once: read
  }

  // Called by chat.js with the first join's answer: null when nothing shown or older is unread
  // (the page opens at the newest), else what places the view once the messages are in.
  SC.unreadLanding = function (ack) {
    var lastRead = ack && ack.read ? ack.read[myId] || null : null;
    var messages = (ack && Array.isArray(ack.messages)) ? ack.messages : [];
    var olderUnread = ack && ack.has_more && (!lastRead || (messages.length && messages[0].id > lastRead));
    if (!olderUnread && !messages.some(function (m) { return isUnread(m, lastRead); })) { return null; }
    return function () {
      if (!olderUnread) { land(lastRead); return; }
      bar.classList.remove("d-none");
      loadBackTo(lastRead, 0).then(function () { land(lastRead); });
    };
  };

  newestButton.addEventListener("click", function () {
    var p = page();
    p.scrollToBottom();
    p.releaseRead();
    renderJumps();
    p.input.focus();
  });
  mentionButton.addEventListener("click", function () {
    var id = mentionId;
    if (!id) { return; }
    page().jumpTo(id, true);
    mentionId = null;
    renderJumps();
  });
  document.addEventListener("DOMContentLoaded", function () {
    var p = page();
    if (!p) { return; }
    p.scroller.addEventListener("scroll", function () {
      if (!scrollQueued) {
        scrollQueued = true;
        window.requestAnimationFrame(function () { scrollQueued = false; renderJumps(); });
      }
    });
  });
  var scrollQueued = false;

  // ---- Mark unread -------------------------------------------------------------------------
  // My marker moved back (this page, or another of my pages or devices): the line moves before
  // that message and this page stops marking things read until I send or jump to the newest.
  function markedUnread(data) {
    var p = page();
    if (!p || !data || data.conversation_id !== conversationId || data.user_id !== myId) { return; }
    p.holdRead(data.last_read || null);
    placeDivider(data.last_read || null);
    renderJumps();
  }
  function markUnread(m) {
    var p = page();
    p.socket.timeout(10000).emit("mark_unread", { conversation_id: conversationId, message_id: m.id }, function (err, ack) {
      if (err || !ack || !ack.ok) {
        p.setStatus(ack && ack.error === "not_found" ? "That message is gone." : "Could not mark it unread; try again.", "danger");
        return;
      }
      markedUnread({ conversation_id: conversationId, user_id: myId, message_id: m.id, last_read: ack.last_read });
      p.setStatus(ack.unread === 1 ? "Marked unread: 1 unread message." : "Marked unread: " + ack.unread + " unread messages.", "muted");
    });
  }
  SC.messageMenuEntries = (SC.messageMenuEntries || []).concat([function (m) {
    if (m.kind === "system" || m.ephemeral || (m.thread_id && !m.also_to_conversation)) { return null; }
    return ["Mark unread", "mark-unread", function () { markUnread(m); }];
  }]);
  SC.socket().on("marked_unread", markedUnread);
  // Sending is reading: the line goes, reading resumes.
  document.addEventListener("simplechat:sent", function () {
    var p = page();
    if (p) { p.releaseRead(); }
  });
})();
