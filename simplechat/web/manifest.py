"""The installable web app: its manifest, the favicon at the path browsers ask for, and the
service worker (Web Push's notifications) at the root, so that its scope is the whole site."""

from __future__ import annotations

from flask import Flask, Response, current_app, json, send_from_directory, url_for

NAME = "Simple Chat"
THEME_COLOR = "#0a58ca"  # the navigation bar's blue
BACKGROUND_COLOR = "#f8f9fa"  # the page background while the app starts


def manifest() -> Response:
    """``/manifest.webmanifest``: what a browser needs to install the app."""
    def png(name: str, size: int, purpose: str = "any") -> dict:
        return {"src": url_for("static", filename=f"icons/{name}"),
                "sizes": f"{size}x{size}", "type": "image/png", "purpose": purpose}

    body = {
        "name": NAME,
        "short_name": "Chat",
        "description": "Real-time conversations with the people on this server.",
        "id": "/",
        "start_url": url_for("chat.index"),
        "scope": "/",
        "display": "standalone",
        "theme_color": THEME_COLOR,
        "background_color": BACKGROUND_COLOR,
        "icons": [
            png("icon-192.png", 192),
            png("icon-512.png", 512),
            png("icon-maskable-512.png", 512, "maskable"),
        ],
    }
    response = current_app.response_class(json.dumps(body, indent=2),
                                          mimetype="application/manifest+json")
    response.cache_control.no_cache = True  # its icon URLs change with the icons
    return response


def favicon() -> Response:
    """``/favicon.ico``, for browsers and tools that ask before (or without) reading the page."""
    return send_from_directory(current_app.static_folder, "icons/favicon.ico",
                               mimetype="image/vnd.microsoft.icon", max_age=86400)


def service_worker() -> Response:
    """``/sw.js``: shows pushed notifications, one per conversation, and opens them on click.
    Served fresh (browsers check it for updates), with its icon's hashed URL filled in."""
    with open(f"{current_app.static_folder}/js/sw.js", encoding="utf-8") as source:
        text = source.read()
    text = text.replace("__ICON_URL__", url_for("static", filename="icons/icon-192.png"))
    response = current_app.response_class(text, mimetype="text/javascript")
    response.cache_control.no_cache = True
    response.headers["Service-Worker-Allowed"] = "/"
    return response


def init_web_app(app: Flask) -> None:
    app.add_url_rule("/manifest.webmanifest", "manifest", manifest)
    app.add_url_rule("/favicon.ico", "favicon", favicon)
    app.add_url_rule("/sw.js", "service_worker", service_worker)
