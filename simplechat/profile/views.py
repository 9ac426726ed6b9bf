"""Own profile, editing it, changing the password, the login sessions, and other users'
public profiles."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from simplechat.auth.forms import USERNAME_MAX, USERNAME_RE
from simplechat.auth.passwords import BUSY_MESSAGE, Busy, set_password
from simplechat.auth.sessions import (
    current_session,
    describe_agent,
    end_current_session,
    end_sessions,
    end_user_sessions,
    forget_identities,
    live_sessions,
    rotate_current_token,
)
from simplechat.auth.tokens import live_tokens, revoke_tokens
from simplechat.extensions import db
from simplechat.models import User, UserSession
from simplechat.observability.activity import record_activity
from simplechat.profile.export import start_export, user_exports
from simplechat.profile.forms import ChangePasswordForm, EditProfileForm, NewTokenForm

bp = Blueprint("profile", __name__)


def user_by_username(username: str) -> User | None:
    """The user with this username, ignoring case; None for anything that cannot be one."""
    if len(username) > USERNAME_MAX or not USERNAME_RE.match(username):
        return None
    query = select(User).where(func.lower(User.username) == username.lower())
    return db.session.execute(query).scalar_one_or_none()


@bp.get("/")
@login_required
def me():
    return render_template("profile/me.html", user=current_user,
                           exports=user_exports(current_user.id))


@bp.post("/export")
@login_required
def export():
    """Ask for an export of one's data (the same as POST /api/me/export)."""
    answer = start_export(current_user._get_current_object())
    if answer["ok"]:
        flash("Your export is being prepared: its download link appears here when it is "
              "ready.", "success")
    elif answer["error"] == "rate_limited":
        flash("You asked for an export today already: one a day.", "warning")
    else:
        flash("The export could not be started; try again in a moment.", "error")
    return redirect(url_for("profile.me") + "#your-data")


@bp.route("/edit", methods=["GET", "POST"])
@login_required
def edit():
    user = current_user._get_current_object()
    form = EditProfileForm(obj=user)
    if form.validate_on_submit():
        user.first_name = form.first_name.data
        user.last_name = form.last_name.data
        user.email = form.email.data.lower()
        try:
            db.session.commit()
        except IntegrityError:
            # Another account took the address between the check and the update.
            db.session.rollback()
            form.email.errors.append("That e-mail address is already registered.")
            return render_template("profile/edit.html", form=form)
        forget_identities(user.id)  # open sockets pick up the new name
        record_activity("profile_edit", user.id)
        flash("Your profile has been updated.", "success")
        return redirect(url_for("profile.me"))
    return render_template("profile/edit.html", form=form)


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password():
    form = ChangePasswordForm()
    user = current_user._get_current_object()
    if form.validate_on_submit():
        try:
            set_password(user, form.password.data)
        except Busy:
            form.password.errors.append(BUSY_MESSAGE)
            return render_template("profile/password.html", form=form), 503
        db.session.commit()
        # Every other login ends; this one carries on under a new token.
        here = current_session()
        ended = end_user_sessions(user.id, "password_changed", keep=here.id if here else None)
        rotate_current_token()
        tokens = live_tokens(user.id) if form.revoke_tokens.data else []
        revoke_tokens(tokens)
        record_activity("password_change", user.id, {"sessions_ended": ended.sessions,
                                                     "tokens_revoked": len(tokens)})
        flash("Your password has been changed." + (
            f" {ended.sessions} other session(s) were signed out." if ended.sessions else "")
            + (f" {len(tokens)} API token(s) were revoked." if tokens else ""), "success")
        return redirect(url_for("profile.me"))
    return render_template("profile/password.html", form=form), 503 if form.busy else 200


@bp.get("/sessions")
@login_required
def sessions():
    here = current_session()
    return render_template("profile/sessions.html", sessions=live_sessions(current_user.id),
                           current_id=here.id if here else None, describe=describe_agent)


@bp.post("/sessions/<id:session_id>/sign-out")
@login_required
def sign_out_session(session_id: int):
    """End one of my sessions; ending this browser's own is logging out."""
    row = db.session.get(UserSession, session_id)
    if row is None or row.user_id != current_user.id or row.ended_at is not None:
        abort(404)
    here = current_session()
    if here is not None and row.id == here.id:
        user_id = current_user.id
        end_current_session("logged_out")
        record_activity("logout", user_id)
        flash("You have been logged out.", "info")
        return redirect(url_for("auth.login"))
    end_sessions([row], "signed_out")
    record_activity("session_signed_out", current_user.id, {"session_id": row.id})
    flash("That session has been signed out.", "success")
    return redirect(url_for("profile.sessions"))


@bp.post("/sessions/sign-out-others")
@login_required
def sign_out_others():
    here = current_session()
    ended = end_user_sessions(current_user.id, "signed_out", keep=here.id if here else None)
    record_activity("sessions_signed_out", current_user.id, {"count": ended.sessions})
    flash(f"{ended.sessions} other session(s) signed out.", "success")
    return redirect(url_for("profile.sessions"))


@bp.route("/tokens", methods=["GET", "POST"])
@login_required
def tokens():
    """Personal access tokens for the JSON API: a new one is shown on this answer only."""
    from simplechat.auth.tokens import create_token

    form = NewTokenForm()
    created = None
    if form.validate_on_submit():
        created = create_token(current_user, form.name.data)
        record_activity("token_created", current_user.id, {"token_id": created.row.id})
        form = NewTokenForm(formdata=None)
    return render_template("profile/tokens.html", form=form, created=created,
                           tokens=live_tokens(current_user.id))


@bp.post("/tokens/<id:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    from simplechat.models import ApiToken

    row = db.session.get(ApiToken, token_id)
    if row is None or row.user_id != current_user.id or row.revoked_at is not None:
        abort(404)
    revoke_tokens([row])
    record_activity("token_revoked", current_user.id, {"token_id": row.id})
    flash(f"The token “{row.name}” has been revoked.", "success")
    return redirect(url_for("profile.tokens"))


@bp.get("/<username>")
@login_required
def public(username: str):
    user = user_by_username(username)
    if user is None:
        abort(404)
    return render_template("profile/public.html", user=user)
