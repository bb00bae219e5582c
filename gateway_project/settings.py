"""Gateway settings: every value comes from the environment, with embedded defaults.

Unset, the gateway runs on one machine with no servers: SQLite under `var/`, an
in-process cache, limiter and channel layer, and a filesystem Celery broker.
`DATABASE_URL` and `REDIS_URL` switch it to PostgreSQL and Redis for scale-out.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from gateway_project.core import redis_topology
from gateway_project.core.env import env_bool, env_float, env_int, env_list, env_seconds, env_str
from gateway_project.core.gateway_role import GatewayRole, config_source_kind

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("GATEWAY_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

GATEWAY_VERSION = "0.1.0"

# --- Core -------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
_DEV_SECRET_KEY = "django-insecure-embedded-development-key-never-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY == _DEV_SECRET_KEY):
    raise ImproperlyConfigured("SECRET_KEY must be set to a unique secret when DEBUG is off.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# --- Role (SPEC section 18: configuration as code, data planes without a database) -------

GATEWAY_ROLE = env_str("GATEWAY_ROLE", GatewayRole.TRADITIONAL)
if GATEWAY_ROLE not in {role.value for role in GatewayRole}:
    raise ImproperlyConfigured(f"GATEWAY_ROLE={GATEWAY_ROLE!r}: expected one of {', '.join(GatewayRole)}")
DATA_PLANE_ONLY = GATEWAY_ROLE == GatewayRole.DATA_PLANE
# file:///path/gateway.yaml or http(s)://control-plane (data planes only).
GATEWAY_CONFIG_SOURCE = env_str("GATEWAY_CONFIG_SOURCE", "")
# Shared by a control plane and its data planes (Authorization: Bearer on /api/manage/cluster/).
GATEWAY_CLUSTER_TOKEN = env_str("GATEWAY_CLUSTER_TOKEN", "")
# A data plane's name in the control plane's list (default: host:pid).
GATEWAY_DATA_PLANE_NAME = env_str("GATEWAY_DATA_PLANE_NAME", "")
# Where a data plane keeps its control plane's last config (a restart works while it is down).
DATA_PLANE_STATE_FILE = env_str("DATA_PLANE_STATE_FILE", str(VAR_DIR / "data-plane-config.json"))
if DATA_PLANE_ONLY:
    try:
        _SOURCE_KIND = config_source_kind(GATEWAY_CONFIG_SOURCE)
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
    if env_str("DATABASE_URL"):
        raise ImproperlyConfigured(
            "A data plane has no database: unset DATABASE_URL (GATEWAY_ROLE=data_plane)."
        )
    if _SOURCE_KIND == "remote" and not GATEWAY_CLUSTER_TOKEN:
        raise ImproperlyConfigured("A data plane following a control plane needs GATEWAY_CLUSTER_TOKEN.")
if GATEWAY_ROLE == GatewayRole.CONTROL_PLANE and not GATEWAY_CLUSTER_TOKEN:
    raise ImproperlyConfigured("A control plane needs GATEWAY_CLUSTER_TOKEN to serve its data planes.")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "rest_framework.authtoken",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "tenancy",
    "registry",
    "proxy",
    "alerts",
    "fixtures",  # the `load_demo` command
    "declarative",  # `gateway_config` export/diff/apply and /api/manage/config/*
    "plugins",  # PluginConfig, its admin and /api/manage/plugins/ (SPEC section 19)
    "usage",  # metering roll-up, /api/manage/usage/ (SPEC section 20)
    "portal",  # the tenant portal at /portal/ (SPEC section 20)
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "gateway_project.web.middleware.RequestIdMiddleware",
    "gateway_project.web.middleware.NotFoundProblemMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "gateway_project.web.static.StaticFilesMiddleware",  # WhiteNoise, non-streaming under ASGI
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "tenancy.audit.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "gateway_project.urls"
if DATA_PLANE_ONLY:
    # Health, metrics and the problem pages: no admin, sessions or logins without a database.
    ROOT_URLCONF = "gateway_project.data_plane_urls"
    _NEEDS_DATABASE = {
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django_otp.middleware.OTPMiddleware",
        "tenancy.audit.middleware.AuditContextMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    }
    MIDDLEWARE = [m for m in MIDDLEWARE if m not in _NEEDS_DATABASE]
ASGI_APPLICATION = "gateway_project.asgi.application"
WSGI_APPLICATION = None
AUTH_USER_MODEL = "tenancy.User"

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
                "gateway_project.ops.config_banner.config_stale_banner",  # admin banner, SPEC 16
            ],
        },
    },
]

# --- Stores -----------------------------------------------------------------------------

if DATA_PLANE_ONLY:  # any query fails loudly (gateway_project.core.no_database)
    DATABASE_URL = ""
    DATABASES = {"default": {"ENGINE": "gateway_project.core.no_database"}}
else:
    DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'gateway.sqlite3'}")
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (gateway, Celery worker, beat) share the file in `make run`.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One REDIS_URL for every client (SPEC section 21): a single Redis, a Sentinel group or a
# Cluster; gateway_project.core.redis_topology parses it and builds each client from it.
REDIS_URL = redis_topology.normalise_url(
    env_str("REDIS_URL", ""),
    cluster=env_bool("REDIS_CLUSTER", False),
    sentinels=env_str("REDIS_SENTINELS", ""),
    sentinel_master=env_str("REDIS_SENTINEL_MASTER", ""),
)
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "gw")
# channels-redis has no Cluster support: with REDIS_CLUSTER=1 name a single Redis or Sentinel here.
CHANNEL_LAYER_URL = env_str("CHANNEL_LAYER_URL", "")

if REDIS_URL:
    _REDIS_TOPOLOGY = redis_topology.parse(REDIS_URL)
    CACHES = {"default": redis_topology.cache_settings(_REDIS_TOPOLOGY, CACHE_KEY_PREFIX)}
    CHANNEL_LAYERS = {
        "default": redis_topology.channel_layer_settings(_REDIS_TOPOLOGY, CACHE_KEY_PREFIX, CHANNEL_LAYER_URL)
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "gateway",
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery -----------------------------------------------------------------------------

# The filesystem transport ignores the host, but kombu warns at every start when there is none.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if not CELERY_BROKER_URL:
    # kombu speaks redis:// and sentinel:// but not Cluster: celery_broker() says so at startup.
    if REDIS_URL:
        CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = redis_topology.celery_broker(_REDIS_TOPOLOGY)
    else:
        CELERY_BROKER_URL = "filesystem://localhost/"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _CELERY_DIR = VAR_DIR / "celery"
    for _sub in ("queue", "processed", "control"):
        (_CELERY_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_CELERY_DIR / "queue"),
        "data_folder_out": str(_CELERY_DIR / "queue"),
        "processed_folder": str(_CELERY_DIR / "processed"),
        "control_folder": str(_CELERY_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
HEALTH_SWEEP_SECONDS = env_seconds("HEALTH_SWEEP_SECONDS", 5)
# Usage metering (SPEC section 20): each instance flushes its counts this often; beat rolls
# them into the database this often (a Redis restart loses at most what is not rolled up).
USAGE_FLUSH_SECONDS = env_seconds("USAGE_FLUSH_SECONDS", 10)
USAGE_ROLLUP_SECONDS = env_seconds("USAGE_ROLLUP_SECONDS", 10)
CELERY_BEAT_SCHEDULE = {
    "health-sweep": {"task": "registry.tasks.health_sweep_task", "schedule": HEALTH_SWEEP_SECONDS},
    "usage-rollup": {"task": "usage.tasks.roll_up_usage_task", "schedule": USAGE_ROLLUP_SECONDS},
}

# --- Auth, REST framework, OpenAPI -----------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/admin/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Bearer first: DRF takes WWW-Authenticate (and so 401, not 403) from the first class.
        "tenancy.authentication.GatewayJWTAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_SCHEMA_CLASS": "gateway_project.web.problems.ProblemAutoSchema",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "gateway_project.web.negotiation.ProblemContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "gateway_project.web.problems.drf_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Gateway management API",
    "DESCRIPTION": "Services, targets, tenants, subscriptions, rate policies and API keys.",
    "VERSION": GATEWAY_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"SeverityEnum": "alerts.choices.Severity"},
}

JWT_ALGORITHM = env_str("JWT_ALGORITHM", "RS256")
JWT_ISSUER = env_str("JWT_ISSUER", "gateway")
JWT_AUDIENCE = env_str("JWT_AUDIENCE", "gateway-api")
JWT_LEEWAY_SECONDS = 10
JWT_ACCESS_LIFETIME = env_seconds("JWT_ACCESS_LIFETIME", 15 * 60)
JWT_REFRESH_LIFETIME = env_seconds("JWT_REFRESH_LIFETIME", 7 * 86400)
JWT_DEMO_LIFETIME = env_seconds("JWT_DEMO_LIFETIME", 30 * 60)
JWT_PRIVATE_KEY = env_str("JWT_PRIVATE_KEY", "")
JWT_PRIVATE_KEY_FILE = env_str("JWT_PRIVATE_KEY_FILE", "")
JWT_PUBLIC_KEYS_FILE = env_str("JWT_PUBLIC_KEYS_FILE", "")
JWT_SIGNING_KEY = env_str("JWT_SIGNING_KEY", "")
JWT_KEY_DIR = VAR_DIR / "jwt"

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=JWT_ACCESS_LIFETIME),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=JWT_REFRESH_LIFETIME),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": JWT_ALGORITHM,
    "AUDIENCE": JWT_AUDIENCE,
    "ISSUER": JWT_ISSUER,
    "LEEWAY": JWT_LEEWAY_SECONDS,
    "USER_ID_CLAIM": "sub",
    "USER_ID_FIELD": "id",
    "AUTH_HEADER_TYPES": ("Bearer",),
    # Keys are filled in by tenancy.keys at app start (generated under var/ when unset).
    "SIGNING_KEY": "",
    "VERIFYING_KEY": "",
}

OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Gateway")

# Login brute-force protection (django-ratelimit), per IP and per username.
LOGIN_RATE_LIMIT = env_str("LOGIN_RATE_LIMIT", "5/m")
# With the cache (Redis) down django-ratelimit cannot count: fail open (logins work, without
# brute-force protection for the outage) or closed (nobody can log in until Redis is back).
RATELIMIT_FAIL_OPEN = env_bool("LOGIN_RATE_LIMIT_FAIL_OPEN", True)

# --- Gateway data plane -----------------------------------------------------------------

CORS_ORIGINS = env_list("CORS_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000")
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", "")
UPSTREAM_CLIENT = env_str("UPSTREAM_CLIENT", "aiohttp")
UPSTREAM_POOL_SIZE = env_int("UPSTREAM_POOL_SIZE", 256)
UPSTREAM_DENY_NETWORKS = env_list(
    "UPSTREAM_DENY_NETWORKS", "169.254.0.0/16,fe80::/10,100.100.100.200/32,fd00:ec2::254/128"
)
CONFIG_POLL_SECONDS = env_seconds("CONFIG_POLL_SECONDS", 0.25)
RATE_LIMIT_DEFAULT = env_str("RATE_LIMIT_DEFAULT", "300/60")
RATE_LIMIT_FAIL_MODE = env_str("RATE_LIMIT_FAIL_MODE", "open")
REQUEST_HEADER_TIMEOUT = env_seconds("REQUEST_HEADER_TIMEOUT", 30)
# A client that announced a body and then sends no byte of it for this long gets a 408,
# its upstream request is aborted and its connection closed (SPEC section 14).
REQUEST_BODY_TIMEOUT = env_seconds("REQUEST_BODY_TIMEOUT", 30)

# --- Alerts -----------------------------------------------------------------------------

ALERT_RETENTION = env_int("ALERT_RETENTION", 10_000)
SSE_MAX_CONNECTIONS_PER_TENANT = env_int("SSE_MAX_CONNECTIONS_PER_TENANT", 20_000)
SSE_KEEPALIVE_SECONDS = env_seconds("SSE_KEEPALIVE_SECONDS", 15)
SSE_RETRY_MS = env_int("SSE_RETRY_MS", 3000)
WHATSAPP_API_URL = env_str("WHATSAPP_API_URL", "http://127.0.0.1:9100/whatsapp/v17.0")
WHATSAPP_TOKEN = env_str("WHATSAPP_TOKEN", "")
WHATSAPP_PHONE_NUMBER_ID = env_str("WHATSAPP_PHONE_NUMBER_ID", "gateway-demo")
WEBHOOK_SIGNING_SECRET = env_str("WEBHOOK_SIGNING_SECRET", SECRET_KEY)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "gateway@localhost")

# --- Observability ----------------------------------------------------------------------

METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", "")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# Query parameters whose values every log line shows as *** (gateway_project.core.masking);
# e-mail addresses and card-like numbers are masked wherever they appear.
LOG_MASK_QUERY_PARAMS = env_list(
    "LOG_MASK_QUERY_PARAMS",
    "token,access_token,refresh_token,id_token,api_key,apikey,key,password,passwd,pwd,secret,"
    "client_secret,code,otp,session,sessionid,signature,sig,auth,authorization,cookie,email,phone",
)
NOMINATIM_URL = env_str("NOMINATIM_URL", "https://nominatim.openstreetmap.org")
GEOCODE_CACHE_SECONDS = env_seconds("GEOCODE_CACHE_SECONDS", 86400)
GEOCODE_MIN_INTERVAL = env_float("GEOCODE_MIN_INTERVAL", 1.0)
GEOCODE_TIMEOUT_SECONDS = env_seconds("GEOCODE_TIMEOUT_SECONDS", 5)
GEOCODE_MAX_WAIT_SECONDS = env_seconds("GEOCODE_MAX_WAIT_SECONDS", 10)
# Nominatim's usage policy asks for an identifying User-Agent with a contact: set yours.
GEOCODE_USER_AGENT = env_str("GEOCODE_USER_AGENT", "")  # "": gateway_project.ops.geocode's default

# One JSON line per proxied request: "stdout" (default), "off", a file path, or "logging"
# (through the gateway.access logger and its handlers, slower).
ACCESS_LOG = env_str("ACCESS_LOG", "stdout")

# Plugins (SPEC section 19, docs/plugins.md): dotted paths of Plugin classes, besides the
# built-ins and the `gateway.plugins` entry-point group of installed packages.
GATEWAY_PLUGINS = env_list("GATEWAY_PLUGINS", "")

# OpenTelemetry: one span per proxied request, exported over OTLP/HTTP to this collector
# (e.g. http://127.0.0.1:4318) when set; needs the `otel` extra.
OTEL_EXPORTER_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT", "")
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "gateway")
OTEL_SCHEDULE_DELAY_MS = env_int("OTEL_SCHEDULE_DELAY_MS", 1000)

# "json" (one object per line, for log shippers) or "console" (one readable line per
# record; `make run` picks it). Both mask alike (gateway_project.logs).
LOG_FORMAT = env_str("LOG_FORMAT", "json")
_LOG_FORMATTERS = {
    "json": {"()": "gateway_project.logs.JsonFormatter"},
    "console": {"()": "gateway_project.logs.ConsoleFormatter"},
}
if LOG_FORMAT not in _LOG_FORMATTERS:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: expected one of {', '.join(_LOG_FORMATTERS)}")
# Loggers that come with their own console handler (Django's DEBUG console for 4xx/5xx and
# warnings, uvicorn's "INFO:     ..." lines): they lose it and reach the root handler, so
# each record is printed once, in one format.
_ROOT_HANDLED_LOGGERS = ("django", "django.server", "py.warnings", "uvicorn")
# Bookkeeping that would repeat at every health sweep: Celery's task sent / received /
# succeeded and httpx's line per outbound request. Failures are still logged (WARNING and
# up), and LOG_LEVEL=DEBUG shows it all.
_BOOKKEEPING_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace", "httpx")
_BOOKKEEPING_LEVEL = "DEBUG" if LOG_LEVEL == "DEBUG" else "WARNING"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": _LOG_FORMATTERS,
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        **{name: {"handlers": [], "propagate": True} for name in _ROOT_HANDLED_LOGGERS},
        **{name: {"level": _BOOKKEEPING_LEVEL} for name in _BOOKKEEPING_LOGGERS},
        # The data plane writes its own access log (proxy/accesslog.py); gateway_project.serve
        # turns uvicorn's off, and configuring "uvicorn" above would turn it back on.
        "uvicorn.access": {"handlers": [], "propagate": False},
        "django.db.backends": {"level": "INFO"},
        "gateway.access": {"level": "INFO"},
    },
}

# --- Static files, i18n, security -------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Served by WhiteNoise straight from the app directories: no collectstatic, no CDN needed.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Sent only on requests that arrived over TLS (the gateway's own or a trusted proxy's).
SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SESSION_COOKIE_HTTPONLY = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXIES else None
