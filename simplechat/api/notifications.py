"""The JSON API of notifications: a conversation's level, the user's settings, and Web Push
(the VAPID key, this device's subscription). Each route parses, calls the notifications
feature and answers."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import jsonify, request
from flask_login import current_user
from pydantic import BaseModel, Field, RootModel

from simplechat.api.schemas import Body
from simplechat.api.spec import operation
from simplechat.auth.sessions import current_session
from simplechat.notifications.push import add_subscription, delete_subscription, public_key
from simplechat.notifications.settings import (
    CLOCK,
    set_level,
    settings_of,
    time_zones,
    update_settings,
)
from simplechat.web.errors import api_error
from simplechat.web.routing import ApiBlueprint

bp = ApiBlueprint("notifications", __name__)

# What the server checks, stated for the document (the views check the raw body themselves,
# through the feature's own checks, which the settings page shares).
Timestamp = Annotated[str, Field(
    pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01]) ([01][0-9]|2[0-3]):[0-5][0-9]"
            r":[0-5][0-9]$",
    description="UTC, YYYY-MM-DD HH:MM:SS (a day the calendar has)")]
Clock = Annotated[str, Field(pattern=CLOCK.pattern, description="HH:MM")]
Level = Literal["all", "mentions", "none", "default"]


class LevelChange(Body):
    level: Literal["all", "mentions", "default"] = Field(
        description="default: all in a direct or private conversation, mentions in a public "
                    "channel")


class TimedMute(Body):
    level: Literal["none"]
    muted_until: Timestamp | None = Field(
        None, description="muted until this UTC time, the standing level kept for after; null "
                          "or absent: muted for good")


class LevelAnswer(BaseModel):
    ok: Literal[True]
    conversation_id: int
    level: Level = Field(
        description="the standing level (the one that holds once a mute for a time ends)")
    muted_until: str | None = Field(description="the end of a mute for a time, if any")
    muted: bool = Field(description="whether the conversation is muted now")


class QuietHoursSetting(Body):
    start: Clock
    end: Clock = Field(description="HH:MM; at or before start: the hours wrap past midnight")
    timezone: str = Field(description="an IANA time zone, e.g. Europe/Berlin",
                          json_schema_extra={"enum": sorted(time_zones())})


class SettingsChange(Body):
    dnd_until: Timestamp | None = Field(None, description="do not disturb until this UTC time")
    quiet_hours: QuietHoursSetting | None = None
    email_notifications: bool = Field(True)
    email_delay_minutes: int = Field(10, ge=1, le=1440)


class SettingsValues(BaseModel):
    dnd_until: str | None
    quiet_hours: QuietHoursSetting | None
    email_notifications: bool
    email_delay_minutes: int


class Settings(BaseModel):
    ok: Literal[True]
    settings: SettingsValues


class PushKey(BaseModel):
    ok: Literal[True]
    key: str = Field(description="the VAPID public key (applicationServerKey), base64url")


class SubscriptionKeys(BaseModel):
    p256dh: str
    auth: str


class NewSubscription(BaseModel):
    endpoint: str = Field(description="the push service's URL for this browser")
    keys: SubscriptionKeys
    expirationTime: int | None = None  # noqa: N815  (the browser's own name)


class Subscribed(BaseModel):
    ok: Literal[True]
    id: int


class Forgotten(BaseModel):
    ok: Literal[True]


def _answer(ack: dict, status: int = 200):
    if ack.get("ok"):
        response = jsonify(ack)
        response.status_code = status
        return response
    code = ack["error"]
    response = jsonify(ack)
    response.status_code = {"not_found": 404, "unauthorized": 401}.get(code, 400)
    return response


def _json_body() -> object:
    return request.get_json(silent=True)


class NotificationChange(RootModel[LevelChange | TimedMute]):
    pass


@operation(bp, "/conversations/<id:conversation_id>/notifications", "POST",
           answers={200: LevelAnswer}, errors=(404,), raw_body=NotificationChange,
           tag="notifications")
def conversation_notifications(conversation_id: int):
    """Set my notification level in a conversation, or mute it for a time.

    Level `none` with `muted_until` mutes until then; `none` alone mutes for good. Your other
    pages hear of it as `conversation_muted`. 404 for a conversation you are not in.
    """
    return _answer(set_level(current_user.id, conversation_id, _json_body()))


@operation(bp, "/me/settings", "GET", answers={200: Settings}, tag="notifications")
def my_settings():
    """My notification settings."""
    return jsonify({"ok": True, "settings": settings_of(current_user)})


@operation(bp, "/me/settings", "PUT", answers={200: Settings}, errors=(400,),
           raw_body=SettingsChange, tag="notifications")
def change_my_settings():
    """Change any subset of my notification settings.

    Anything not valid (an unknown field, a time not `YYYY-MM-DD HH:MM:SS`, quiet hours without
    a real IANA time zone, a delay outside 1-1440) answers 400 `invalid` and changes nothing.
    """
    return _answer(update_settings(current_user.id, _json_body()))


@operation(bp, "/push/key", "GET", answers={200: PushKey}, errors=(404,), tag="notifications")
def push_key():
    """The VAPID public key to subscribe with; 404 while Web Push is not configured."""
    key = public_key()
    if key is None:
        return api_error("not_found", 404)
    return jsonify({"ok": True, "key": key})


@operation(bp, "/push/subscriptions", "POST", answers={201: Subscribed}, errors=(400, 404),
           raw_body=NewSubscription, tag="notifications")
def subscribe_push():
    """Subscribe this device to Web Push (the browser's PushSubscription JSON).

    An endpoint that is not http(s), or resolves to a private or local address (unless the
    server allows them, WEBHOOK_ALLOW_PRIVATE), answers 400 `invalid` with a `reason`. 404
    while Web Push is not configured. The subscription ends with the login that made it.
    """
    row = current_session()
    return _answer(add_subscription(current_user.id, row.id if row is not None else None,
                                    _json_body()), 201)


@operation(bp, "/push/subscriptions/<id:subscription_id>", "DELETE", answers={200: Forgotten},
           errors=(404,), tag="notifications")
def unsubscribe_push(subscription_id: int):
    """Forget one of my push subscriptions; 404 for an id of no subscription of mine."""
    if not delete_subscription(current_user.id, subscription_id):
        return api_error("not_found", 404)
    return jsonify({"ok": True})
