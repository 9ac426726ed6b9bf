/* Simple Chat's service worker (served at /sw.js): shows the notifications Web Push brings, one
   per conversation (its tag: a newer message replaces the older one), opens the conversation
   when one is clicked, and closes a conversation's notification when a "clear" arrives (it was
   read on another device). */
"use strict";

var ICON = "__ICON_URL__";

self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (event) { event.waitUntil(self.clients.claim()); });

function sameOrigin(url) {
  try {
    var parsed = new URL(url || "/", self.location.origin);
    return parsed.origin === self.location.origin ? parsed.href : self.location.origin + "/";
  } catch (e) {
    return self.location.origin + "/";
  }
}

self.addEventListener("push", function (event) {
  var data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = {}; }
  var tag = typeof data.tag === "string" ? data.tag : "conversation-" + data.conversation_id;
  if (data.type === "clear") {
    event.waitUntil(self.registration.getNotifications({ tag: tag }).then(function (shown) {
      shown.forEach(function (n) { n.close(); });
    }));
    return;
  }
  event.waitUntil(self.registration.showNotification(String(data.title || "Simple Chat"), {
    body: String(data.body || ""), tag: tag, renotify: true, icon: ICON,
    data: { url: sameOrigin(data.url), conversation_id: data.conversation_id }
  }));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = sameOrigin(event.notification.data && event.notification.data.url);
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (windows) {
    for (var i = 0; i < windows.length; i++) {
      if (windows[i].url === url && "focus" in windows[i]) { return windows[i].focus(); }
    }
    return self.clients.openWindow(url);
  }));
});
