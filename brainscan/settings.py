"""BrainScan settings: everything that differs between machines comes from the environment.

With no variable set, BrainScan runs on one machine with SQLite, files under var/ and a
filesystem message broker. `BRAINSCAN_PRODUCTION=1` turns on the secure settings and makes the
secret key and allowed hosts mandatory. See the README's configuration table.
"""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from brainscan import env
from ml.imaging import Limits

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env.string("BRAINSCAN_VAR_DIR", str(BASE_DIR / "var"), "Folder for the SQLite database, "
                          "local files and the filesystem broker"))

PRODUCTION = env.boolean("BRAINSCAN_PRODUCTION", False, "Turn on the secure production settings")
DEBUG = env.boolean("DJANGO_DEBUG", False, "Django debug pages (never in production)")
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG cannot be on when BRAINSCAN_PRODUCTION is on.")


def _development_secret_key() -> str:
    """A random key kept in var/, so sessions survive restarts on a development machine."""
    from django.core.management.utils import get_random_secret_key

    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(get_random_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


_SECRET_HELP = ("Django secret key; required in production (at least 50 random characters, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`)")
SECRET_KEY = (env.required("DJANGO_SECRET_KEY", _SECRET_HELP) if PRODUCTION
              else env.string("DJANGO_SECRET_KEY", None, _SECRET_HELP) or _development_secret_key())
# The same bar as Django's deploy check (security.W009), enforced at start instead of warned about.
if PRODUCTION and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure-")):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 random characters in production "
                               "(not a django-insecure- key).")

_AUDIT_HELP = ("Keys of the audit trail's HMAC, `id:secret` pairs separated by commas, newest first: events are "
               "signed with the first, checked with any (key rotation). Required in production; keep it out of the "
               "database's reach. Development derives one from the secret key")
AUDIT_KEYS = env.key_list("BRAINSCAN_AUDIT_KEYS", _AUDIT_HELP, required=PRODUCTION,
                          development_default={"dev": f"audit:{SECRET_KEY}"})
AUDIT_CHECKPOINT_EVERY = env.integer("BRAINSCAN_AUDIT_CHECKPOINT_EVERY", 100, "Every this many audit events, a "
                                     "signed checkpoint of the chain is written to the file storage", minimum=1)
ALLOWED_HOSTS = env.string_list("DJANGO_ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"],
                                "Comma-separated host names the site answers to; required in production")
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is required in production (the site's host names, "
                               "comma-separated).")
if PRODUCTION and "*" in ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS cannot be * in production; list the site's host names.")
CSRF_TRUSTED_ORIGINS = env.string_list("DJANGO_CSRF_TRUSTED_ORIGINS", [], "Comma-separated origins "
                                       "(https://host) allowed to post forms, when behind a proxy")

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
    "axes",
    "csp",
    "diagnosis",
    "analytics",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "diagnosis.middleware.RequestBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "diagnosis.middleware.NoStoreMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "brainscan.urls"
WSGI_APPLICATION = "brainscan.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env.url("DATABASE_URL", f"sqlite:///{VAR_DIR / 'brainscan.sqlite3'}",
                       ("sqlite", "postgres", "postgresql", "pgsql"),
                       "Database; sqlite:///path (default, under var/) or postgres://user:pass@host:5432/name")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # IMMEDIATE makes concurrent writers queue instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30,
                                       "init_command": "PRAGMA journal_mode=WAL;"}
    # A file, not memory, so that worker processes started by the tests see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-brainscan.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (the API's request limits, shared across processes) -------------------------------
REDIS_URL = env.url("REDIS_URL", None, ("redis", "rediss"), "Redis for the cache and, unless "
                    "CELERY_BROKER_URL says otherwise, the Celery broker")
CACHES = {
    # Outage-tolerant: a Redis outage must not take the site down with it (brainscan.cache).
    "default": {"BACKEND": "brainscan.cache.OutageTolerantRedisCache", "LOCATION": REDIS_URL,
                "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2}}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache")}
}

# --- Files --------------------------------------------------------------------------------------
STORAGE_BACKEND = env.choice("BRAINSCAN_STORAGE", "local", ("local", "s3"),
                             "Where scans and heatmaps are kept: local (disk under BRAINSCAN_MEDIA_ROOT) or s3")
