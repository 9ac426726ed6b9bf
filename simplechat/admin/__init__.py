"""The admin console, /admin/: users, channels, reports, the activity and error logs, tokens and
webhooks, for site admins only (anyone else gets 404). Its actions call the functions the
command line calls."""

from simplechat.admin.views import bp

__all__ = ["bp"]
