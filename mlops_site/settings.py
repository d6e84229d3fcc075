"""Settings for the MLOps platform, read from the environment.

Every variable has an embedded default so a fresh checkout runs with no services:
SQLite database, django-q2 ORM broker, SQLite MLflow store, local cache and media folders.
"""

from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from mlops_site.env import (
    env_bool,
    env_database,
    env_int,
    env_list,
    env_path,
    env_rate,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if env_bool("MLOPS_PRODUCTION", default=False):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production")
    # Local-only fallback; it also keys the cache HMAC, so production must set its own.
    SECRET_KEY = "insecure-local-development-key-change-me-0123456789abcdef"
# Encrypts data source secrets at rest (a Fernet key: `Fernet.generate_key()`).
MLOPS_ENCRYPTION_KEY = env_str("MLOPS_ENCRYPTION_KEY")
if not MLOPS_ENCRYPTION_KEY and env_bool("MLOPS_PRODUCTION", default=False):
    raise ImproperlyConfigured("MLOPS_ENCRYPTION_KEY must be set in production")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "rest_framework",
    "rest_framework.authtoken",  # legacy: keys made before knox tokens still sign in
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "pipelines",
    "experiments",
    "datasources",
    "dashboards",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "mlops_site.middleware.HtmxLoginRedirectMiddleware",
]