MEDIA_ROOT = Path(env.string("BRAINSCAN_MEDIA_ROOT", str(VAR_DIR / "media"), "Folder for scans and heatmaps "
                             "with the local storage"))
MEDIA_URL = None  # scans are never served from a public URL; see diagnosis.files
X_ACCEL_REDIRECT_PREFIX = env.string("BRAINSCAN_X_ACCEL_PREFIX", None, "With local storage behind nginx: the "
                                     "internal location that maps to BRAINSCAN_MEDIA_ROOT (e.g. /protected/)")
S3_ENDPOINT_URL = env.url("AWS_S3_ENDPOINT_URL", None, ("http", "https"),
                          "S3 endpoint the servers use, for MinIO or another S3-compatible server (empty: AWS)")
S3_PUBLIC_URL = env.url("BRAINSCAN_S3_PUBLIC_URL", None, ("http", "https"),
                        "S3 endpoint that browsers reach, for pre-signed links, when it differs from "
                        "AWS_S3_ENDPOINT_URL (e.g. https://brainscan.example.org, whose nginx forwards /BUCKET/ "
                        "to MinIO)")
S3_OPTIONS = {
    "bucket_name": env.string("AWS_STORAGE_BUCKET_NAME", None, "S3 bucket for scans and heatmaps (required with "
                              "BRAINSCAN_STORAGE=s3); keep it private"),
    "endpoint_url": S3_ENDPOINT_URL,
    "public_endpoint_url": S3_PUBLIC_URL,
    "region_name": env.string("AWS_S3_REGION_NAME", None, "S3 region (MinIO: us-east-1)"),
    "access_key": env.string("AWS_ACCESS_KEY_ID", None, "S3 access key (empty: boto3's usual credential chain, "
                             "e.g. an instance role)"),
    "secret_key": env.string("AWS_SECRET_ACCESS_KEY", None, "S3 secret key"),
    # No ACL header: buckets with ACLs disabled (the AWS default since 2023) refuse PUTs that carry one;
    # the objects are as private as the bucket.
    "default_acl": None,
    "file_overwrite": True,
    "querystring_auth": True,
    "querystring_expire": env.integer("BRAINSCAN_S3_URL_SECONDS", 60, "Lifetime of a pre-signed S3 link to a scan",
                                      minimum=5, maximum=3600),
    "signature_version": "s3v4",
}
if STORAGE_BACKEND == "s3":
    if not S3_OPTIONS["bucket_name"]:
        raise ImproperlyConfigured("AWS_STORAGE_BUCKET_NAME is required with BRAINSCAN_STORAGE=s3.")
    _default_storage = {"BACKEND": "brainscan.storage.PrivateS3Storage", "OPTIONS": S3_OPTIONS}
else:
    # allow_overwrite: a retried task rewrites its heatmap under the same name, as on S3, instead of
    # leaving a renamed copy behind.
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage",
                        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": None, "allow_overwrite": True,
                                    "file_permissions_mode": 0o600, "directory_permissions_mode": 0o700}}
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": _default_storage,
    # Static files are public and nginx reads them as another user: not FILE_UPLOAD_PERMISSIONS (0600).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage" if PRODUCTION
                    else "django.contrib.staticfiles.storage.StaticFilesStorage",
                    "OPTIONS": {"file_permissions_mode": 0o644, "directory_permissions_mode": 0o755}},
}
WHITENOISE_USE_FINDERS = not PRODUCTION

# --- Uploads ------------------------------------------------------------------------------------
MAX_UPLOAD_BYTES = env.integer("BRAINSCAN_MAX_UPLOAD_MB", 25, "Largest accepted file, in MB",
                               minimum=1, maximum=1024) * 1024 * 1024
MAX_FILES_PER_STUDY = env.integer("BRAINSCAN_MAX_FILES", 20, "Most files in one study", minimum=1, maximum=500)
MAX_IMAGE_PIXELS = env.integer("BRAINSCAN_MAX_IMAGE_PIXELS", 25_000_000, "Most pixels in one decoded image",
                               minimum=10_000)
