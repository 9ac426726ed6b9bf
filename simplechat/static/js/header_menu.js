/* The chat header at phone width: its action buttons (members, Manage, Mute, Webhooks and
 * whatever else .chat-header-actions holds, but for a menu of its own such as the bell's) fold
 * into one "Conversation actions" menu (a Bootstrap dropdown, keyboard usable), so the title
 * keeps the room. The menu is built from the buttons each time it opens: it always offers what
 * they offer, with their current state. */
(function () {
  "use strict";
  var header = document.querySelector(".chat-header");
  var actions = header && header.querySelector(".chat-header-actions");
  if (!actions || typeof bootstrap === "undefined") { return; }

  var box = document.createElement("div");
  box.className = "dropdown chat-header-menu flex-shrink-0";
  var toggle = document.createElement("button");
  toggle.type = "button";
  toggle.id = "chat-header-menu-toggle";
  toggle.className = "btn btn-outline-secondary btn-sm";
  toggle.setAttribute("data-bs-toggle", "dropdown");
  toggle.setAttribute("aria-expanded", "false");
  toggle.setAttribute("aria-label", "Conversation actions");
  var dots = document.createElement("span");
  dots.setAttribute("aria-hidden", "true");
  dots.textContent = "⋮";
  toggle.appendChild(dots);
  var menu = document.createElement("ul");
  menu.className = "dropdown-menu dropdown-menu-end";
  menu.id = "chat-header-menu";
  box.appendChild(toggle);
  box.appendChild(menu);
  actions.after(box);
  header.classList.add("has-actions-menu");

  // What a button says, for its menu item: its own label, or its text with the hidden parts.
  function labelOf(el) {
    if (el.id === "mute-button") { return el.getAttribute("aria-pressed") === "true" ? "Unmute" : "Mute"; }
    if (el.id === "members-button") { return "Members (" + el.textContent.replace(/\D+/g, "") + ")"; }
    return (el.getAttribute("aria-label") || el.textContent || el.title || "").replace(/\s+/g, " ").trim();
  }
  function build() {
    menu.replaceChildren();
    actions.querySelectorAll("a, button").forEach(function (el) {
      if (el.classList.contains("d-none") || el.closest(".d-none") || el.disabled) { return; }
      if (el.closest(".dropdown")) { return; }  // a menu of its own stays in the header
      var li = document.createElement("li");
      var item;
      if (el.tagName === "A") {
        item = document.createElement("a");
        item.href = el.href;
      } else {
        item = document.createElement("button");
        item.type = "button";
        var opens = el.getAttribute("data-bs-toggle");
        if (opens === "modal" || opens === "offcanvas") {
          // Bootstrap opens it from the item itself (and gives the focus back to the menu's button).
          item.setAttribute("data-bs-toggle", opens);
          item.setAttribute("data-bs-target", el.getAttribute("data-bs-target"));
        } else {
          item.addEventListener("click", function () { el.click(); });
        }
      }
      item.className = "dropdown-item";
      item.dataset.for = el.id || "";
      item.textContent = labelOf(el);
      li.appendChild(item);
      menu.appendChild(li);
    });
  }
  toggle.addEventListener("show.bs.dropdown", build);
  build();
  // A dialog or panel opened from the menu gives the focus back to the menu's button.
  ["hidden.bs.modal", "hidden.bs.offcanvas"].forEach(function (name) {
    document.addEventListener(name, function () {
      if (document.activeElement === document.body && toggle.offsetParent !== null) { toggle.focus(); }
    });
  });
})();
