"""Configuration classes, read from the environment in this one place."""

from __future__ import annotations

import os
import re

DEFAULT_SECRET = "dev-only-not-secret"


def database_url(raw: str | None) -> str | None:
    """Normalise a plain ``postgresql://`` or ``mysql://`` URL to the installed driver."""
    if not raw:
        return None
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://"):]
    if raw.startswith("postgresql://"):
        return "postgresql+psycopg2://" + raw[len("postgresql://"):]
    if raw.startswith(("mysql://", "mariadb://")):
        rest = raw.split("://", 1)[1]
        url = "mysql+pymysql://" + rest
        if "charset=" not in url:
            url += ("&" if "?" in url else "?") + "charset=utf8mb4"
        return url
    return raw


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str) -> list[str] | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if value == "*":
        return ["*"]
    return [item.strip() for item in re.split(r"[,\s]+", value) if item.strip()]


def sentinel_hosts(raw: str | None) -> list[tuple[str, int]] | None:
    """``REDIS_SENTINELS``: ``host:port`` items separated by commas (or blanks), an IPv6 host
    in brackets (``[::1]:26379``), the port 26379 when left out; None when empty. A malformed
    item raises ValueError naming it."""
    items = [item for item in re.split(r"[,\s]+", raw or "") if item]
    if not items:
        return None
    hosts = []
    for item in items:
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^\[\]:/@]+)(?::(\d+))?", item)
        port = match and (match.group(2) or match.group(4) or "26379")
        if not match or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_SENTINELS: {item!r} is not host:port")
        hosts.append((match.group(1) or match.group(3), int(port)))
    return hosts


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY") or DEFAULT_SECRET
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL"))
    # READ COMMITTED is PostgreSQL's default; MySQL/MariaDB default to REPEATABLE READ, where a
    # transaction keeps reading the snapshot of its first read and misses rows committed since.
    # One eventlet worker runs hundreds of events at once: the pool keeps DATABASE_POOL_SIZE
    # connections open (SQLAlchemy's default of 5, with 10 more opened and closed on demand,
    # made a burst of socket connects open a new database connection for nearly every one).
    SQLALCHEMY_ENGINE_OPTIONS = {
        "pool_pre_ping": True,
        "isolation_level": "READ COMMITTED",
        "pool_size": int(os.environ.get("DATABASE_POOL_SIZE", "20")),
        "max_overflow": int(os.environ.get("DATABASE_MAX_OVERFLOW", "10")),
    }
    # Redis Sentinel (docs/DEPLOY.md): when REDIS_SENTINELS is set, the sentinels name the
    # server of REDIS_URL, CELERY_BROKER_URL and SOCKETIO_MESSAGE_QUEUE (the host and port of
    # those URLs are not used; their db numbers and passwords are), and every process follows
    # a failover. REDIS_URL defaults to db 0 of the master then.
    REDIS_SENTINELS = sentinel_hosts(os.environ.get("REDIS_SENTINELS"))
    REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER") or "mymaster"
    REDIS_SENTINEL_PASSWORD = os.environ.get("REDIS_SENTINEL_PASSWORD") or None
    REDIS_URL = os.environ.get("REDIS_URL") or ("redis://sentinel/0" if REDIS_SENTINELS else None)
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or None
    # Prefix for every Redis key this app owns, so several deployments or tests can share a server.
    REDIS_KEY_PREFIX = os.environ.get("REDIS_KEY_PREFIX", "simplechat:")
    # Connections per process to REDIS_URL; an event waits (up to 5 s) when all are in use.
    REDIS_MAX_CONNECTIONS = int(os.environ.get("REDIS_MAX_CONNECTIONS", "100"))
    # Pipelines of batched steps (connects, joins, disconnects) on their way to Redis at once
    # from one process; batches run meanwhile wait and share the next round trip (0: each
    # batch its own round trip). With one, the batches' answers are handled in the order Redis
    # ran them, which presence announcements rely on. See simplechat/infra/redis_client.py:
    # SharedTrips.
    REDIS_BATCH_LANES = env_int("REDIS_BATCH_LANES", 1)
    CHAT_RECENT_MESSAGES = env_int("CHAT_RECENT_MESSAGES", 100)
    CHAT_RATE_LIMIT = os.environ.get("CHAT_RATE_LIMIT", "1/2s")
    # Edits and deletes of one's own messages, per user, apart from sends: a burst of 5 (a fix
    # right after sending, a delete right after an edit), then one per 2 s like sends.
    CHAT_CHANGE_RATE_LIMIT = os.environ.get("CHAT_CHANGE_RATE_LIMIT", "5/10s")
    # Reactions set or taken back, per user: a burst of 20, then one every half second.
    CHAT_REACT_RATE_LIMIT = os.environ.get("CHAT_REACT_RATE_LIMIT", "20/10s")
    # Attachment uploads (accepted or refused), per user: each one is read, decoded and stored.
    CHAT_UPLOAD_RATE_LIMIT = os.environ.get("CHAT_UPLOAD_RATE_LIMIT", "20/minute")
    # Conversations a user starts (page and API; a reused direct one is not counted).
    CHAT_CONVERSATION_RATE_LIMIT = os.environ.get("CHAT_CONVERSATION_RATE_LIMIT", "30/hour")
    CHAT_MAX_MESSAGE_LENGTH = env_int("CHAT_MAX_MESSAGE_LENGTH", 4000)
    # The most people a group or channel holds (adding or joining past it answers too_many).
    CHAT_MAX_MEMBERS = env_int("CHAT_MAX_MEMBERS", 10_000)
    CHAT_DEDUPE_WINDOW = env_int("CHAT_DEDUPE_WINDOW", 600)  # seconds a client_id is remembered
    # Replicas that must hold a sent message (Redis WAIT) before it is answered ok; a send they
    # do not confirm within CHAT_ACK_TIMEOUT_MS is taken back and answered unavailable.
    CHAT_ACK_REPLICAS = env_int("CHAT_ACK_REPLICAS", 0)
    CHAT_ACK_TIMEOUT_MS = env_int("CHAT_ACK_TIMEOUT_MS", 1000)
    CHAT_HISTORY_PAGE_MAX = env_int("CHAT_HISTORY_PAGE_MAX", 100)
    CHAT_EDIT_WINDOW = env_int("CHAT_EDIT_WINDOW", 900)  # seconds a message can be changed
    # A thread's root summary ("N replies") reaches its room at most once per this many seconds
    # from each web process (the newest one; 0: after every reply).
    CHAT_THREAD_SUMMARY_INTERVAL = float(os.environ.get("CHAT_THREAD_SUMMARY_INTERVAL") or 1)
    # Largest attachment, bytes (10 MiB); a larger upload is answered 413 before it is read.
    CHAT_MAX_ATTACHMENT_BYTES = env_int("CHAT_MAX_ATTACHMENT_BYTES", 10 * 1024 * 1024)
    # Uploads not sent yet, per user (count, and bytes in all); past either, 429 too_many.
    CHAT_MAX_UNSENT_UPLOADS = env_int("CHAT_MAX_UNSENT_UPLOADS", 20)
    CHAT_MAX_UNSENT_UPLOAD_BYTES = env_int("CHAT_MAX_UNSENT_UPLOAD_BYTES", 100 * 1024 * 1024)
    # Scans a JPEG may hold (progressive files have about 10); more is refused undecoded.
    CHAT_MAX_JPEG_SCANS = env_int("CHAT_MAX_JPEG_SCANS", 32)
    # Where attachments are kept: shared by every web process and worker (default: instance/).
    ATTACHMENT_DIR = os.environ.get("ATTACHMENT_DIR") or None
    # Seconds an upload may stay unsent before `flask attachments prune` removes it (24 h).
    CHAT_ATTACHMENT_ORPHAN_AGE = env_int("CHAT_ATTACHMENT_ORPHAN_AGE", 24 * 3600)
    CHAT_PRESENCE_TTL = env_int("CHAT_PRESENCE_TTL", 60)  # a socket without heartbeat goes offline
    # Groups of at most this many members hear their members' presence pushed to their room;
    # in a bigger one a page asks for the members it shows (presence_subscribe).
    CHAT_PRESENCE_PUSH_MAX_MEMBERS = env_int("CHAT_PRESENCE_PUSH_MAX_MEMBERS", 50)
    # Open /chat sockets per user on all web processes together; one more is refused (0: no cap).
    CHAT_MAX_SOCKETS_PER_USER = env_int("CHAT_MAX_SOCKETS_PER_USER", 20)
    # Socket connects and joins a web process runs at once; more wait their turn (0: no bound).
    # A reconnect storm then holds Redis connections for a round trip each, not for seconds.
    CHAT_CONNECT_CONCURRENCY = env_int("CHAT_CONNECT_CONCURRENCY", 32)
    # The web process's garbage collector (simplechat/web/heap.py): young, middle and old
    # thresholds; a full collection of a process holding thousands of sockets scans them all,
    # so it runs after 100 middle collections, not 10. Empty: Python's own (700,10,10).
    WEB_GC_THRESHOLDS = os.environ.get("WEB_GC_THRESHOLDS", "700,10,100")
    # Seconds an engine.io connection may stay on no Socket.IO namespace before it is closed.
    CHAT_NAMESPACE_CONNECT_TIMEOUT = float(os.environ.get("CHAT_NAMESPACE_CONNECT_TIMEOUT") or 5)
    # A web process told to stop (SIGTERM, a graceful reload) tells each client to reconnect
    # after a time spread over this many milliseconds, so they do not all come back at once.
    CHAT_RESTART_WINDOW_MS = env_int("CHAT_RESTART_WINDOW_MS", 5000)
    # Packets a socket may leave unsent (its client not reading) before it is disconnected.
    CHAT_SOCKET_QUEUE_MAX = env_int("CHAT_SOCKET_QUEUE_MAX", 10_000)
    # Bytes of unsent packets a socket may hold (4 MiB) before it is disconnected.
    CHAT_SOCKET_QUEUE_MAX_BYTES = env_int("CHAT_SOCKET_QUEUE_MAX_BYTES", 4 * 1024 * 1024)
    # Joins per user on each web process: a burst of 30 (tabs reconnecting), then one per 2 s.
    CHAT_SOCKET_JOIN_RATE = os.environ.get("CHAT_SOCKET_JOIN_RATE", "30/60s")
    # Typing events per user on each web process: 30 at once, then one a second.
    CHAT_SOCKET_TYPING_RATE = os.environ.get("CHAT_SOCKET_TYPING_RATE", "30/30s")
    # Other socket events per user and web process (not sends, changes, reactions): 300, then 5/s.
    CHAT_SOCKET_EVENT_RATE = os.environ.get("CHAT_SOCKET_EVENT_RATE", "300/60s")
    # CPU-heavy work (image decoding, Markdown, password hashes) runs on OS threads, off the
    # event loop (simplechat/infra/offload.py): this many jobs at once per process, this many
    # more waiting; a job past both is refused with "unavailable" (HTTP 503).
    CHAT_CPU_WORKERS = env_int("CHAT_CPU_WORKERS", 2)
    CHAT_CPU_QUEUE = env_int("CHAT_CPU_QUEUE", 32)
    # An uploaded picture is decoded in a child process of its own (one at a time per web
    # process, waited for on those threads: simplechat/attachments/decoding.py), so the web
    # process never holds its pixels. The child is killed after this many seconds, and may map
    # at most this many MB (its address space: Python and Pillow take about 40 of them, an
    # 8000 x 5000 PNG about 160 more); a picture past either is refused 400 invalid_image.
    CHAT_IMAGE_DECODE_SECONDS = float(os.environ.get("CHAT_IMAGE_DECODE_SECONDS") or 10)
    CHAT_IMAGE_DECODE_MEMORY_MB = env_int("CHAT_IMAGE_DECODE_MEMORY_MB", 1024)
    # A login session unused for this many days ends; "remember me" keeps one for this many.
    SESSION_IDLE_DAYS = env_int("SESSION_IDLE_DAYS", 14)
    REMEMBER_DAYS = env_int("REMEMBER_DAYS", 30)
    # Seconds a socket trusts its session before checking it again (an end is also pushed).
    SESSION_CHECK_INTERVAL = float(os.environ.get("SESSION_CHECK_INTERVAL") or 0.5)
    # Seconds a live session's identity is trusted from Redis before SQL is read again; while
    # SQL is down one confirmed within 15 minutes stays trusted (infra/liveness.py).
    SESSION_CACHE_SECONDS = env_int("SESSION_CACHE_SECONDS", 60)
    # Failed logins allowed per account and per client IP ("0" or "off": no limit).
    LOGIN_RATE_LIMIT_ACCOUNT = os.environ.get("LOGIN_RATE_LIMIT_ACCOUNT", "5/5minute")
    LOGIN_RATE_LIMIT_IP = os.environ.get("LOGIN_RATE_LIMIT_IP", "20/5minute")
    # Successful logins per account and per client IP: each one hashes a password (scrypt).
    LOGIN_SUCCESS_RATE_LIMIT_ACCOUNT = os.environ.get("LOGIN_SUCCESS_RATE_LIMIT_ACCOUNT",
                                                      "10/minute")
    LOGIN_SUCCESS_RATE_LIMIT_IP = os.environ.get("LOGIN_SUCCESS_RATE_LIMIT_IP", "30/minute")
    # Registration attempts (successful or not) per client IP: each one can tell whether a
    # username or e-mail address is taken, so they are limited like failed logins.
    REGISTER_RATE_LIMIT = os.environ.get("REGISTER_RATE_LIMIT", "10/hour")
    # Reverse proxies in front of the app that set X-Forwarded-For/-Proto: the client address
    # (login limits, activity log) is then taken from that many hops back. 0: the TCP peer.
    TRUSTED_PROXY_HOPS = env_int("TRUSTED_PROXY_HOPS", 0)
    CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
    SOCKETIO_ASYNC_MODE = os.environ.get("SOCKETIO_ASYNC_MODE") or None
    # How emits reach the other web processes (simplechat/realtime/fanout.py): "rooms" publishes
    # to each room's channel, subscribed only by processes with a socket in the room;
    # "broadcast" is Flask-SocketIO's stock Redis queue, every emit to every process.
    SOCKETIO_FANOUT = os.environ.get("SOCKETIO_FANOUT") or "rooms"
    # The Redis of the fan-out; unset: REDIS_URL. With SOCKETIO_FANOUT=rooms a comma-separated
    # list of redis:// URLs spreads the channels over those servers (the same list, in the same
    # order, on every process).
    if os.environ.get("SOCKETIO_MESSAGE_QUEUE"):
        SOCKETIO_MESSAGE_QUEUE = os.environ["SOCKETIO_MESSAGE_QUEUE"]
    # 1: SOCKETIO_MESSAGE_QUEUE (or REDIS_URL) is a node of a Redis Cluster; channels go to
    # the primary of their key slot, with sharded pub/sub (SPUBLISH/SSUBSCRIBE).
    SOCKETIO_REDIS_CLUSTER = os.environ.get("SOCKETIO_REDIS_CLUSTER", "0") == "1"
    # /metrics asks for "Authorization: Bearer <this>"; unset: open, but 404 in production.
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None
    METRICS_OPEN_WITHOUT_TOKEN = True  # ProductionConfig: False
    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain")  # plain or json
    # Where the hashed, compressed static files are written (simplechat/static_files.py);
    # default: the instance folder's static-build, else the system's temporary folder.
    STATIC_BUILD_DIR = os.environ.get("STATIC_BUILD_DIR") or None
    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 64 * 1024)
    SOCKETIO_MAX_HTTP_BUFFER_SIZE = env_int("SOCKETIO_MAX_HTTP_BUFFER_SIZE", 64 * 1024)
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None
    CELERY_TASK_ALWAYS_EAGER = None  # None: eager exactly when no broker is configured
    CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 300)
    # /healthz says "degraded" when a message has waited this long for SQL (no worker, SQL down).
    WRITE_BUFFER_STUCK_SECONDS = env_int("WRITE_BUFFER_STUCK_SECONDS", 60)
    # The queue web processes publish to and workers consume (`celery worker -Q <name>`).
    CELERY_QUEUE = os.environ.get("CELERY_QUEUE") or "simplechat"
    # Outgoing webhooks may call loopback and private addresses (tests, a trusted LAN).
    WEBHOOK_ALLOW_PRIVATE = os.environ.get("WEBHOOK_ALLOW_PRIVATE", "0") == "1"
    # The queue of outgoing calls (webhook deliveries), unset: CELERY_QUEUE + "-webhooks".
    CELERY_WEBHOOK_QUEUE = os.environ.get("CELERY_WEBHOOK_QUEUE") or None
    # Seconds one delivery try may take in all (connect, send, the whole answer); then it fails.
    WEBHOOK_DELIVERY_DEADLINE = float(os.environ.get("WEBHOOK_DELIVERY_DEADLINE") or 10)
    # Webhooks (outgoing and incoming together) one conversation may have.
    WEBHOOK_MAX_PER_CONVERSATION = env_int("WEBHOOK_MAX_PER_CONVERSATION", 5)
    # Web Push (VAPID): the key pair in the Web Push form (base64url, no padding: the
    # uncompressed public point, the private scalar), as `flask push generate-keys` prints it,
    # and the contact the push services see (mailto: or https:). Unset: no push at all.
    WEBPUSH_VAPID_PUBLIC_KEY = os.environ.get("WEBPUSH_VAPID_PUBLIC_KEY") or None
    WEBPUSH_VAPID_PRIVATE_KEY = os.environ.get("WEBPUSH_VAPID_PRIVATE_KEY") or None
    WEBPUSH_SUBJECT = os.environ.get("WEBPUSH_SUBJECT") or "mailto:admin@localhost"
    # Seconds one push may take in all (connect, send, answer), and how many go out at once
    # from one task: a push service that hangs holds one of them, never the others.
    WEBPUSH_DEADLINE = float(os.environ.get("WEBPUSH_DEADLINE") or 5)
    WEBPUSH_CONCURRENCY = env_int("WEBPUSH_CONCURRENCY", 32)
    # A user is pushed one conversation at most once in this many seconds: what comes within
    # them is held and its newest message pushed when they end (unless read meanwhile). 0: a
    # push for every message.
    WEBPUSH_COALESCE_SECONDS = float(os.environ.get("WEBPUSH_COALESCE_SECONDS") or 5)
    # Where people and programs reach this site (https://chat.example.com), for the addresses
    # it gives out: incoming webhooks' on the settings page, slash commands' response_url.
    # Unset: the address the request that asked came to.
    SITE_URL = os.environ.get("SITE_URL") or None
    # Outgoing mail (Flask-Mailman): password reset links and the missed-message digest. With
    # MAIL_SERVER unset no mail is sent: the reset page says so (`flask users set-password`
    # still works) and no digest goes out. Links in mails are built from SITE_URL, which must
    # then be set too (never from a request's Host header, which a client chooses).
    MAIL_SERVER = os.environ.get("MAIL_SERVER") or None
    MAIL_PORT = env_int("MAIL_PORT", 25)
    MAIL_USE_TLS = os.environ.get("MAIL_USE_TLS", "0") == "1"  # STARTTLS on MAIL_PORT
    MAIL_USE_SSL = os.environ.get("MAIL_USE_SSL", "0") == "1"  # TLS from the start (465)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME") or None
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD") or None
    MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER") or "Simple Chat <chat@localhost>"
    MAIL_BACKEND = "smtp"  # Flask-Mailman would pick its in-memory backend under TESTING
    MAIL_TIMEOUT = float(os.environ.get("MAIL_TIMEOUT") or 10)  # seconds per SMTP step
    # Seconds a password reset link works (it also dies once used, or when the password or
    # e-mail address changes).
    PASSWORD_RESET_MAX_AGE = env_int("PASSWORD_RESET_MAX_AGE", 3600)
    # Reset requests per typed address and per client address (whether the address has an
    # account or not: the answer is the same).
    RESET_RATE_LIMIT_EMAIL = os.environ.get("RESET_RATE_LIMIT_EMAIL", "3/hour")
    RESET_RATE_LIMIT_IP = os.environ.get("RESET_RATE_LIMIT_IP", "10/hour")
    # Seconds between two sweeps for missed-message digests (Celery beat; in the embedded
    # default a loop in the web process).
    MAIL_DIGEST_SWEEP_SECONDS = float(os.environ.get("MAIL_DIGEST_SWEEP_SECONDS") or 60)
    # Seconds a slash command's service has to answer (connect, send, the answer) before the
    # caller is told it did not; it may still answer later through response_url.
    SLASH_COMMAND_TIMEOUT = float(os.environ.get("SLASH_COMMAND_TIMEOUT") or 3)
    # Seconds a command's response_url takes answers (Slack's 30 minutes).
    SLASH_COMMAND_RESPONSE_TTL = env_int("SLASH_COMMAND_RESPONSE_TTL", 1800)
    # Slash commands one conversation may have (those for every conversation not counted).
    SLASH_COMMANDS_MAX_PER_CONVERSATION = env_int("SLASH_COMMANDS_MAX_PER_CONVERSATION", 20)
    # Company sign-in (docs/SIGN_IN.md). OpenID Connect: the provider's issuer URL (its
    # /.well-known/openid-configuration is read), our client's id and secret (sent to the token
    # endpoint with HTTP Basic), the scopes asked for, the name on the "Sign in with" button, and
    # the groups claim whose OIDC_ADMIN_GROUP makes a site admin (unset: admin is left alone).
    OIDC_ISSUER = os.environ.get("OIDC_ISSUER") or None
    OIDC_CLIENT_ID = os.environ.get("OIDC_CLIENT_ID") or None
    OIDC_CLIENT_SECRET = os.environ.get("OIDC_CLIENT_SECRET") or None
    OIDC_SCOPES = os.environ.get("OIDC_SCOPES") or "openid email profile"
    OIDC_NAME = os.environ.get("OIDC_NAME") or "single sign-on"
    OIDC_ADMIN_GROUP = os.environ.get("OIDC_ADMIN_GROUP") or None
    OIDC_GROUPS_CLAIM = os.environ.get("OIDC_GROUPS_CLAIM") or "groups"
    # Seconds each call to the provider (discovery, keys, token, userinfo) may take.
    OIDC_TIMEOUT = float(os.environ.get("OIDC_TIMEOUT") or 10)
    # 0: no password login at /auth/login (nor registration); OpenID Connect or LDAP only.
    PASSWORD_LOGIN = os.environ.get("PASSWORD_LOGIN", "1") != "0"
    # LDAP: the login form asks the directory first. The service account searches LDAP_USER_BASE
    # with LDAP_USER_FILTER ({username}: what was typed, escaped), then the entry's DN binds with
    # the password. LDAP_ADMIN_GROUP: the DN of a group whose member/uniqueMember are user DNs.
    LDAP_URL = os.environ.get("LDAP_URL") or None
    LDAP_BIND_DN = os.environ.get("LDAP_BIND_DN") or None
    LDAP_BIND_PASSWORD = os.environ.get("LDAP_BIND_PASSWORD") or None
    LDAP_USER_BASE = os.environ.get("LDAP_USER_BASE") or ""
    LDAP_USER_FILTER = os.environ.get("LDAP_USER_FILTER") or "(uid={username})"
    LDAP_ADMIN_GROUP = os.environ.get("LDAP_ADMIN_GROUP") or None
    # Seconds to connect to the directory, and to wait for each of its answers.
    LDAP_TIMEOUT = float(os.environ.get("LDAP_TIMEOUT") or 5)
    TESTING = False
    DEBUG = False


