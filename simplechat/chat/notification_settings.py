"""The notification settings page (``/chat/settings/notifications``): do not disturb, quiet
hours, the missed-message e-mails, and Web Push on this device. The form hands its values to
the same function as ``PUT /api/me/settings``, which checks them."""

from __future__ import annotations

from datetime import timedelta

from flask import flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from wtforms import BooleanField, IntegerField, SelectField, StringField
from wtforms.validators import NumberRange, Optional, Regexp

from simplechat.answers import TIMESTAMP_FORMAT
from simplechat.auth.forms import PostedForm
from simplechat.chat.views import bp
from simplechat.models import utcnow
from simplechat.notifications.push import public_key
from simplechat.notifications.settings import (
    CLOCK,
    DELAY_MAX,
    DELAY_MIN,
    settings_of,
    time_zones,
    update_settings,
)

KEEP, OFF = "keep", "off"
DND_CHOICES = [(KEEP, "Leave as it is"), (OFF, "Off"), ("60", "For 1 hour"),
               ("480", "For 8 hours"), ("1440", "For 24 hours")]
CLOCK_MESSAGE = "A time of day as HH:MM, e.g. 22:00."


class NotificationSettingsForm(PostedForm):
    dnd = SelectField("Do not disturb", choices=DND_CHOICES, default=KEEP,
                      description="No notifications at all (mentions included) for a while.")
    quiet_hours = BooleanField("Quiet hours every day")
    quiet_start = StringField("Quiet from", validators=[Optional(), Regexp(CLOCK.pattern,
                                                                           message=CLOCK_MESSAGE)])
    quiet_end = StringField("Quiet until", validators=[Optional(), Regexp(CLOCK.pattern,
                                                                          message=CLOCK_MESSAGE)],
                            description="At or before the start: the quiet hours go past "
                                        "midnight.")
    quiet_timezone = SelectField("Time zone", validate_choice=True)
    email_notifications = BooleanField("E-mail me what I missed")
    email_delay_minutes = IntegerField(
        "E-mail after (minutes)", validators=[NumberRange(DELAY_MIN, DELAY_MAX)],
        description=f"A direct message or mention still unread after this long, while none of "
                    f"my pages is open ({DELAY_MIN}–{DELAY_MAX}).")


def _form(settings: dict) -> NotificationSettingsForm:
    quiet = settings["quiet_hours"] or {}
    form = NotificationSettingsForm(
        quiet_hours=bool(quiet), quiet_start=quiet.get("start", "22:00"),
        quiet_end=quiet.get("end", "08:00"), quiet_timezone=quiet.get("timezone", "UTC"),
        email_notifications=settings["email_notifications"],
        email_delay_minutes=settings["email_delay_minutes"])
    form.quiet_timezone.choices = sorted(time_zones())
    return form


def _change(form: NotificationSettingsForm) -> dict:
    change: dict = {"email_notifications": form.email_notifications.data,
                    "email_delay_minutes": form.email_delay_minutes.data}
    if form.dnd.data == OFF:
        change["dnd_until"] = None
    elif form.dnd.data != KEEP:
        until = utcnow() + timedelta(minutes=int(form.dnd.data))
        change["dnd_until"] = until.strftime(TIMESTAMP_FORMAT)
    change["quiet_hours"] = None
    if form.quiet_hours.data:
        change["quiet_hours"] = {"start": form.quiet_start.data, "end": form.quiet_end.data,
                                 "timezone": form.quiet_timezone.data}
    return change


@bp.route("/settings/notifications", methods=["GET", "POST"])
@login_required
def notification_settings():
    settings = settings_of(current_user)
    form = _form(settings)
    if form.validate_on_submit():
        if form.quiet_hours.data and not (form.quiet_start.data and form.quiet_end.data):
            form.quiet_end.errors = [*form.quiet_end.errors, "Give both times."]
        else:
            answer = update_settings(current_user.id, _change(form))
            if answer["ok"]:
                flash("Notification settings saved.", "success")
                return redirect(url_for("chat.notification_settings"))
            form.dnd.errors = [*form.dnd.errors, "These settings could not be saved."]
    return render_template("chat/notification_settings.html", form=form, settings=settings,
                           push_key=public_key())
