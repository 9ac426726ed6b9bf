/* Conversation list: times in the viewer's zone. */
(function () {
  "use strict";
  document.querySelectorAll("time.utc-time").forEach(function (el) {
    var d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d)) { el.textContent = d.toLocaleString([], { dateStyle: "short", timeStyle: "short" }); el.title = d.toString(); }
  });
})();
