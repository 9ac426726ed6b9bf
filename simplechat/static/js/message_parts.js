/* Pieces of a message in the chat page, built from its payload: the server's sanitized html,
 * system lines, the reply quote, the reactions bar and its picker, attachments and the image
 * lightbox. Only `html` is ever inserted as HTML; everything else goes in as text. */
(function () {
  "use strict";
  var SC = window.SimpleChat;
  if (!SC) { return; }

  var PICKER = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"];
  var PICKER_NAMES = ["thumbs up", "heart", "laughing", "party", "surprised", "sad", "thanks", "eyes"];

  // The server's rendering (Markdown, sanitized by an allow-list); links open in a new tab
  // without a handle on this page; code blocks scroll sideways and so take the keyboard focus.
  function renderBody(body, m, myId) {
    if (typeof m.html !== "string" || !m.html) {
      body.textContent = m.message || "";
      return false;
    }
    body.innerHTML = m.html;
    body.classList.add("message-html");
    body.querySelectorAll("a[href]").forEach(function (a) {
      a.target = "_blank";
      a.rel = "noopener noreferrer nofollow";
    });
    body.querySelectorAll("pre").forEach(function (pre) {
      pre.tabIndex = 0;
      pre.setAttribute("aria-label", "Code block");
      pre.setAttribute("role", "region");
    });
    body.querySelectorAll("span.mention[data-user-id]").forEach(function (span) {
      if (parseInt(span.dataset.userId, 10) === myId) { span.classList.add("mention-me"); }
    });
    return true;
  }

  // A message's own content: its text (or, deleted, what its tombstone says) and its files.
  function content(m, myId, tombstone) {
    var body = document.createElement("div");
    body.className = "message-text";
    if (m.deleted) { body.textContent = tombstone; } else { renderBody(body, m, myId); }
    var files = !m.deleted && attachmentsBlock(m.attachments);
    return files ? [body, files] : [body];
  }

  // "(edited)", with when on hover; null for a message never edited (or deleted).
  function editedMark(m) {
    if (!m.edited_at || m.deleted) { return null; }
    var edited = document.createElement("span");
    edited.className = "message-edited";
    edited.textContent = "(edited)";
    edited.title = "Edited " + SC.formatFull(SC.parseUtc(m.edited_at));
    return edited;
  }

  // A time as shown ("8:21 PM", the viewer's locale and zone) with the full date on hover and,
  // instead of the short form, for screen readers.
  function timeElement(className, when) {
    var time = document.createElement("time");
    time.className = className;
    var full = SC.formatFull(when);
    time.dateTime = when.toISOString();
    time.title = full;
    time.textContent = SC.formatTime(when);
    time.setAttribute("aria-hidden", "true");
    var spoken = document.createElement("span");
    spoken.className = "visually-hidden";
    spoken.textContent = full;
    return [time, spoken];
  }

  // "Replying to"-style summary of the quoted message, as a button that jumps to it.
  function replyQuote(reply, onJump) {
    var quote = document.createElement("button");
    quote.type = "button";
    quote.className = "reply-quote";
    quote.dataset.replyTo = reply.id;
    var who = document.createElement("span");
    who.className = "reply-quote-sender";
    who.textContent = reply.sender_name || "Someone";
    var what = document.createElement("span");
    what.className = "reply-quote-preview";
    what.textContent = reply.preview || "";
    var spoken = document.createElement("span");
    spoken.className = "visually-hidden";
    spoken.textContent = "In reply to ";
    quote.appendChild(spoken);
    quote.appendChild(who);
    quote.appendChild(what);
    quote.title = "Show the message this replies to";
    quote.addEventListener("click", function () { onJump(reply.id); });
    return quote;
  }

  function nameList(ids, names) {
    return ids.map(function (uid) { return names[uid] || ("User " + uid); }).join(", ");
  }

  // Under a message: a button per emoji (its count, pressed if one of them is mine, who reacted
  // in its tooltip). `onToggle(emoji, on)` asks the server.
  function reactionsBar(m, myId, names, onToggle) {
    var bar = document.createElement("div");
    bar.className = "reactions";
    var reactions = m.reactions && typeof m.reactions === "object" ? m.reactions : {};
    Object.keys(reactions).forEach(function (emoji) {
      var ids = Array.isArray(reactions[emoji]) ? reactions[emoji] : [];
      if (!ids.length) { return; }
      var mine = ids.indexOf(myId) !== -1;
      var who = nameList(ids, names);
      var button = document.createElement("button");
      button.type = "button";
      button.className = "reaction";
      button.dataset.emoji = emoji;
      button.dataset.focusKey = "reaction:" + emoji;
      button.setAttribute("aria-pressed", mine ? "true" : "false");
      button.title = who + " reacted with " + emoji;
      button.setAttribute("aria-label", emoji + " " + ids.length + ", " + who + (mine ? "" : "; react too"));
      var face = document.createElement("span");
      face.className = "reaction-emoji";
      face.textContent = emoji;
      var count = document.createElement("span");
      count.className = "reaction-count";
      count.textContent = String(ids.length);
      button.appendChild(face);
      button.appendChild(count);
      button.addEventListener("click", function () { onToggle(emoji, !mine); });
      bar.appendChild(button);
    });
    return bar.childNodes.length ? bar : null;
  }

  // The small picker of the eight emoji, opened from a message's React button.
  var openPicker = null;
  function closePicker(refocus) {
    if (!openPicker) { return; }
    var p = openPicker;
    openPicker = null;
    p.box.remove();
    p.opener.setAttribute("aria-expanded", "false");
    if (refocus) { p.opener.focus(); }
  }
  // Inside the viewport and the scrolling box it opens in (a phone's narrow screen, the first
  // message's top edge): moved sideways, or below its button.
  function keepInView(box) {
    var frame = box.closest(".chat-body");
    var bounds = frame ? frame.getBoundingClientRect() : { left: 0, right: window.innerWidth, top: 0 };
    var left = Math.max(bounds.left, 0) + 4;
    var right = Math.min(bounds.right, document.documentElement.clientWidth) - 4;
    var rect = box.getBoundingClientRect();
    var dx = 0;
    if (rect.right > right) { dx = right - rect.right; }
    if (rect.left + dx < left) { dx = left - rect.left; }
    if (dx) { box.style.transform = "translateX(" + Math.round(dx) + "px)"; }
    if (rect.top < Math.max(bounds.top, 0)) { box.classList.add("reaction-picker-below"); }
  }
  function togglePicker(opener, onPick) {
    if (openPicker && openPicker.opener === opener) { closePicker(true); return; }
    closePicker(false);
    var box = document.createElement("div");
    box.className = "reaction-picker";
    box.id = "reaction-picker";
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Pick a reaction");
    PICKER.forEach(function (emoji, i) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "reaction-choice";
      b.dataset.emoji = emoji;
      b.textContent = emoji;
      b.title = PICKER_NAMES[i];
      b.setAttribute("aria-label", "React with " + PICKER_NAMES[i]);
      b.addEventListener("click", function () { closePicker(true); onPick(emoji); });
      box.appendChild(b);
    });
    box.addEventListener("keydown", function (e) {
      var choices = Array.prototype.slice.call(box.querySelectorAll("button"));
      var at = choices.indexOf(document.activeElement);
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); closePicker(true); }
      else if (e.key === "ArrowRight" || e.key === "ArrowDown") { e.preventDefault(); choices[(at + 1) % choices.length].focus(); }
      else if (e.key === "ArrowLeft" || e.key === "ArrowUp") { e.preventDefault(); choices[(at - 1 + choices.length) % choices.length].focus(); }
    });
    opener.setAttribute("aria-expanded", "true");
    opener.after(box);
    keepInView(box);
    openPicker = { box: box, opener: opener };
    box.querySelector("button").focus();
  }
  document.addEventListener("click", function (e) {
    if (openPicker && !openPicker.box.contains(e.target) && e.target !== openPicker.opener &&
        !openPicker.opener.contains(e.target)) { closePicker(false); }
  });

  var UNITS = ["B", "KB", "MB", "GB"];
  function humanSize(bytes) {
    var n = Number(bytes) || 0;
    var u = 0;
    while (n >= 1024 && u < UNITS.length - 1) { n /= 1024; u += 1; }
    return (u === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + " " + UNITS[u];
  }

  // The box an image takes in the timeline (at most 240 x 240, its own proportions), so the
  // page does not jump when it loads.
  var THUMB = 240;
  function thumbSize(a) {
    var w = parseInt(a.width, 10), h = parseInt(a.height, 10);
    if (!(w > 0 && h > 0)) { return { width: THUMB, height: THUMB }; }
    var scale = Math.min(1, THUMB / Math.max(w, h));
    return { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(h * scale)) };
  }

  function isImage(a) { return /^image\/(png|jpeg|gif|webp)$/.test(a.content_type || "") && !!a.url; }

  var SVG = "http://www.w3.org/2000/svg";
  function fileIcon() {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "attachment-icon");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG, "path");
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-linejoin", "round");
    path.setAttribute("d", "M14 3H6a1 1 0 0 0-1 1v16a1 1 0 0 0 1 1h12a1 1 0 0 0 1-1V8zM14 3v5h5");
    svg.appendChild(path);
    return svg;
  }

  function attachmentsBlock(list) {
    if (!Array.isArray(list) || !list.length) { return null; }
    var box = document.createElement("div");
    box.className = "attachments";
    list.forEach(function (a) {
      if (!a || typeof a.url !== "string") { return; }
      if (isImage(a)) {
        var link = document.createElement("a");
        link.className = "attachment-image";
        link.href = a.url;
        link.dataset.focusKey = "attachment:" + a.id;
        link.setAttribute("aria-label", "Open image " + (a.name || ""));
        var img = document.createElement("img");
        var size = thumbSize(a);
        img.src = a.thumbnail_url || a.url;
        img.width = size.width;
        img.height = size.height;
        img.alt = a.name || "Image";
        img.loading = "lazy";
        link.appendChild(img);
        link.addEventListener("click", function (e) { e.preventDefault(); openLightbox(a, link); });
        box.appendChild(link);
      } else {
        var chip = document.createElement("a");
        chip.className = "attachment-file";
        chip.href = a.url;
        chip.setAttribute("download", a.name || "");
        var icon = fileIcon();
        var name = document.createElement("span");
        name.className = "attachment-name";
        name.textContent = a.name || "file";
        var size2 = document.createElement("span");
        size2.className = "attachment-size";
        size2.textContent = humanSize(a.size);
        chip.appendChild(icon);
        chip.appendChild(name);
        chip.appendChild(size2);
        chip.title = "Download " + (a.name || "file");
        box.appendChild(chip);
      }
    });
    return box.childNodes.length ? box : null;
  }

  // The lightbox: a modal <dialog> (Esc and the close button shut it), focus back where it was.
  var lightboxOpener = null;
  function openLightbox(a, opener) {
    var dialog = document.getElementById("lightbox");
    if (!dialog || typeof dialog.showModal !== "function") { window.open(a.url, "_blank", "noopener"); return; }
    var img = dialog.querySelector(".lightbox-image");
    img.src = a.url;
    img.alt = a.name || "Image";
    if (a.width && a.height) { img.width = a.width; img.height = a.height; }
    dialog.querySelector(".lightbox-caption").textContent = a.name || "";
    var download = dialog.querySelector(".lightbox-download");
    download.href = a.url;
    download.setAttribute("download", a.name || "");
    lightboxOpener = opener;
    dialog.showModal();
    dialog.querySelector(".lightbox-close").focus();
  }
  var dialog = document.getElementById("lightbox");
  if (dialog) {
    dialog.querySelector(".lightbox-close").addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("click", function (e) { if (e.target === dialog) { dialog.close(); } });
    dialog.addEventListener("close", function () {
      var opener = lightboxOpener;
      lightboxOpener = null;
      if (opener && document.contains(opener)) { opener.focus(); }
    });
  }

  SC.parts = {
    PICKER: PICKER,
    renderBody: renderBody,
    content: content,
    editedMark: editedMark,
    timeElement: timeElement,
    replyQuote: replyQuote,
    reactionsBar: reactionsBar,
    togglePicker: togglePicker,
    closePicker: closePicker,
    attachmentsBlock: attachmentsBlock,
    humanSize: humanSize,
    openLightbox: openLightbox
  };
})();
