"""Test settings: the real settings, made deterministic and isolated per pytest worker."""

import os

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-0123456789")
os.environ.setdefault("GATEWAY_VAR_DIR", os.path.join(os.path.dirname(__file__), "..", "var", "test"))
os.environ.setdefault("CACHE_KEY_PREFIX", f"gwtest{os.environ.get('PYTEST_XDIST_WORKER', '')}")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")

from gateway_project.settings import *  # noqa: E402,F403

CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405  (teardown can drop the test database)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
LOGIN_RATE_LIMIT = "5/m"
LOGGING["root"]["level"] = os.environ.get("LOG_LEVEL", "WARNING")  # noqa: F405

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # A file, not shared-cache memory: live-server threads then wait on locks instead of
    # failing with "database table is locked". One file per test process.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}  # noqa: F405
