/* A group's or channel's own state on the chat page: its description, whether it is archived,
 * my role in it, and the members panel (members with their roles, paged from
 * /api/conversations/<id>/members, their presence, and what owners and admins do to them).
 * The state lives on
 * #chat's data attributes; a change raises `simplechat:conversation-state` on the document,
 * which chat.js follows (the composer, the message menus). */
(function () {
  "use strict";
  var root = document.getElementById("chat");
  var panel = document.getElementById("members-panel");
  var SC = window.SimpleChat;
  if (!root || !panel || !SC) { return; }
  var socket = SC.socket();
  var conversationId = parseInt(root.dataset.conversationId, 10);
  var me = SC.userId;
  var kind = root.dataset.kind || "group";

  var body = document.getElementById("members-body");
  var list = document.getElementById("members-list");
  var more = document.getElementById("members-more");
  var status = document.getElementById("members-status");
  var countBox = document.getElementById("members-count");
  var buttonCount = document.getElementById("members-button-count");
  var groupStatus = document.getElementById("group-status");
  var profileUrl = list.dataset.profileUrl;

  var ROLE_NAMES = { owner: "Owner", admin: "Admin", member: "Member" };
  var REASONS = {
    not_allowed: "Only this " + kind + "’s owners and admins can do that (and only owners change roles).",
    archived: "This " + kind + " is archived: unarchive it first.",
    forbidden: "You are not in this " + kind + " any more.",
    not_found: "They are not in this " + kind + " any more.",
    not_group: "That works in groups and channels only.",
    too_long: "That description is too long (500 characters at most).",
    invalid: "That was not accepted.",
    rate_limited: "Too fast; try again in a moment.",
    unavailable: "The server could not do that; try again."
  };

  function role() { return root.dataset.role || "member"; }
  function archived() { return root.dataset.archived === "true"; }
  function isModerator() { return role() === "owner" || role() === "admin"; }

  function ask(event, payload, onStatus, done) {
    socket.timeout(10000).emit(event, payload, function (err, ack) {
      if (err) { onStatus("No answer from the server; try again.", "danger"); done(false); return; }
      if (!ack || !ack.ok) {
        onStatus(REASONS[ack && ack.error] || "That did not work.", "danger");
        done(false);
        return;
      }
      takeState(ack.conversation);
      done(true, ack);
    });
  }
  // A button at work: marked busy rather than disabled, which would drop the keyboard focus
  // (to the page's body, out of the panel or dialog); a busy button ignores clicks.
  function setBusy(b, on) {
    if (on) { b.setAttribute("aria-disabled", "true"); } else { b.removeAttribute("aria-disabled"); }
  }
  function isBusy(b) { return b.getAttribute("aria-disabled") === "true"; }
  function sayIn(box, base) {
    return function (text, tone) {
      box.textContent = text || "";
      box.className = base + (tone ? " text-" + tone : "");
    };
  }
  var sayMembers = sayIn(status, "small mb-2");
  var sayGroup = groupStatus ? sayIn(groupStatus, "small mt-2") : sayMembers;

  // ---- the conversation's state: from the server's answers and conversation_updated ----------
  function takeState(state) {
    if (!state || state.conversation_id !== conversationId) { return; }
    var before = { role: role(), archived: archived() };
    var mine = null;
    if (typeof state.role === "string" && state.role) {
      mine = state.role;
    } else if (Array.isArray(state.participants)) {
      state.participants.forEach(function (p) { if (p && p.id === me && p.role) { mine = p.role; } });
    }
    if (mine) { root.dataset.role = mine; }
    if (typeof state.archived === "boolean") { root.dataset.archived = state.archived ? "true" : "false"; }
    if (typeof state.description === "string") { showDescription(state.description); }
    if (typeof state.member_count === "number") { showCount(state.member_count); }
    if (Array.isArray(state.participants)) {
      state.participants.forEach(function (p) { if (p && p.role) { setMemberRole(p.id, p.role); } });
    }
    if (before.role !== role() || before.archived !== archived()) { applyState(before); }
  }

  function showDescription(text) {
    var header = document.getElementById("chat-description");
    if (header) {
      header.textContent = text;
      header.title = text;
      header.classList.toggle("d-none", !text);
    }
    var inPanel = document.getElementById("panel-description");
    inPanel.textContent = text || "No description.";
    inPanel.classList.toggle("fst-italic", !text);
    inPanel.classList.toggle("text-body-secondary", !text);
    var input = document.getElementById("group-description-input");
    if (input && document.activeElement !== input) { input.value = text; }
  }

  function showCount(n) {
    root.dataset.memberCount = String(n);
    countBox.textContent = String(n);
    if (buttonCount) { buttonCount.textContent = String(n); }
  }

  // My role or the archived state changed: what I may do shows or hides, the panel's actions
  // are rebuilt, and chat.js hears of it.
  function applyState(before) {
    var moderator = isModerator();
    document.querySelectorAll("[data-for-role=moderator]").forEach(function (el) {
      el.classList.toggle("d-none", !moderator);
    });
    var help = document.getElementById("members-help");
    if (help) {
      help.textContent = role() === "owner"
        ? "As an owner you can make people owners, admins or members, and remove anyone."
        : "As an admin you can remove members (not owners or other admins).";
    }
    var meta = document.getElementById("panel-meta");
    meta.textContent = (kind === "channel" ? "Public channel" : "Private group") + (archived() ? ", archived" : "") +
      ". You are " + (role() === "owner" ? "an owner" : role() === "admin" ? "an admin" : "a member") + " here.";
    var notice = document.getElementById("archived-notice");
    if (notice) { notice.classList.toggle("d-none", !archived()); }
    var archiveButton = document.getElementById("archive-button");
    if (archiveButton) {
      archiveButton.dataset.archived = archived() ? "true" : "false";
      archiveButton.textContent = (archived() ? "Unarchive " : "Archive ") + kind;
      document.getElementById("archive-help").textContent = archived()
        ? "Unarchiving lets everyone write here again."
        : "Archiving makes the " + kind + " read-only: its history stays, nobody can write, react or change it" +
          (kind === "channel" ? ", and it leaves the directory." : ".");
    }
    ["rename-button", "describe-button", "add-people-button"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el) { el.disabled = archived(); }
    });
    members.forEach(function (m) { renderMember(m); });
    document.dispatchEvent(new CustomEvent("simplechat:conversation-state", {
      detail: { role: role(), archived: archived(), before: before }
    }));
  }

  // ---- the members panel ----------------------------------------------------------------------
  var members = new Map();  // user id -> {id, name, username, role, is_bot}
  var nextBefore = null;
  var loaded = false;
  var loading = null;
  var stale = false;  // someone joined or was added since the list was read

  function actionsFor(m) {
    if (archived() || m.id === me) { return []; }
    var actions = [];
    if (role() === "owner") {
      ["owner", "admin", "member"].forEach(function (r) {
        if (r !== m.role) { actions.push({ kind: "role", role: r, text: "Make " + (r === "admin" ? "an admin" : r === "owner" ? "an owner" : "a member") }); }
      });
    }
    if (role() === "owner" || (role() === "admin" && m.role === "member")) {
      actions.push({ kind: "remove", text: "Remove from " + kind });
    }
    return actions;
  }

  function button(text, className, hidden) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = className;
    b.textContent = text;
    if (hidden) {
      var extra = document.createElement("span");
      extra.className = "visually-hidden";
      extra.textContent = hidden;
      b.appendChild(extra);
    }
    return b;
  }

  function renderMember(m) {
    var old = list.querySelector('.member-row[data-user-id="' + m.id + '"]');
    var focusKey = old && old.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
    var wasOpen = old && old.querySelector(".member-manage[aria-expanded=true]");
    var li = document.createElement("li");
    li.className = "list-group-item member-row";
    li.dataset.userId = String(m.id);
    li.dataset.role = m.role;
    var line = document.createElement("div");
    line.className = "d-flex align-items-center gap-2";
    line.appendChild(SC.avatar(m.id, m.name, "avatar-sm"));
    var who = document.createElement("div");
    who.className = "min-w-0 flex-grow-1";
    var dot = document.createElement("span");
    dot.className = "presence-dot";
    dot.setAttribute("aria-hidden", "true");
    who.appendChild(dot);
    var name = document.createElement("a");
    name.className = "member-name text-break";
    name.href = profileUrl.replace("USERNAME", encodeURIComponent(m.username));
    name.textContent = m.name;
    who.appendChild(name);
    var presenceLabel = document.createElement("span");
    presenceLabel.className = "visually-hidden presence-label";
    who.appendChild(presenceLabel);
    if (m.id === me) {
      var you = document.createElement("span");
      you.className = "small text-body-secondary";
      you.textContent = " (you)";
      who.appendChild(you);
    }
    if (m.role !== "member") {
      who.appendChild(document.createTextNode(" "));
      var badge = document.createElement("span");
      badge.className = "badge member-role " + (m.role === "owner" ? "text-bg-primary" : "text-bg-secondary");
      badge.textContent = ROLE_NAMES[m.role] || m.role;
      who.appendChild(badge);
    }
    var handle = document.createElement("div");
    handle.className = "small text-body-secondary text-break";
    handle.textContent = "@" + m.username + (m.is_bot ? " · bot" : "");
    who.appendChild(handle);
    line.appendChild(who);
    li.appendChild(line);

    var actions = actionsFor(m);
    if (actions.length) {
      var boxId = "member-actions-" + m.id;
      var toggle = button("Manage", "btn btn-sm btn-outline-secondary member-manage flex-shrink-0", " " + m.name);
      toggle.dataset.focusKey = "manage";
      toggle.setAttribute("aria-expanded", wasOpen ? "true" : "false");
      toggle.setAttribute("aria-controls", boxId);
      line.appendChild(toggle);
      var box = document.createElement("div");
      box.className = "member-actions flex-wrap gap-2 mt-2" + (wasOpen ? " d-flex" : " d-none");
      box.id = boxId;
      actions.forEach(function (a) {
        var b = button(a.text, "btn btn-sm " + (a.kind === "remove" ? "btn-outline-danger member-remove" : "btn-outline-secondary member-set-role"));
        b.dataset.focusKey = a.kind === "remove" ? "remove" : "role-" + a.role;
        if (a.role) { b.dataset.role = a.role; }
        box.appendChild(b);
      });
      li.appendChild(box);
      toggle.addEventListener("click", function () {
        var open = toggle.getAttribute("aria-expanded") !== "true";
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
        box.classList.toggle("d-none", !open);
        box.classList.toggle("d-flex", open);
        if (open) { box.querySelector("button").focus(); }
      });
      box.addEventListener("click", function (e) {
        var b = e.target.closest("button");
        if (!b) { return; }
        if (b.classList.contains("member-set-role")) { setRole(m, b.dataset.role, b); }
        if (b.classList.contains("member-remove")) { confirmRemove(m, li); }
      });
      box.addEventListener("keydown", function (e) {  // closes the actions, not the panel
        if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); toggle.click(); toggle.focus(); }
      });
    }
    showPresence(li);
    if (old) { old.replaceWith(li); } else { list.appendChild(li); }
    if (focusKey) {
      var again = li.querySelector('[data-focus-key="' + focusKey + '"]') || li.querySelector(".member-manage") || name;
      again.focus();
    }
    return li;
  }

  function setMemberRole(userId, newRole) {
    var m = members.get(userId);
    if (!m || m.role === newRole) { return; }
    m.role = newRole;
    renderMember(m);
  }

  function dropMember(userId) {
    var m = members.get(userId);
    if (!m) { return; }
    members.delete(userId);
    var row = list.querySelector('.member-row[data-user-id="' + userId + '"]');
    if (!row) { return; }
    var focused = row.contains(document.activeElement);
    var next = row.nextElementSibling || row.previousElementSibling;
    row.remove();
    if (focused) {
      var target = next && (next.querySelector(".member-manage") || next.querySelector("a"));
      (target || document.getElementById("members-heading")).focus();
    }
  }

  function take(page) {
    page.forEach(function (p) {
      if (!p || typeof p.id !== "number") { return; }
      var m = { id: p.id, name: p.name, username: p.username, role: p.role || "member", is_bot: !!p.is_bot };
      members.set(m.id, m);
      renderMember(m);
    });
  }

  function loadMembers(reset) {
    if (loading) { return loading; }
    var url = list.dataset.membersUrl + "?limit=50" + (!reset && nextBefore ? "&before=" + encodeURIComponent(nextBefore) : "");
    list.setAttribute("aria-busy", "true");
    more.textContent = "Loading members…";
    loading = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!data || !data.ok) { throw new Error((data && data.error) || "failed"); }
        if (reset) { members.clear(); list.replaceChildren(); stale = false; }
        take(data.members);
        nextBefore = data.next_before;
        loaded = true;
        askPresence();
        more.classList.toggle("d-none", !nextBefore);
        if (status.classList.contains("text-danger")) { sayMembers(""); }
      })
      .catch(function () { sayMembers("Could not load the members; try again.", "danger"); })
      .finally(function () {
        loading = null;
        list.removeAttribute("aria-busy");
        more.textContent = "Show more members";
        watchMore();
      });
    return loading;
  }
  more.addEventListener("click", function () {
    var hadFocus = document.activeElement === more;
    var count = list.children.length;
    loadMembers(false).then(function () {
      var first = list.children[count];
      if (hadFocus && first) { (first.querySelector(".member-manage") || first.querySelector("a")).focus(); }
    });
  });
  var moreObserver = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) { if (entry.isIntersecting && nextBefore && !loading) { loadMembers(false); } });
  }, { root: body, rootMargin: "150px 0px" }) : null;
  function watchMore() {
    if (!moreObserver) { return; }
    moreObserver.disconnect();
    if (nextBefore) { moreObserver.observe(more); }
  }
  panel.addEventListener("show.bs.offcanvas", function () {
    if (!loaded || stale) { loadMembers(true); } else { askPresence(); }
  });
  panel.addEventListener("hidden.bs.offcanvas", function () {
    if (SC.showPresenceOf) { SC.showPresenceOf("members-panel", []); }
  });

  // ---- who is online: asked for the members listed (at most 100) when the panel opens or
  // lists more; then kept by `presence` events (in a big room, by following them: chat.js
  // subscribes to the members the page shows, SimpleChat.showPresenceOf).
  var PRESENCE_MAX = 100;
  var statuses = {};  // user id -> {online, last_seen}
  function panelOpen() { return panel.classList.contains("show") || panel.classList.contains("showing"); }
  function listedIds() {
    return Array.prototype.slice.call(list.querySelectorAll(".member-row"), 0, PRESENCE_MAX)
      .map(function (row) { return parseInt(row.dataset.userId, 10); });
  }
  function showPresence(row) {
    var uid = parseInt(row.dataset.userId, 10);
    var status = socket.connected ? statuses[uid] : null;
    var online = uid === me ? socket.connected : !!(status && status.online);
    var dot = row.querySelector(".presence-dot");
    dot.classList.toggle("online", online);
    dot.classList.toggle("unknown", !socket.connected);
    dot.title = !socket.connected ? SC.presenceText({ unknown: true }) : (online ? "Online" : (status ? SC.presenceText(status) : ""));
    row.querySelector(".presence-label").textContent = online ? " (online)" : "";
  }
  function showAllPresence() { list.querySelectorAll(".member-row").forEach(showPresence); }
  function takeStatuses(map) {
    if (!map || typeof map !== "object") { return; }
    Object.keys(map).forEach(function (uid) { if (map[uid] && typeof map[uid] === "object") { statuses[uid] = map[uid]; } });
    showAllPresence();
  }
  function askPresence() {
    if (!panelOpen()) { return; }
    var ids = listedIds();
    if (SC.showPresenceOf) { SC.showPresenceOf("members-panel", ids); }
    if (!ids.length || !socket.connected) { return; }
    socket.emit("presence", { conversation_id: conversationId, user_ids: ids }, function (ack) {
      if (ack && ack.ok) { takeStatuses(ack.presence); }
    });
  }
  document.addEventListener("simplechat:presence", function (e) { takeStatuses(e.detail); });
  socket.on("presence", function (p) {
    if (!p || typeof p.user_id !== "number") { return; }
    statuses[p.user_id] = { online: !!p.online, last_seen: p.last_seen || null };
    var row = list.querySelector('.member-row[data-user-id="' + p.user_id + '"]');
    if (row) { showPresence(row); }
  });
  socket.on("disconnect", showAllPresence);
  SC.onConnect(function () { showAllPresence(); askPresence(); });

  // ---- owners' and admins' actions on a member ---------------------------------------------------
  function setRole(m, newRole, b) {
    if (isBusy(b)) { return; }
    setBusy(b, true);
    ask("set_role", { conversation_id: conversationId, user_id: m.id, role: newRole }, sayMembers, function (ok) {
      setBusy(b, false);
      if (!ok) { return; }
      sayMembers(m.name + " is " + (newRole === "admin" ? "an admin" : newRole === "owner" ? "an owner" : "a member") + " now.", "success");
      setMemberRole(m.id, newRole);
    });
  }

  // Removing asks once more, in place.
  function confirmRemove(m, row) {
    if (row.querySelector(".member-confirm")) { row.querySelector(".member-remove-yes").focus(); return; }
    var bar = document.createElement("div");
    bar.className = "member-confirm d-flex flex-wrap align-items-center gap-2 mt-2 small";
    var question = document.createElement("span");
    question.textContent = "Remove " + m.name + " from this " + kind + "?";
    var yes = button("Remove", "btn btn-sm btn-danger member-remove-yes");
    var no = button("Keep", "btn btn-sm btn-outline-secondary member-remove-no");
    bar.appendChild(question);
    bar.appendChild(yes);
    bar.appendChild(no);
    row.appendChild(bar);
    yes.focus();
    function cancel() { bar.remove(); var b = row.querySelector(".member-remove"); if (b) { b.focus(); } }
    no.addEventListener("click", cancel);
    bar.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); cancel(); }
    });
    yes.addEventListener("click", function () {
      if (isBusy(yes)) { return; }
      setBusy(yes, true);
      ask("remove_participant", { conversation_id: conversationId, user_id: m.id }, sayMembers, function (ok) {
        setBusy(yes, false);
        if (!ok) { yes.focus(); return; }
        sayMembers(m.name + " was removed.", "success");
        dropMember(m.id);
      });
    });
  }

  // ---- description and archiving (the settings dialog) ------------------------------------------
  var describeForm = document.getElementById("describe-form");
  if (describeForm) {
    describeForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var input = document.getElementById("group-description-input");
      var b = document.getElementById("describe-button");
      if (isBusy(b)) { return; }
      setBusy(b, true);
      ask("describe_conversation", { conversation_id: conversationId, description: input.value }, sayGroup, function (ok) {
        setBusy(b, false);
        if (ok) { sayGroup(input.value.trim() ? "Description saved." : "Description removed.", "success"); }
      });
    });
  }
  function setArchived(wanted, b, onStatus) {
    if (isBusy(b)) { return; }
    setBusy(b, true);
    ask("archive_conversation", { conversation_id: conversationId, archived: wanted }, onStatus, function (ok) {
      setBusy(b, false);
      if (ok) { onStatus(wanted ? "Archived: the " + kind + " is read-only now." : "Unarchived: everyone can write again.", "success"); }
    });
  }
  var archiveButton = document.getElementById("archive-button");
  if (archiveButton) {
    archiveButton.addEventListener("click", function () {
      setArchived(archiveButton.dataset.archived !== "true", archiveButton, sayGroup);
    });
  }
  var unarchiveInline = document.getElementById("unarchive-inline");
  if (unarchiveInline) {
    var chatStatus = document.getElementById("chat-status");
    unarchiveInline.addEventListener("click", function () {
      setArchived(false, unarchiveInline, sayIn(chatStatus, "small mb-1"));
    });
  }

  // ---- what the server tells ---------------------------------------------------------------------
  socket.on("conversation_updated", takeState);
  // System lines say who joined, left, was removed or changed role: the panel follows them.
  socket.on("message", function (m) {
    if (!m || m.conversation_id !== conversationId || m.kind !== "system" || !m.system) { return; }
    var s = m.system;
    if ((s.event === "removed" || s.event === "left") && typeof s.user_id === "number") {
      dropMember(s.user_id);
    } else if (s.event === "role_changed" && typeof s.user_id === "number" && ROLE_NAMES[s.role]) {
      setMemberRole(s.user_id, s.role);
      if (s.user_id === me) { takeState({ conversation_id: conversationId, role: s.role }); }
    } else if (s.event === "joined" || s.event === "added") {
      stale = true;
      if (panel.classList.contains("show") && loaded && !nextBefore) { loadMembers(true); }
    }
  });
})();
