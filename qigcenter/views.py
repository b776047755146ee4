"""Project-level HTTP views: health probes and the single-page app."""

from __future__ import annotations

import time

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.csrf import csrf_failure as csrf_failure_page
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django.views.defaults import page_not_found

import qigcenter
from qigcenter import health

STARTED_AT = time.time()


@never_cache
@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests (no dependency is checked)."""
    return JsonResponse(
        {
            "status": "ok",
            "version": qigcenter.__version__,
            "uptime_s": round(time.time() - STARTED_AT, 3),
            "mode": "services" if settings.SERVICES_MODE else "embedded",
        }
    )


@never_cache
@require_GET
async def readyz(request: HttpRequest) -> JsonResponse:
    """Every component the product needs answers: database, broker, channel layer, a worker."""
    components = await health.readiness()
    ready = all(c["status"] == "ok" for c in components.values())
    return JsonResponse(
        {"status": "ok" if ready else "degraded", "components": components},
        status=200 if ready else 503,
    )


@require_http_methods(["GET", "HEAD"])
def home(request: HttpRequest) -> HttpResponseBase:
    """`/`: "Ollama is running" on the Ollama listener and under `qig serve`, else the app."""
    on_ollama_port = settings.OLLAMA_PORT and request.get_port() == str(settings.OLLAMA_PORT)
    if settings.API_ONLY or on_ollama_port:
        return HttpResponse("Ollama is running", content_type="text/plain; charset=utf-8")
    return spa(request)


@never_cache
@require_GET
def spa(request: HttpRequest, path: str = "") -> HttpResponseBase:
    """Serve the React app's index.html for every client-side route (not under `qig serve`,
    which runs the API alone)."""
    if settings.API_ONLY:
        return HttpResponse(
            "Not found: `qig serve` runs the Ollama/OpenAI-compatible API alone (no dashboard); "
            "start `qig up` for the web app.",
            status=404,
            content_type="text/plain; charset=utf-8",
        )
    index = settings.FRONTEND_DIST / "index.html"
    if not index.is_file():
        return HttpResponse(
            "The web app is not built yet. Run `make up` (or `cd frontend && npm ci && npm run "
            "build`) and restart.",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    return FileResponse(index.open("rb"), content_type="text/html; charset=utf-8")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponseBase:
    """404 for a URL nothing answers: JSON under `/api/v1/` (`{"detail": "Not found."}`, as the REST
    API's own 404s; an id the route's pattern refuses, `jobs/1.5/`), Django's page elsewhere."""
    if request.path.startswith("/api/v1/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponseBase:
    """403 for a session request without its CSRF token (`auth/login/`): JSON under `/api/v1/`,
    as DRF answers the same failure on the other views, Django's page elsewhere."""
    if request.path.startswith("/api/v1/"):
        return JsonResponse({"detail": f"CSRF Failed: {reason}"}, status=403)
    return csrf_failure_page(request, reason)
