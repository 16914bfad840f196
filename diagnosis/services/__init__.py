"""Every write of the diagnosis app, by sub-domain:

- submission: storing an upload as a queued study and enqueueing it;
- assessment: the worker's claims, the model's results, failures and the sweeper;
- readings: what a clinician does with a study (run it again, record a reading);
- patients: patients, consent and erasure (administrators);
- transitions: the one conditional UPDATE by which a study changes state;
- errors: what a service refuses, and what is worth trying again.

Callers import from here.
"""

from diagnosis.services.assessment import (  # noqa: F401
    assess_study, claim, fail_after_retries, finish, new_claim_token, release, requeue_stale,
)
from diagnosis.services.errors import (  # noqa: F401
    TRANSIENT_ERRORS, ConsentRequired, InvalidState, NotAllowed, NothingUsable, ServiceError, TransientError,
)
from diagnosis.services.patients import create_patient, erase_patient, grant_consent, withdraw_consent  # noqa: F401
from diagnosis.services.readings import can_retry, record_reading, retry_study  # noqa: F401
from diagnosis.services.submission import Submission, check_can_submit, enqueue, submit_study  # noqa: F401
