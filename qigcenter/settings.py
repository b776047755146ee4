"""Django settings for the QIG Control Center: the one place configuration lives.

Everything comes from the environment through the typed helpers in ``qigcenter.env``; the
defaults run a fresh clone with no services (SQLite, an embedded Celery worker, the in-memory
channel layer). ``docs/configuration.md`` lists every variable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url

from qigcenter.env import (
    ConfigError,
    env_bool,
    env_float,
    env_host,
    env_int,
    env_list,
    env_path,
    env_str,
    env_url,
    is_loopback,
)
from qigcenter.logging_config import log_level, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
# A checkout (manage.py beside the apps) keeps its data in ./var and serves frontend/dist; an
# installed wheel (`make wheel`, docs/federation.md "The laptop edge") keeps its data in ~/.qig
# and serves the dashboard built into the package.
CHECKOUT = (BASE_DIR / "manage.py").is_file()
DATA_DIR = env_path("QIG_DATA_DIR", BASE_DIR / "var" if CHECKOUT else Path.home() / ".qig")
FRONTEND_DIST = env_path(
    "QIG_FRONTEND_DIST",
    BASE_DIR / "frontend" / "dist"
    if CHECKOUT
    else Path(__file__).resolve().parent / "frontend_dist",
)

# Where uploads, checkpoints and the SQLite file live. Created on first use, never in a template.
UPLOADS_DIR = DATA_DIR / "uploads"
CHECKPOINTS_DIR = DATA_DIR / "checkpoints"
# What training produced and inference loads: coordizer/, trunk (a link to the newest export),
# kernels/<index> (adapters), bootstrap-corpus.jsonl. See docs/training.md.
MODELS_DIR = DATA_DIR / "models"
MEDIA_ROOT = str(UPLOADS_DIR)
MEDIA_URL = "/media/"


def _ensure_data_dir() -> None:
    for path in (DATA_DIR, UPLOADS_DIR, CHECKPOINTS_DIR, MODELS_DIR, DATA_DIR / "static"):
        path.mkdir(parents=True, exist_ok=True)


_ensure_data_dir()


def _secret_key() -> str:
    """The SECRET_KEY from the environment, else generated once and kept under the data dir."""
    from_env = env_str("QIG_SECRET_KEY") or env_str("DJANGO_SECRET_KEY")
    if from_env:
        if len(from_env) < 50:
            raise ConfigError("QIG_SECRET_KEY", "<hidden>", "at least 50 characters")
        return from_env
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        tmp = key_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(64))
        os.replace(tmp, key_file)  # atomic: two processes starting at once agree on one key
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("QIG_DEBUG", False)

# The address `qig up` binds; it decides whether the Ollama-shaped API needs QIG_API_KEY.
BIND_HOST = env_host("QIG_HOST", "127.0.0.1")
BIND_PORT = env_int("QIG_PORT", 9200, minimum=1, maximum=65535)
API_KEY = env_str("QIG_API_KEY")
API_KEY_REQUIRED = not is_loopback(BIND_HOST)
# The second listener (`qig up --ollama-port`, `qig serve`): there `/` answers like Ollama.
OLLAMA_PORT = env_int("QIG_OLLAMA_PORT", 0, minimum=0, maximum=65535)
# `qig serve`: the inference API alone, no dashboard.
API_ONLY = env_bool("QIG_API_ONLY", False)

_default_hosts = ["127.0.0.1", "localhost", "[::1]"]
if BIND_HOST not in ("0.0.0.0", "::") and BIND_HOST not in _default_hosts:
    _default_hosts.append(BIND_HOST)
ALLOWED_HOSTS = _default_hosts + env_list("QIG_ALLOWED_HOSTS", [])
CSRF_TRUSTED_ORIGINS = env_list("QIG_CSRF_TRUSTED_ORIGINS", [])
CSRF_FAILURE_VIEW = "qigcenter.views.csrf_failure"  # JSON under /api/v1/, Django's page elsewhere

# Behind a TLS-terminating proxy in production: QIG_HTTPS=1 turns on every HTTPS protection.
HTTPS = env_bool("QIG_HTTPS", False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("QIG_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_AGE = env_int("QIG_SESSION_AGE_S", 14 * 24 * 3600, minimum=60)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "qigcenter",
    "constellation",
    *("federation", "federation.flower"),  # federation.flower: Flower rounds (docs/flower.md)
    "learning",
    "uploads",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "qigcenter.urls"
ASGI_APPLICATION = "qigcenter.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database: SQLite under the data dir, or PostgreSQL (psycopg 3) from DATABASE_URL. ---
DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite"))
# Each thread keeps its connection this long (opening one costs 9-12 ms, per request otherwise).
DB_CONN_MAX_AGE = env_int("QIG_DB_CONN_MAX_AGE", 60, minimum=0)
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=DB_CONN_MAX_AGE)}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "qig.sqlite3"),
            # Readers don't block the writer; a busy writer makes others wait, not fail.
            "OPTIONS": {
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
            # Tests get a file, not the in-memory default: the training runner's threads (and
            # the embedded worker's) each open a connection, and an in-memory shared-cache
            # database answers concurrent writers with "table is locked" instead of waiting.
            "TEST": {"NAME": str(DATA_DIR / "test-qig.sqlite3")},
            "CONN_MAX_AGE": DB_CONN_MAX_AGE,
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Services mode: Redis is the Celery broker, result store, channel layer and cache. ---
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss"))
SERVICES_MODE = REDIS_URL is not None
# Embedded mode runs a Celery worker (and beat) as threads of the web process, on the in-memory
# transport: one process tree, nothing to install. Services mode runs them as separate processes.
EMBEDDED_WORKER = not SERVICES_MODE

# The Redis channel layer: `pubsub` (Redis pub/sub; a group message is published once and each
# web process fans it out to its own subscribers) or `core` (a copy per subscriber in Redis
# lists, popped one at a time). Telemetry is fire-and-forget, which pub/sub suits; see
# docs/telemetry.md for the measurements behind the default.
CHANNEL_LAYER = env_str("QIG_CHANNEL_LAYER", "pubsub")
if CHANNEL_LAYER not in ("pubsub", "core"):
    raise ConfigError("QIG_CHANNEL_LAYER", CHANNEL_LAYER, "one of pubsub, core")

if SERVICES_MODE:
    CHANNEL_LAYERS = {
        "default": (
            {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL]},
            }
            if CHANNEL_LAYER == "pubsub"
            else {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL], "capacity": 1500, "expiry": 10},
            }
        )
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
else:
    # Capacity per channel: a federation edge receives every merge of its kernels; at the
    # default 100 a busy consumer's queue overflowed and broadcasts were dropped silently.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 2000, "expiry": 60},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "memory://localhost//"
    # Results as files: visible to every thread (Celery's in-memory result store is per thread).
    (DATA_DIR / "celery-results").mkdir(exist_ok=True)
    CELERY_RESULT_BACKEND = f"file://{DATA_DIR / 'celery-results'}"
    # Poll the in-memory queues every 50 ms instead of every second.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.05}

CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "learning.tasks.run_next_job": {"queue": "gpu"},
    "learning.tasks.watchdog": {"queue": "default"},
    "learning.tasks.derive_signals": {"queue": "default"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# How often beat asks a worker to announce itself on the telemetry pipe (header: "worker seen").
WORKER_HEARTBEAT_S = env_float("QIG_WORKER_HEARTBEAT_S", 5.0, minimum=0.5)
# The telemetry sampler (host CPU/RAM/disk, NVML GPU stats on `gpu`; docs/telemetry.md):
# one sample every QIG_TELEMETRY_INTERVAL_S seconds on each node that trains.
TELEMETRY_INTERVAL_S = env_float("QIG_TELEMETRY_INTERVAL_S", 1.0, minimum=0.05)
# --- Training jobs (learning app; docs/training.md). ---
# A running job's runner refreshes the row's heartbeat_at every JOB_HEARTBEAT_S; the watchdog
# (beat, every JOB_WATCHDOG_S) requeues a job whose heartbeat is older than JOB_STALE_AFTER_S
# (its worker died) and makes sure a queued job has a runner on its way.
JOB_HEARTBEAT_S = env_float("QIG_JOB_HEARTBEAT_S", 1.0, minimum=0.1)
JOB_STALE_AFTER_S = env_float("QIG_JOB_STALE_AFTER_S", 30.0, minimum=1.0)
JOB_WATCHDOG_S = env_float("QIG_JOB_WATCHDOG_S", 15.0, minimum=0.5)
if JOB_STALE_AFTER_S < 3 * JOB_HEARTBEAT_S:
    raise ConfigError(
        "QIG_JOB_STALE_AFTER_S",
        str(JOB_STALE_AFTER_S),
        f"at least 3 × QIG_JOB_HEARTBEAT_S ({3 * JOB_HEARTBEAT_S:g} s)",
    )
JOB_CHECKPOINT_EVERY = env_int("QIG_CHECKPOINT_EVERY", 50, minimum=1)
# The promotion gate of adapter jobs (docs/training.md, "Held-out evaluation and promotion"): a
# new kernel version goes live only if the general held-out loss rises by at most this fraction.
PROMOTION_TOLERANCE = env_float("QIG_PROMOTION_TOLERANCE", 0.02, minimum=0.0)
# Per-step telemetry on the `jobs` topic: at most 4 messages a second per job (docs/design.md §6).
JOB_TELEMETRY_INTERVAL_S = 0.25
# `auto`: the CUDA GPU with the most free memory (NVML) when there is one, else the CPU; or an
# explicit comma-separated list of devices, e.g. `cuda:1,cuda:2,cpu` (docs/training.md).
TRAIN_DEVICE = env_str("QIG_TRAIN_DEVICE", "auto")
if TRAIN_DEVICE not in ("auto", "cpu", "cuda") and not all(
    d.strip() == "cpu" or (d.strip().startswith("cuda:") and d.strip()[5:].isdigit())
    for d in TRAIN_DEVICE.split(",")
):
    raise ConfigError(
        "QIG_TRAIN_DEVICE", TRAIN_DEVICE, "auto, cpu, cuda, or a list like cuda:0,cuda:1,cpu"
    )
# A job with `gpus` = N > 1 on a node without GPUs runs as N gloo processes on the CPU (DDP under
# torchrun) when this is on; otherwise it fails as invalid (it asked for GPUs there are not).
DDP_ON_CPU = env_bool("QIG_DDP_ON_CPU", False)
# CPU threads for training; 0 = leave PyTorch's default, except in embedded mode where the
# runner keeps one core for the web server (cpu_count − 1).
TRAIN_THREADS = env_int("QIG_TRAIN_THREADS", 0, minimum=0)
# The collapse guard pauses a job whose Φ stays below this after warm-up (docs/metrics.md).
TRAIN_COLLAPSE_BELOW = env_float("QIG_TRAIN_COLLAPSE_BELOW", 0.40, minimum=0.0)

# First start with no trunk: queue a coordizer job and a pretrain job on the bootstrap corpus.
BOOTSTRAP = env_bool("QIG_BOOTSTRAP", True)
BOOTSTRAP_PRESET = env_str("QIG_BOOTSTRAP_PRESET", "tiny")
if BOOTSTRAP_PRESET not in ("tiny", "100m"):
    raise ConfigError("QIG_BOOTSTRAP_PRESET", BOOTSTRAP_PRESET, "one of tiny, 100m")
BOOTSTRAP_STEPS = env_int("QIG_BOOTSTRAP_STEPS", 2000, minimum=1, maximum=1_000_000)
BOOTSTRAP_CORPUS_MB = env_float("QIG_BOOTSTRAP_CORPUS_MB", 1.0, minimum=0.01)
BOOTSTRAP_VOCAB = env_int("QIG_BOOTSTRAP_VOCAB", 8000, minimum=512, maximum=65536)

# --- Knowledge uploads (uploads app; docs/uploads.md). ---
MAX_UPLOAD_MB = env_float("QIG_MAX_UPLOAD_MB", 50.0, minimum=0.001)  # per file, MiB
UPLOAD_CHUNK_TOKENS = env_int("QIG_UPLOAD_CHUNK_TOKENS", 256, minimum=8, maximum=65536)
UPLOAD_CHUNK_OVERLAP = env_int("QIG_UPLOAD_CHUNK_OVERLAP", 32, minimum=0, maximum=65535)
if UPLOAD_CHUNK_OVERLAP >= UPLOAD_CHUNK_TOKENS:
    raise ConfigError(
        "QIG_UPLOAD_CHUNK_OVERLAP",
        str(UPLOAD_CHUNK_OVERLAP),
        f"fewer than QIG_UPLOAD_CHUNK_TOKENS ({UPLOAD_CHUNK_TOKENS})",
    )
UPLOAD_ROUTE_K = env_int("QIG_UPLOAD_ROUTE_K", 2, minimum=1, maximum=240)
# --- Learning signals (learning.usage_signals; docs/training.md, "Learning signals"). ---
# The same person asking the same question again within this many seconds: a repeated query.
SIGNAL_REPEAT_WINDOW_S = env_float("QIG_SIGNAL_REPEAT_WINDOW_S", 600.0, minimum=1.0)
# A conversation reaching this many turns: a long session (one signal per conversation).
SIGNAL_LONG_SESSION_TURNS = env_int("QIG_SIGNAL_LONG_SESSION_TURNS", 10, minimum=2)
# A word of letters the coordizer splits into at least this many tokens: a vocabulary gap.
SIGNAL_UNKNOWN_TOKENS = env_int("QIG_SIGNAL_UNKNOWN_TOKENS", 4, minimum=2)
# --- Routing does no harm (docs/inference.md, "Routing"): a trained kernel answers only queries
# within its radius (Fisher–Rao, radians); this one serves adapters published without a
# calibrated radius in their kernel.json. Default measured by `python -m bench.route_radius`.
ROUTE_RADIUS = env_float("QIG_ROUTE_RADIUS", 0.55, minimum=0.01)
if ROUTE_RADIUS > 3.1416:  # π: the largest Fisher–Rao distance; beyond it every query is within
    raise ConfigError("QIG_ROUTE_RADIUS", str(ROUTE_RADIUS), "a distance in radians, at most π")

# --- The autonomous learning loop (learning.loop; docs/training.md, "The autonomous loop"). ---
AUTONOMOUS_LEARNING = env_bool("QIG_AUTONOMOUS_LEARNING", True)  # admins can switch it live
# A cycle at most this often (the Modelfile PARAMETER learning_interval sets it too).
LEARNING_INTERVAL_S = env_float("QIG_LEARNING_INTERVAL_S", 300.0, minimum=1.0)
# Idle: no request and no job for this long (a request in flight or a job queued or running
# always postpones the cycle).
LEARNING_IDLE_S = env_float("QIG_LEARNING_IDLE_S", 60.0, minimum=0.0)
LEARNING_MAX_ACTIONS = env_int("QIG_LEARNING_MAX_ACTIONS", 3, minimum=1, maximum=20)
# Adapter steps of one improvement job (corrections and approved answers are a few examples).
LEARNING_STEPS = env_int("QIG_LEARNING_STEPS", 300, minimum=1, maximum=100_000)
# How often beat asks whether a cycle is due (the loop then checks the interval and idleness).
LEARNING_TICK_S = min(15.0, LEARNING_INTERVAL_S)

# --- Federation (federation app; docs/federation.md): qigcenter/federation_settings.py. ---
from qigcenter.federation_settings import *  # noqa: E402, F403

# --- Hostile clients (docs/configuration.md): qigcenter/security_settings.py. ---
from qigcenter.security_settings import *  # noqa: E402, F403

CELERY_BEAT_SCHEDULE = {
    "learning-loop": {
        "task": "learning.tasks.loop_tick",
        "schedule": LEARNING_TICK_S,
        "options": {"expires": LEARNING_TICK_S * 2},
    },
    "worker-heartbeat": {
        "task": "dashboard.tasks.worker_heartbeat",
        "schedule": WORKER_HEARTBEAT_S,
        "options": {"expires": WORKER_HEARTBEAT_S * 2},
    },
    "learning-watchdog": {
        "task": "learning.tasks.watchdog",
        "schedule": JOB_WATCHDOG_S,
        "options": {"expires": JOB_WATCHDOG_S * 2},
    },
    "uploads-pending": {
        "task": "uploads.tasks.process_pending",
        "schedule": JOB_WATCHDOG_S,
        "options": {"expires": JOB_WATCHDOG_S * 2},
    },
}
READY_TIMEOUT_S = env_float("QIG_READY_TIMEOUT_S", 3.0, minimum=0.1)

# --- Auth and the REST API. ---
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
ADMIN_USERNAME = env_str("QIG_ADMIN_USERNAME", "admin")
LOGIN_URL = "/login"

REST_FRAMEWORK = {
    # Token first: an anonymous API call gets 401 with WWW-Authenticate, not a bare 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [  # JSON through qigcenter.jsonbody: NaN, 1e400, deep nesting → 400
        "qigcenter.jsonbody.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # drf-spectacular's, with the error answers of each kind of view (qigcenter/schema.py).
    "DEFAULT_SCHEMA_CLASS": "qigcenter.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "qigcenter.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "QIG Control Center API",
    "DESCRIPTION": "Kernels, federation nodes, knowledge uploads, fine-tuning jobs and telemetry.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Enums as components (drf-spectacular's default hook), then what it cannot see (the chat).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "qigcenter.schema.postprocess",
    ],
    "ENUM_NAME_OVERRIDES": {
        "JobKindEnum": "learning.models.JobKind",
        "JobStatusEnum": "learning.models.JobStatus",
        "LearningEventKindEnum": "learning.models.LearningEventKind",
        "SignalKindEnum": "learning.models.SignalKind",
        "NodeStatusEnum": "federation.api.NODE_STATUSES",
        "CycleStatusEnum": "learning.cycles.CycleStatus",
    },
    # Swagger UI assets ship with the package: the API docs work with no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Static files: Django admin/DRF assets and the built React app, served by WhiteNoise. ---
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
WHITENOISE_USE_FINDERS = True
WHITENOISE_ROOT = FRONTEND_DIST if FRONTEND_DIST.is_dir() else None
WHITENOISE_AUTOREFRESH = DEBUG
# Vite's built assets carry a content hash in their name: cache them forever.
WHITENOISE_IMMUTABLE_FILE_TEST = r"^/assets/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOG_LEVEL = log_level("QIG_LOG_LEVEL")
LOGGING = logging_config(LOG_LEVEL, CELERY_BEAT_SCHEDULE)
