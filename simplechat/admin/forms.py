"""The console's forms: a new account, and the filters of its lists (read from the query
string, so a filtered page can be linked to)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from flask_wtf import FlaskForm
from wtforms import BooleanField, DateField, EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

from simplechat.auth.forms import NAME_MAX, PASSWORD_MAX, USERNAME_MAX


class NewUserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=USERNAME_MAX)])
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    first_name = StringField("First name", validators=[Optional(), Length(max=NAME_MAX)])
    last_name = StringField("Last name", validators=[Optional(), Length(max=NAME_MAX)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=PASSWORD_MAX)])
    admin = BooleanField("Site admin")


class LogFilterForm(FlaskForm):
    """Who, what and when, for the activity and error logs (GET: no CSRF token)."""

    class Meta:
        csrf = False

    user = StringField("User", validators=[Optional(), Length(max=USERNAME_MAX)],
                       description="A username")
    action = StringField("Action", validators=[Optional(), Length(max=200)])
    since = DateField("From", validators=[Optional()])
    until = DateField("To", validators=[Optional()])

    def window(self) -> tuple[datetime | None, datetime | None]:
        """The dates as a half-open range of UTC times: from the start of ``since`` to the
        end of ``until``."""
        since = _start(self.since.data) if self.since.data else None
        until = _start(self.until.data) + timedelta(days=1) if self.until.data else None
        return since, until


def _start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)
