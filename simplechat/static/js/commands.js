/* The composer's slash commands: typing "/" at the start of a message offers the commands of
 * this conversation (GET /api/conversations/<id>/commands, asked once a minute at most), as a
 * listbox the textarea controls, like the mention list: arrows move, Enter or Tab picks (the
 * name and a blank go in), Escape closes. A picked command is sent as typed: the server runs it. */
(function () {
  "use strict";
  var root = document.getElementById("chat");
  var input = document.getElementById("message-input");
  var box = document.getElementById("command-suggestions");
  if (!root || !input || !box) { return; }
  var conversationId = parseInt(root.dataset.conversationId, 10);
  var MAX_SHOWN = 8;
  var REFRESH_MS = 60000;

  var known = null;     // [{name, description}] once loaded
  var loadedAt = 0;
  var loading = null;
  var list = window.SimpleChat.suggestions(input, box, function (c) {
    input.value = c.name + " ";
    input.setSelectionRange(input.value.length, input.value.length);
  }, function (c) {
    return input.value.trim() === c.name;  // Enter on a name typed in full sends it
  });

  function load() {
    if (loading) { return loading; }
    if (known && Date.now() - loadedAt < REFRESH_MS) { return Promise.resolve(known); }
    loading = fetch("/api/conversations/" + conversationId + "/commands",
                    { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { commands: [] }; })
      .then(function (data) { known = data.commands || []; loadedAt = Date.now(); return known; })
      .catch(function () { return known || []; })
      .finally(function () { loading = null; });
    return loading;
  }

  // The "/word" being typed: the whole text so far, with no blank yet.
  function query() {
    if (input.selectionStart !== input.selectionEnd) { return null; }
    var upto = input.value.slice(0, input.selectionStart);
    var match = /^\/([\w-]*)$/.exec(upto);
    return match && input.value.slice(upto.length).trim() === "" ? match[1].toLowerCase() : null;
  }

  function open(text, commands) {
    list.show(commands.filter(function (c) {
      return c.name.slice(1).indexOf(text) === 0;
    }).slice(0, MAX_SHOWN), function (c, i) {
      var li = document.createElement("li");
      li.id = "command-option-" + i;
      li.className = "mention-option command-option";
      li.dataset.command = c.name;
      var name = document.createElement("span");
      name.className = "command-option-name";
      name.textContent = c.name;
      li.appendChild(name);
      if (c.description) {
        var about = document.createElement("span");
        about.className = "mention-option-username command-option-description";
        about.textContent = c.description;
        li.appendChild(document.createTextNode(" "));
        li.appendChild(about);
      }
      return li;
    });
  }

  function update() {
    var text = query();
    if (text === null) { list.close(); return; }
    load().then(function (commands) {
      if (query() === text) { open(text, commands); }
    });
  }
  input.addEventListener("input", update);
})();
