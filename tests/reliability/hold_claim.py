"""Loaded by brainscan.settings_test: with BRAINSCAN_TEST_HOLD_CLAIM_SECONDS set, a worker process waits
that long between claiming its studies and loading the predictor, so that a reliability test can kill
a run while it holds its claim. Production code knows nothing of it."""

import os
import time

from celery.signals import worker_process_init

HOLD_SECONDS = float(os.environ.get("BRAINSCAN_TEST_HOLD_CLAIM_SECONDS", "0"))


@worker_process_init.connect
def hold_claims(**_) -> None:
    if not HOLD_SECONDS:
        return
    from diagnosis import services

    predictor = services.get_predictor

    def held_predictor():
        time.sleep(HOLD_SECONDS)
        return predictor()

    services.get_predictor = held_predictor
