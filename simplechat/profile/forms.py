"""Profile forms: edit your details, change your password."""

from __future__ import annotations

from flask_login import current_user
from wtforms import BooleanField
from wtforms.validators import DataRequired, Length, ValidationError

from simplechat.auth.forms import (
    PASSWORD_MAX,
    PostedForm,
    TextField,
    TextPasswordField,
    email_field,
    email_taken,
    name_field,
    new_password_fields,
    no_control_characters,
    strip,
)
from simplechat.auth.passwords import BUSY_MESSAGE, Busy, password_matches


class EditProfileForm(PostedForm):
    first_name = name_field("First name")
    last_name = name_field("Last name")
    email = email_field()

    def validate_email(self, field) -> None:
        if field.errors:
            return
        if email_taken(field.data, exclude_id=current_user.id):
            raise ValidationError("That e-mail address is already registered.")


class ChangePasswordForm(PostedForm):
    current_password = TextPasswordField(
        "Current password", validators=[DataRequired(), Length(max=PASSWORD_MAX)]
    )
    password, confirm = new_password_fields("New password")
    # A token made before the change keeps working otherwise: whoever took the password may
    # have made one.
    revoke_tokens = BooleanField("Also revoke my API tokens", default=True)
    busy = False  # the CPU pool could not check the password: answer 503

    def validate_current_password(self, field) -> None:
        if field.errors:
            return
        try:
            matches = password_matches(current_user, field.data)
        except Busy:
            self.busy = True
            raise ValidationError(BUSY_MESSAGE) from None
        if not matches:
            raise ValidationError("That is not your current password.")


class NewTokenForm(PostedForm):
    name = TextField(
        "Token name", filters=[strip],
        validators=[DataRequired(), Length(max=64), no_control_characters],
        description="What the token is for, e.g. “deploy bot”; up to 64 characters.",
    )