# Checked from each file's header before anything is decoded, at upload and again in the worker (ml.imaging).
IMAGE_LIMITS = Limits(
    max_pixels=MAX_IMAGE_PIXELS,
    max_side=env.integer("BRAINSCAN_MAX_IMAGE_SIDE", 8192, "Longest side of an accepted image, in pixels",
                         minimum=64),
    max_aspect=env.integer("BRAINSCAN_MAX_ASPECT_RATIO", 4, "How many times longer than wide an image may be",
                           minimum=1, maximum=100),
    max_decoded_bytes=env.integer("BRAINSCAN_MAX_DECODED_MB", 64, "Memory one decoded image may take, in MB "
                                  "(samples per pixel and bytes per sample counted)", minimum=1) * 1024 * 1024,
)
MAX_DICOM_FRAMES = env.integer("BRAINSCAN_MAX_DICOM_FRAMES", 64, "Most frames taken from one DICOM file",
                               minimum=1)
MAX_SLICES = env.integer("BRAINSCAN_MAX_SLICES", 400, "Most slices in a study that is one series (a NIfTI volume, "
                         "a .zip or the DICOM files of one series)", minimum=1)
MAX_SERIES_BYTES = env.integer("BRAINSCAN_MAX_SERIES_MB", 600, "Largest series upload (a .zip, a NIfTI file, or "
                               "all the files of one request), in MB", minimum=1) * 1024 * 1024
MAX_REQUEST_PIXELS = env.integer("BRAINSCAN_MAX_REQUEST_MEGAPIXELS", 256, "Most pixels, in millions, the files of "
                                 "one upload may hold together", minimum=1) * 1_000_000
DATA_UPLOAD_MAX_NUMBER_FILES = max(MAX_FILES_PER_STUDY, MAX_SLICES) + 1
FILE_UPLOAD_PERMISSIONS = 0o600
# A larger request is refused before it is read (diagnosis.middleware).
MAX_REQUEST_BYTES = max(MAX_UPLOAD_BYTES * MAX_FILES_PER_STUDY, MAX_SERIES_BYTES) + 1_048_576
# Uploads stream to a private temporary file, encrypted under a key that lives only in the request's memory:
# never whole in memory, never in the clear on disk (a DICOM header names the patient).
FILE_UPLOAD_HANDLERS = ["diagnosis.upload_handlers.EncryptedFileUploadHandler"]
DICOM_DATES = env.choice("BRAINSCAN_DICOM_DATES", "shift", ("shift", "remove"), "Dates in a stored DICOM file: "
                         "shift (moved back by a random number of days per study, intervals kept) or remove")
DICOM_KEEP_SEX_AGE = env.boolean("BRAINSCAN_DICOM_KEEP_SEX_AGE", False, "Keep the patient's sex and age (ages "
                                 "over 89 written as 90) in stored DICOM files and show them on the study page")

# --- Model --------------------------------------------------------------------------------------
MODEL_DIR = Path(env.string("BRAINSCAN_MODEL_DIR", str(BASE_DIR / "models"), "Model registry folder"))
MODEL_VERSION = env.string("BRAINSCAN_MODEL_VERSION", None, "Serve this version instead of models/ACTIVE")
INFERENCE_THREADS = env.integer("BRAINSCAN_INFERENCE_THREADS", 1, "Threads per worker process for the network "
                                "(processes x threads should equal cores)", minimum=1, maximum=64)
INFERENCE_CHUNK = env.integer("BRAINSCAN_INFERENCE_CHUNK", 32, "Images assessed and stored at a time (a series shows "
                              "its progress chunk by chunk, and resumes there after a crash)", minimum=1, maximum=512)
INFERENCE_BATCH = env.integer("BRAINSCAN_INFERENCE_BATCH", 8, "Most waiting studies a worker takes together",
                              minimum=1, maximum=256)

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env.url("CELERY_BROKER_URL", REDIS_URL or "filesystem://",
                            ("redis", "rediss", "amqp", "pyamqp", "filesystem", "sqla+sqlite", "sqla+postgresql"),
                            "Celery broker; default REDIS_URL, else a folder under var/ (no server needed)")
CELERY_BROKER_FOLDER = VAR_DIR / "broker"
BROKER_KEY_PREFIX = env.string("BRAINSCAN_BROKER_PREFIX", "", "Prefix of every broker key in Redis, to share one "
                               "Redis between installations")
