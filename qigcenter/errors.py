"""Domain errors and the one place they become HTTP responses."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class DomainError(Exception):
    """An expected failure of a service call, shown to the user as ``detail``."""

    status_code: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidTransition(DomainError):
    """A state change the object's current state does not allow (e.g. cancel a finished job)."""

    status_code = status.HTTP_409_CONFLICT


class NotReady(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return Response({"detail": exc.detail}, status=exc.status_code)
    return exception_handler(exc, context)
