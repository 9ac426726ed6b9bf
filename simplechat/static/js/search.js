/* Message search above the conversation list: results from /api/search in place of the list,
 * snippets built from text segments, each result a link to the message in its conversation. */
(function () {
  "use strict";
  var form = document.getElementById("search-form");
  if (!form) { return; }
  var input = document.getElementById("search-input");
  var results = document.getElementById("search-results");
  var status = document.getElementById("search-status");
  var more = document.getElementById("search-more");
  var list = document.getElementById("conversation-list");
  var SC = window.SimpleChat;
  var query = "";
  var page = 1;
  var loading = false;

  function showList(show) {
    if (list) { list.classList.toggle("d-none", !show); }
    results.classList.toggle("d-none", show);
    if (show) { more.classList.add("d-none"); }
  }

  function clear() {
    query = "";
    results.replaceChildren();
    status.textContent = "";
    showList(true);
  }

  function chatUrl(r) {
    return "/chat/" + encodeURIComponent(r.conversation_id) + "?message=" + encodeURIComponent(r.id);
  }

  // A group's title, else the name the list shows for a direct conversation.
  function conversationName(r) {
    if (r.conversation_title) { return r.conversation_title; }
    var el = list && list.querySelector('.conversation-item[data-conversation-id="' + Number(r.conversation_id) + '"] .conversation-name');
    return el ? el.textContent : "Direct conversation";
  }

  function buildResult(r) {
    var a = document.createElement("a");
    a.className = "list-group-item list-group-item-action search-result";
    a.href = chatUrl(r);
    a.dataset.messageId = r.id;
    var head = document.createElement("div");
    head.className = "d-flex justify-content-between gap-2 small";
    var where = document.createElement("span");
    where.className = "fw-semibold text-truncate";
    where.textContent = conversationName(r);
    var when = document.createElement("time");
    when.className = "text-muted flex-shrink-0";
    var d = SC.parseUtc(r.timestamp);
    if (!isNaN(d)) {
      when.dateTime = d.toISOString();
      when.textContent = SC.formatShortDate(d) + ", " + SC.formatTime(d);
      when.title = SC.formatFull(d);
    }
    head.appendChild(where);
    head.appendChild(when);
    var snippet = document.createElement("span");
    snippet.className = "search-snippet";
    var who = document.createElement("span");
    who.className = "search-sender";
    who.textContent = (r.sender === SC.userId ? "You" : (r.sender_name || "Someone")) + ": ";
    (Array.isArray(r.snippet) ? r.snippet : []).forEach(function (seg) {
      var text = seg && typeof seg.text === "string" ? seg.text : "";
      if (seg && seg.match) {
        var mark = document.createElement("mark");
        mark.textContent = text;
        snippet.appendChild(mark);
      } else {
        snippet.appendChild(document.createTextNode(text));
      }
    });
    a.appendChild(head);
    var line = document.createElement("div");
    line.className = "small search-line";
    line.appendChild(who);
    line.appendChild(snippet);
    a.appendChild(line);
    return a;
  }

  function load(first) {
    if (loading) { return; }
    loading = true;
    status.textContent = "Searching…";
    var url = form.getAttribute("action") + "?q=" + encodeURIComponent(query) + "&page=" + page;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!data || !data.ok) { throw new Error((data && data.error) || "failed"); }
        if (first) { results.replaceChildren(); }
        data.results.forEach(function (r) { results.appendChild(buildResult(r)); });
        var n = results.children.length;
        status.textContent = n ? (n === 1 ? "1 message found" : n + (data.has_more ? "+" : "") + " messages found")
          : "No messages match “" + query + "”.";
        more.classList.toggle("d-none", !data.has_more);
        showList(false);
      })
      .catch(function () { status.textContent = "Search failed. Try again."; })
      .finally(function () { loading = false; });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var q = input.value.trim();
    if (!q) { clear(); return; }
    query = q;
    page = 1;
    load(true);
  });
  input.addEventListener("input", function () { if (!input.value.trim()) { clear(); } });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && input.value) { e.preventDefault(); input.value = ""; clear(); }
  });
  more.addEventListener("click", function () { page += 1; load(false); });
})();
