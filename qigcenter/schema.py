"""The REST schema (`/api/v1/schema/`) says every answer a view can give (docs/api.md, "Errors").

drf-spectacular documents a view's success. `AutoSchema` adds the errors every view of a kind
can answer, from what the view is (its authentication, permissions, throttles, request body,
path parameters, pagination), so that no view has to repeat them:

| code | when | body |
|---|---|---|
| 400 | the operation takes a request body | `ValidationError` |
| 401 | the view authenticates (a missing, wrong or revoked token) | `ErrorDetail` |
| 403 | a write on a view with session authentication (CSRF) or staff-only writes | `ErrorDetail` |
| 404 | a path parameter (no such object), a paginated list (`?page=` too far) | `ErrorDetail` |
| 415 | the operation takes a request body (a content type it does not parse) | `ErrorDetail` |
| 429 | the view is throttled | `ErrorDetail` |

What only one view does (409 on a state change, 503, 207) it says itself with
`@extend_schema(responses={…, 409: error("why")})`. `postprocess` adds `POST /api/v1/chat/`,
which streams NDJSON from a plain Django view that drf-spectacular cannot see.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
BODY = {"POST", "PUT", "PATCH"}


class ErrorDetailSerializer(serializers.Serializer):
    """An error as every view answers it (`qigcenter.errors.api_exception_handler`)."""

    detail = serializers.CharField(help_text="what went wrong, in words")


def error(description: str) -> OpenApiResponse:
    """A `{"detail": …}` answer, for a view's own codes (409, 503, …)."""
    return OpenApiResponse(ErrorDetailSerializer, description=description)


def invalid(description: str = "invalid input, naming the field") -> OpenApiResponse:
    """A 400 of serializer validation (`ValidationError`: field → messages), e.g. for a view
    that validates its query parameters."""
    return OpenApiResponse({"$ref": "#/components/schemas/ValidationError"}, description)


# The body of a 400: a field's messages (a list of strings; an object for a list's items or a
# nested field's), `non_field_errors` for the body as a whole, or `detail` (a string) for an
# error that is no one field's (a service's DomainError, unparsable JSON).
VALIDATION_ERROR: dict[str, Any] = {
    "type": "object",
    "description": "field → its messages; `detail` for an error of no one field",
    "additionalProperties": {
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {}},
            {"type": "object", "additionalProperties": {}},
        ]
    },
    "example": {"priority": ["Ensure this value is less than or equal to 100."]},
}


