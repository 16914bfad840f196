"""Redis (broker and cache) stops while clinicians keep submitting: nothing is lost or done twice.

The site's private redis-server is stopped for real, with a study in the middle of its run; studies
submitted meanwhile through the web form and the REST API are stored and answered at once, then sent
by the sweeper once Redis is back (Redis restarts empty, like a broker without persistence, so even
sent messages are gone).
"""

import time

import pytest

from stack.clients import ApiClient
from diagnosis.models import Study
from tests.factories import phantom_bytes
from tests.reliability.conftest import assert_done_exactly_once, settle
from tests.workers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def slices(seed: int, count: int = 1) -> list[tuple[str, bytes]]:
    return [(f"slice{seed}-{n}.png", phantom_bytes(seed + n, (seed + n) % 2 == 0)) for n in range(count)]


def test_studies_submitted_while_redis_is_down_all_complete_once(broken_site):
    broken_site.worker("outage", BRAINSCAN_TEST_PAUSE_AFTER_CLAIM_SECONDS="2")
    web_client, patient = broken_site.clinician()
    in_flight = web_client.submit(patient, slices(0, 2))
    wait_for(lambda: Study.objects.filter(pk=in_flight, status=Study.Status.PROCESSING).exists(), 30, interval=0.05,
             message=f"the first study to start; logs:\n{broken_site.logs()}")

    broken_site.redis.stop()
    # The API's request limits live in the Redis cache too: a token is issued and studies accepted anyway.
    api_client, api_patient = broken_site.clinician(ApiClient)
    submitted_during_outage = []
    for seed in range(1, 5):
        client, owner = (web_client, patient) if seed % 2 else (api_client, api_patient)
        started = time.monotonic()
        submitted_during_outage.append(client.submit(owner, slices(seed * 10, 2)))
        assert time.monotonic() - started < 5, f"a submission through the {client.via} waited on the broker"
    assert Study.objects.filter(pk__in=submitted_during_outage, status=Study.Status.QUEUED).count() == 4
    # The run that was in the middle finishes during the outage: it needs the database, not the broker.
    wait_for(lambda: Study.objects.filter(pk=in_flight, status=Study.Status.COMPLETED).exists(), 30,
             message=f"the running study to finish during the outage; logs:\n{broken_site.logs()}")

    broken_site.redis.start()
    studies = settle([in_flight, *submitted_during_outage], broken_site, timeout=120)
    for study in studies:
        assert_done_exactly_once(study)
