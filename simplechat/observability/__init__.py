"""Observability: logging, Prometheus metrics, and the activity and error logs."""
