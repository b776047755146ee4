"""Ollama-shaped endpoints. Open on loopback like Ollama; behind QIG_API_KEY beyond it."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

import qigcenter
from qigcenter.access import ollama_access


@csrf_exempt
@require_http_methods(["GET", "HEAD"])
@ollama_access
async def version(request: HttpRequest) -> JsonResponse:
    """`GET /api/version`: the product's version as plain dotted integers (Open WebUI parses it)."""
    return JsonResponse({"version": qigcenter.__version__})