TASK_SOFT_TIME_LIMIT = env.integer("BRAINSCAN_TASK_SOFT_SECONDS", 60, "Soft time limit of one task", minimum=1)
TASK_TIME_LIMIT = TASK_SOFT_TIME_LIMIT + 15
WORKER_MAX_MEMORY_MB = env.integer("BRAINSCAN_WORKER_MAX_MEMORY_MB", 1024, "A worker process whose resident memory "
                                   "grows past this is replaced after its task", minimum=128)
STUDY_MAX_ATTEMPTS = env.integer("BRAINSCAN_STUDY_MAX_ATTEMPTS", 3, "Attempts before a study is failed", minimum=1)
STALE_AFTER_SECONDS = env.integer("BRAINSCAN_STALE_SECONDS", 120, "A queued or running study untouched this long "
                                  "is re-queued by the sweeper", minimum=5)
SWEEP_EVERY_SECONDS = env.integer("BRAINSCAN_SWEEP_SECONDS", 60, "How often the sweeper runs", minimum=1)
TEST_PAUSE_AFTER_CLAIM_SECONDS = env.integer("BRAINSCAN_TEST_PAUSE_AFTER_CLAIM_SECONDS", 0, "Tests only: a worker "
                                            "waits this long after claiming its studies, so that a crash test "
                                            "can kill a run that holds a claim", minimum=0)
TASK_RETRY_MAX_DELAY = 60  # longest back-off between two tries of a task after a transient error
# Redis hands an unacknowledged message out again after this long. A message legitimately stays
# unacknowledged while it waits for its retry delay and then runs up to the hard time limit; twice
# that keeps a slow run from being delivered twice (a dead worker's studies come back sooner through
# their lease and the sweeper).
BROKER_VISIBILITY_TIMEOUT = 2 * (TASK_RETRY_MAX_DELAY + TASK_TIME_LIMIT)

# --- Authentication and sessions ----------------------------------------------------------------
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "worklist"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = env.integer("BRAINSCAN_SESSION_MINUTES", 480, "Session lifetime in minutes",
                                 minimum=5) * 60
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
AXES_FAILURE_LIMIT = env.integer("BRAINSCAN_LOGIN_FAILURE_LIMIT", 5, "Failed logins before a lockout", minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env.integer("BRAINSCAN_LOCKOUT_MINUTES", 15, "Lockout length in minutes",
                                                  minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "diagnosis.errors.locked_out"  # the lockout page, or JSON under /api/

# --- Security headers -----------------------------------------------------------------------------
# With S3 the page's images redirect to pre-signed links, which the Content-Security-Policy must allow.
if STORAGE_BACKEND != "s3":
    S3_LINK_ORIGINS = []
elif S3_PUBLIC_URL or S3_ENDPOINT_URL:
    _link = urlparse(S3_PUBLIC_URL or S3_ENDPOINT_URL)
    S3_LINK_ORIGINS = [f"{_link.scheme}://{_link.netloc}"]
else:
    S3_LINK_ORIGINS = ["https://*.amazonaws.com"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:", *S3_LINK_ORIGINS],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
_SSL_REDIRECT = env.boolean("BRAINSCAN_SSL_REDIRECT", True, "Redirect http to https in production")
_HSTS_SECONDS = env.integer("BRAINSCAN_HSTS_SECONDS", 31_536_000, "HSTS max-age in production", minimum=0)
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _SSL_REDIRECT
    # The container health probe talks plain HTTP to the application server itself.
    SECURE_REDIRECT_EXEMPT = [r"^livez$"]
    SECURE_HSTS_SECONDS = _HSTS_SECONDS
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
BEHIND_PROXY = env.boolean("BRAINSCAN_BEHIND_PROXY", False, "Behind one trusted reverse proxy (the compose "
                           "nginx) that sets X-Forwarded-Proto and X-Forwarded-For; the application server must "
                           "be reachable only through it")
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Audit events and login lockouts need the client's address, not the proxy's.
    MIDDLEWARE.insert(0, "brainscan.proxy.ForwardedForMiddleware")

# --- REST API ----------------------------------------------------------------------------------
API_TOKEN_HOURS = env.integer("BRAINSCAN_API_TOKEN_HOURS", 12, "Lifetime of an API token, in hours",
                              minimum=1, maximum=24 * 90)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "diagnosis.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",  # the browsable API, with CSRF
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "diagnosis.api.throttling.AnonymousRateThrottle",
        "diagnosis.api.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.rate("BRAINSCAN_API_ANON_RATE", "30/minute", "API requests per anonymous client address "
                         "(count/second, minute, hour or day)"),
        "user": env.rate("BRAINSCAN_API_USER_RATE", "600/minute", "API requests per user "
                         "(count/second, minute, hour or day)"),
    },
    # The client's address is REMOTE_ADDR, as in the audit trail: a made-up X-Forwarded-For cannot dodge the limit.
    "NUM_PROXIES": 0,
    "DEFAULT_PAGINATION_CLASS": "diagnosis.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "EXCEPTION_HANDLER": "diagnosis.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "BrainScan API",
    "DESCRIPTION": (
        "Submit brain MRI slices and read the CNN's tumor assessments. Decision support: every result must be "
        "read by a qualified clinician.\n\n"
        "**Authentication**: `POST /api/v1/auth/token/` with a username and password returns a token that expires; "
        "send it as `Authorization: Token <token>`. `DELETE /api/v1/auth/token/` revokes it.\n\n"
        "**Errors** are JSON of one shape: `{\"error\": {\"code\": ..., \"message\": ..., \"fields\": {...}}}`; "
        "`fields` is present when particular fields were wrong. An object you may not see answers 404.\n\n"
        "**Throttling**: requests are limited per user and per anonymous address; over the limit the answer is "
        "429 with a `Retry-After` header."
    ),
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several choice fields are called "status": each enum gets a name of its own.
    "ENUM_NAME_OVERRIDES": {
        "StudyStatusEnum": "diagnosis.models.Study.Status",
        "QualityStatusEnum": "diagnosis.models.Prediction.Quality",
    },
}

