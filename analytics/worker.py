"""When a worker starts, the served model's report is asked for if it has none: a model activated by
editing models/ACTIVE, or a fresh installation, gets its report without anyone opening the page first."""

from __future__ import annotations

import logging

from celery.signals import worker_ready

log = logging.getLogger(__name__)


@worker_ready.connect
def request_served_report(sender, **_) -> None:
    from django.db import close_old_connections

    from analytics import services
    from diagnosis.inference import ModelUnavailable, serving_version

    try:
        services.request_model_report(serving_version())
    except ModelUnavailable:
        pass
    except Exception:  # a database not migrated yet, say: the page asks again when it is opened
        log.warning("Could not ask for the served model's report", exc_info=True)
    finally:
        close_old_connections()
