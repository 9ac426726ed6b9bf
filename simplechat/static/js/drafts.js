/* Drafts: the chat page's composer is kept on the server per conversation (PUT
 * /api/conversations/<id>/draft, a moment after typing stops and when the page goes away),
 * restored from GET /api/drafts on opening and from `draft` events of the user's other pages
 * and devices; sending clears it. The conversation list marks conversations with a draft.
 * The routes come on the script's own tag (data-draft-url on the chat page, data-drafts-url). */
(function () {
  "use strict";
  var SC = window.SimpleChat;
  var tag = document.currentScript;
  if (!SC || !tag || typeof io === "undefined") { return; }
  var draftsUrl = tag.dataset.draftsUrl;
  var draftUrl = tag.dataset.draftUrl || null;
  var root = document.getElementById("chat");
  var openId = root ? parseInt(root.dataset.conversationId, 10) : null;
  var input = document.getElementById("message-input");
  var convList = document.getElementById("conversation-list");
  var SAVE_AFTER_MS = 700;   // of quiet typing
  var withDraft = {};        // conversation id -> true, for the list's marks

  // ---- the list's marks ------------------------------------------------------------------
  function markList() {
    if (!convList) { return; }
    convList.querySelectorAll(".conversation-item").forEach(function (el) {
      var id = parseInt(el.dataset.conversationId, 10);
      var on = !!withDraft[id] && id !== openId;
      var mark = el.querySelector(".draft-mark");
      if (on && !mark) {
        var badges = el.querySelector(".conversation-badges");
        if (!badges) { return; }
        mark = document.createElement("span");
        mark.className = "badge rounded-pill draft-mark";
        mark.textContent = "Draft";
        badges.insertBefore(mark, badges.firstChild);
      } else if (!on && mark) {
        mark.remove();
      }
    });
  }
  // The list is redrawn from the server now and then: mark it again each time.
  if (convList && "MutationObserver" in window) {
    new MutationObserver(function (changes) {
      if (changes.some(function (c) { return c.addedNodes.length; })) { markList(); }
    }).observe(convList, { childList: true });
  }

  // ---- the composer ----------------------------------------------------------------------
  var saved = "";      // what the server holds for this composer, as far as this page knows
  var saving = false;
  var timer = null;

  function put(text, keepalive) {
    return fetch(draftUrl, {
      method: "PUT", credentials: "same-origin", keepalive: !!keepalive,
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": SC.csrfToken() },
      body: JSON.stringify({ message: text })
    }).then(function (r) { return r.json().then(function (data) { return r.ok && data && data.ok; }); });
  }
  // One save at a time; what was typed meanwhile goes next.
  function save() {
    clearTimeout(timer);
    timer = null;
    if (!draftUrl || saving || input.value === saved) { return; }
    var text = input.value;
    saving = true;
    put(text)
      .then(function (ok) { if (ok) { saved = text; } })
      .catch(function () { /* kept in the composer; the next keystroke tries again */ })
      .finally(function () {
        saving = false;
        if (input.value !== saved && !timer) { timer = setTimeout(save, SAVE_AFTER_MS); }
      });
  }
  // Shown in the composer unless something else is being typed there.
  function show(text) {
    if (input.value !== saved && input.value !== "") { return; }
    input.value = text;
    saved = text;
    if (SC.chatPage) { SC.chatPage.updateCounter(); }
  }

  if (input && draftUrl) {
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(save, SAVE_AFTER_MS);
    });
    // Leaving (a reload, another page): what the timer still held goes now.
    window.addEventListener("pagehide", function () {
      if (timer && input.value !== saved) { clearTimeout(timer); timer = null; put(input.value, true).catch(function () {}); }
    });
    // Sent: the composer is empty, and so is the draft (the store would delete it too, later).
    document.addEventListener("simplechat:sent", save);
  }

  fetch(draftsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (r) { return r.json(); })
    .then(function (data) {
      if (!data || !data.ok || !Array.isArray(data.drafts)) { return; }
      data.drafts.forEach(function (d) {
        if (d.thread_id) { return; }  // a thread's composer is the thread panel's
        withDraft[d.conversation_id] = true;
        if (d.conversation_id === openId && input && draftUrl && typeof d.message === "string") { show(d.message); }
      });
      markList();
    })
    .catch(function () { /* no drafts shown: the composer starts empty */ });

  var socket = SC.socket();
  // Saved or deleted on another page or device of mine (this one too).
  socket.on("draft", function (d) {
    if (!d || typeof d.conversation_id !== "number" || d.thread_id || typeof d.message !== "string") { return; }
    withDraft[d.conversation_id] = d.message.trim() !== "";
    markList();
    if (d.conversation_id === openId && input && draftUrl) { show(d.message); }
  });
  // My message there, sent from another page: its text leaves this composer too.
  socket.on("message", function (m) {
    if (!m || m.sender !== SC.userId || m.thread_id || typeof m.message !== "string") { return; }
    withDraft[m.conversation_id] = false;
    markList();
    if (m.conversation_id === openId && input && input.value === saved && saved.trim() === m.message.trim()) { show(""); }
  });
})();