# --- Demo and data ------------------------------------------------------------------------------
DEMO_PASSWORD = env.string("BRAINSCAN_DEMO_PASSWORD", None, "Password of the demo accounts made by seed_demo "
                           "(generated and printed when unset)")
DATASET_DIR = env.string("BRAINSCAN_DATASET", str(BASE_DIR.parent / "shared" / "datasets" / "brain-mri"),
                         "Labelled MRI folder used by tests and the release training")
ANALYTICS_DIR = "analytics"  # prefix inside the default storage

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.string("BRAINSCAN_TIME_ZONE", "UTC", "Time zone for displayed dates")
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.choice("BRAINSCAN_LOG_LEVEL", "INFO",
                                                          ("DEBUG", "INFO", "WARNING", "ERROR"), "Log level")},
    # Logs never carry file contents: Pillow's debug lines quote EXIF values, a patient's name among them.
    # (pydicom, which sets its own level when imported, is silenced in diagnosis.dicom.)
    "loggers": {"axes": {"level": "WARNING"}, "PIL": {"level": "WARNING"}},
}

# --- Hospital integration: signed webhooks, FHIR and DICOM SR exports (integrations/) ------------
PUBLIC_URL = env.url("BRAINSCAN_PUBLIC_URL", "http://127.0.0.1:8000", ("http", "https"),
                     "The site's base URL as hospital systems reach it, for the absolute links in webhook "
                     "bodies (e.g. https://brainscan.example.org)").rstrip("/")
WEBHOOK_ALLOW = env.string_list("BRAINSCAN_WEBHOOK_ALLOW", [], "Comma-separated host names, addresses or CIDR "
                                "ranges that webhooks may reach although they are loopback, private, link-local or "
                                "otherwise not public (empty: public addresses only)")
WEBHOOK_CONNECT_SECONDS = env.integer("BRAINSCAN_WEBHOOK_CONNECT_SECONDS", 3, "Time limit to connect to a webhook "
                                      "receiver, in seconds", minimum=1, maximum=30)
WEBHOOK_READ_SECONDS = env.integer("BRAINSCAN_WEBHOOK_READ_SECONDS", 5, "Time limit for a webhook receiver's "
                                   "answer, in seconds", minimum=1, maximum=60)
WEBHOOK_MAX_ATTEMPTS = env.integer("BRAINSCAN_WEBHOOK_MAX_ATTEMPTS", 12, "Attempts to deliver one webhook before "
                                   "giving up (back-off 1, 2, 4 ... minutes, at most 8 hours: 12 attempts span about "
                                   "a day)", minimum=1, maximum=30)
