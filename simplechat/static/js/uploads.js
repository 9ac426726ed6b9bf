/* Files for the next message: picked with the paperclip, dropped on the messages or pasted as
 * images. Each uploads at once (XMLHttpRequest, for its progress) and shows as a chip in the
 * composer, with a progress bar, its error if refused, and a button to remove it. */
(function () {
  "use strict";
  var SC = window.SimpleChat;
  if (!SC) { return; }

  var REFUSED = {
    too_large: "is too large to send.", unsupported: "cannot be sent (unsupported type).",
    empty: "is empty.", invalid: "could not be uploaded.", forbidden: "cannot be sent here.",
    rate_limited: "was refused: too many uploads; try again in a moment.",
    unavailable: "could not be stored; try again.", not_found: "cannot be sent here.",
    invalid_image: "is not a readable image.",
    too_many: "was refused: too many files waiting to be sent; send or remove some first."
  };

  // opts: {url, chips (ul), input (file input), button, dropZone, pasteTarget, onStatus(text, kind)}
  function uploads(opts) {
    var items = [];   // {file, chip, xhr, attachment, error}
    var seq = 0;

    function render() { opts.chips.classList.toggle("d-none", !items.length); }

    function remove(item) {
      if (item.xhr && !item.attachment && !item.error) { item.xhr.abort(); }
      var at = items.indexOf(item);
      if (at !== -1) { items.splice(at, 1); }
      item.chip.remove();
      render();
    }

    // An uploaded file taken out of the composer is deleted on the server too, so it stops
    // counting against the unsent-uploads quota (a file already sent is refused there: 404).
    function withdraw(item) {
      if (!item.attachment || !item.attachment.url) { return; }
      var xhr = new XMLHttpRequest();
      xhr.open("DELETE", item.attachment.url);
      xhr.setRequestHeader("X-CSRFToken", window.SimpleChat.csrfToken());
      xhr.send();
    }

    function add(file) {
      seq += 1;
      var item = { file: file, attachment: null, error: null, xhr: null };
      var chip = document.createElement("li");
      chip.className = "attachment-chip uploading";
      var name = document.createElement("span");
      name.className = "attachment-chip-name";
      name.textContent = file.name || "pasted image";
      var size = document.createElement("span");
      size.className = "attachment-chip-size";
      size.textContent = SC.parts.humanSize(file.size);
      var bar = document.createElement("progress");
      bar.className = "attachment-progress";
      bar.max = 100;
      bar.value = 0;
      bar.setAttribute("aria-label", "Uploading " + (file.name || "pasted image"));
      var state = document.createElement("span");
      state.className = "attachment-chip-state";
      var x = document.createElement("button");
      x.type = "button";
      x.className = "btn-close attachment-remove";
      x.setAttribute("aria-label", "Remove " + (file.name || "pasted image"));
      x.addEventListener("click", function () { withdraw(item); remove(item); opts.button.focus(); });
      chip.appendChild(name);
      chip.appendChild(size);
      chip.appendChild(bar);
      chip.appendChild(state);
      chip.appendChild(x);
      item.chip = chip;
      items.push(item);
      opts.chips.appendChild(chip);
      render();

      var form = new FormData();
      form.append("file", file, file.name || "pasted-image-" + seq + ".png");
      var xhr = new XMLHttpRequest();
      item.xhr = xhr;
      xhr.open("POST", opts.url);
      xhr.setRequestHeader("X-CSRFToken", window.SimpleChat.csrfToken());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) { bar.value = Math.round(100 * e.loaded / e.total); }
      });
      function refused(code) {
        item.error = code || "invalid";
        chip.classList.remove("uploading");
        chip.classList.add("failed");
        bar.remove();
        var why = (file.name || "The pasted image") + " " + (REFUSED[item.error] || REFUSED.invalid);
        state.textContent = REFUSED[item.error] ? (item.error === "too_large" ? "Too large" : "Not uploaded") : "Not uploaded";
        state.title = why;
        opts.onStatus(why, "danger");
      }
      xhr.addEventListener("load", function () {
        var data = null;
        try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
        if (xhr.status === 201 && data && data.ok && data.attachment) {
          item.attachment = data.attachment;
          chip.classList.remove("uploading");
          chip.classList.add("uploaded");
          chip.dataset.attachmentId = data.attachment.id;
          bar.remove();
          return;
        }
        refused(xhr.status === 413 ? "too_large" : data && data.error);
      });
      xhr.addEventListener("error", function () { refused("unavailable"); });
      xhr.send(form);
    }

    function addFiles(files) {
      Array.prototype.forEach.call(files || [], function (f) { if (f) { add(f); } });
    }

    opts.button.addEventListener("click", function () { opts.input.click(); });
    opts.input.addEventListener("change", function () { addFiles(opts.input.files); opts.input.value = ""; });
    function hasFiles(e) {
      return e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types || [], "Files") !== -1;
    }
    opts.dropZone.addEventListener("dragover", function (e) {
      if (!hasFiles(e)) { return; }
      e.preventDefault();
      opts.dropZone.classList.add("drop-target");
    });
    opts.dropZone.addEventListener("dragleave", function (e) {
      if (!opts.dropZone.contains(e.relatedTarget)) { opts.dropZone.classList.remove("drop-target"); }
    });
    opts.dropZone.addEventListener("drop", function (e) {
      opts.dropZone.classList.remove("drop-target");
      if (!hasFiles(e)) { return; }
      e.preventDefault();
      addFiles(e.dataTransfer.files);
    });
    opts.pasteTarget.addEventListener("paste", function (e) {
      var files = Array.prototype.filter.call((e.clipboardData && e.clipboardData.files) || [], function (f) {
        return /^image\//.test(f.type);
      });
      if (files.length) { e.preventDefault(); addFiles(files); }
    });

    return {
      busy: function () { return items.some(function (i) { return !i.attachment && !i.error; }); },
      ready: function () { return items.filter(function (i) { return i.attachment; }).map(function (i) { return i.attachment; }); },
      failed: function () { return items.some(function (i) { return i.error; }); },
      clear: function () { items.slice().forEach(remove); },
      addFiles: addFiles
    };
  }

  SC.uploads = uploads;
})();
