"""Register, log in and log out."""

from __future__ import annotations

import logging
import math
import re
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from simplechat.auth import oidc
from simplechat.auth.forms import LoginForm, RegisterForm, ResetPasswordForm, ResetRequestForm
from simplechat.auth.identities import Refused, sign_in_external
from simplechat.auth.ldap import UNREACHABLE, DirectoryUnavailable, directory_login, ldap_enabled
from simplechat.auth.passwords import (
    BUSY_MESSAGE,
    Busy,
    check_unknown,
    password_matches,
    set_password,
)
from simplechat.auth.reset import (
    EXPIRED,
    INVALID,
    ask_for_reset,
    mail_configured,
    reset_password,
    user_of_token,
)
from simplechat.auth.sessions import end_current_session, start_session
from simplechat.extensions import db
from simplechat.infra.services import services
from simplechat.models import User
from simplechat.observability.activity import record_activity
from simplechat.observability.metrics import count_refusal

bp = Blueprint("auth", __name__)
bp.record_once(lambda state: oidc.init_oidc(state.app))

log = logging.getLogger(__name__)

LOGIN_FAILED = "Invalid username or password."
PASSWORD_LOGIN_OFF = "Password login is turned off here."
LOGIN_THROTTLED = "Too many failed login attempts. Try again in {seconds} seconds."
# Past the successful logins allowed (LOGIN_SUCCESS_RATE_LIMIT_*): the password was not checked.
LOGIN_SUCCESS_THROTTLED = "Too many logins. Try again in {seconds} seconds."
REGISTER_THROTTLED = (
    "Too many registration attempts from your address. Try again in {seconds} seconds."
)
RESET_THROTTLED = "Too many reset requests. Try again in {minutes} minute(s)."
RESET_UNAVAILABLE = "The server cannot send mail right now. Try again in a moment."
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


def authenticate(identifier: str, password: str, user: User | None = None) -> User | None:
    """The active user with these credentials, or None; the cost is the same either way. The
    hash is checked on the CPU pool: Busy when it is full."""
    user = user or find_login_user(identifier)
    if user is None:
        check_unknown(password)  # so timing does not reveal unknown users
        return None
    if not password_matches(user, password) or not user.is_active:
        return None
    return user


def login_key(identifier: str) -> str:
    """The failed-login counter for what was typed, whether or not an account has that name."""
    return f"name:{identifier.strip().lower()}"


@bp.route("/register", methods=["GET", "POST"])
def register():
    if not current_app.config["PASSWORD_LOGIN"]:
        abort(404)  # accounts come from the company's sign-in
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
        try:
            set_password(user, form.password.data)
        except Busy:
            return render_template("auth/register.html", form=form, error=BUSY_MESSAGE), 503
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
    error, status, wait = None, 200, 0.0
    if form.is_submitted() and not _form_login_on():
        error, status = PASSWORD_LOGIN_OFF, 403
    elif form.validate_on_submit():
        found = find_login_user(form.username.data)
        # Failures are keyed on what was typed, so a refusal does not tell which names are
        # accounts; successes on the account (only a correct password moves them).
        account = login_key(form.username.data)
        ip = request.remote_addr or "unknown"
        failures, successes = _login_waits(account, ip, found)
        wait = max(failures, successes)
        if wait:
            # Refused before the password is checked, so guessing on cannot find it, and a
            # script that knows it cannot make the server hash it without end.
            error = (LOGIN_THROTTLED if failures else LOGIN_SUCCESS_THROTTLED).format(
                seconds=math.ceil(wait))
            status = 429
            count_refusal("login_failures" if failures else "login_successes")
        else:
            try:
                user, error, status = check_credentials(form.username.data, form.password.data,
                                                        found)
            except Busy:
                user, error, status = None, BUSY_MESSAGE, 503
                count_refusal("cpu_pool_full")
            except Refused as refused:
                user, error, status = None, refused.message, refused.status
            else:
                if user is None:
                    _login_failed(account, ip)
                elif wait := _login_succeeded(user.id, ip):
                    # Another login took the last one allowed since the check above.
                    error = LOGIN_SUCCESS_THROTTLED.format(seconds=math.ceil(wait))
                    status = 429
                else:
                    start_session(user, remember=bool(form.remember.data))
                    record_activity("login", user.id)
                    target = safe_next(form.next.data) or safe_next(request.args.get("next"))
                    return redirect(target or url_for("chat.index"))
    form.next.data = safe_next(form.next.data) or safe_next(request.args.get("next")) or ""
    response = make_response(login_page(form, error), status)
    if status in (429, 503):
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)) if status == 429 else 1)
    return response


def _form_login_on() -> bool:
    """Whether the login form takes a name and password: local ones, or the directory's."""
    return bool(current_app.config["PASSWORD_LOGIN"]) or ldap_enabled()


def login_page(form: LoginForm, error: str | None) -> str:
    """The login page: the form when it is on, "Sign in with ..." when a provider is set."""
    return render_template(
        "auth/login.html", form=form, error=error, form_login=_form_login_on(),
        registration=bool(current_app.config["PASSWORD_LOGIN"]),
        oidc_name=oidc.provider_name() if oidc.oidc_enabled() else None)


