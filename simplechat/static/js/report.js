/* "Report…" in the menu of another's message: a short form under the message asks why, and
 * report_message sends it to the site admins (/admin/reports). Loaded before chat.js, which
 * takes SC.messageMenuEntries into each message's menu. */
(function () {
  "use strict";
  var SC = window.SimpleChat;
  var root = document.getElementById("chat");
  if (!SC || !root) { return; }
  var myId = parseInt(root.dataset.userId, 10);
  var conversationId = parseInt(root.dataset.conversationId, 10);
  var MAX_REASON = 500;
  var ERRORS = {
    conflict: "You have reported this message already.",
    not_found: "That message is gone.",
    invalid: "Say in a few words why (at most 500 characters).",
    rate_limited: "Too many at once: try again in a moment."
  };

  function rowOf(id) { return root.querySelector('.message[data-id="' + id + '"]'); }
  function focusActions(id) {
    var row = rowOf(id);
    var toggle = row && row.querySelector(".message-actions-toggle");
    if (toggle) { toggle.focus(); }
  }

  function openForm(m) {
    var page = SC.chatPage;
    var row = rowOf(m.id);
    if (!page || !row || row.querySelector(".message-report-form")) { return; }
    var form = document.createElement("form");
    form.className = "message-report-form d-flex flex-wrap gap-1 align-items-center mt-1";
    var inputId = "report-reason-" + m.id;
    var label = document.createElement("label");
    label.className = "form-label mb-0 small";
    label.htmlFor = inputId;
    label.textContent = "Why report this message to the site admins?";
    var reason = document.createElement("input");
    reason.type = "text";
    reason.id = inputId;
    reason.required = true;
    reason.maxLength = MAX_REASON;
    reason.className = "form-control form-control-sm message-report-reason";
    var send = document.createElement("button");
    send.type = "submit";
    send.className = "btn btn-sm btn-danger message-report-send";
    send.textContent = "Report";
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "btn btn-sm btn-light message-report-cancel";
    cancel.textContent = "Cancel";
    form.append(label, reason, send, cancel);
    (row.querySelector(".message-bubble") || row).appendChild(form);
    reason.focus();

    function close() { form.remove(); focusActions(m.id); }
    cancel.addEventListener("click", close);
    form.addEventListener("keydown", function (e) {
      if (e.key === "Escape") { e.preventDefault(); close(); }
    });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = reason.value.trim();
      if (!text) { page.setStatus(ERRORS.invalid, "danger"); reason.focus(); return; }
      send.disabled = true;
      page.socket.timeout(10000).emit("report_message", {
        conversation_id: conversationId, message_id: m.id, reason: text
      }, function (err, ack) {
        send.disabled = false;
        if (err || !ack || !ack.ok) {
          page.setStatus((ack && ERRORS[ack.error]) || "Could not send the report; try again.", "danger");
          if (ack && ack.error === "conflict") { close(); }
          return;
        }
        close();
        page.setStatus("Reported. The site admins will look at it.", "muted");
      });
    });
  }

  SC.messageMenuEntries = (SC.messageMenuEntries || []).concat([function (m) {
    if (m.sender === myId || m.kind === "system" || m.deleted || m.ephemeral) { return null; }
    return ["Report…", "report", function () { openForm(m); }];
  }]);
})();
