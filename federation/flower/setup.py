"""Django in a process Flower started (the ServerApp, a ClientApp, the SuperLink's and
SuperNode's launchers)."""

from __future__ import annotations

import os


def django_setup() -> None:
    """Set Django up in a process Flower started (the ServerApp, a ClientApp), once."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qigcenter.settings")
    from django.apps import apps

    if not apps.ready:
        import logging

        import django

        django.setup()
        logging.getLogger("flwr").propagate = False  # (Flower prints its own log lines)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # (not a line per Flower request)