ROOT_URLCONF = "mlops_site.urls"
WSGI_APPLICATION = "mlops_site.wsgi.application"
ASGI_APPLICATION = "mlops_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and the web process write concurrently; WAL plus a busy timeout avoids
    # "database is locked" under the embedded ORM broker.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    # Persistent connections (the URL's 60 s, with health checks), as for the other
    # databases: opening one costs about 2 ms on each request (connect, the PRAGMAs,
    # Django's SQL functions, parsing the schema on the first query), as much as the
    # rest of a prediction request's database work. Forked engine processes open their
    # own (pipelines.supervisor).
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "mlops_cache_table",
    }
}
# The operations overview (/) keeps each of its sections this many seconds; 0: no cache.
MLOPS_OVERVIEW_CACHE_SECONDS = env_int("MLOPS_OVERVIEW_CACHE_SECONDS", 15, minimum=0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_path("STATIC_ROOT", BASE_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = env_path("MEDIA_ROOT", BASE_DIR / "media")
# Analysts log in on the site's own page; the admin's admits staff users only.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboards:overview"

# Where the engine writes pipeline_{id}_step_{order}.joblib after each step.
MLOPS_CACHE_DIR = env_path("MLOPS_CACHE_DIR", BASE_DIR / "cache")
# User dashboards: the most points one chart sends to the browser; longer series are
# downsampled (LTTB), scatter plots sampled (dashboards.aggregate).
MLOPS_CHART_MAX_POINTS = env_int("MLOPS_CHART_MAX_POINTS", 2_000, minimum=10)
MLOPS_MAX_UPLOAD_BYTES = env_int("MLOPS_MAX_UPLOAD_BYTES", 200 * 1024 * 1024, minimum=1)
# Refuse extraction from a data source whose account can write (unless the source allows
# writes), read server files or administer the server: a read-only transaction does not
# stop a stored function from using those rights. On by default in production.
MLOPS_REQUIRE_READONLY_ACCOUNTS = env_bool(
    "MLOPS_REQUIRE_READONLY_ACCOUNTS", default=env_bool("MLOPS_PRODUCTION", default=False)
)

MLFLOW_TRACKING_URI = env_str(
    "MLFLOW_TRACKING_URI", f"sqlite:///{BASE_DIR / 'mlruns' / 'mlflow.db'}"
)
MLFLOW_ARTIFACT_ROOT = env_path("MLFLOW_ARTIFACT_ROOT", BASE_DIR / "mlruns" / "artifacts")

# Run lifecycle: the default per-run time limit, how often a worker records that a run
# is alive, when a silent run counts as lost, and how long a cancelled step may finish.
MLOPS_RUN_TIMEOUT = env_int("MLOPS_RUN_TIMEOUT", 3600, minimum=1)
MLOPS_HEARTBEAT_SECONDS = env_int("MLOPS_HEARTBEAT_SECONDS", 10, minimum=1)
MLOPS_HEARTBEAT_TIMEOUT = env_int("MLOPS_HEARTBEAT_TIMEOUT", 60, minimum=2)
# A run handed to the queue but not claimed for this long is enqueued again.
MLOPS_REDISPATCH_SECONDS = env_int("MLOPS_REDISPATCH_SECONDS", 900, minimum=60)
MLOPS_CANCEL_GRACE_SECONDS = env_int("MLOPS_CANCEL_GRACE_SECONDS", 30, minimum=0)
if MLOPS_HEARTBEAT_TIMEOUT <= MLOPS_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        "MLOPS_HEARTBEAT_TIMEOUT must be greater than MLOPS_HEARTBEAT_SECONDS"
    )
# Workers run the engine in a child process they can stop; off runs it in-process
# (for a debugger), without heartbeat, time limit or forced cancellation.
MLOPS_ISOLATE_RUNS = env_bool("MLOPS_ISOLATE_RUNS", default=True)
# Profiles and columnar copies for the step inspector are written by a worker task after
# each step, off the run's path; 0 writes them in the run itself.
MLOPS_INSPECT_IN_BACKGROUND = env_bool("MLOPS_INSPECT_IN_BACKGROUND", default=True)
# Extra modules whose step types are registered at start-up (plug-ins).
MLOPS_STEP_MODULES = env_list("MLOPS_STEP_MODULES", [])
# Online prediction (POST /api/models/<name>@<alias>/predict): the most rows one request
# may send, how many loaded models each web process keeps (an LRU by version), and each
# user's request rate ("<number>/second|minute|hour|day").
MLOPS_PREDICT_MAX_ROWS = env_int("MLOPS_PREDICT_MAX_ROWS", 10_000, minimum=1)
MLOPS_PREDICT_CACHE_SIZE = env_int("MLOPS_PREDICT_CACHE_SIZE", 8, minimum=1)
MLOPS_PREDICT_RATE = env_rate("MLOPS_PREDICT_RATE", "600/minute")
# Every other API request, per user (tokens and browser sessions alike).
MLOPS_API_RATE = env_rate("MLOPS_API_RATE", "1200/minute")

# django-q2. `retry` must exceed `timeout`, otherwise the broker hands a still-running
# task to a second worker and the run executes twice. A worker runs a run and its
# retries in one task, so the task limit is generous; each run has its own limit above.
Q_TIMEOUT = env_int("Q_TIMEOUT", 6 * 3600, minimum=1)
Q_RETRY = env_int("Q_RETRY", Q_TIMEOUT + 600, minimum=2)
if Q_RETRY <= Q_TIMEOUT:
    raise ImproperlyConfigured(
        f"Q_RETRY ({Q_RETRY}) must be greater than Q_TIMEOUT ({Q_TIMEOUT}) "
        "so a running task is never delivered twice"
    )
Q_BROKER = env_str("Q_BROKER", "orm")
Q_CLUSTER = {
    # Clusters sharing a broker and database must share the name (it also salts payloads).
    "name": env_str("Q_NAME", "mlops"),
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": Q_TIMEOUT,
    "retry": Q_RETRY,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.1,
    "save_limit": 500,
    "label": "Task queue",
}
if Q_BROKER == "orm":
    Q_CLUSTER["orm"] = "default"
elif Q_BROKER.startswith(("redis://", "rediss://")):
    Q_CLUSTER["redis"] = Q_BROKER
else:
    raise ImproperlyConfigured(f"Q_BROKER must be 'orm' or a redis:// URL, got {Q_BROKER!r}")

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header is what turns a missing login into a 401.
    # Knox tokens (and legacy DRF keys): pipelines.api.auth. Sessions enforce CSRF.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "pipelines.api.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # One database row per user and scope counts requests (experiments.throttling); the
    # prediction endpoint has its own scope instead of "api".
    "DEFAULT_THROTTLE_CLASSES": ["experiments.throttling.ApiRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": MLOPS_API_RATE, "predict": MLOPS_PREDICT_RATE},
}
# API tokens (django-rest-knox): stored as digests, expire this many days after they are
# made (0: never), revocable at /api/v1/tokens/. Tokens start with "mlops_".
MLOPS_API_TOKEN_TTL_DAYS = env_int("MLOPS_API_TOKEN_TTL_DAYS", 90, minimum=0)
KNOX_TOKEN_MODEL = "pipelines.ApiToken"
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=MLOPS_API_TOKEN_TTL_DAYS) if MLOPS_API_TOKEN_TTL_DAYS else None,
    "TOKEN_PREFIX": "mlops_",
    "AUTH_HEADER_PREFIX": "Token",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MLOps platform API",
    "DESCRIPTION": "Trigger pipeline runs and follow them.",
    # /api/ serves the same views for one release; only /api/v1/ is described.
    "PREPROCESSING_HOOKS": ["pipelines.api.schema.only_v1"],
    # Request bodies are components of their own: without read-only fields, and closed
    # where the API refuses unknown fields.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "pipelines.api.schema.add_links",
    ],
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI is served from this site's static files: /api/v1/docs/ works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Runs and step runs both have a `status` field with different choices.
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "pipelines.choices.RunStatus",
        "StepRunStatusEnum": "pipelines.choices.StepRunStatus",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # alembic narrates every MLflow store migration at INFO.
        "alembic": {"level": "WARNING"},
    },
}

# Behind TLS in production: secure cookies, HSTS and redirects (manage.py check --deploy).
PRODUCTION = env_bool("MLOPS_PRODUCTION", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PRODUCTION
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", default=PRODUCTION)
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if PRODUCTION else None
