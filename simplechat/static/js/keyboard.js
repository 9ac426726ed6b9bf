/* The chat page's keys: Up in an empty composer edits my last message; Alt+Up / Alt+Down open
 * the previous / next conversation of the list; Ctrl+K (Cmd+K) goes to the list's search. The
 * message list is one Tab stop (a roving tabindex): Up and Down move between messages, Home
 * and End to the first and last, Page Up and Page Down scroll a page, Left and Right through a
 * message's links and buttons, Enter opens its menu, Escape goes back to the message. */
(function () {
  "use strict";
  var SC = window.SimpleChat;
  var root = document.getElementById("chat");
  var list = document.getElementById("messages");
  var input = document.getElementById("message-input");
  if (!SC || !root || !list || !input) { return; }
  var openId = parseInt(root.dataset.conversationId, 10);

  // ---- the composer: Up edits my last message ----------------------------------------------
  input.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.key !== "ArrowUp" || e.altKey || e.ctrlKey || e.metaKey ||
        e.shiftKey || e.isComposing || input.value !== "" || !SC.chatPage) { return; }
    var mine = list.querySelectorAll(".message-mine[data-id]:not(.pending):not(.failed):not(.message-ephemeral)");
    var last = mine.length ? mine[mine.length - 1] : null;
    if (!last || !last.querySelector(".message-edit")) { return; }  // gone past the edit window
    e.preventDefault();
    SC.chatPage.startEdit(last.dataset.id);
  });

  // ---- switching conversations -------------------------------------------------------------
  function conversationItems() {
    var convList = document.getElementById("conversation-list");
    return convList ? Array.prototype.slice.call(convList.querySelectorAll(".conversation-item")) : [];
  }
  function switchBy(step) {
    var items = conversationItems();
    if (!items.length) { return false; }
    var at = items.findIndex(function (el) { return parseInt(el.dataset.conversationId, 10) === openId; });
    var next = at === -1 ? items[0] : items[at + step];
    if (!next || !next.href) { return false; }
    window.location.href = next.href;
    return true;
  }
  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.isComposing) { return; }
    if (e.altKey && !e.ctrlKey && !e.metaKey && !e.shiftKey && (e.key === "ArrowUp" || e.key === "ArrowDown")) {
      if (switchBy(e.key === "ArrowUp" ? -1 : 1)) { e.preventDefault(); }
    } else if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && (e.key === "k" || e.key === "K")) {
      e.preventDefault();
      var search = document.getElementById("search-input");
      if (search && search.offsetParent !== null) { search.focus(); search.select(); }
      else { window.location.href = root.dataset.listUrl; }  // a phone: the list has it
    }
  });

  // ---- the message list: one Tab stop ------------------------------------------------------
  var CONTROLS = "a[href], button, input, textarea, select, [tabindex]";
  var current = null;  // the message row that takes the Tab stop
  function rowsShown() { return Array.prototype.slice.call(list.querySelectorAll(":scope > .message")); }
  function rowOf(el) { return el && el.closest ? el.closest("#messages > .message") : null; }
  // A row's own links and buttons (not its menu's items), in order.
  function controlsOf(row) {
    return Array.prototype.filter.call(row.querySelectorAll(CONTROLS), function (el) {
      return el !== row && !el.closest(".dropdown-menu") && !el.disabled && el.offsetParent !== null;
    });
  }
  function makeCurrent(row) {
    if (current && current !== row) { current.setAttribute("tabindex", "-1"); current.removeAttribute("aria-describedby"); }
    current = row;
    if (row) { row.setAttribute("tabindex", "0"); row.setAttribute("aria-describedby", "messages-keys-hint"); }
  }
  // What a row holds leaves the Tab order (its editor, delete question and picker take the
  // focus themselves and keep theirs; a code block that scrolls sideways stays a stop, or the
  // keyboard could not scroll it).
  var OWN_FOCUS = ".message-editor, .message-delete-confirm, .reaction-picker, pre";
  function quiet(node) {
    if (node.nodeType !== 1 || node.closest(OWN_FOCUS)) { return; }
    if (node.matches(CONTROLS) && !node.matches("#messages > .message")) { node.setAttribute("tabindex", "-1"); }
    node.querySelectorAll(CONTROLS).forEach(function (el) {
      if (!el.closest(OWN_FOCUS)) { el.setAttribute("tabindex", "-1"); }
    });
  }
  // The row with the stop went (redrawn, deleted): its new self, else the newest row. While
  // the focus is elsewhere, the stop follows the newest message.
  function keepStop() {
    var rows = rowsShown();
    var newest = rows[rows.length - 1] || null;
    if (newest && !list.contains(document.activeElement)) {
      makeCurrent(newest);
    } else if (!current || !list.contains(current)) {
      var again = current && current.dataset.id &&
        list.querySelector(':scope > .message[data-id="' + CSS.escape(current.dataset.id) + '"]');
      current = null;
      makeCurrent(again || rows[rows.length - 1] || null);
    }
    // Empty, the list itself is the stop (it still scrolls with the keys).
    if (current) { list.removeAttribute("tabindex"); } else { list.setAttribute("tabindex", "0"); }
  }
  function adoptRow(row) {
    if (row !== current) { row.setAttribute("tabindex", "-1"); }
    quiet(row);
  }
  new MutationObserver(function (changes) {
    var rowsChanged = false;
    changes.forEach(function (c) {
      if (c.target === list) { rowsChanged = true; }
      c.addedNodes.forEach(function (n) {
        if (n.nodeType === 1 && n.parentNode === list && n.classList.contains("message")) { adoptRow(n); }
        else { quiet(n); }
      });
    });
    if (rowsChanged) { keepStop(); }
  }).observe(list, { childList: true, subtree: true });
  rowsShown().forEach(adoptRow);
  keepStop();

  list.addEventListener("focusin", function (e) {
    var row = rowOf(e.target);
    if (row) { makeCurrent(row); }
  });
  function focusRow(row) {
    if (!row) { return; }
    makeCurrent(row);
    row.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
  }
  function openMenu(row) {
    var toggle = row.querySelector(".message-actions-toggle");
    if (!toggle || typeof bootstrap === "undefined") { return; }
    bootstrap.Dropdown.getOrCreateInstance(toggle).show();
    var first = row.querySelector(".dropdown-menu .dropdown-item");
    if (first) { first.focus(); }
  }
  list.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey) { return; }
    var row = rowOf(e.target);
    if (!row || e.target.closest(".dropdown-menu, .message-editor, .message-delete-confirm, .reaction-picker")) { return; }
    var rows = rowsShown();
    var at = rows.indexOf(row);
    var onRow = e.target === row;
    var controls = controlsOf(row);
    var c = controls.indexOf(e.target);
    if ((e.key === "ArrowDown" || e.key === "ArrowUp") && !e.target.matches("[data-bs-toggle]")) {  // a menu's button opens it
      e.preventDefault();
      focusRow(rows[at + (e.key === "ArrowDown" ? 1 : -1)] || row);
      if (e.key === "ArrowUp" && at === 0 && SC.chatPage) { SC.chatPage.loadOlder(); }
    } else if ((e.key === "PageUp" || e.key === "PageDown") && SC.chatPage) {
      e.preventDefault();  // a page of messages, as the list itself would scroll
      var scroller = SC.chatPage.scroller;
      scroller.scrollTop += (e.key === "PageUp" ? -1 : 1) * Math.max(40, scroller.clientHeight - 40);
    } else if ((e.key === "Home" || e.key === "End") && onRow) {
      e.preventDefault();
      focusRow(e.key === "Home" ? rows[0] : rows[rows.length - 1]);
    } else if (e.key === "ArrowRight" && controls.length) {
      e.preventDefault();
      controls[Math.min(c + 1, controls.length - 1)].focus();
    } else if (e.key === "ArrowLeft" && !onRow) {
      e.preventDefault();
      if (c > 0) { controls[c - 1].focus(); } else { row.focus(); }
    } else if (e.key === "Escape" && !onRow) {
      e.preventDefault();
      row.focus();
    } else if (e.key === "Enter" && onRow) {
      e.preventDefault();
      openMenu(row);
    }
  });

  // Said once, to whoever reaches the list.
  var hint = document.createElement("p");
  hint.id = "messages-keys-hint";
  hint.className = "visually-hidden";
  hint.textContent = "Up and Down move between messages, Enter opens a message's actions, Left and Right reach its links and buttons.";
  list.after(hint);
})();
