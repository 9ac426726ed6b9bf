"""Forms of the chat feature."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from simplechat.auth.forms import PostedForm, TextField, no_control_characters, strip
from simplechat.conversations.records import MAX_PARTICIPANTS
from simplechat.web.strict_numbers import MAX_ID, parse_int
from simplechat.webhooks.hooks import URL_MAX


class UserIdsField(SelectMultipleField):
    """User ids picked with Select2's AJAX search: any id is accepted here and checked by the
    view against the database, since the choices are not known in advance. Each is read as the
    ``<id:...>`` converter reads a path: ASCII digits only (``str.isdigit`` takes "٣" as 3)."""

    def pre_validate(self, form) -> None:
        pass

    malformed = False

    def process_formdata(self, valuelist) -> None:
        ids = []
        for value in valuelist:
            parsed = parse_int(value, 1, MAX_ID) if isinstance(value, str) else None
            if parsed is None:
                self.malformed = True
            else:
                ids.append(parsed)
        self.data = ids


class NewConversationForm(FlaskForm):
    participants = UserIdsField("People", coerce=int)
    title = StringField("Group title", validators=[Optional(), Length(max=120)])

    def validate_participants(self, field) -> None:
        if field.malformed:
            raise ValidationError("Pick people from the list.")
        if not field.data:
            raise ValidationError("Pick at least one person.")
        if len(set(field.data)) > MAX_PARTICIPANTS:
            raise ValidationError(f"A conversation can have at most {MAX_PARTICIPANTS} people.")


class NewWebhookForm(PostedForm):
    """An outgoing webhook of a conversation; the address itself is checked by create_outgoing."""

    url = TextField(
        "Receiver URL", filters=[strip],
        validators=[DataRequired(), Length(max=URL_MAX), no_control_characters],
        description="Every new message of this conversation is POSTed here as signed JSON: "
                    "an http:// or https:// address on the public internet.",
    )
