"""One-click unsubscribe from the digest (RFC 8058): the mail's ``List-Unsubscribe`` link
carries a signed token naming the user; a POST to it with ``List-Unsubscribe=One-Click`` turns
``email_notifications`` off with no login and no CSRF token (the signature is the authority);
a GET shows a page whose form (with its CSRF token) does the same."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from flask_wtf import FlaskForm
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete

from simplechat.extensions import csrf, db
from simplechat.mail.sending import site_link
from simplechat.models import MissedMessage, User
from simplechat.observability.activity import record_activity

bp = Blueprint("digests", __name__)

SALT = "simplechat.unsubscribe"
TOKEN_MAX_LENGTH = 256
ONE_CLICK = "One-Click"


class UnsubscribeForm(FlaskForm):
    """The page's form: its CSRF token only."""


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def unsubscribe_token(user: User) -> str:
    return _serializer().dumps([user.id])


def unsubscribe_link(user: User) -> str:
    return site_link(f"/mail/unsubscribe/{unsubscribe_token(user)}")


def user_of_token(token: str) -> User | None:
    """The user an unsubscribe token names, or None (forged, altered, the account gone)."""
    if len(token) > TOKEN_MAX_LENGTH:
        return None
    try:
        found = _serializer().loads(token)
    except BadSignature:
        return None
    if not isinstance(found, list) or len(found) != 1 or type(found[0]) is not int:
        return None
    return db.session.get(User, found[0])


def turn_mail_off(user: User, how: str) -> None:
    """No more digests for ``user``; what waited for the next one is dropped."""
    was_on = user.email_notifications
    user.email_notifications = False
    db.session.execute(delete(MissedMessage).where(MissedMessage.user_id == user.id,
                                                   MissedMessage.mailed_at.is_(None)))
    db.session.commit()
    if was_on:
        record_activity("digest_unsubscribed", user.id, {"by": how})


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str):
    user = user_of_token(token)
    if user is None:
        return render_template("mail/unsubscribe.html", user=None), 400
    return render_template("mail/unsubscribe.html", user=user, form=UnsubscribeForm(),
                           done=False)


@csrf.exempt  # a mail provider's one-click POST has no CSRF token: the signed token decides
@bp.post("/unsubscribe/<token>")
def unsubscribe(token: str):
    user = user_of_token(token)
    one_click = request.form.get("List-Unsubscribe") == ONE_CLICK
    if user is None:
        if one_click:
            return {"ok": False, "error": "invalid"}, 400
        return render_template("mail/unsubscribe.html", user=None), 400
    if one_click:
        turn_mail_off(user, "one_click")
        return {"ok": True}
    form = UnsubscribeForm()
    if not form.validate_on_submit():  # the page's form without its CSRF token
        return render_template("mail/unsubscribe.html", user=user, form=form, done=False), 400
    turn_mail_off(user, "page")
    return render_template("mail/unsubscribe.html", user=user, form=form, done=True)
