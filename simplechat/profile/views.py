"""Own profile, editing it, changing the password, and other users' public profiles."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..activity import record_activity
from ..auth.forms import USERNAME_MAX, USERNAME_RE
from ..extensions import db
from ..models import User
from . import bp
from .forms import ChangePasswordForm, EditProfileForm


def user_by_username(username: str) -> User | None:
    """The user with this username, ignoring case; None for anything that cannot be one."""
    if len(username) > USERNAME_MAX or not USERNAME_RE.match(username):
        return None
    query = select(User).where(func.lower(User.username) == username.lower())
    return db.session.execute(query).scalar_one_or_none()


@bp.get("/")
@login_required
def me():
    return render_template("profile/me.html", user=current_user)


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
        record_activity("profile_edit", user.id)
        flash("Your profile has been updated.", "success")
        return redirect(url_for("profile.me"))
    return render_template("profile/edit.html", form=form)


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        current_user.set_password(form.password.data)
        db.session.commit()
        record_activity("password_change", current_user.id)
        flash("Your password has been changed.", "success")
        return redirect(url_for("profile.me"))
    return render_template("profile/password.html", form=form)


@bp.get("/<username>")
@login_required
def public(username: str):
    user = user_by_username(username)
    if user is None:
        abort(404)
    return render_template("profile/public.html", user=user)
