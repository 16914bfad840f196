"""What the model report derives from a card and the external validation files (no database, no TensorFlow)."""

import pytest

from analytics import model_report
from ml import figures

pytestmark = pytest.mark.no_db

FINGERPRINT = "aa4c613efa21e56b"


def brain_mri_card(auc: float, sensitivity: float, specificity: float, low: float = 0.0) -> dict:
    """A card whose brain-mri test figures are given; every interval's lower end is `low` below its value."""
    figures = {"auc": auc, "sensitivity": sensitivity, "specificity": specificity, "n": 900,
               "ci95": {key: [value - low, min(1.0, value + 0.01)]
                        for key, value in (("auc", auc), ("sensitivity", sensitivity), ("specificity", specificity))}}
    return {"metrics": {"test": {"n": 2000}, "test_by_source": {"brain-mri": {"all": figures}}},
            "targets": {"auc": 0.99, "sensitivity": 0.97, "specificity": 0.95,
                        "measured_on": "brain-mri clean test split",
                        "external": {"auc": 0.95, "sensitivity": 0.9, "specificity": 0.85, "pointing_game": 0.8}},
            "hyperparameters": {"recipe_fingerprint": FINGERPRINT}}


def test_constants_mirror_the_pipeline():
    from ml import pipeline

    assert model_report.CLEAN_COLLECTION == pipeline.CLEAN_COLLECTION
    assert model_report.EXTERNAL_SEQUENCE == pipeline.EXTERNAL_SEQUENCE
    assert model_report.STRESS_DROP_LIMIT == pipeline.STRESS_DROP_LIMIT


def test_clean_targets_are_judged_on_the_clean_collection_with_their_intervals():
    met = model_report.clean_targets(brain_mri_card(0.995, 0.98, 0.96, low=0.02))
    assert met["all_met"] and met["measured_on"] == "brain-mri clean test split" and met["n"] == 900
    assert [row["name"] for row in met["rows"]] == ["AUC", "Sensitivity", "Specificity"]
    assert met["summary"] == ("Met: AUC, Sensitivity, Specificity. For AUC, Sensitivity, Specificity the lower end "
                              "of the 95% interval falls below the target.")
    missed = model_report.clean_targets(brain_mri_card(0.984, 0.991, 0.709))
    assert not missed["all_met"]
    assert missed["summary"] == "Met: Sensitivity. Not met: AUC, Specificity."
    assert model_report.clean_targets({}) == {"recorded": False, "rows": []}


def test_external_validation_lists_every_expected_institution_and_prefers_the_files(fold_report):
    card = brain_mri_card(0.99, 0.99, 0.95)
    card["external_validation"] = {"method": "leave one institution out", "folds": {}, "missing": ["CS", "DU", "FG"]}
    files = {"CS": fold_report("CS", FINGERPRINT), "FG": fold_report("FG", FINGERPRINT, flair_auc=0.9)}
    section = model_report.external_validation(card, files)
    assert [fold["code"] for fold in section["institutions"]] == ["CS", "DU", "FG"]
    assert section["not_run"] == ["DU"]
    cs, _, fg = section["institutions"]
    assert [row["name"] for row in cs["sequences"]] == ["FLAIR", "T1 before contrast"]  # FLAIR first
    assert {check["key"]: check["met"] for check in cs["checks"]} == {
        "auc": True, "sensitivity": True, "specificity": True, "pointing_game": True}
    assert not next(check for check in fg["checks"] if check["key"] == "auc")["met"]
    auc_row = section["target_rows"][0]
    assert auc_row["name"] == "AUC" and auc_row["cells"][1] is None  # DU: not yet run
    assert model_report.external_validation({}, {}) is None


def test_metric_rows_skip_splits_the_card_lacks():
    rows = model_report.metric_rows({"metrics": {"test": {"n": 3, "accuracy": 1.0, "ci95": {"accuracy": [0.4, 1]}}}})
    assert [row["name"] for row in rows] == ["Test (grouped split)"]
    assert rows[0]["cells"][3] == {"name": "Accuracy", "value": 1.0, "ci": [0.4, 1]}
    assert rows[0]["cells"][0]["value"] is None


def test_reliability_points_skip_empty_bins_and_bracket_the_observed_rate():
    bins = [{"low": 0.0, "high": 0.1, "n": 40, "confidence": 0.04, "frequency": 0.05},
            {"low": 0.1, "high": 0.2, "n": 0, "confidence": None, "frequency": None},
            {"low": 0.9, "high": 1.0, "n": 10, "confidence": 0.95, "frequency": 0.9}]
    points = model_report.reliability_points(bins)
    assert [point["low"] for point in points] == [0.0, 0.9]
    assert all(point["ci_low"] <= point["frequency"] <= point["ci_high"] for point in points)


def test_stress_rows_flag_drops_beyond_the_limit():
    card = {"stress": {"n": 100, "description": "- blur: a softer scanner;\n- noise: thermal noise.",
                       "families": {"clean": {"n": 100, "sensitivity": 0.96, "specificity": 0.7, "sensitivity_drop": 0},
                                    "blur": {"n": 100, "sensitivity": 0.95, "specificity": 0.7,
                                             "sensitivity_drop": 0.01},
                                    "noise": {"n": 100, "sensitivity": 0.9, "specificity": 0.8,
                                              "sensitivity_drop": 0.06}},
                       "empty_images": {"black": {"label": "no_tumor", "probability": 0.09}}}}
    suite = model_report.stress(card)
    assert suite["flagged"] == ["noise"] and suite["limit_points"] == 3
    assert [row["what"] for row in suite["rows"]] == ["the test slices as they are", "a softer scanner",
                                                      "thermal noise"]
    assert suite["empties_as_tumor"] == []
    assert model_report.stress({}) is None


def test_error_positions_come_from_the_card_or_say_why_not():
    card = brain_mri_card(0.99, 0.99, 0.95)
    assert model_report.error_positions(card) == {"rows": [], "why_none": figures.NO_VOLUMES}
    tcga = {"all": {"n": 10}, "by_sequence": {"flair": {"n": 10}}}
    card["metrics"]["test_by_source"]["tcga-lgg"] = tcga
    assert model_report.error_positions(card) == {"rows": [], "why_none": figures.POSITIONS_PREDATE}
    tcga["errors_by_position"] = {
        "no_tumor_by_slices_to_lesion": {"1-2": {"n": 160, "specificity": 0.537, "ci95": {"specificity": [0.41, 0.67]},
                                                 "patients": 14}},
        "tumor_by_lesion_share": {"<1%": {"n": 90, "sensitivity": 0.533, "ci95": {"sensitivity": [0.31, 0.73]},
                                          "patients": 13}}}
    near, small = model_report.error_positions(card)["rows"]
    assert near == {"collection": "tcga-lgg", "slices": "no-tumor slices, 1-2 slices from the lesion", "n": 160,
                    "measure": "specificity", "value": 0.537, "ci95": [0.41, 0.67], "patients": 14}
    assert small["slices"] == "tumor slices, lesion <1% of the input" and small["measure"] == "sensitivity"
