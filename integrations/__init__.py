"""Hospital integration: results pushed by signed webhooks, and exported as FHIR R4 and DICOM SR.

- models: webhook endpoints, their deliveries (an outbox, filled in the transaction that finishes a study)
  and every attempt;
- services: the outbox, claiming a delivery under a short lease, recording attempts, the sweep, the
  endpoints (registration, changes, automatic disabling);
- delivery: the network side: the outbound URL guard (resolve once, refuse private addresses, connect to
  the address checked) and the signed POST;
- selectors: what the exports and webhook bodies read;
- fhir, sr: the FHIR DiagnosticReport and the DICOM Comprehensive 3D SR builders;
- tasks: thin Celery tasks (send one delivery, the periodic sweep).
"""
