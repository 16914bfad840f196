"""Fixtures of the analytics tests: private storage, phantom folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from diagnosis import selectors as diagnosis_selectors
from ml.phantoms import write_phantom_folder


@pytest.fixture(autouse=True)
def private_storage(settings, tmp_path):
    """Each test stores its analytics files in its own folder."""
    settings.STORAGES = {**django_settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "media")}}}
    return tmp_path / "media"


@pytest.fixture(autouse=True)
def fresh_card_caches():
    """Cards are cached per process by version name (for the dataset and monitoring pages); tests register
    versions of their own."""
    diagnosis_selectors.model_card.cache_clear()
    yield
    diagnosis_selectors.model_card.cache_clear()


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory) -> Path:
    """Six phantoms per label, tumor ones split into two subtype folders as in the real data."""
    root = tmp_path_factory.mktemp("phantoms") / "data"
    write_phantom_folder(root, 6, seed=11)
    tumors = sorted((root / "tumor").iterdir())
    for index, path in enumerate(tumors):
        target = root / ("glioma" if index % 2 else "meningioma")
        target.mkdir(exist_ok=True)
        path.rename(target / path.name)
    (root / "tumor").rmdir()
    return root


def _result(n: int, tumors: int, auc: float, sensitivity: float, specificity: float, patients: int) -> dict:
    """Figures of one set of slices as ml.figures reports them, counts consistent with the rates."""
    tp, tn = round(sensitivity * tumors), round(specificity * (n - tumors))
    rates = {"auc": auc, "sensitivity": sensitivity, "specificity": specificity, "accuracy": (tp + tn) / n}
    return {"n": n, **rates, "tp": tp, "fn": tumors - tp, "tn": tn, "fp": n - tumors - tn, "patients": patients,
            "ci95": {key: [round(value - 0.05, 3), round(min(1.0, value + 0.02), 3)] for key, value in rates.items()}}


@pytest.fixture
def fold_report():
    """A builder of external validation fold reports, shaped as `ml.pipeline.external_fold` writes them."""
    def build(institution: str, fingerprint: str, flair_auc: float = 0.962, flair_sensitivity: float = 0.931,
              pointing_game: float = 0.84) -> dict:
        flair = _result(360, 120, flair_auc, flair_sensitivity, 0.88, 7)
        flair["localization"] = {"n": 120, "patients": 7, "pointing_game": pointing_game,
                                 "pointing_game_ci95": [pointing_game - 0.09, pointing_game + 0.05],
                                 "mass_in_mask_mean": 0.4, "mass_in_mask_median": 0.38}
        t1pre = _result(350, 110, 0.91, 0.9, 0.8, 7)
        t1pre["localization"] = {"n": 110, "patients": 7, "pointing_game": 0.7, "pointing_game_ci95": [0.6, 0.8]}
        return {"institution": institution, "recipe_fingerprint": fingerprint,
                "created_at": "2026-12-07T09:30:00+00:00", "epochs": 30, "best_epoch": 17,
                "training_seconds": 3500.0, "seconds": 3900.0,
                "train": {"images": 9500, "patients": 43}, "validation": {"images": 2000, "patients": 11},
                "test": {"images": 710, "patients": 7}, "threshold": 0.21, "temperature": 1.9,
                "all_sequences": _result(710, 230, 0.94, 0.92, 0.84, 7),
                "by_sequence": {"t1pre": t1pre, "flair": flair},
                "targets": {"auc": 0.95, "sensitivity": 0.9, "specificity": 0.85, "pointing_game": 0.8}}

    return build
