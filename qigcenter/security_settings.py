"""Limits that keep hostile clients from hurting the node (docs/configuration.md,
"Security"), star-imported by qigcenter/settings.py."""

from __future__ import annotations

from qigcenter.env import env_float, env_int, env_list

# Pages that may call the inference API from a browser besides this machine's own
# (qigcenter/origins.py): Ollama's OLLAMA_ORIGINS, comma-separated, `*` wildcards.
ORIGINS = env_list("QIG_ORIGINS", [])
# Wrong passwords a minute, per client address and per account name, before sign-in and token
# requests answer 429 with Retry-After (qigcenter/auth_api.py).
LOGIN_FAILURES_PER_MIN = env_int("QIG_LOGIN_FAILURES_PER_MIN", 20, minimum=1, maximum=10_000)
# What one uploaded PDF may cost (uploads/extract.py, PdfLimits): pages, characters of its
# text, and seconds of extraction.
UPLOAD_PDF_MAX_PAGES = env_int("QIG_UPLOAD_PDF_MAX_PAGES", 2000, minimum=1)
UPLOAD_MAX_CHARS = env_int("QIG_UPLOAD_MAX_CHARS", 5_000_000, minimum=1000)
UPLOAD_PDF_MAX_S = env_float("QIG_UPLOAD_PDF_MAX_S", 30.0, minimum=0.1)
# Largest blob a client may upload with `POST /api/blobs/<digest>` (Ollama's blob API; an adapter
# for `/api/create`), in bytes: a larger one is refused with 413 (constellation/blobs.py).
BLOB_MAX_BYTES = env_int("QIG_BLOB_MAX_BYTES", 512 * 1024 * 1024, minimum=1)
