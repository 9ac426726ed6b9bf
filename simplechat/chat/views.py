"""Chat pages: the conversation list, starting a conversation or a channel, the channel
directory, the chat page, a conversation's settings (its webhooks)."""

from __future__ import annotations

import math

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from sqlalchemy import and_, select

from simplechat.chat.forms import (
    NewChannelForm,
    NewCommandForm,
    NewConversationForm,
    NewIncomingWebhookForm,
    NewWebhookForm,
)
from simplechat.conversations.channels import (
    SORTS,
    create_channel,
    directory,
    parse_directory_cursor,
    readable_conversation,
    tell_created,
)
from simplechat.conversations.inbox import inbox_page, parse_cursor
from simplechat.conversations.records import (
    channel_fields,
    display_title,
    listed_members,
    participant_conversation,
    participants_of,
    start_limited,
)
from simplechat.conversations.roster import first_members
from simplechat.extensions import db
from simplechat.models import ADMIN, OWNER, PUBLIC, Conversation, Participant, ThreadFollow, User
from simplechat.notifications.push import public_key
from simplechat.notifications.settings import level_of
from simplechat.observability.activity import record_activity

bp = Blueprint("chat", __name__)


@bp.get("/")
@login_required
def index():
    page = inbox_page(current_user)
    return render_template("chat/index.html", conversations=page.conversations,
                           next_before=page.next_before)


@bp.get("/list")
@login_required
def conversation_list():
    """The conversation list alone (the first page, or the page after ``before``), for the
    page's script: it refreshes the list and loads more of it as one scrolls."""
    before = None
    if "before" in request.args:
        before = parse_cursor(request.args["before"])
        if before is None:
            abort(400)
    page = inbox_page(current_user, before=before)
    return render_template("chat/_list.html", conversations=page.conversations,
                           next_before=page.next_before)


@bp.get("/threads")
@login_required
def threads():
    """The threads the user follows, with their unread replies (the page's script reads GET
    /api/threads); the titles of the conversations they are in come with the page."""
    return render_template("chat/threads.html", titles=thread_conversation_titles(current_user.id),
                           unread_only=request.args.get("unread") in ("1", "true"))


def thread_conversation_titles(user_id: int) -> dict[str, str]:
    """What the user sees each conversation called where they follow a thread (a few SQL
    statements however many)."""
    followed = (select(ThreadFollow.conversation_id)
                .join(Participant, and_(Participant.conversation_id == ThreadFollow.conversation_id,
                                        Participant.user_id == user_id))
                .where(ThreadFollow.user_id == user_id, ThreadFollow.following.is_(True)))
    rows = db.session.scalars(select(Conversation).where(Conversation.id.in_(followed))).all()
    if not rows:
        return {}
    fields = channel_fields(user_id, [c.id for c in rows])
    members = first_members({c.id: fields[c.id]["member_count"] for c in rows if c.id in fields})
    return {str(c.id): display_title(c, user_id, [m.user for m in members[c.id]],
                                     fields[c.id]["member_count"])
            for c in rows if c.id in fields}


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


# The directory's page size on /chat/browse, and the longest search it takes.
BROWSE_PAGE = 20
BROWSE_QUERY_MAX = 200


def _browse_query() -> tuple[str, str]:
    """The directory search and sort of the request (an unknown sort is the default one)."""
    q = request.args.get("q", "")
    q = " ".join(q.split())[:BROWSE_QUERY_MAX] if isinstance(q, str) else ""
    sort = request.args.get("sort", SORTS[0])
    return q, sort if sort in SORTS else SORTS[0]


@bp.get("/browse")
@login_required
def browse():
    """The directory of public channels: search, sort, the first page (the page's script
    loads more, previews a channel's messages and joins)."""
    q, sort = _browse_query()
    page = directory(current_user, q, sort, BROWSE_PAGE)
    return render_template("chat/browse.html", channels=page.channels,
                           next_before=page.next_before, q=q, sort=sort)


@bp.get("/browse/list")
@login_required
def browse_list():
    """A page of the directory alone (the first, or the one after ``before``), for the
    page's script: a new search or sort, or more channels."""
    q, sort = _browse_query()
    before = None
    if "before" in request.args:
        before = parse_directory_cursor(sort, request.args["before"])
        if before is None:
            abort(400)
    page = directory(current_user, q, sort, BROWSE_PAGE, before)
    return render_template("chat/_channels.html", channels=page.channels,
                           next_before=page.next_before, q=q, sort=sort)


@bp.route("/channels/new", methods=["GET", "POST"])
@login_required
def new_channel():
    """Make a public or private channel; its maker is its owner."""
    form = NewChannelForm()
    if form.validate_on_submit():
        me = current_user._get_current_object()
        conversation, refusal = create_channel(me, form.title.data, form.description.data,
                                               form.visibility.data)
        if conversation is not None:
            record_activity("conversation_created", me.id,
                            {"conversation_id": conversation.id,
                             "visibility": conversation.visibility})
            tell_created(conversation, me)
            return redirect(url_for("chat.conversation", conversation_id=conversation.id))
        if refusal["error"] == "rate_limited":
            seconds = max(1, math.ceil(refusal.get("retry_after", 1)))
            error = (f"You have started many conversations lately. "
                     f"Try again in {seconds} seconds.")
            response = make_response(render_template("chat/new_channel.html", form=form,
                                                     error=error), 429)
            response.headers["Retry-After"] = str(seconds)
            return response
        # The form checks what create_channel checks; what it still refuses (a name of
        # characters it drops) is said on the name.
        form.title.errors = [*form.title.errors, {"empty": "Give the channel a name."}.get(
            refusal["error"], "That name cannot be used.")]
    return render_template("chat/new_channel.html", form=form)


