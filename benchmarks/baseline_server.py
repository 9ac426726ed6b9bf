"""The bare Flask-SocketIO broadcast server the load test compares Simple Chat against.

Same eventlet worker, gunicorn and Redis message queue; no login, cache, rate limiter, SQL or
Celery. ``join`` puts the socket in a room, ``send_message`` broadcasts to it and acks.

    BASELINE_REDIS_URL=redis://127.0.0.1:6379/11 \\
        gunicorn -k eventlet -w 1 -b 127.0.0.1:18502 benchmarks.baseline_server:app
"""

from __future__ import annotations

import os
import time
import uuid

from flask import Flask
from flask_socketio import SocketIO, join_room

NAMESPACE = "/chat"


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.urandom(16).hex()
    socketio = SocketIO(
        app,
        message_queue=os.environ.get("BASELINE_REDIS_URL") or None,
        channel=os.environ.get("BASELINE_CHANNEL", "baseline-socketio"),
        logger=False,
        engineio_logger=False,
    )

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @socketio.on("join", namespace=NAMESPACE)
    def on_join(data):
        if not isinstance(data, dict) or not isinstance(data.get("conversation_id"), int):
            return {"ok": False, "error": "invalid"}
        join_room(f"conversation:{data['conversation_id']}")
        return {"ok": True, "messages": [], "has_more": False}

    @socketio.on("send_message", namespace=NAMESPACE)
    def on_send_message(data):
        if not isinstance(data, dict) or not isinstance(data.get("conversation_id"), int):
            return {"ok": False, "error": "invalid"}
        payload = {
            "message": str(data.get("message", "")),
            "sender": 0,
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "id": str(uuid.uuid4()),
            "conversation_id": data["conversation_id"],
            "sender_name": "baseline",
            "client_id": data.get("client_id"),
        }
        socketio.emit("message", payload, to=f"conversation:{data['conversation_id']}",
                      namespace=NAMESPACE)
        return {"ok": True, "message": payload}

    return app


app = create_app()
