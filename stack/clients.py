"""Clients of a running BrainScan: the REST API with a token, and the web form answered in JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests

# Seconds to wait for the answer to an upload: a 600 MB series is decoded, de-identified and stored before the
# answer, which took over 60 s on a slow 2-core machine.
UPLOAD_TIMEOUT = 300


class SubmissionRefused(Exception):
    pass


class WebFormClient:
    """A clinician in a browser session: the upload form, answered in JSON (Accept: application/json)."""

    via = "web"

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.get(f"{base_url}/login/", timeout=30)
        response = self.session.post(f"{base_url}/login/", timeout=30, allow_redirects=False, data={
            "username": username, "password": password, "csrfmiddlewaretoken": self.session.cookies["csrftoken"]})
        if response.status_code != 302:
            raise SubmissionRefused(f"login of {username} failed with {response.status_code}")

    def post_study(self, patient: "SeededPatient", files: list[tuple[str, bytes]]) -> requests.Response:
        return self.session.post(
            f"{self.base_url}/studies/new/", timeout=UPLOAD_TIMEOUT, data={"patient": patient.code},
            files=[("images", (name, data, "application/octet-stream")) for name, data in files],
            headers={"Accept": "application/json", "X-CSRFToken": self.session.cookies["csrftoken"],
                     "Referer": f"{self.base_url}/studies/new/"})

    def submit(self, patient: "SeededPatient", files: list[tuple[str, bytes]]) -> str:
        """The new study's id; SubmissionRefused unless the study was created."""
        response = self.post_study(patient, files)
        if response.status_code != 201:
            raise SubmissionRefused(f"{response.status_code}: {response.text[:300]}")
        return re.search(r"/studies/([0-9a-f-]{36})/", response.json()["url"]).group(1)

    def status(self, study_id: str) -> str:
        return self.session.get(f"{self.base_url}/studies/{study_id}/status/", timeout=30).json()["status"]


class ApiClient:
    """Another hospital system: the REST API with a token (POST /api/v1/auth/token/)."""

    via = "api"

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url
        self.session = requests.Session()
        response = self.session.post(f"{base_url}/api/v1/auth/token/", timeout=30,
                                     json={"username": username, "password": password})
        if response.status_code != 201:
            raise SubmissionRefused(f"token for {username} refused with {response.status_code}")
        self.session.headers["Authorization"] = f"Token {response.json()['token']}"

    def post_study(self, patient: "SeededPatient", files: list[tuple[str, bytes]]) -> requests.Response:
        return self.session.post(f"{self.base_url}/api/v1/studies/", timeout=UPLOAD_TIMEOUT,
                                 data={"patient": patient.code},
                                 files=[("images", (name, data, "application/octet-stream")) for name, data in files])

    def submit(self, patient: "SeededPatient", files: list[tuple[str, bytes]]) -> str:
        """The new study's id; SubmissionRefused unless the study was accepted."""
        response = self.post_study(patient, files)
        if response.status_code != 202:
            raise SubmissionRefused(f"{response.status_code}: {response.text[:300]}")
        return response.json()["id"]

    def status(self, study_id: str) -> str:
        return self.session.get(f"{self.base_url}/api/v1/studies/{study_id}/", timeout=30).json()["status"]


@dataclass(frozen=True)
class SeededPatient:
    pk: int
    code: str


@dataclass(frozen=True)
class SeededClinician:
    username: str
    password: str
    patient: SeededPatient
