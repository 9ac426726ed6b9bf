"""The console's pages and actions. Every action is a POST form with its CSRF token, answered
with a redirect back to its page and a message; the work is done by the functions the
``flask`` commands call, which write the GenericActivityLog row with the admin as actor."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import false, func, or_, select

from simplechat.admin.forms import LogFilterForm, NewUserForm
from simplechat.auth.accounts import (
    AccountError,
    activate_account,
    create_account,
    deactivate_account,
    revoke_token,
    send_password_reset,
    set_site_admin,
    sign_out_everywhere,
)
from simplechat.auth.passwords import BUSY_MESSAGE, Busy
from simplechat.conversations.moderation import archive_conversation, transfer_ownership
from simplechat.conversations.reports import delete_reported, dismiss_report, reports_page
from simplechat.conversations.roles import earliest_owner, is_site_admin
from simplechat.extensions import csrf, db
from simplechat.models import (
    OWNER,
    REPORT_DELETED,
    REPORT_DISMISSED,
    REPORT_OPEN,
    ApiToken,
    Conversation,
    GenericActivityLog,
    GenericErrorLog,
    MessageReport,
    Participant,
    User,
    Webhook,
)
from simplechat.webhooks.hooks import remove_webhook

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__)
csrf.exempt(bp)  # checked in only_admins, after the caller is known to be an admin

PER_PAGE = 50
REFUSALS = {"forbidden": "that is not allowed", "not_found": "not found (or changed meanwhile)",
            "not_group": "a direct conversation has no owner", "not_allowed": "not allowed",
            "archived": "the conversation is archived", "invalid": "the request was not valid",
            "rate_limited": "too many changes at once: try again in a moment",
            "unavailable": "a service is unavailable: try again"}


@bp.before_request
def only_admins():
    """404 to anyone but an active site admin, logged in or not; then the CSRF check of every
    form (a missing or wrong token: 400)."""
    if not current_user.is_authenticated or not is_site_admin(current_user.id):
        abort(404)
    if request.method not in ("GET", "HEAD", "OPTIONS") and current_app.config.get(
            "WTF_CSRF_ENABLED", True):
        csrf.protect()


def _admin() -> User:
    return current_user._get_current_object()


def _page() -> int:
    value = request.args.get("page", "1")
    return int(value) if value.isdigit() and 0 < int(value) < 100_000 else 1


def _paged(query, page: int):
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.execute(query.offset((page - 1) * PER_PAGE).limit(PER_PAGE)).all()
    return rows, {"page": page, "pages": max(1, -(-total // PER_PAGE)), "total": total}


def _back(endpoint: str, message: str, category: str = "success", **args):
    flash(message, category)
    return redirect(url_for(endpoint, **args))


def _user_or_404(user_id: int) -> User:
    return db.session.get(User, user_id) or abort(404)


@bp.get("/")
def index():
    counts = {
        "users": db.session.scalar(select(func.count()).select_from(User)),
        "reports": db.session.scalar(select(func.count()).select_from(MessageReport).where(
            MessageReport.status == REPORT_OPEN)),
        "channels": db.session.scalar(select(func.count()).select_from(Conversation).where(
            Conversation.is_group.is_(True))),
    }
    return render_template("admin/index.html", counts=counts)


# --------------------------------------------------------------------------- users


@bp.get("/users")
def users():
    q = request.args.get("q", "").strip()[:100]
    query = select(User).order_by(User.id)
    if q:
        like = f"%{q.lower()}%"
        query = query.where(or_(func.lower(User.username).like(like),
                                func.lower(User.email).like(like),
                                func.lower(User.first_name).like(like),
                                func.lower(User.last_name).like(like)))
    rows, paging = _paged(query, _page())
    return render_template("admin/users.html", users=[r[0] for r in rows], q=q, paging=paging,
                           form=NewUserForm())


@bp.post("/users")
def create_user():
    form = NewUserForm()
    if form.validate_on_submit():
        try:
            user = create_account(form.username.data.strip(), form.email.data,
                                  form.first_name.data or "", form.last_name.data or "",
                                  form.password.data, admin=form.admin.data, actor=_admin())
        except AccountError as exc:
            form.username.errors.append(str(exc))
        except Busy:
            form.password.errors.append(BUSY_MESSAGE)
        else:
            return _back("admin.users", f"Created {user.username}.", q=user.username)
    rows, paging = _paged(select(User).order_by(User.id), 1)
    return render_template("admin/users.html", users=[r[0] for r in rows], q="",
                           paging=paging, form=form), 400


@bp.post("/users/<id:user_id>/deactivate")
def deactivate(user_id: int):
    user = _user_or_404(user_id)
    if user.id == current_user.id:
        return _back("admin.users", "You cannot deactivate yourself.", "error", q=user.username)
    try:
        ended = deactivate_account(user, _admin())
    except Exception:
        log.warning("sessions of deactivated user %s not ended", user.id, exc_info=True)
        return _back("admin.users", f"{user.username} is deactivated, but ending the sessions "
                     "failed; their events are refused within a second all the same.",
                     "warning", q=user.username)
    if ended is None:
        return _back("admin.users", f"{user.username} was inactive already.", "info",
                     q=user.username)
    return _back("admin.users", f"{user.username} deactivated: {ended.sessions} session(s) "
                 f"ended, {ended.sockets} open connection(s) closed.", q=user.username)


@bp.post("/users/<id:user_id>/reactivate")
def reactivate(user_id: int):
    user = _user_or_404(user_id)
    done = activate_account(user, _admin())
    return _back("admin.users", f"{user.username} " + ("reactivated." if done else
                                                        "was active already."), q=user.username)


@bp.post("/users/<id:user_id>/admin")
def set_admin(user_id: int):
    user = _user_or_404(user_id)
    on = request.form.get("admin") == "1"
    try:
        set_site_admin(user, on, _admin())
    except AccountError as exc:
        text = str(exc)
        return _back("admin.users", text[:1].upper() + text[1:] + ".", "error", q=user.username)
    return _back("admin.users", f"{user.username} is {'now' if on else 'no longer'} a site "
                 "admin.", q=user.username)


@bp.post("/users/<id:user_id>/sign-out")
def sign_out(user_id: int):
    user = _user_or_404(user_id)
    ended = sign_out_everywhere(user, _admin())
    return _back("admin.users", f"{user.username}: {ended.sessions} session(s) signed out, "
                 f"{ended.sockets} open connection(s) closed.", q=user.username)


@bp.post("/users/<id:user_id>/reset")
def send_reset(user_id: int):
    user = _user_or_404(user_id)
    try:
        send_password_reset(user, _admin())
    except AccountError as exc:
        return _back("admin.users", f"No reset sent: {exc}.", "error", q=user.username)
    return _back("admin.users", f"A password reset link is on its way to {user.username}.",
                 q=user.username)


# --------------------------------------------------------------------------- channels


@bp.get("/channels")
def channels():
    q = request.args.get("q", "").strip()[:100]
    members = (select(Participant.conversation_id, func.count().label("n"))
               .group_by(Participant.conversation_id).subquery())
    query = (select(Conversation, func.coalesce(members.c.n, 0))
             .outerjoin(members, members.c.conversation_id == Conversation.id)
             .where(Conversation.is_group.is_(True)).order_by(Conversation.id))
    if q:
        query = query.where(func.lower(Conversation.title).like(f"%{q.lower()}%"))
    rows, paging = _paged(query, _page())
    ids = [conversation.id for conversation, _ in rows]
    owners: dict[int, list[str]] = {}
    for conversation_id, username in db.session.execute(
            select(Participant.conversation_id, User.username)
            .join(User, User.id == Participant.user_id)
            .where(Participant.conversation_id.in_(ids), Participant.role == OWNER)
            .order_by(User.username)):
        owners.setdefault(conversation_id, []).append(username)
    return render_template("admin/channels.html", rows=rows, owners=owners, q=q, paging=paging)


@bp.post("/channels/<id:conversation_id>/archive")
def archive(conversation_id: int):
    archived = request.form.get("archived") == "1"
    # The system line names the channel's owner (as `flask channels archive` does): the
    # admin may not be a member. The activity row names the admin.
    answer = archive_conversation(earliest_owner(conversation_id) or _admin(),
                                  {"conversation_id": conversation_id, "archived": archived},
                                  operator=True, recorded_by=_admin())
    if not answer["ok"]:
        return _back("admin.channels", _refused(answer), "error")
    return _back("admin.channels", f"Conversation {conversation_id} "
                 f"{'archived' if archived else 'unarchived'}.")


@bp.post("/channels/<id:conversation_id>/owner")
def set_owner(conversation_id: int):
    username = request.form.get("username", "").strip()[:64]
    new_owner = db.session.scalar(select(User).where(
        func.lower(User.username) == username.lower())) if username else None
    if new_owner is None:
        return _back("admin.channels", f"No user {username!r}.", "error")
    answer = transfer_ownership(new_owner, conversation_id, _admin())
    if not answer["ok"]:
        return _back("admin.channels", f"{new_owner.username} cannot own conversation "
                     f"{conversation_id}: {_refused(answer)} (the new owner must be a member).",
                     "error")
    return _back("admin.channels", f"{new_owner.username} owns conversation {conversation_id}.")


def _refused(answer: dict) -> str:
    return REFUSALS.get(answer.get("error"), answer.get("error", "refused"))


# --------------------------------------------------------------------------- reports


@bp.get("/reports")
def reports():
    status = request.args.get("status", REPORT_OPEN)
    if status not in (REPORT_OPEN, REPORT_DELETED, REPORT_DISMISSED):
        status = REPORT_OPEN
    page = _page()
    rows, total = reports_page(status, page, PER_PAGE)
    paging = {"page": page, "pages": max(1, -(-total // PER_PAGE)), "total": total}
    return render_template("admin/reports.html", rows=rows, status=status, paging=paging)


@bp.post("/reports/<id:report_id>/delete")
def delete_report_message(report_id: int):
    answer = delete_reported(_admin(), report_id)
    if not answer["ok"]:
        return _back("admin.reports", f"Not deleted: {_refused(answer)}.", "error")
    return _back("admin.reports", "Message deleted; its reports are closed.")


@bp.post("/reports/<id:report_id>/dismiss")
def dismiss(report_id: int):
    answer = dismiss_report(_admin(), report_id)
    if not answer["ok"]:
        return _back("admin.reports", f"Not dismissed: {_refused(answer)}.", "error")
    return _back("admin.reports", "Report dismissed.")


# --------------------------------------------------------------------------- logs


def _log_page(model, action_column, template: str):
    form = LogFilterForm(request.args)
    query = (select(model, User.username).outerjoin(User, User.id == model.user_id)
             .order_by(model.id.desc()))
    if request.args and form.validate():
        if form.user.data:
            query = query.where(func.lower(User.username) == form.user.data.strip().lower())
        if form.action.data:
            query = query.where(action_column == form.action.data.strip())
        since, until = form.window()
        if since is not None:
            query = query.where(model.created_at >= since)
        if until is not None:
            query = query.where(model.created_at < until)
    elif request.args.get("since") or request.args.get("until"):
        query = query.where(false())  # a date that is not one matches nothing
    rows, paging = _paged(query, _page())
    return render_template(template, rows=rows, form=form, paging=paging,
                           args={k: v for k, v in request.args.items() if k != "page"})


@bp.get("/activity")
def activity():
    return _log_page(GenericActivityLog, GenericActivityLog.action, "admin/activity.html")


@bp.get("/errors")
def errors():
    return _log_page(GenericErrorLog, GenericErrorLog.where, "admin/errors.html")


# --------------------------------------------------------------------------- tokens, webhooks


@bp.get("/tokens")
def tokens():
    query = (select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
             .where(ApiToken.revoked_at.is_(None)).order_by(ApiToken.id))
    user = request.args.get("user", "").strip()[:64]
    if user:
        query = query.where(func.lower(User.username) == user.lower())
    rows, paging = _paged(query, _page())
    return render_template("admin/tokens.html", rows=rows, user=user, paging=paging)


@bp.post("/tokens/<id:token_id>/revoke")
def revoke(token_id: int):
    row = db.session.get(ApiToken, token_id) or abort(404)
    sockets = revoke_token(row, _admin())
    if sockets is None:
        return _back("admin.tokens", f"Token {token_id} was revoked already.", "info")
    return _back("admin.tokens", f"Token {token_id} revoked; {sockets} open connection(s) "
                 "closed.")


@bp.get("/webhooks")
def webhooks():
    query = (select(Webhook, Conversation.title, User.username)
             .join(Conversation, Conversation.id == Webhook.conversation_id)
             .outerjoin(User, User.id == Webhook.created_by_id).order_by(Webhook.id))
    rows, paging = _paged(query, _page())
    return render_template("admin/webhooks.html", rows=rows, paging=paging)


@bp.post("/webhooks/<id:webhook_id>/delete")
def delete_webhook(webhook_id: int):
    if not remove_webhook(webhook_id, _admin()):
        abort(404)
    return _back("admin.webhooks", f"Webhook {webhook_id} deleted.")
