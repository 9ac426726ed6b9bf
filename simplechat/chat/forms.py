"""Forms of the chat feature."""

from __future__ import annotations

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import RadioField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from simplechat.auth.forms import (
    PostedForm,
    TextAreaTextField,
    TextField,
    no_control_characters,
    strip,
)
from simplechat.conversations.groups import MAX_TITLE
from simplechat.models import MAX_DESCRIPTION, PRIVATE, PUBLIC
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
        limit = current_app.config["CHAT_MAX_MEMBERS"]
        if len(set(field.data)) >= limit:
            raise ValidationError(f"A conversation can have at most {limit} people.")


class NewWebhookForm(PostedForm):
    """An outgoing webhook of a conversation; the address itself is checked by create_outgoing."""

    url = TextField(
        "Receiver URL", filters=[strip],
        validators=[DataRequired(), Length(max=URL_MAX), no_control_characters],
        description="Every new message of this conversation is POSTed here as signed JSON: "
                    "an http:// or https:// address on the public internet.",
    )


class NewIncomingWebhookForm(PostedForm):
    """An incoming webhook of a conversation: a secret URL that posts as a new bot user."""

    bot_name = TextField(
        "Bot name", filters=[strip],
        validators=[DataRequired("Name the bot its messages come from."), Length(max=64),
                    no_control_characters],
        description="Messages posted to the webhook's URL show this name. Up to 64 characters.",
    )


class NewCommandForm(PostedForm):
    """A slash command of a conversation; create_command checks the name and address again."""

    command = TextField(
        "Command", filters=[strip],
        validators=[DataRequired("Name the command, like /deploy."), Length(max=33),
                    no_control_characters],
        description="/ and up to 32 letters, digits, - or _, like /deploy.")
    command_url = TextField(
        "Service URL", filters=[strip],
        validators=[DataRequired(), Length(max=URL_MAX), no_control_characters],
        description="Typing the command POSTs Slack's form fields here, signed: an http:// or "
                    "https:// address on the public internet.")
    command_description = TextField(
        "Description", filters=[strip],
        validators=[Length(max=200), no_control_characters],
        description="Optional: shown beside the command as you type /.")


class NewChannelForm(PostedForm):
    """A new channel: its name, what it is about, and who may find it. create_channel has the
    last word on the text (what it stores, and its refusals)."""

    title = TextField(
        "Name", filters=[strip],
        validators=[DataRequired("Give the channel a name."), Length(max=MAX_TITLE),
                    no_control_characters],
        description=f"Up to {MAX_TITLE} characters, shown in the directory and the list.")
    description = TextAreaTextField(
        "Description", filters=[strip], validators=[Length(max=MAX_DESCRIPTION)],
        description=f"Optional: what the channel is for, up to {MAX_DESCRIPTION} characters.")
    visibility = RadioField(
        "Who can find it", default=PUBLIC,
        choices=[SelectChoice(PUBLIC, "Public: listed under Browse channels; anyone here can join"),
                 SelectChoice(PRIVATE, "Private: only the people added to it see it")])