def _blank_in_model(field: serializers.Field) -> bool:
    """The field is a model's text field that may be blank (`blank=True`)."""
    model = getattr(getattr(field.parent, "Meta", None), "model", None)
    if model is None or not field.source or "." in field.source or field.source == "*":
        return False
    try:
        model_field = model._meta.get_field(field.source)
    except FieldDoesNotExist:
        return False
    return isinstance(model_field, models.CharField | models.TextField) and model_field.blank


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's, with the error answers of the view's kind added (module docstring)."""

    def _map_serializer_field(
        self, field: Any, direction: Any, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        # DRF drops `allow_blank` from the fields it makes read-only, so a model's blank choice
        # field (an upload's `file_type` before extraction) would be documented without "".
        if (
            field.read_only
            and getattr(field, "allow_blank", True) is False
            and _blank_in_model(field)
        ):
            field.allow_blank = True
        schema: dict[str, Any] = super()._map_serializer_field(field, direction, bypass_extensions)
        return schema

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        for code, answer in self._kind_errors().items():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    answer, str(code), None, direction
                )
        return responses

    def _kind_errors(self) -> dict[int, OpenApiResponse]:
        view, method = self.view, self.method.upper()
        authenticators = list(getattr(view, "authentication_classes", []))
        permissions = list(getattr(view, "permission_classes", []))
        errors: dict[int, OpenApiResponse] = {}
        takes_body = method in BODY and self.get_request_serializer() is not None
        if takes_body:
            errors[400] = invalid()
        if authenticators:
            errors[401] = error("not signed in: no, a wrong or a revoked token")
        staff_only = any(p not in (AllowAny, IsAuthenticated) for p in permissions)
        session = any(issubclass(a, SessionAuthentication) for a in authenticators)
        if method in UNSAFE and (staff_only or session):
            errors[403] = error("not allowed: staff only, or a session request without CSRF")
        if "{" in self.path:
            errors[404] = error("no such object (or not yours)")
        elif self._is_list_view() and self._get_paginator() is not None:
            errors[404] = error("`page` past the last page")
        if takes_body:
            errors[415] = error("a request body of a content type this operation does not take")
        if getattr(view, "throttle_classes", None):
            errors[429] = error("throttled: too many requests (see Retry-After)")
        return errors


# ---- POST /api/v1/chat/ (constellation/chat.py, docs/inference.md "Chat") --------------------
def _error_ref(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/ErrorDetail"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


CHAT_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["content"],
    "properties": {
        "content": {
            "type": "string",
            "minLength": 1,
            "maxLength": 32000,
            "pattern": r"\S",
            "description": "the message to answer",
        },
        "conversation": {
            "type": "integer",
            "nullable": True,
            "description": "a conversation of yours to continue; null or absent: a new one",
        },
        "model": {"type": "string", "minLength": 1, "default": "qig-constellation:latest"},
        "options": {
            "type": "object",
            "nullable": True,
            "additionalProperties": {},
            "description": "Ollama options (num_predict, temperature, seed, …)",
        },
    },
}

CHAT_MESSAGE: dict[str, Any] = {
    "type": "object",
    "description": "the stored answer, as `conversations/{id}/` lists it",
    "properties": {
        "id": {"type": "integer"},
        "role": {"type": "string", "enum": ["assistant"]},
        "content": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "model": {"type": "string"},
        "kernel": {"type": "integer", "nullable": True},
        "kernel_role": {"type": "string"},
        "distance": {"type": "number", "nullable": True},
        "routed": {"type": "array", "items": {"type": "object", "additionalProperties": {}}},
        "phi": {"type": "number", "nullable": True},
        "kappa": {"type": "number", "nullable": True},
        "regime": {"type": "string"},
        "ttft_ms": {"type": "number", "nullable": True},
        "tokens_per_s": {"type": "number", "nullable": True},
        "completion_tokens": {"type": "integer"},
        "done_reason": {"type": "string"},
        "feedback": {"type": "string"},
        "suggested_answer": {"type": "string"},
    },
}

CHAT_LINE: dict[str, Any] = {
    "description": "one line of the NDJSON stream: the conversation first, then each token, "
    "then the stored turn (`done`) or what failed (`error`, the turn kept)",
    "oneOf": [
        {
            "type": "object",
            "required": ["type", "conversation"],
            "properties": {
                "type": {"type": "string", "enum": ["conversation"]},
                "conversation": {"$ref": "#/components/schemas/Conversation"},
            },
        },
        {
            "type": "object",
            "required": ["type", "content"],
            "properties": {
                "type": {"type": "string", "enum": ["token"]},
                "content": {"type": "string"},
            },
        },
        {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string", "enum": ["done"]},
                "message": {"$ref": "#/components/schemas/ChatMessage"},
            },
        },
        {
            "type": "object",
            "required": ["type", "error"],
            "properties": {
                "type": {"type": "string", "enum": ["error"]},
                "error": {"type": "string"},
            },
        },
    ],
}


def chat_operation() -> dict[str, Any]:
    return {
        "operationId": "chat_create",
        "summary": "Answer one message in a conversation, streamed",
        "description": "The answer streams as NDJSON (`application/x-ndjson`, one `ChatLine` a "
        "line). A new conversation is made when `conversation` is null or absent. Errors before "
        'the stream starts are JSON `{"detail": …}`; docs/inference.md, "Chat".',
        "tags": ["chat"],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}
            },
        },
        "security": [{"tokenAuth": []}, {"cookieAuth": []}],
        "responses": {
            "200": {
                "description": "the answer, streamed",
                "content": {
                    "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/ChatLine"}}
                },
            },
            "400": _error_ref("invalid body, naming the field (or the prompt is too long)"),
            "401": _error_ref("not signed in"),
            "403": _error_ref("a session request without its CSRF token"),
            "404": _error_ref("no such conversation of yours, or no such model"),
            "503": _error_ref("no trained model yet, or the server is busy"),
        },
    }


def postprocess(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """A SPECTACULAR_SETTINGS postprocessing hook: the operations drf-spectacular cannot see."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(ValidationError=VALIDATION_ERROR)
    schemas.update(ChatRequest=CHAT_REQUEST, ChatMessage=CHAT_MESSAGE, ChatLine=CHAT_LINE)
    paths = result.setdefault("paths", {})
    paths["/api/v1/chat/"] = {"post": chat_operation()}
    result["paths"] = dict(sorted(paths.items()))
    return result