class DevelopmentConfig(Config):
    DEBUG = False  # the reloader and debugger do not mix with eventlet; use LOG_LEVEL=DEBUG


class TestingConfig(Config):
    TESTING = True
    SECRET_KEY = "testing-secret"
    WTF_CSRF_ENABLED = False  # tests that check CSRF turn it back on explicitly
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("TEST_DATABASE_URL")) or "sqlite://"
    REDIS_URL = os.environ.get("TEST_REDIS_URL") or None
    REDIS_SENTINELS = None  # a test that needs them passes (host, port) pairs
    CELERY_TASK_ALWAYS_EAGER = True
    SOCKETIO_ASYNC_MODE = "threading"
    REDIS_KEY_PREFIX = "simplechat-test:"
    CHAT_THREAD_SUMMARY_INTERVAL = 0.0  # every reply's summary at once (the merging: its test)
    # A cheap hash keeps the suite fast; real deployments use scrypt.
    PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"
    # Tests log one user in many times; the tests of these limits turn them on.
    LOGIN_SUCCESS_RATE_LIMIT_ACCOUNT = LOGIN_SUCCESS_RATE_LIMIT_IP = "off"


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "1") != "0"
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    METRICS_OPEN_WITHOUT_TOKEN = False  # /metrics is 404 unless METRICS_TOKEN is set

    @classmethod
    def validate(cls) -> None:
        if not os.environ.get("SECRET_KEY") or os.environ["SECRET_KEY"] == DEFAULT_SECRET:
            raise RuntimeError("SECRET_KEY must be set to a real secret in production")


config = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
    "default": DevelopmentConfig,
}
