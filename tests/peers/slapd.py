"""A real LDAP directory for the sign-in tests: Debian's slapd with a configuration folder of its
own (slapd.conf, an mdb database seeded with slapadd) in a temporary folder, on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ldap3 import MODIFY_ADD, NONE, Connection, Server

from tests.peers import stop_process

SLAPD, SLAPADD = "/usr/sbin/slapd", "/usr/sbin/slapadd"
SUFFIX = "dc=example,dc=com"
ROOT_DN, ROOT_PASSWORD = f"cn=admin,{SUFFIX}", "root-secret-for-tests"
READER_DN, READER_PASSWORD = f"cn=reader,{SUFFIX}", "reader-secret-for-tests"
PEOPLE = f"ou=people,{SUFFIX}"
ADMINS = f"cn=chat-admins,ou=groups,{SUFFIX}"  # groupOfNames: member
UNIQUE_ADMINS = f"cn=chat-owners,ou=groups,{SUFFIX}"  # groupOfUniqueNames: uniqueMember
# A group the service account cannot read: only its members' memberOf (the memberof overlay,
# filled when the member is added to the running server) tells who is in it.
HIDDEN_ADMINS = f"cn=chat-hidden,ou=hidden,{SUFFIX}"

# uid -> (given name, surname, mail, password)
USERS = {
    "lalice": ("Alice", "Liddell", "lalice@example.com", "alice-ldap-password"),
    "lbob": ("Bob", "Builder", "lbob@example.com", "bob-ldap-password"),
    "lcarol": ("Carol", "Danvers", "lcarol@example.com", "carol-ldap-password"),
}

CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {folder}/slapd.pid
argsfile {folder}/slapd.args

database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_password}
directory {folder}/data
overlay memberof
access to attrs=userPassword by self read by anonymous auth by * none
access to dn.subtree="ou=hidden,{suffix}" by * none
access to * by users read by * none
"""


def _seed() -> str:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\n"
        "o: Example\n",
        f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: reader\nuserPassword: {READER_PASSWORD}\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n",
    ]
    for uid, (given, surname, mail, password) in USERS.items():
        entries.append(
            f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
            f"cn: {given} {surname}\ngivenName: {given}\nsn: {surname}\nmail: {mail}\n"
            f"userPassword: {password}\n")
    entries.append(f"dn: {ADMINS}\nobjectClass: groupOfNames\ncn: chat-admins\n"
                   f"member: uid=lalice,{PEOPLE}\n")
    entries.append(f"dn: ou=hidden,{SUFFIX}\nobjectClass: organizationalUnit\nou: hidden\n")
    entries.append(f"dn: {HIDDEN_ADMINS}\nobjectClass: groupOfNames\ncn: chat-hidden\n"
                   f"member: uid=lcarol,{PEOPLE}\n")
    entries.append(f"dn: {UNIQUE_ADMINS}\nobjectClass: groupOfUniqueNames\ncn: chat-owners\n"
                   f"uniqueMember: uid=lcarol,{PEOPLE}\n")
    return "\n".join(entries)


class Slapd:
    """slapd serving the seeded directory on ``url`` until ``stop``."""

    def __init__(self, port: int):
        self.folder = Path(tempfile.mkdtemp(prefix="simplechat-slapd-"))
        (self.folder / "data").mkdir()
        conf = self.folder / "slapd.conf"
        conf.write_text(CONFIG.format(folder=self.folder, suffix=SUFFIX, root_dn=ROOT_DN,
                                      root_password=ROOT_PASSWORD))
        (self.folder / "seed.ldif").write_text(_seed())
        done = subprocess.run([SLAPADD, "-f", str(conf), "-l", str(self.folder / "seed.ldif")],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"slapadd: {done.stderr[-2000:]}"
        self.url = f"ldap://127.0.0.1:{port}"
        # -d 0: in the foreground (no daemon to find afterwards), logging nothing.
        self.process = subprocess.Popen([SLAPD, "-f", str(conf), "-h", f"{self.url}/", "-d", "0"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            self._ready(port)
        except BaseException:
            self.stop()
            raise

    def _ready(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, f"slapd: {self.process.stderr.read()[-2000:]}"
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "slapd did not listen"
            time.sleep(0.05)
        # Added through the server, so the overlay gives lbob memberOf: the hidden group.
        with Connection(Server(self.url, get_info=NONE), ROOT_DN, ROOT_PASSWORD,
                        auto_bind=True) as root:
            root.modify(HIDDEN_ADMINS, {"member": [(MODIFY_ADD, [f"uid=lbob,{PEOPLE}"])]})
            assert root.result["result"] == 0, root.result

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)


def settings(url: str, **more) -> dict:
    """The app settings that point at this directory."""
    return {"LDAP_URL": url, "LDAP_BIND_DN": READER_DN, "LDAP_BIND_PASSWORD": READER_PASSWORD,
            "LDAP_USER_BASE": PEOPLE, "LDAP_USER_FILTER": "(uid={username})",
            "LDAP_ADMIN_GROUP": ADMINS, **more}
