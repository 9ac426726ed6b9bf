/* Notifications on the page: Web Push on this device (the settings page), the conversation's
   bell (its level, muting for a while), and telling the server whether this page is looked at
   (`focus`), so that what is on screen is not pushed to the other devices. */
(function () {
  "use strict";

  var SUBSCRIPTION_KEY = "simplechat.pushSubscriptionId";

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function send(url, method, body) {
    return fetch(url, {
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (data) { return { ok: r.ok && data.ok, status: r.status, data: data }; },
                           function () { return { ok: false, status: r.status, data: {} }; });
    });
  }

  // ---- Web Push on this device (settings page) -----------------------------------------------
  function keyBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes;
  }

  function setUpPush(section) {
    var status = document.getElementById("push-status");
    var enable = document.getElementById("push-enable");
    var disable = document.getElementById("push-disable");
    if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
      status.textContent = "This browser cannot receive push notifications.";
      return;
    }
    var registration = null;
    function render(subscription) {
      var on = Boolean(subscription) && Notification.permission === "granted";
      enable.classList.toggle("d-none", on);
      disable.classList.toggle("d-none", !on);
      status.textContent = on ? "Push notifications are on for this device."
        : Notification.permission === "denied" ? "Notifications are blocked for this site in the browser's settings."
          : "Push notifications are off for this device.";
    }
    navigator.serviceWorker.register("/sw.js").then(function (reg) {
      registration = reg;
      return reg.pushManager.getSubscription();
    }).then(render, function () { status.textContent = "The service worker could not start."; });

    enable.addEventListener("click", function () {
      enable.disabled = true;
      Notification.requestPermission().then(function (permission) {
        if (permission !== "granted" || !registration) { render(null); return null; }
        return registration.pushManager.subscribe({
          userVisibleOnly: true, applicationServerKey: keyBytes(section.dataset.pushKey)
        }).then(function (subscription) {
          return send(section.dataset.subscribeUrl, "POST", subscription.toJSON()).then(function (answer) {
            if (!answer.ok) {
              status.textContent = "The server refused this device's subscription.";
              return subscription.unsubscribe().then(function () { return null; });
            }
            try { localStorage.setItem(SUBSCRIPTION_KEY, String(answer.data.id)); } catch (e) { /* private mode */ }
            render(subscription);
            return subscription;
          });
        });
      }).catch(function () { status.textContent = "Push notifications could not be turned on."; })
        .then(function () { enable.disabled = false; });
    });

    disable.addEventListener("click", function () {
      disable.disabled = true;
      var id = null;
      try { id = localStorage.getItem(SUBSCRIPTION_KEY); } catch (e) { /* private mode */ }
      registration.pushManager.getSubscription().then(function (subscription) {
        return subscription ? subscription.unsubscribe() : null;
      }).then(function () {
        return id ? send(section.dataset.subscribeUrl + "/" + encodeURIComponent(id), "DELETE") : null;
      }).then(function () {
        try { localStorage.removeItem(SUBSCRIPTION_KEY); } catch (e) { /* private mode */ }
        render(null);
      }).catch(function () { status.textContent = "Push notifications could not be turned off."; })
        .then(function () { disable.disabled = false; });
    });
  }

  var pushSection = document.getElementById("push-section");
  if (pushSection && pushSection.dataset.pushKey) { setUpPush(pushSection); }

  // ---- the conversation's bell --------------------------------------------------------------
  var menu = document.getElementById("notify-level-menu");
  function renderLevel() {
    var level = menu.dataset.level;
    var until = menu.dataset.mutedUntil;
    menu.querySelectorAll(".notify-level-option").forEach(function (option) {
      var chosen = option.dataset.level === level;
      option.setAttribute("aria-pressed", chosen ? "true" : "false");
      option.classList.toggle("active", chosen);
    });
    var statusLine = document.getElementById("notify-level-status");
    if (statusLine) {
      statusLine.textContent = !until ? ""
        : window.SimpleChat ? "Muted until " + SimpleChat.formatFull(SimpleChat.parseUtc(until))
          : "Muted until " + until + " UTC";
    }
  }
  function changeLevel(body) {
    var statusLine = document.getElementById("notify-level-status");
    send(menu.dataset.url, "POST", body).then(function (answer) {
      if (!answer.ok) { throw new Error("refused"); }
      menu.dataset.level = answer.data.level;
      menu.dataset.mutedUntil = answer.data.muted_until || "";
      renderLevel();
    }).catch(function () { if (statusLine) { statusLine.textContent = "Could not change it; try again."; } });
  }
  function utcIn(minutes) {
    return new Date(Date.now() + minutes * 60000).toISOString().slice(0, 19).replace("T", " ");
  }
  if (menu) {
    renderLevel();
    menu.addEventListener("click", function (event) {
      var option = event.target.closest(".notify-level-option, .notify-mute-option");
      if (!option) { return; }
      if (option.classList.contains("notify-mute-option")) {
        changeLevel({ level: "none", muted_until: utcIn(parseInt(option.dataset.minutes, 10)) });
      } else {
        changeLevel({ level: option.dataset.level });
      }
    });
  }

  // ---- focus: whether this page is looked at -------------------------------------------------
  var script = document.currentScript;
  var chat = document.getElementById("chat");
  if (script && script.dataset.push && chat && window.SimpleChat) {
    var socket = SimpleChat.socket();
    var conversationId = parseInt(chat.dataset.conversationId, 10);
    var told;
    var tell = function () {
      var looking = !document.hidden && document.hasFocus() ? conversationId : null;
      if (looking === told) { return; }
      told = looking;
      socket.emit("focus", { conversation_id: looking });
    };
    document.addEventListener("visibilitychange", tell);
    window.addEventListener("focus", tell);
    window.addEventListener("blur", tell);
    // A new socket counts as looking once it joins: tell it again how things stand.
    socket.on("connect", function () { told = undefined; tell(); });
    tell();
  }
})();
