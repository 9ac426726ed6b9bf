"""Deciding and sending pushes, by Celery tasks after a message is stored (on
CELERY_WEBHOOK_QUEUE, beside the webhooks: they wait on other people's servers). In the embedded
default (tasks run inline) the same work runs beside the caller, as webhook deliveries do.

One task per stored batch decides who is notified (notifications.rules) and sends to each of
their live subscriptions, WEBPUSH_CONCURRENCY at once, each within WEBPUSH_DEADLINE: a push
service that hangs holds one slot until its deadline, never the others. A subscription whose
service answers 404 or 410 is deleted; other failures are retried alone, with backoff.

A batch none of whose conversations has a member with a subscription queues no task at all
(one SQL query in the storing transaction instead of a task and its decision). A user gets
one push per conversation for a batch, and at most one per WEBPUSH_COALESCE_SECONDS: what
comes within that window is held, and its newest message pushed when the window ends, unless
the user read the conversation meanwhile (notifications.focus). The notification of a
conversation replaces the one before it on the device anyway (its ``tag``); a burst of fifty
messages buzzes twice, not fifty times.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime

from celery import shared_task
from flask import current_app
from sqlalchemy import delete, or_, select, update

from simplechat.extensions import db, socketio
from simplechat.infra.ids import message_id_time
from simplechat.infra.offload import offload_pool
from simplechat.mail.sending import beside
from simplechat.models import (
    Conversation,
    Participant,
    PushSubscription,
    User,
    utcnow,
)
from simplechat.notifications.focus import focus_store
from simplechat.notifications.push import (
    CLEAR,
    GONE,
    MESSAGE,
    REFUSED,
    RETRY,
    SENT,
    Target,
    encrypted_request,
    live_targets,
    push_configured,
    push_payload,
    send_push,
)
from simplechat.notifications.rules import QuietHours, Recipient, should_notify
from simplechat.observability.activity import write_error
from simplechat.webhooks.delivery import backoff

log = logging.getLogger(__name__)

MAX_RETRIES = 5
RECORD_EVERY = 0.2  # seconds: pushes done are recorded in batches at most this far apart
NOTIFY_TASKS = ("simplechat.notify_messages", "simplechat.notify_pending",
                "simplechat.push_held", "simplechat.retry_push", "simplechat.clear_notifications")


def _eager() -> bool:
    return bool(current_app.extensions["celery"].conf.task_always_eager)


# --------------------------------------------------------------------------- queueing
def queue_notifications(payloads: list[dict]) -> None:
    """STORED_LISTENERS: hand a batch's new messages to the deciding task (nothing when push
    is off). Must not fail the batch: a queueing error is logged."""
    if not push_configured():
        return
    wanted = [_brief(p) for p in payloads
              if p.get("kind", "text") == "text" and not p.get("deleted")]
    if not wanted:
        return
    try:
        reachable = _reachable({m["conversation_id"] for m in wanted})
        wanted = [m for m in wanted if m["conversation_id"] in reachable]
        if not wanted:
            return
        wanted = _decided_now(wanted)
        if not wanted:
            return
        if _eager():
            beside(lambda: notify_now(wanted), "notifications")
        else:
            notify_messages.apply_async(args=(wanted,))
    except Exception:
        log.exception("notifications of %d message(s) not queued", len(wanted))


def _decided_now(messages: list[dict]) -> list[dict]:
    """Those of ``messages`` to decide now: a conversation decided within
    WEBPUSH_COALESCE_SECONDS has its messages decided together when the window ends. When that
    cannot be known (Redis is away), everything is decided now."""
    window = current_app.config["WEBPUSH_COALESCE_SECONDS"]
    if window <= 0:
        return messages
    by_conversation: dict[int, list[dict]] = {}
    for message in messages:
        by_conversation.setdefault(message["conversation_id"], []).append(message)
    now = []
    store = focus_store()
    for cid, some in by_conversation.items():
        try:
            how = store.defer_deciding(cid, some, window)
        except Exception:
            log.warning("pushes of conversation %s decided at once: no merging", cid,
                        exc_info=True)
            how = "now"
        if how == "now":
            now += some
        elif how == "later":
            _later(notify_pending, "notifications merged", window, cid)
    return now


def _reachable(conversation_ids: set[int]) -> set[int]:
    """Those of the conversations with a member who has a push subscription (the sender
    included: who is notified is decided later)."""
    return set(db.session.scalars(
        select(Participant.conversation_id).distinct()
        .where(Participant.conversation_id.in_(conversation_ids),
               Participant.user_id.in_(select(PushSubscription.user_id)))))


def _brief(payload: dict) -> dict:
    """What deciding and showing a push needs of a message payload."""
    text = payload.get("message") or ""
    if not text.strip() and payload.get("attachments"):
        text = "sent a file"
    return {"id": payload["id"], "conversation_id": int(payload["conversation_id"]),
            "sender": payload.get("sender"), "sender_name": payload.get("sender_name") or "",
            "message": text[:400], "mentions": list(payload.get("mentions") or [])}


def queue_clear(user_id: int, conversation_id: int, session_id: int | None) -> None:
    """The user read the conversation (on the login ``session_id``): clear its notification on
    their other devices, if one was pushed since they last read it."""
    if not push_configured():
        return
    try:
        if not focus_store().take_pushed(user_id, conversation_id):
            return
        if _eager():
            beside(lambda: clear_now(user_id, conversation_id, session_id), "clearing")
        else:
            clear_notifications.apply_async(args=(user_id, conversation_id, session_id))
    except Exception:
        log.exception("clearing conversation %s for user %s not queued", conversation_id,
                      user_id)


# --------------------------------------------------------------------------- deciding
def recipients(message: dict, now: datetime | None = None) -> list[int]:
    """The users a stored message should reach on their devices: participants with a push
    subscription who have not read it yet and whom the rule lets through."""
    now = now or utcnow()
    conversation_id = message["conversation_id"]
    visibility = db.session.scalar(select(Conversation.visibility)
                                   .where(Conversation.id == conversation_id))
    if visibility is None:
        return []
    rows = db.session.execute(
        select(Participant.user_id, Participant.notification_level, Participant.muted_until,
               User.dnd_until, User.quiet_hours_start, User.quiet_hours_end,
               User.quiet_hours_timezone)
        .join(User, User.id == Participant.user_id)
        .where(Participant.conversation_id == conversation_id, User.is_active.is_(True),
               Participant.user_id != message["sender"],
               # Read already (on another device, while its push waited): not pushed.
               or_(Participant.last_read_message_id.is_(None),
                   Participant.last_read_message_id < message["id"]),
               Participant.user_id.in_(select(PushSubscription.user_id)))).all()
    if not rows:
        return []
    # Looking when it was sent counts: the page may have been hidden since (a decision comes
    # after the message is stored, which can be seconds later).
    looking = focus_store().looking([r[0] for r in rows], conversation_id,
                                    since=_sent_at(message["id"]))
    mentioned = set(message["mentions"])
    chosen = []
    for uid, level, muted_until, dnd, q_start, q_end, q_zone in rows:
        quiet = None
        if q_start and q_end and q_zone:
            quiet = QuietHours(_clock(q_start), _clock(q_end), q_zone)
        person = Recipient(uid, level, muted_until, dnd, quiet, uid in looking)
        if should_notify(person, sender_id=message["sender"], mentioned=uid in mentioned,
                         visibility=visibility, now=now):
            chosen.append(uid)
    return chosen


def _sent_at(message_id: object) -> float | None:
    """When the message was sent (from its id), in seconds since the epoch; None if unknown."""
    try:
        return message_id_time(message_id).replace(tzinfo=UTC).timestamp()
    except (TypeError, ValueError, AttributeError):
        return None


def _clock(text: str):
    return datetime.strptime(text, "%H:%M").time()


def _title(message: dict) -> str:
    conversation = db.session.get(Conversation, message["conversation_id"])
    name = message["sender_name"] or "Someone"
    if conversation is not None and conversation.is_group and conversation.title:
        return f"{name} in {conversation.title}"
    return name


def notify_now(messages: list[dict]) -> int:
    """Decide and send the pushes of stored messages; how many pushes went out. Each user
    is pushed the newest message of a conversation that is theirs to get, now, or held for
    the end of the conversation's window (see the module's docstring)."""
    newest: dict[int, dict[int, dict]] = {}  # conversation -> user -> message
    for message in messages:
        for uid in recipients(message):
            newest.setdefault(message["conversation_id"], {})[uid] = message
    window = current_app.config["WEBPUSH_COALESCE_SECONDS"]
    store = focus_store()
    sent = 0
    for cid, chosen in newest.items():
        if window <= 0:
            now_users, held = list(chosen), []
            store.pushed(now_users, cid)
        else:
            now_users, held = store.claim(list(chosen), cid, window)
        sent += _push_each({uid: chosen[uid] for uid in now_users})
        if held:
            at = time.time()
            if store.hold(cid, {uid: {"at": at, "message": chosen[uid]} for uid in held},
                          window):
                _later(push_held, "held pushes", window, cid)
    return sent


def _push_each(messages: dict[int, dict]) -> int:
    """Push each user their message (one delivery per message, to all its users)."""
    users_of: dict[str, list[int]] = {}
    by_id = {}
    for uid, message in messages.items():
        users_of.setdefault(message["id"], []).append(uid)
        by_id[message["id"]] = message
    sent = 0
    for message_id, users in users_of.items():
        message = by_id[message_id]
        cid = message["conversation_id"]
        payload = push_payload(MESSAGE, cid, _title(message), message["message"],
                               f"/chat/{cid}")
        sent += deliver(live_targets(users), payload)
    return sent


def _later(task, what: str, wait: float, conversation_id: int) -> None:
    """``task`` of the conversation in ``wait`` seconds: by Celery, or beside the server."""
    if not _eager():
        task.apply_async(args=(conversation_id,), countdown=wait)
        return

    def later() -> None:
        socketio.sleep(wait)
        task.run(conversation_id)

    beside(later, what)


def push_held_now(conversation_id: int) -> int:
    """The end of a conversation's window: push each user the newest message held for them,
    unless they read the conversation, or were pushed a newer one, since it was held."""
    store = focus_store()
    held = store.take_held(conversation_id)
    if not held:
        return 0
    users = list(held)
    due = {uid: held[uid]["message"]
           for uid, pushed in zip(users, store.pushed_at(users, conversation_id), strict=True)
           if pushed is not None and pushed <= held[uid]["at"]}
    if not due:
        return 0
    store.pushed(list(due), conversation_id)
    return _push_each(due)


def clear_now(user_id: int, conversation_id: int, session_id: int | None) -> int:
    targets = [t for t in live_targets([user_id])
               if session_id is None or t.session_id != session_id]
    return deliver(targets, push_payload(CLEAR, conversation_id, url=f"/chat/{conversation_id}"))


# --------------------------------------------------------------------------- sending
def deliver(targets: list[Target], payload: dict, retries: int = 0) -> int:
    """Send one payload to each target, WEBPUSH_CONCURRENCY at once; record what came of it.
    Returns how many push services took it."""
    if not targets:
        return 0
    config = dict(current_app.config)
    encrypt = encrypted_request
    if _eager():  # beside the server's loop: the encryption on the CPU pool
        pool = offload_pool()

        def encrypt(target, data, conf):
            return pool.run(encrypted_request, target, data, conf)

    def one(target: Target) -> tuple[Target, str, str]:
        return (target, *send_push(target, payload, config, encrypt))

    workers = max(1, min(config["WEBPUSH_CONCURRENCY"], len(targets)))
    sent = 0
    with ThreadPoolExecutor(workers, thread_name_prefix="push") as pushing:
        pending = {pushing.submit(one, target) for target in targets}
        while pending:
            # What is done is recorded (and retried) now, not after a slow service's deadline.
            done, pending = wait(pending, timeout=RECORD_EVERY)
            if done:
                sent += _record([f.result() for f in done], payload, retries)
    return sent


def _record(results: list[tuple[Target, str, str]], payload: dict, retries: int) -> int:
    ok = [t.id for t, outcome, _ in results if outcome == SENT]
    gone = [t.id for t, outcome, _ in results if outcome == GONE]
    failed = [(t, outcome, why) for t, outcome, why in results if outcome in (RETRY, REFUSED)]
    if ok:
        db.session.execute(update(PushSubscription).where(PushSubscription.id.in_(ok))
                           .values(last_used_at=utcnow(), failures=0))
    if gone:
        db.session.execute(delete(PushSubscription).where(PushSubscription.id.in_(gone)))
    if failed:
        db.session.execute(update(PushSubscription)
                           .where(PushSubscription.id.in_([t.id for t, _, _ in failed]))
                           .values(failures=PushSubscription.failures + 1))
    db.session.commit()
    for target, outcome, why in failed:
        # The address rule refusing the endpoint is not helped by trying again.
        if outcome == REFUSED or retries >= MAX_RETRIES:
            write_error("tasks.push", "PushFailed", f"push subscription {target.id}: "
                        f"{payload['type']} of conversation {payload['conversation_id']} not "
                        f"delivered after {retries + 1} tries: {why}", None, target.user_id)
        else:
            _retry_later(target.id, payload, retries + 1)
    return len(ok)


def _retry_later(subscription_id: int, payload: dict, retries: int) -> None:
    wait = backoff(retries - 1)
    if not _eager():
        retry_push.apply_async(args=(subscription_id, payload, retries), countdown=wait)
        return

    def later() -> None:
        socketio.sleep(wait)
        retry_now(subscription_id, payload, retries)

    beside(later, "a push's retry")


def retry_now(subscription_id: int, payload: dict, retries: int) -> int:
    sub = db.session.get(PushSubscription, subscription_id)
    if sub is None:
        return 0
    targets = [t for t in live_targets([sub.user_id]) if t.id == subscription_id]
    return deliver(targets, payload, retries)


# --------------------------------------------------------------------------- Celery tasks
@shared_task(name="simplechat.notify_messages")
def notify_messages(messages: list[dict]) -> int:
    """Decide who is notified of newly stored messages and push to their devices."""
    return notify_now(messages)


@shared_task(name="simplechat.notify_pending")
def notify_pending(conversation_id: int) -> int:
    """Decide, together, what a conversation's window held back from deciding at once."""
    return notify_now(focus_store().take_pending(conversation_id))


@shared_task(name="simplechat.push_held")
def push_held(conversation_id: int) -> int:
    """Push what was held for a conversation's users while its window was open."""
    return push_held_now(conversation_id)


@shared_task(name="simplechat.retry_push")
def retry_push(subscription_id: int, payload: dict, retries: int) -> int:
    """One more try of a push that failed (not 404/410), with backoff between tries."""
    return retry_now(subscription_id, payload, retries)


@shared_task(name="simplechat.clear_notifications")
def clear_notifications(user_id: int, conversation_id: int, session_id: int | None) -> int:
    """Close a conversation's notification on the user's devices but the reading one."""
    return clear_now(user_id, conversation_id, session_id)
