"""Password login against an LDAP directory, through ldap3: bind as the service account, search
the person with LDAP_USER_FILTER (what was typed escaped, so ``*)(uid=*`` matches nobody), bind
as the entry found with the password, and read the admin group.

Each connection has a deadline (``LDAP_TIMEOUT``) to open and to answer; its socket is the
server's, which eventlet and gevent make cooperative, so the loop serves others meanwhile."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from flask import current_app
from ldap3 import BASE, NONE, SUBTREE, Connection, Server
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from simplechat.auth.identities import Profile

log = logging.getLogger(__name__)

ISSUER = "ldap"  # the issuer of directory identities (the server's URL may change)
UNREACHABLE = ("The company directory cannot be reached, so only local accounts can log in "
               "now. Try again later.")
_ATTRIBUTES = ["uid", "cn", "givenName", "sn", "mail", "memberOf", "entryUUID"]


class DirectoryUnavailable(Exception):
    """The directory could not be reached, or refused the service account."""


@dataclass(frozen=True)
class Answer:
    """The directory's answer: no entry for the name (``known`` False); an entry whose password
    did not match (``profile`` None); or the person's Profile."""

    known: bool
    profile: Profile | None = None


def ldap_enabled() -> bool:
    return bool(current_app.config.get("LDAP_URL"))


def _timeout() -> int:
    # ldap3 packs the receive timeout into a socket option: whole seconds only.
    return max(1, math.ceil(current_app.config["LDAP_TIMEOUT"]))


def _server() -> Server:
    return Server(current_app.config["LDAP_URL"], connect_timeout=_timeout(), get_info=NONE)


def _connection(server: Server, user: str | None, password: str | None) -> Connection:
    return Connection(server, user=user, password=password, read_only=True,
                      receive_timeout=_timeout(), auto_bind=False,
                      raise_exceptions=False)


def user_filter(username: str) -> str:
    """LDAP_USER_FILTER with ``{username}`` replaced by the escaped name (RFC 4515)."""
    return current_app.config["LDAP_USER_FILTER"].replace(
        "{username}", escape_filter_chars(username))


def directory_login(username: str, password: str) -> Answer:
    """Ask the directory whether ``username`` and ``password`` are one of its people.
    DirectoryUnavailable when it cannot tell."""
    config = current_app.config
    server = _server()
    service = _connection(server, config.get("LDAP_BIND_DN"), config.get("LDAP_BIND_PASSWORD"))
    try:
        if not service.bind():
            log.error("LDAP service account bind refused: %s", service.result)
            raise DirectoryUnavailable
        service.search(config["LDAP_USER_BASE"], user_filter(username), SUBTREE,
                       attributes=_ATTRIBUTES, size_limit=2)
        entries = list(service.entries)
        # 4: more than one entry (the size limit); 32: LDAP_USER_BASE does not exist.
        if service.result.get("result") not in (0, 4, 32):
            log.error("LDAP search for a login failed: %s", service.result)
            raise DirectoryUnavailable
        if len(entries) > 1:
            # A filter that names several people logs nobody in.
            log.warning("LDAP_USER_FILTER found several entries for one login")
            return Answer(known=True)
        if not entries:
            return Answer(known=False)
        entry = entries[0]
        if not password or not _password_matches(server, entry.entry_dn, password):
            return Answer(known=True)
        admin = _in_admin_group(service, entry) if config.get("LDAP_ADMIN_GROUP") else None
    except LDAPException as exc:
        log.warning("LDAP directory unavailable: %s", exc)
        raise DirectoryUnavailable from exc
    finally:
        service.unbind()
    return Answer(known=True, profile=_profile(entry, username, admin))


def _password_matches(server: Server, dn: str, password: str) -> bool:
    conn = _connection(server, dn, password)
    try:
        return bool(conn.bind())
    finally:
        conn.unbind()


def _values(entry, name: str) -> list:
    return list(entry[name].values) if name in entry.entry_attributes else []


def _first(entry, name: str) -> str:
    values = _values(entry, name)
    return str(values[0]) if values else ""


def _in_admin_group(service: Connection, entry) -> bool:
    """Whether the entry is in LDAP_ADMIN_GROUP: its memberOf names the group, or the group
    lists its DN in member or uniqueMember."""
    group = current_app.config["LDAP_ADMIN_GROUP"]
    if any(str(dn).lower() == group.lower() for dn in _values(entry, "memberOf")):
        return True
    dn = escape_filter_chars(entry.entry_dn)
    service.search(group, f"(|(member={dn})(uniqueMember={dn}))", BASE, attributes=["cn"])
    return bool(service.entries)


def _profile(entry, typed: str, admin: bool | None) -> Profile:
    uuid = _first(entry, "entryUUID")
    first, last = _first(entry, "givenName"), _first(entry, "sn")
    if not first and not last:
        first = _first(entry, "cn")
    return Profile(issuer=ISSUER, subject=uuid or entry.entry_dn.lower(),
                   username=_first(entry, "uid") or typed, email=_first(entry, "mail") or None,
                   email_verified=True, first_name=first, last_name=last, is_admin=admin)