@bp.get("/<id:conversation_id>")
@login_required
def conversation(conversation_id: int):
    conversation = participant_conversation(current_user.id, conversation_id)
    if conversation is None:
        # A link to a public channel one is not in: the directory, to preview and join it.
        public = readable_conversation(current_user.id, conversation_id)
        if public is None or public.archived:
            abort(404)
        flash(f"You are not in “{public.title}”: preview it or join it here.", "info")
        return redirect(url_for("chat.browse", q=public.title))
    # A big channel's members are too many for the page: the first ones (owners and admins
    # first) show, the members panel pages through them all.
    listed = listed_members(conversation.id)
    members = [user for user, _role in listed]
    fields = channel_fields(current_user.id, [conversation.id])[conversation.id]
    record_activity("conversation_opened", current_user.id, {"conversation_id": conversation.id})
    page = inbox_page(current_user)
    notification = level_of(db.session.scalar(select(Participant).where(
        Participant.conversation_id == conversation.id, Participant.user_id == current_user.id)))
    return render_template(
        "chat/conversation.html",
        conversation=conversation,
        title=display_title(conversation, current_user.id, members, fields["member_count"]),
        members=members,
        roles={user.id: role for user, role in listed},
        channel=fields,
        kind="channel" if fields["visibility"] == PUBLIC else "group",
        moderator=fields["role"] in (OWNER, ADMIN),
        conversations=page.conversations,
        next_before=page.next_before,
        # The list's first page may not hold this conversation.
        muted=notification["muted"], notification=notification, push_key=public_key(),
    )


@bp.route("/<id:conversation_id>/settings", methods=["GET", "POST"])
@login_required
def settings(conversation_id: int):
    """A conversation's settings, for its participants: its webhooks, listed, added (the
    signing secret shown on this answer only) and deleted."""
    from simplechat.webhooks.hooks import WebhookRefused, create_outgoing

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
    return settings_page(conversation, form=form, created=created)


@bp.post("/<id:conversation_id>/webhooks/incoming")
@login_required
def add_incoming_webhook(conversation_id: int):
    """Add an incoming webhook posting as a new bot user; its two URLs (Simple Chat's JSON and
    Slack's) are shown on this answer only."""
    from simplechat.webhooks.hooks import create_incoming, incoming_hook_urls

    conversation = participant_conversation(current_user.id, conversation_id)
    if conversation is None:
        abort(404)
    form = NewIncomingWebhookForm()
    created = urls = None
    if form.validate_on_submit():
        try:
            created = create_incoming(conversation, None, form.bot_name.data,
                                      creator=current_user)
        except ValueError as exc:  # too many webhooks
            form.bot_name.errors.append(str(exc))
        else:
            record_activity("webhook_created", current_user.id,
                            {"conversation_id": conversation.id, "webhook_id": created.webhook.id})
            urls = incoming_hook_urls(created.secret, request.host_url)
            form = NewIncomingWebhookForm(formdata=None)
    return settings_page(conversation, incoming_form=form, created_incoming=created,
                         incoming_urls=urls)


@bp.post("/<id:conversation_id>/commands")
@login_required
def add_command(conversation_id: int):
    """Add a slash command of the conversation; its signing secret is shown on this answer
    only."""
    from simplechat.slash_commands.registry import create_command
    from simplechat.webhooks.hooks import UnsafeURL

    conversation = participant_conversation(current_user.id, conversation_id)
    if conversation is None:
        abort(404)
    form = NewCommandForm()
    created = None
    if form.validate_on_submit():
        try:
            created = create_command(conversation, form.command.data, form.command_url.data,
                                     description=form.command_description.data,
                                     creator=current_user)
        except UnsafeURL as exc:
            form.command_url.errors.append(str(exc))
        except ValueError as exc:  # a bad name, taken, too many
            form.command.errors.append(str(exc))
        else:
            record_activity("slash_command_created", current_user.id,
                            {"conversation_id": conversation.id,
                             "command_id": created.command.id})
            form = NewCommandForm(formdata=None)
    return settings_page(conversation, command_form=form, created_command=created)


@bp.post("/<id:conversation_id>/commands/<id:command_id>/delete")
@login_required
def delete_command(conversation_id: int, command_id: int):
    """Delete one of the conversation's own slash commands: any participant may."""
    from simplechat.slash_commands import registry

    conversation = participant_conversation(current_user.id, conversation_id)
    if conversation is None or not registry.delete_command(command_id, conversation.id):
        abort(404)
    record_activity("slash_command_deleted", current_user.id,
                    {"conversation_id": conversation.id, "command_id": command_id})
    flash("The slash command has been deleted.", "success")
    return redirect(url_for("chat.settings", conversation_id=conversation.id))


def settings_page(conversation, **shown):
    """The settings page of ``conversation`` with what a form just did (``shown``); the forms
    not given are empty."""
    from simplechat.slash_commands.registry import listed_commands
    from simplechat.webhooks.hooks import conversation_webhooks

    shown.setdefault("form", NewWebhookForm(formdata=None))
    shown.setdefault("incoming_form", NewIncomingWebhookForm(formdata=None))
    shown.setdefault("command_form", NewCommandForm(formdata=None))
    shown.setdefault("commands", listed_commands(conversation.id))
    members = participants_of(conversation.id)
    hooks = conversation_webhooks(conversation.id)
    bot_ids = [hook.bot_user_id for hook, _ in hooks if hook.bot_user_id]
    bots = {user.id: user for user in db.session.scalars(
        select(User).where(User.id.in_(bot_ids)))} if bot_ids else {}
    return render_template(
        "chat/settings.html", conversation=conversation,
        title=display_title(conversation, current_user.id, members),
        webhooks=hooks, bots=bots, **shown)


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
