"""Register, log in and log out."""

from __future__ import annotations

import logging
import math
import re
from functools import cache
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from simplechat.auth.forms import LoginForm, RegisterForm
from simplechat.auth.sessions import end_current_session, start_session
from simplechat.extensions import db
from simplechat.infra.services import services
from simplechat.models import User
from simplechat.observability.activity import record_activity

bp = Blueprint("auth", __name__)

log = logging.getLogger(__name__)

LOGIN_FAILED = "Invalid username or password."
LOGIN_THROTTLED = "Too many failed login attempts. Try again in {seconds} seconds."
REGISTER_THROTTLED = (
    "Too many registration attempts from your address. Try again in {seconds} seconds."
)
_UNSAFE_IN_NEXT = re.compile(r"[\x00-\x1f\x7f\\]")


def safe_next(target: object) -> str | None:
    """``target`` if it is a path on this site, else None (no open redirects).

    Browsers drop tabs and newlines and read a backslash as a slash, so "/\\evil" or "/\\t/evil"
    would become "//evil", another host; any of them disqualifies the target."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//"):
        return None
    if len(target) > 2048 or _UNSAFE_IN_NEXT.search(target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def find_login_user(identifier: str) -> User | None:
    """The user whose username or e-mail matches ``identifier``, ignoring case."""
    lowered = identifier.lower()
    column = User.email if "@" in identifier else func.lower(User.username)
    return db.session.execute(select(User).where(column == lowered)).scalar_one_or_none()


@cache
def _dummy_hash() -> str:
    return generate_password_hash("not a real password")


def authenticate(identifier: str, password: str, user: User | None = None) -> User | None:
    """The active user with these credentials, or None; the cost is the same either way."""
    user = user or find_login_user(identifier)
    if user is None:
        check_password_hash(_dummy_hash(), password)  # so timing does not reveal unknown users
        return None
    if not user.check_password(password) or not user.is_active:
        return None
    return user


def login_key(identifier: str) -> str:
    """The failed-login counter for what was typed, whether or not an account has that name."""
    return f"name:{identifier.strip().lower()}"


@bp.route("/register", methods=["GET", "POST"])
def register():
    if current_user.is_authenticated:
        return redirect(url_for("chat.index"))
    form = RegisterForm()
    # Counted before validation, which tells whether a username or e-mail address is taken.
    wait = _register_wait() if form.is_submitted() else 0.0
    if wait:
        error = REGISTER_THROTTLED.format(seconds=math.ceil(wait))
        return render_template("auth/register.html", form=form, error=error), 429
    if form.validate_on_submit():
        user = User(
            username=form.username.data,
            first_name=form.first_name.data,
            last_name=form.last_name.data,
            email=form.email.data.lower(),
        )
        user.set_password(form.password.data)
        db.session.add(user)
        try:
            db.session.commit()
        except IntegrityError:
            # Someone else took the username or e-mail between the check and the insert.
            db.session.rollback()
            form.username.errors.append("That username or e-mail address is already taken.")
            return render_template("auth/register.html", form=form)
        start_session(user)
        record_activity("register", user.id)
        flash(f"Welcome to Simple Chat, {user.first_name}!", "success")
        return redirect(url_for("chat.index"))
    return render_template("auth/register.html", form=form)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("chat.index"))
    form = LoginForm()
    error = None
    status = 200
    if form.validate_on_submit():
        found = find_login_user(form.username.data)
        # Keyed on what was typed, so a refusal does not tell which names are accounts.
        account = login_key(form.username.data)
        ip = request.remote_addr or "unknown"
        wait = _login_wait(account, ip)
        if wait:
            # Refused before the password is checked, so guessing on cannot find it.
            error = LOGIN_THROTTLED.format(seconds=math.ceil(wait))
            status = 429
        else:
            user = authenticate(form.username.data, form.password.data, found)
            if user is not None:
                start_session(user, remember=bool(form.remember.data))
                record_activity("login", user.id)
                target = safe_next(form.next.data) or safe_next(request.args.get("next"))
                return redirect(target or url_for("chat.index"))
            _login_failed(account, ip)
            error = LOGIN_FAILED
    form.next.data = safe_next(form.next.data) or safe_next(request.args.get("next")) or ""
    return render_template("auth/login.html", form=form, error=error), status


def _login_wait(account: str, ip: str) -> float:
    # A limiter that cannot be reached must not lock everyone out; it is logged instead.
    try:
        return services().login_limiter.wait(account, ip)
    except Exception:
        log.warning("login limiter unavailable; not limiting this attempt", exc_info=True)
        return 0.0


def _login_failed(account: str, ip: str) -> None:
    try:
        services().login_limiter.failed(account, ip)
    except Exception:
        log.warning("login limiter unavailable; failure not counted", exc_info=True)


def _register_wait() -> float:
    # CSRFProtect has already refused a POST without a valid token, so only real attempts count.
    try:
        return services().register_limiter.hit(request.remote_addr or "unknown")
    except Exception:
        log.warning("registration limiter unavailable; not limiting this attempt", exc_info=True)
        return 0.0


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        user_id = current_user.id
        end_current_session("logged_out")
        record_activity("logout", user_id)
        flash("You have been logged out.", "info")
    return redirect(url_for("auth.login"))
