"""Settings for the test suite: the real settings with a private var/ folder, a private key prefix in
Redis (so parallel runs do not take each other's tasks) and fast password hashing.

Under pytest-xdist each worker process gets its own var/ folder (files, broker folder) and key prefix;
pytest-django gives each its own test database.
"""

import os
import uuid
from pathlib import Path

_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
# pytest-xdist's controller loads these settings too, before it starts its workers: the defaults it set
# are inherited by every worker, which would then share one folder and one broker prefix (one worker's
# Celery process took another's tasks). A process drops defaults that another process set; the processes
# a test starts inherit this one's and keep them.
_OWNER = os.environ.get("BRAINSCAN_TEST_OWNER")
if _OWNER is not None and _OWNER != _WORKER:
    for _name in ("BRAINSCAN_VAR_DIR", "BRAINSCAN_BROKER_PREFIX"):
        os.environ.pop(_name, None)
os.environ["BRAINSCAN_TEST_OWNER"] = _WORKER
os.environ.setdefault("BRAINSCAN_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var" / "test" / _WORKER))
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("BRAINSCAN_BROKER_PREFIX", f"brainscan-test-{uuid.uuid4().hex[:8]}:")

from brainscan.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# WhiteNoise lists every static file when its middleware starts, which Django's test client does for
# each client (about 50 ms, some 700 times a run); in autorefresh mode it finds a file when asked.
WHITENOISE_AUTOREFRESH = True