def check_credentials(identifier: str, password: str,
                      found: User | None) -> tuple[User | None, str | None, int]:
    """The user a name and password log in, else None; with the error to show and its status.

    With LDAP_URL the directory answers first, and a name it knows is its to decide (wrong
    password: refused). A name it does not know, or a directory that cannot be reached, falls
    to the local password when PASSWORD_LOGIN is on, so a local admin can still log in.
    Refused (a deactivated account) and Busy (the CPU pool) reach the caller."""
    down = False
    if ldap_enabled():
        try:
            answer = directory_login(identifier, password)
        except DirectoryUnavailable:
            down, answer = True, None
        if answer is not None and answer.known:
            if answer.profile is None:
                return None, LOGIN_FAILED, 200
            return sign_in_external(answer.profile), None, 200
    user = None
    if current_app.config["PASSWORD_LOGIN"]:
        user = authenticate(identifier, password, found)
    if user is None and down:
        return None, UNREACHABLE, 503
    return user, None if user else LOGIN_FAILED, 200


@bp.get("/oidc/login")
def oidc_login():
    """Off to the OpenID provider, with a new state, nonce and PKCE challenge."""
    if not oidc.oidc_enabled():
        abort(404)
    if current_user.is_authenticated:
        return redirect(url_for("chat.index"))
    try:
        return oidc.begin(safe_next(request.args.get("next")),
                          remember=request.args.get("remember") == "1")
    except Refused as refused:
        return _sso_refused(refused)


@bp.get("/oidc/callback")
def oidc_callback():
    """Back from the OpenID provider: the same server-side session as a password login."""
    if not oidc.oidc_enabled():
        abort(404)
    try:
        profile, next_url, remember = oidc.finish()
        user = sign_in_external(profile)
    except Refused as refused:
        return _sso_refused(refused)
    if current_user.is_authenticated:
        end_current_session("logged_out")  # another login in this browser meanwhile
    start_session(user, remember=remember)
    record_activity("login", user.id, {"via": "oidc"})
    return redirect(safe_next(next_url) or url_for("chat.index"))


def _sso_refused(refused: Refused):
    form = LoginForm()
    form.next.data = ""
    response = make_response(login_page(form, refused.message), refused.status)
    if refused.status == 503:
        response.headers["Retry-After"] = "5"
    return response


def _login_waits(account: str, ip: str, found: User | None) -> tuple[float, float]:
    """The seconds to wait for the failures of this name and address, and for the successes
    of this address and the account the name finds."""
    # A limiter that cannot be reached must not lock everyone out; it is logged instead.
    limiter = services().login_limiter
    try:
        return (limiter.wait(account, ip),
                limiter.success_wait(ip, found.id if found is not None else None))
    except Exception:
        log.warning("login limiter unavailable; not limiting this attempt", exc_info=True)
        return 0.0, 0.0


def _login_succeeded(user_id: int, ip: str) -> float:
    try:
        return services().login_limiter.succeeded(user_id, ip)
    except Exception:
        log.warning("login limiter unavailable; success not counted", exc_info=True)
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


@bp.route("/reset", methods=["GET", "POST"])
def reset_request():
    """Ask for a password reset link. The answer is the same whether or not the address has
    an account; the mail is sent by a task, never while this request waits."""
    form = ResetRequestForm()
    if not mail_configured() or not current_app.config["PASSWORD_LOGIN"]:
        status = 503 if request.method == "POST" else 200
        return render_template("auth/reset_request.html", form=form, configured=False,
                               passwords=current_app.config["PASSWORD_LOGIN"]), status
    if form.validate_on_submit():
        try:
            asked = ask_for_reset(form.email.data, request.remote_addr or "unknown")
        except Exception:
            log.warning("password reset request not queued", exc_info=True)
            return _reset_page(form, RESET_UNAVAILABLE, 503, wait=1)
        if asked.wait:
            count_refusal("reset_requests")
            return _reset_page(form, RESET_THROTTLED.format(minutes=math.ceil(asked.wait / 60)),
                               429, wait=asked.wait)
        return render_template("auth/reset_sent.html", email=form.email.data)
    return render_template("auth/reset_request.html", form=form, configured=True)


def _reset_page(form: ResetRequestForm, error: str, status: int, wait: float):
    response = make_response(render_template("auth/reset_request.html", form=form,
                                             configured=True, error=error), status)
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset_with_token(token: str):
    """The page of a reset link: a new password, then every session of the user ends."""
    user = user_of_token(token) if current_app.config["PASSWORD_LOGIN"] else INVALID
    if isinstance(user, str):
        return render_template("auth/reset_invalid.html", expired=user == EXPIRED), 400
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            done = reset_password(user, form.password.data, bool(form.revoke_tokens.data))
        except Busy:
            form.password.errors.append(BUSY_MESSAGE)
            return render_template("auth/reset_password.html", form=form, user=user), 503
        if not done:
            return render_template("auth/reset_invalid.html", expired=False), 400
        if current_user.is_authenticated and current_user.id == user.id:
            end_current_session("password_changed")  # its cookies go too
        flash("Your password has been set, and every session of your account was signed out. "
              "Log in with the new password.", "success")
        return redirect(url_for("auth.login"))
    return render_template("auth/reset_password.html", form=form, user=user)
