"""Every rule of who is notified of a message (notifications.rules.should_notify): levels and
their defaults, mentions, a mute for a time that passes, do-not-disturb, quiet hours across a
time zone (and past midnight), a focused socket, and never one's own message."""

from __future__ import annotations

from datetime import datetime, time

import pytest

from simplechat.notifications.rules import (
    QuietHours,
    Recipient,
    effective_level,
    in_quiet_hours,
    should_notify,
)

NOW = datetime(2026, 7, 1, 12, 0, 0)  # naive UTC; 14:00 in Berlin (summer time)
ME, SENDER = 7, 8


def notified(visibility: str = "direct", mentioned: bool = False, sender: int = SENDER,
             **recipient) -> bool:
    person = Recipient(ME, recipient.pop("level", "default"), **recipient)
    return should_notify(person, sender_id=sender, mentioned=mentioned, visibility=visibility,
                         now=NOW)


@pytest.mark.parametrize("visibility, mentioned, expected", [
    ("direct", False, True), ("private", False, True),
    ("public", False, False), ("public", True, True),
])
def test_the_default_level_is_all_in_direct_and_private_mentions_in_public(
        visibility, mentioned, expected):
    assert notified(visibility, mentioned) is expected


@pytest.mark.parametrize("level, mentioned, expected", [
    ("all", False, True), ("all", True, True),
    ("mentions", False, False), ("mentions", True, True),
    ("none", False, False), ("none", True, False),
])
@pytest.mark.parametrize("visibility", ["direct", "private", "public"])
def test_an_explicit_level_holds_whatever_the_conversation(level, mentioned, expected,
                                                           visibility):
    assert notified(visibility, mentioned, level=level) is expected


def test_a_mute_for_a_time_silences_until_it_passes_then_the_level_holds_again():
    until = datetime(2026, 7, 1, 13, 0, 0)
    assert notified(level="all", muted_until=until, mentioned=True) is False
    later = datetime(2026, 7, 1, 13, 0, 1)
    person = Recipient(ME, "all", muted_until=until)
    assert should_notify(person, sender_id=SENDER, mentioned=False, visibility="public",
                         now=later) is True
    assert effective_level("mentions", until, "direct", later) == "mentions"
    assert effective_level("default", until, "public", NOW) == "none"
    assert effective_level("default", None, "public", NOW) == "mentions"


def test_do_not_disturb_silences_even_mentions_until_it_ends():
    assert notified(dnd_until=datetime(2026, 7, 1, 12, 0, 1), mentioned=True) is False
    assert notified(dnd_until=NOW) is True  # ended at this very second
    assert notified(dnd_until=datetime(2026, 6, 30)) is True


def test_quiet_hours_are_read_on_the_users_own_clock():
    # 12:00 UTC is 14:00 in Berlin, 08:00 in New York, 21:00 in Tokyo.
    berlin = QuietHours(time(13, 0), time(15, 0), "Europe/Berlin")
    utc = QuietHours(time(13, 0), time(15, 0), "UTC")
    assert notified(quiet_hours=berlin) is False
    assert notified(quiet_hours=utc) is True
    tokyo_night = QuietHours(time(20, 30), time(7, 0), "Asia/Tokyo")  # past midnight
    assert notified(quiet_hours=tokyo_night, mentioned=True) is False
    ny_night = QuietHours(time(22, 0), time(8, 0), "America/New_York")
    assert notified(quiet_hours=ny_night) is True  # 08:00 there: the end is not quiet
    assert in_quiet_hours(ny_night, datetime(2026, 7, 1, 11, 59, 59)) is True


def test_quiet_hours_follow_the_zones_daylight_saving():
    berlin = QuietHours(time(22, 0), time(23, 0), "Europe/Berlin")
    assert in_quiet_hours(berlin, datetime(2026, 7, 1, 20, 30)) is True  # CEST, UTC+2
    assert in_quiet_hours(berlin, datetime(2026, 1, 15, 20, 30)) is False  # CET, UTC+1
    assert in_quiet_hours(berlin, datetime(2026, 1, 15, 21, 30)) is True


def test_empty_or_unknown_quiet_hours_silence_nothing():
    assert in_quiet_hours(QuietHours(time(9, 0), time(9, 0), "UTC"), NOW) is False
    assert in_quiet_hours(QuietHours(time(0, 0), time(23, 59), "Nowhere/Atlantis"), NOW) is False
    assert in_quiet_hours(None, NOW) is False


def test_a_focused_socket_in_the_conversation_means_no_push():
    assert notified(looking=True, mentioned=True, level="all") is False
    assert notified(looking=False, level="all") is True


def test_ones_own_message_never_notifies():
    assert notified(sender=ME, level="all", mentioned=True) is False
    assert notified(sender=None, level="all") is True  # a system sender
