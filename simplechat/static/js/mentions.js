/* The composer's mention list: typing "@" offers the conversation's participants (and @all in a
 * group), as a listbox the textarea controls (aria-autocomplete, aria-activedescendant: a
 * textarea may not take the combobox role): arrows move, Enter or Tab picks, Escape closes. */
(function () {
  "use strict";
  var root = document.getElementById("chat");
  var input = document.getElementById("message-input");
  var box = document.getElementById("mention-list");
  if (!root || !input || !box) { return; }
  var myId = parseInt(root.dataset.userId, 10);
  var isGroup = root.dataset.isGroup === "true";
  var MAX_SHOWN = 8;

  var start = -1;     // where the "@" being completed is in the text
  var list = window.SimpleChat.suggestions(input, box, function (p) {
    var before = input.value.slice(0, start);
    var after = input.value.slice(input.selectionStart);
    var inserted = "@" + p.username + " ";
    input.value = before + inserted + after.replace(/^\s+/, "");
    var caret = before.length + inserted.length;
    input.setSelectionRange(caret, caret);
  });

  function people() {
    var found = [];
    document.querySelectorAll("#chat-members .member[data-username]").forEach(function (el) {
      if (parseInt(el.dataset.userId, 10) === myId) { return; }
      var a = el.querySelector("a");
      found.push({ username: el.dataset.username, name: a ? a.textContent.trim() : el.dataset.username });
    });
    if (isGroup) { found.push({ username: "all", name: "Everyone in this group" }); }
    return found;
  }

  // The "@word" just before the caret, if any ("@" at the start or after a space).
  function query() {
    var upto = input.value.slice(0, input.selectionStart);
    var match = /(^|\s)@([\w.-]*)$/.exec(upto);
    if (!match || input.selectionStart !== input.selectionEnd) { return null; }
    return { at: upto.length - match[2].length - 1, text: match[2].toLowerCase() };
  }

  function open(q) {
    start = q.at;
    list.show(people().filter(function (p) {
      return p.username.toLowerCase().indexOf(q.text) === 0 ||
        p.name.toLowerCase().split(/\s+/).some(function (w) { return w.indexOf(q.text) === 0; });
    }).slice(0, MAX_SHOWN), function (p, i) {
      var li = document.createElement("li");
      li.id = "mention-option-" + i;
      li.className = "mention-option";
      li.dataset.username = p.username;
      var name = document.createElement("span");
      name.className = "mention-option-name";
      name.textContent = p.name;
      var handle = document.createElement("span");
      handle.className = "mention-option-username";
      handle.textContent = "@" + p.username;
      li.appendChild(name);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(handle);
      return li;
    });
  }

  function update() {
    var q = query();
    if (q) { open(q); } else { list.close(); }
  }
  input.addEventListener("input", update);
  input.addEventListener("click", update);
})();
