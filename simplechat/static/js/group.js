/* Group and channel settings on the chat page: rename, add people (Select2 over /api/users),
 * leave (channel.js does the description and archiving). The page itself applies the resulting
 * `conversation_updated` and `conversation_left` events. */
(function () {
  "use strict";
  var modal = document.getElementById("group-modal");
  var root = document.getElementById("chat");
  if (!modal || !root || !window.SimpleChat) { return; }
  var conversationId = parseInt(root.dataset.conversationId, 10);
  var socket = window.SimpleChat.socket();
  var status = document.getElementById("group-status");
  var titleInput = document.getElementById("group-title-input");
  var leaveButton = document.getElementById("leave-group");
  var leaveCancel = document.getElementById("leave-cancel");
  var leaveConfirm = document.getElementById("leave-confirm");
  var $people = $("#add-people");
  var kind = leaveButton.dataset.kind || "group";

  var REASONS = {
    invalid: "That is not a valid name.", empty: "The name cannot be blank.",
    too_long: "That name is too long.", not_found: "Someone picked is not available.",
    too_many: "That would be more people than a " + kind + " can have.", rate_limited: "Too fast; try again in a moment.",
    forbidden: "You are not in this " + kind + " any more.", unavailable: "The server could not do that; try again.",
    not_allowed: "Only this " + kind + "’s owners and admins can do that.",
    archived: "This " + kind + " is archived: unarchive it first."
  };

  function say(text, kind) {
    status.textContent = text || "";
    status.className = "small mt-2" + (kind ? " text-" + kind : "");
  }

  function ask(event, payload, done) {
    socket.timeout(10000).emit(event, payload, function (err, ack) {
      if (err) { say("No answer from the server; try again.", "danger"); return; }
      if (!ack || !ack.ok) {
        var reason = REASONS[ack && ack.error] || "That did not work.";
        if (ack && ack.error === "too_many" && ack.max_participants) {
          reason = "A " + kind + " can have at most " + ack.max_participants + " people.";
        }
        say(reason, "danger");
        return;
      }
      done(ack);
    });
  }

  $people.select2({
    theme: "bootstrap-5",
    width: "100%",
    dropdownParent: $(modal),
    placeholder: "Search people by name or username",
    minimumInputLength: 1,
    language: { search: function () { return "Search people to add"; } },
    ajax: {
      url: $people.data("search-url"),
      dataType: "json",
      delay: 200,
      data: function (params) { return { q: params.term || "" }; },
      processResults: function (data) { return { results: data.results || [] }; }
    }
  });

  window.tidySelect2Aria($people, "add-people-label");

  document.getElementById("rename-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var title = titleInput.value.trim();
    if (!title) { say(REASONS.empty, "danger"); return; }
    ask("rename_conversation", { conversation_id: conversationId, title: title }, function () {
      say("Renamed.", "success");
    });
  });

  document.getElementById("add-people-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var ids = ($people.val() || []).map(function (v) { return parseInt(v, 10); });
    if (!ids.length) { say("Pick someone to add first.", "warning"); return; }
    ask("add_participants", { conversation_id: conversationId, user_ids: ids }, function () {
      $people.val(null).trigger("change");
      say(ids.length === 1 ? "Added 1 person." : "Added " + ids.length + " people.", "success");
    });
  });

  // Leaving takes a second click, so a slip does not cost the group's history.
  function confirming(on) {
    leaveConfirm.classList.toggle("d-none", !on);
    leaveCancel.classList.toggle("d-none", !on);
    leaveButton.textContent = on ? "Leave" : "Leave " + kind;
    leaveButton.classList.toggle("btn-danger", on);
    leaveButton.classList.toggle("btn-outline-danger", !on);
  }
  leaveButton.addEventListener("click", function () {
    if (leaveConfirm.classList.contains("d-none")) { confirming(true); leaveCancel.focus(); return; }
    ask("leave_conversation", { conversation_id: conversationId }, function () {
      say("You left the " + kind + ".", "success");  // the page follows `conversation_left`
    });
  });
  leaveCancel.addEventListener("click", function () { confirming(false); leaveButton.focus(); });
  modal.addEventListener("hidden.bs.modal", function () { confirming(false); say(""); });
  // The first field one may use: the name for owners and admins, else adding people.
  modal.addEventListener("shown.bs.modal", function () {
    var field = titleInput.offsetParent ? titleInput : modal.querySelector("#add-people-form .select2-search__field");
    if (field) { field.focus(); }
  });
})();
