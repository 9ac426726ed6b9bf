/* Browse channels (/chat/browse): search and sort without leaving the page, more channels at
 * the list's end (a button, also pressed by scrolling to it), a read-only preview of a
 * channel's recent messages, and joining (POST /api/channels/<id>/join), which opens the
 * channel. The server renders every page of the list (/chat/browse/list). */
(function () {
  "use strict";
  var SC = window.SimpleChat;
  var form = document.getElementById("channel-search");
  var list = document.getElementById("channel-list");
  if (!SC || !form || !list) { return; }
  var input = document.getElementById("channel-q");
  var sortBox = document.getElementById("channel-sort");
  var status = document.getElementById("channel-status");
  var pageUrl = list.dataset.pageUrl;

  var JOIN_REFUSED = {
    forbidden: "This channel cannot be joined any more: it was archived, made private or deleted.",
    too_many: "This channel is full.",
    rate_limited: "Too many requests at once; try again in a moment.",
    unavailable: "The server could not do that; try again."
  };

  function say(text) { status.textContent = text; }

  // ---- times: "active 8:21 PM" today, "active 3 Mar" before --------------------------------
  function formatTimes(scope) {
    scope.querySelectorAll("time.utc-time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) { return; }
      el.textContent = d.toDateString() === new Date().toDateString() ? SC.formatTime(d) : SC.formatShortDate(d);
      el.title = SC.formatFull(d);
    });
  }
  formatTimes(list);

  // ---- a page of the list from the server ------------------------------------------------------
  function query(before) {
    var params = new URLSearchParams();
    if (list.dataset.q) { params.set("q", list.dataset.q); }
    params.set("sort", list.dataset.sort || "members");
    if (before) { params.set("before", before); }
    return params;
  }
  function fetchPage(params) {
    return fetch(pageUrl + "?" + params.toString(), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("channel-list");
        if (!fresh) { throw new Error("no list"); }
        return fresh;
      });
  }
  function adopt(nodes) {
    return Array.prototype.slice.call(nodes).map(function (n) { return document.adoptNode(n); });
  }
  function countText() {
    var n = list.querySelectorAll(".channel-item").length;
    var more = list.querySelector(".channel-more") ? " (more below)" : "";
    if (!n) { return list.dataset.q ? "No channels match “" + list.dataset.q + "”." : "No public channels yet."; }
    return (n === 1 ? "1 channel" : n + " channels") + more + (list.dataset.q ? " matching “" + list.dataset.q + "”." : ".");
  }

  // A new search or sort: the first page in place of the list, the address kept in step (a
  // reload or a shared link shows the same).
  var searching = 0;
  function search() {
    var q = input.value.trim().replace(/\s+/g, " ");
    var sort = sortBox.value;
    if (q === list.dataset.q && sort === list.dataset.sort) { return; }
    var asked = ++searching;
    list.dataset.q = q;
    list.dataset.sort = sort;
    list.setAttribute("aria-busy", "true");
    var params = query(null);
    fetchPage(params)
      .then(function (fresh) {
        if (asked !== searching) { return; }  // a later search overtook this one
        list.replaceChildren.apply(list, adopt(fresh.childNodes));
        list.dataset.q = fresh.dataset.q || "";
        formatTimes(list);
        watchMore();
        history.replaceState(null, "", form.action + "?" + params.toString());
        say(countText());
      })
      .catch(function () { say("Could not search the channels; try again."); list.dataset.q = ""; list.dataset.sort = ""; })
      .finally(function () { if (asked === searching) { list.removeAttribute("aria-busy"); } });
  }
  form.addEventListener("submit", function (e) { e.preventDefault(); search(); });
  sortBox.addEventListener("change", search);
  var typingTimer = null;
  input.addEventListener("input", function () {
    clearTimeout(typingTimer);
    typingTimer = setTimeout(search, 350);
  });

  // ---- more channels ----------------------------------------------------------------------------
  var MORE_TEXT = "Show more channels";
  var loadingMore = null;
  function loadMore() {
    var button = list.querySelector(".channel-more");
    if (!button || loadingMore) { return; }
    var hadFocus = document.activeElement === button;
    var asked = searching;
    button.setAttribute("aria-busy", "true");
    button.textContent = "Loading more channels…";
    loadingMore = fetchPage(query(button.dataset.before))
      .then(function (more) {
        if (asked !== searching) { return; }  // the list is another search's now
        var first = null;
        var item = button.closest("li");
        adopt(more.querySelectorAll(".channel-item")).forEach(function (el) {
          if (list.querySelector('.channel-item[data-channel-id="' + el.dataset.channelId + '"]')) { return; }
          list.insertBefore(el, item);
          first = first || el;
        });
        var next = more.querySelector(".channel-more");
        if (next) { button.dataset.before = next.dataset.before; } else { item.remove(); }
        formatTimes(list);
        if (hadFocus && first) { first.querySelector("button, a").focus(); }  // on to what was asked for
        watchMore();
        say(countText());
      })
      .catch(function () { say("Could not load more channels; press the button to try again."); })
      .finally(function () {
        loadingMore = null;
        button.removeAttribute("aria-busy");
        button.textContent = MORE_TEXT;
      });
  }
  var moreObserver = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) { if (entry.isIntersecting) { loadMore(); } });
  }, { rootMargin: "200px 0px" }) : null;
  function watchMore() {
    if (!moreObserver) { return; }
    moreObserver.disconnect();
    var button = list.querySelector(".channel-more");
    if (button) { moreObserver.observe(button); }
  }
  watchMore();

  // ---- joining ----------------------------------------------------------------------------------
  function join(item, feedback, button) {
    button.disabled = true;
    feedback.textContent = "";
    return fetch(item.dataset.joinUrl, {
      method: "POST", credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": SC.csrfToken() }
    })
      .then(function (r) { return r.json().then(function (data) { return data; }, function () { return { ok: false }; }); })
      .then(function (data) {
        if (data && data.ok) {
          say("Joined. Opening the channel…");
          window.location.href = item.dataset.chatUrl;
          return;
        }
        var text = JOIN_REFUSED[data && data.error] || "Could not join this channel; try again.";
        feedback.textContent = text;
        say(text);
        button.disabled = false;
      })
      .catch(function () {
        feedback.textContent = "No answer from the server; try again.";
        say(feedback.textContent);
        button.disabled = false;
      });
  }

  // ---- the preview ------------------------------------------------------------------------------
  var modal = document.getElementById("preview-modal");
  var previewTitle = document.getElementById("preview-title");
  var previewDescription = document.getElementById("preview-description");
  var previewMeta = document.getElementById("preview-meta");
  var previewStatus = document.getElementById("preview-status");
  var previewList = document.getElementById("preview-messages");
  var previewJoin = document.getElementById("preview-join");
  var previewOpen = document.getElementById("preview-open");
  var previewFeedback = document.getElementById("preview-feedback");
  var previewed = null;  // the item whose preview is open
  var previewOpener = null;
  var PREVIEW_COUNT = 30;

  function previewLine(m) {
    var li = document.createElement("li");
    li.className = "preview-message" + (m.kind === "system" ? " preview-system" : "");
    var when = SC.parseUtc(m.timestamp);
    var head = document.createElement("div");
    head.className = "preview-head small";
    if (m.kind !== "system") {
      var who = document.createElement("span");
      who.className = "preview-sender";
      who.textContent = m.sender_name || ("User " + m.sender);
      head.appendChild(who);
      head.appendChild(document.createTextNode(" "));
    }
    if (!isNaN(when)) {
      var time = document.createElement("time");
      time.className = "preview-time";
      time.dateTime = when.toISOString();
      time.textContent = (when.toDateString() === new Date().toDateString() ? "" : SC.formatShortDate(when) + ", ") +
        SC.formatTime(when);
      time.title = SC.formatFull(when);
      head.appendChild(time);
    }
    var body = document.createElement("div");
    body.className = "preview-text";
    if (m.deleted) {
      body.textContent = "This message was deleted";
      body.classList.add("fst-italic");
    } else if (SC.parts) {
      SC.parts.renderBody(body, m, SC.userId);
    } else {
      body.textContent = m.message || "";
    }
    if (!m.deleted && Array.isArray(m.attachments) && m.attachments.length) {
      var files = document.createElement("div");
      files.className = "small text-body-secondary";
      files.textContent = (m.attachments.length === 1 ? "1 file: " : m.attachments.length + " files: ") +
        m.attachments.map(function (a) { return a && a.name; }).filter(Boolean).join(", ");
      body.appendChild(files);
    }
    li.appendChild(head);
    li.appendChild(body);
    return li;
  }

  function openPreview(item, opener) {
    previewed = item;
    previewOpener = opener;
    var joined = item.dataset.joined === "true";
    var count = parseInt(item.dataset.memberCount, 10) || 0;
    previewTitle.textContent = item.dataset.title;
    previewDescription.textContent = item.dataset.description || "No description.";
    previewDescription.classList.toggle("fst-italic", !item.dataset.description);
    previewMeta.textContent = (count === 1 ? "1 member" : count + " members") + (joined ? " · you are a member" : "");
    previewJoin.classList.toggle("d-none", joined);
    previewJoin.disabled = false;
    previewOpen.classList.toggle("d-none", !joined);
    document.getElementById("preview-hint").classList.toggle("d-none", joined);
    previewOpen.href = item.dataset.chatUrl;
    previewFeedback.textContent = "";
    previewList.replaceChildren();
    previewStatus.textContent = "Loading the recent messages…";
    var url = item.dataset.historyUrl + "?limit=" + PREVIEW_COUNT;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (previewed !== item) { return; }
        if (!data || !data.ok) { throw new Error((data && data.error) || "failed"); }
        var lines = data.messages.map(previewLine);
        previewList.replaceChildren.apply(previewList, lines);
        previewStatus.textContent = lines.length ? "" : "No messages yet.";
        if (lines.length) { previewList.parentNode.scrollTop = previewList.parentNode.scrollHeight; }
      })
      .catch(function () {
        if (previewed === item) { previewStatus.textContent = "Could not load this channel's messages."; }
      });
    window.bootstrap.Modal.getOrCreateInstance(modal).show(opener);
  }
  if (modal) {
    previewJoin.addEventListener("click", function () {
      if (previewed) { join(previewed, previewFeedback, previewJoin); }
    });
    modal.addEventListener("hidden.bs.modal", function () {
      previewed = null;
      if (previewOpener && document.contains(previewOpener)) { previewOpener.focus(); }
    });
  }

  list.addEventListener("click", function (e) {
    var target = e.target.closest && e.target.closest("button");
    if (!target) { return; }
    var item = target.closest(".channel-item");
    if (target.classList.contains("channel-more")) { loadMore(); return; }
    if (!item) { return; }
    if (target.classList.contains("channel-join")) {
      join(item, item.querySelector(".channel-feedback"), target);
    } else if (target.classList.contains("channel-preview")) {
      openPreview(item, target);
    }
  });
})();
