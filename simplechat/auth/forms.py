"""Register and login forms, and the field rules the profile forms share."""

from __future__ import annotations

import re

from flask import request
from flask_wtf import FlaskForm
from flask_wtf.form import _Auto
from sqlalchemy import func, select
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, EqualTo, Length, Regexp, ValidationError

from simplechat.extensions import db
from simplechat.models import User

USERNAME_MIN, USERNAME_MAX = 3, 32
NAME_MAX = 64
EMAIL_MAX = 254
PASSWORD_MIN, PASSWORD_MAX = 8, 128
USERNAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
# Path segments under /profile/ that are pages, so no user may take them as a name.
RESERVED_USERNAMES = frozenset({"edit", "password", "sessions", "tokens", "all"})  # @all: a group
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# The rules, shown under the fields (not only in the browser's validation bubbles).
USERNAME_HELP = (
    f"{USERNAME_MIN} to {USERNAME_MAX} characters: letters, digits, dots, dashes and underscores."
)
EMAIL_HELP = "You can log in with it instead of your username; others do not see it."
PASSWORD_HELP = f"At least {PASSWORD_MIN} characters."
CONFIRM_HELP = "The same password again."


class PostedForm(FlaskForm):
    """A FlaskForm that reads only ``request.form`` (never a JSON body, whose values can be any
    type), and treats a missing field as empty instead of keeping its default."""

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form, formdata):
            if formdata is _Auto:
                return request.form if form.is_submitted() else None
            return formdata


class _Text:
    """Mixin for text fields: "" when the field is missing, an error when it is sent twice."""

    def process_formdata(self, valuelist):
        self.data = valuelist[0] if valuelist else ""
        if len(valuelist) > 1:
            raise ValueError("Send this field only once.")


class TextField(_Text, StringField):
    pass


class TextEmailField(_Text, EmailField):
    pass


class TextPasswordField(_Text, PasswordField):
    pass


class TextHiddenField(_Text, HiddenField):
    pass


class TextAreaTextField(_Text, TextAreaField):
    pass


def strip(value):
    return value.strip() if isinstance(value, str) else value


def no_control_characters(form, field) -> None:
    # Also keeps NUL out of queries: PostgreSQL refuses it in a string literal.
    if field.data and _CONTROL_CHARS.search(field.data):
        raise ValidationError("Contains characters that are not allowed.")


def username_taken(username: str, exclude_id: int | None = None) -> bool:
    query = select(User.id).where(func.lower(User.username) == username.lower())
    if exclude_id is not None:
        query = query.where(User.id != exclude_id)
    return db.session.execute(query.limit(1)).first() is not None


def email_taken(email: str, exclude_id: int | None = None) -> bool:
    # E-mail addresses are stored lower-cased, so equality is a case-insensitive match.
    query = select(User.id).where(User.email == email.lower())
    if exclude_id is not None:
        query = query.where(User.id != exclude_id)
    return db.session.execute(query.limit(1)).first() is not None


def name_field(label: str) -> TextField:
    return TextField(
        label,
        filters=[strip],
        validators=[DataRequired(), Length(max=NAME_MAX), no_control_characters],
    )


def email_field(label: str = "E-mail") -> TextEmailField:
    return TextEmailField(
        label,
        description=EMAIL_HELP,
        filters=[strip],
        validators=[
            DataRequired(),
            Length(max=EMAIL_MAX),
            Email(message="Enter a valid e-mail address."),
        ],
    )


def new_password_fields(label: str = "Password") -> tuple[TextPasswordField, TextPasswordField]:
    password = TextPasswordField(
        label,
        description=PASSWORD_HELP,
        validators=[DataRequired(), Length(min=PASSWORD_MIN, max=PASSWORD_MAX)],
    )
    confirm = TextPasswordField(
        "Confirm password",
        description=CONFIRM_HELP,
        validators=[DataRequired(), EqualTo("password", message="The passwords do not match.")],
    )
    return password, confirm


class RegisterForm(PostedForm):
    username = TextField(
        "Username",
        description=USERNAME_HELP,
        filters=[strip],
        validators=[
            DataRequired(),
            Length(min=USERNAME_MIN, max=USERNAME_MAX),
            Regexp(USERNAME_RE, message="Use only letters, digits, dots, dashes and underscores."),
        ],
    )
    first_name = name_field("First name")
    last_name = name_field("Last name")
    email = email_field()
    password, confirm = new_password_fields()

    # Inline validators run even after a field's own validators failed; only query clean input.
    def validate_username(self, field) -> None:
        if field.errors:
            return
        if field.data.lower() in RESERVED_USERNAMES or username_taken(field.data):
            raise ValidationError("That username is already taken.")

    def validate_email(self, field) -> None:
        if field.errors:
            return
        if email_taken(field.data):
            raise ValidationError("That e-mail address is already registered.")


class LoginForm(PostedForm):
    username = TextField(
        "Username or e-mail",
        filters=[strip],
        validators=[DataRequired(), Length(max=EMAIL_MAX), no_control_characters],
    )
    password = TextPasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    remember = BooleanField("Remember me")
    next = TextHiddenField()


class ResetRequestForm(PostedForm):
    email = TextEmailField(
        "E-mail",
        description="The address of your account. We send a link to set a new password.",
        filters=[strip],
        validators=[
            DataRequired(),
            Length(max=EMAIL_MAX),
            no_control_characters,
            Email(message="Enter a valid e-mail address."),
        ],
    )


class ResetPasswordForm(PostedForm):
    password, confirm = new_password_fields("New password")
    # As on the profile's password page: a token made by whoever had the old password stops.
    revoke_tokens = BooleanField("Also revoke my API tokens", default=True)
