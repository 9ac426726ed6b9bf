"""Chat pages: the conversation list, starting a conversation, the chat page, a conversation's
settings (its webhooks)."""

from __future__ import annotations

import math

from flask import Blueprint, abort, flash, make_response, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from simplechat.chat.forms import NewConversationForm, NewWebhookForm
from simplechat.conversations.inbox import conversations_for
from simplechat.conversations.records import (
    display_title,
    participant_conversation,
    participants_of,
    start_limited,
)
from simplechat.extensions import db
from simplechat.models import User
from simplechat.observability.activity import record_activity

bp = Blueprint("chat", __name__)


@bp.get("/")
@login_required
def index():
    return render_template("chat/index.html", conversations=conversations_for(current_user))


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new():
    form = NewConversationForm()
    picked: list[User] = []
    if form.participants.data and not form.participants.errors:
        wanted = [i for i in dict.fromkeys(form.participants.data) if i != current_user.id]
        picked = list(db.session.scalars(
            select(User).where(User.id.in_(wanted), User.is_active.is_(True))
        )) if wanted else []
    if form.validate_on_submit():
        if not picked or len(picked) != len(
            [i for i in dict.fromkeys(form.participants.data) if i != current_user.id]
        ):
            form.participants.errors.append("Pick people from the list.")
        else:
            conversation, created, wait = start_limited(current_user, picked, form.title.data)
            if conversation is None:
                return _too_many_conversations(form, picked, wait)
            if created:
                record_activity("conversation_created", current_user.id,
                                {"conversation_id": conversation.id,
                                 "participants": [u.id for u in picked]})
            return redirect(url_for("chat.conversation", conversation_id=conversation.id))
    return render_template("chat/new.html", form=form, picked=picked)


def _too_many_conversations(form, picked: list[User], wait: float):
    """429: the user started CHAT_CONVERSATION_RATE_LIMIT conversations lately."""
    seconds = max(1, math.ceil(wait))
    error = f"You have started many conversations lately. Try again in {seconds} seconds."
    response = make_response(render_template("chat/new.html", form=form, picked=picked,
                                             error=error), 429)
    response.headers["Retry-After"] = str(seconds)
    return response


@bp.get("/<id:conversation_id>")
@login_required
def conversation(conversation_id: int):
    conversation = participant_conversation(current_user.id, conversation_id)
    if conversation is None:
        abort(404)
    members = participants_of(conversation.id)
    record_activity("conversation_opened", current_user.id, {"conversation_id": conversation.id})
    summaries = conversations_for(current_user)
    return render_template(
        "chat/conversation.html",
        conversation=conversation,
        title=display_title(conversation, current_user.id, members),
        members=members,
        conversations=summaries,
        muted=any(s.muted for s in summaries if s.id == conversation.id),
    )


@bp.route("/<id:conversation_id>/settings", methods=["GET", "POST"])
@login_required
def settings(conversation_id: int):
    """A conversation's settings, for its participants: its webhooks, listed, added (the
    signing secret shown on this answer only) and deleted."""
    from simplechat.webhooks.hooks import WebhookRefused, conversation_webhooks, create_outgoing

    conversation = participant_conversation(current_user.id, conversation_id)
    if conversation is None:
        abort(404)
    form = NewWebhookForm()
    created = None
    if form.validate_on_submit():
        try:
            created = create_outgoing(conversation, form.url.data, creator=current_user)
        except WebhookRefused as exc:  # an unsafe address, or too many webhooks
            form.url.errors.append(str(exc))
        else:
            record_activity("webhook_created", current_user.id,
                            {"conversation_id": conversation.id, "webhook_id": created.webhook.id})
            form = NewWebhookForm(formdata=None)
    members = participants_of(conversation.id)
    return render_template(
        "chat/settings.html", conversation=conversation, form=form, created=created,
        title=display_title(conversation, current_user.id, members),
        webhooks=conversation_webhooks(conversation.id))


@bp.post("/<id:conversation_id>/webhooks/<id:webhook_id>/delete")
@login_required
def delete_webhook(conversation_id: int, webhook_id: int):
    """Delete one of the conversation's webhooks: any participant may."""
    from simplechat.webhooks import hooks as webhooks

    conversation = participant_conversation(current_user.id, conversation_id)
    if conversation is None or not webhooks.delete_webhook(conversation.id, webhook_id):
        abort(404)
    record_activity("webhook_deleted", current_user.id,
                    {"conversation_id": conversation.id, "webhook_id": webhook_id})
    flash("The webhook has been deleted.", "success")
    return redirect(url_for("chat.settings", conversation_id=conversation.id))


def flash_errors(form) -> None:
    for errors in form.errors.values():
        for message in errors:
            flash(message, "error")
