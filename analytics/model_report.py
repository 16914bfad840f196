"""What the model report says, derived from a model card (plain Python, no Django).

The card (written by `ml.pipeline`) holds the data per collection, the grouped split, the metrics overall and per
collection, sequence and institution with 95% intervals, the threshold, the calibration, the targets, where the
evidence lies, the stress suite, the quality gate, the series rule, the served graph and the per-epoch history.
Every function here tolerates a card without its part: it returns None or no rows, and the page then says the part
was not recorded instead of drawing something else. External validation folds finish after the release is trained,
so they are passed in as read from their files (`analytics.selectors.external_fold_reports`).

Constants mirroring `ml.pipeline` are repeated here because importing it would load TensorFlow into the web
process; tests check that they agree.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping

import numpy as np

from analytics import plots
from ml import evaluate
from ml.data import class_label
from ml.figures import position_rows
from ml.phantoms import make_phantom
from ml.predictor import Predictor
from ml.registry import ModelVersion

TIMING_IMAGES = 8
METRIC_NAMES = {"auc": "AUC", "sensitivity": "Sensitivity", "specificity": "Specificity", "accuracy": "Accuracy",
                "pointing_game": "Pointing game"}
TABLE_METRICS = ("auc", "sensitivity", "specificity", "accuracy")
SPLIT_NAMES = {"validation": "Validation", "test": "Test (grouped split)",
               "test_novel": "Test, images with no close relative in training"}
PART_NAMES = {"train": "Train", "validation": "Validation", "test": "Test"}
SEQUENCE_NAMES = {"flair": "FLAIR", "t1pre": "T1 before contrast", "t1post": "T1 after contrast"}
CLEAN_COLLECTION = "brain-mri"  # where the clean test targets are measured (ml.pipeline._targets)
EXTERNAL_SEQUENCE = "flair"  # the sequence external folds are judged on (ml.pipeline.EXTERNAL_SEQUENCE)
STRESS_DROP_LIMIT = 0.03  # a larger sensitivity drop is a limitation of the card (ml.pipeline._limitations)
CALIBRATION_PARTS = {"validation_before": "Validation, before temperature scaling",
                     "validation_after": "Validation, after temperature scaling",
                     "test": "Test, as served"}
PARITY_CHECKS = (("auc_difference", "max_auc_difference", "AUC, int8 − fp32", "at most ±{:.3f}"),
                 ("same_label", "min_same_label", "Same label", "at least {:.1%}"),
                 ("same_peak_cell_on_tumor_slices", "min_same_peak_cell", "Same heatmap peak cell (tumor slices)",
                  "at least {:.1%}"))


def finite(value) -> float | None:
    """A number, or None for what is missing or not a number (a NaN interval of an empty group, say)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def sequence_name(code: str) -> str:
    return SEQUENCE_NAMES.get(code, code)


def _flair_first(by_sequence: Mapping | None) -> list[tuple[str, dict]]:
    return sorted((by_sequence or {}).items(), key=lambda item: (item[0] != EXTERNAL_SEQUENCE, item[0]))


# --- Version facts ---------------------------------------------------------------------------------

def collections(card: Mapping) -> list[dict]:
    """The data per collection; a card from before collections counts its one folder as one."""
    data = card.get("data") or {}
    found = data.get("collections") or ({data.get("folder") or "data": data} if data.get("images") else {})
    return [{"name": name, "images": entry.get("images"), "tumor": (entry.get("by_label") or {}).get("tumor"),
             "no_tumor": (entry.get("by_label") or {}).get("no_tumor"), "patients": entry.get("patients"),
             "citation": entry.get("citation"),
             "subtypes": entry.get("by_subtype") or entry.get("by_subfolder") or {},
             "sequences": {sequence_name(k): v for k, v in (entry.get("by_sequence") or {}).items()},
             "institutions": entry.get("by_institution") or {}}
            for name, entry in found.items()]


def split_rows(card: Mapping) -> list[dict]:
    """Images (and patients, where named) per part of the split and collection."""
    rows = []
    for part, per_collection in ((card.get("split") or {}).get("summary") or {}).items():
        # A card from before collections summarises each part as a whole.
        entries = {"all": per_collection} if "images" in per_collection else per_collection
        rows += [{"part": PART_NAMES.get(part, part), "collection": name, "images": entry.get("images"),
                  "tumor": entry.get("tumor"), "no_tumor": entry.get("no_tumor"), "patients": entry.get("patients")}
                 for name, entry in entries.items()]
    return rows


def parity_rows(card: Mapping) -> list[dict]:
    """The int8 graph against fp32 on the clean test split, each check beside its criterion."""
    parity = (card.get("quantization") or {}).get("parity") or {}
    criteria = parity.get("criteria") or {}
    rows = []
    for key, criterion, name, wording in PARITY_CHECKS:
        if key in parity:
            limit = criteria.get(criterion)
            rows.append({"name": name, "value": parity[key], "percent": key != "auc_difference",
                         "criterion": wording.format(limit) if limit is not None else "—"})
    return rows


# --- Targets ----------------------------------------------------------------------------------------

def _clean_test_result(card: Mapping) -> dict | None:
    """The test figures the clean targets are judged on: the clean collection's, or, on a card from before
    collections, the whole test split's."""
    metrics = card.get("metrics") or {}
    if "test_by_source" in metrics:
        return (metrics["test_by_source"].get(CLEAN_COLLECTION) or {}).get("all")
    return metrics.get("test")


def _target_check(key: str, target: float, value, interval) -> dict:
    value = finite(value)
    low, high = (finite(bound) for bound in (interval or (None, None)))
    return {"key": key, "name": METRIC_NAMES[key], "target": target, "value": value, "low": low, "high": high,
            "ci": (low, high), "measured": value is not None, "met": value is not None and value >= target,
            "met_at_ci_low": low is not None and low >= target}


def _names(rows: list[dict]) -> str:
    return ", ".join(row["name"] for row in rows)


def clean_targets(card: Mapping) -> dict:
    """The clean test targets, each with the measured value, its 95% interval and whether it is met."""
    targets = card.get("targets") or {}
    wanted = {key: targets[key] for key in ("auc", "sensitivity", "specificity") if key in targets}
    if not wanted:
        return {"recorded": False, "rows": []}
    result = _clean_test_result(card) or {}
    rows = [_target_check(key, target, result.get(key), (result.get("ci95") or {}).get(key))
            for key, target in wanted.items()]
    met, missed = [r for r in rows if r["met"]], [r for r in rows if r["measured"] and not r["met"]]
    uncertain = [r for r in met if not r["met_at_ci_low"]]
    parts = ([f"Met: {_names(met)}."] if met else []) + ([f"Not met: {_names(missed)}."] if missed else [])
    if uncertain:
        parts.append(f"For {_names(uncertain)} the lower end of the 95% interval falls below the target.")
    return {"recorded": True, "rows": rows, "measured_on": targets.get("measured_on") or "test split",
            "n": result.get("n"), "patients": result.get("patients"), "measured": any(r["measured"] for r in rows),
            "all_met": bool(rows) and all(r["met"] for r in rows), "summary": " ".join(parts)}


# --- External validation ------------------------------------------------------------------------------

def _result_row(name: str, result: Mapping, kind: str = "") -> dict:
    intervals = result.get("ci95") or {}
    return {"name": name, "kind": kind, "n": result.get("n"), "patients": result.get("patients"),
            "cells": [{"name": METRIC_NAMES[key], "value": finite(result.get(key)), "ci": intervals.get(key)}
                      for key in TABLE_METRICS],
            "confusion": {key: result.get(key) for key in ("tp", "fp", "tn", "fn")}}


def _fold(code: str, report: Mapping | None, targets: Mapping) -> dict:
    """One held-out institution: its test set, figures per sequence (FLAIR first) and its FLAIR target checks."""
    if report is None:
        return {"code": code, "run": False}
    flair = (report.get("by_sequence") or {}).get(EXTERNAL_SEQUENCE) or {}
    located = flair.get("localization") or {}
    measured = {**flair, "pointing_game": located.get("pointing_game"),
                "ci95": {**(flair.get("ci95") or {}), "pointing_game": located.get("pointing_game_ci95")}}
    sequences = []
    for sequence, result in _flair_first(report.get("by_sequence")):
        localization = result.get("localization") or {}
        sequences.append({**_result_row(sequence_name(sequence), result, "sequence"),
                          "pointing_game": finite(localization.get("pointing_game")),
                          "pointing_game_ci": localization.get("pointing_game_ci95"),
                          "masked_slices": localization.get("n")})
    return {"code": code, "run": True, "created_at": report.get("created_at"), "test": report.get("test") or {},
            "train": report.get("train") or {}, "epochs": report.get("epochs"), "best_epoch": report.get("best_epoch"),
            "threshold": report.get("threshold"),
            "all_sequences": _result_row("All sequences", report.get("all_sequences") or {}),
            "sequences": sequences,
            "checks": [_target_check(key, target, measured.get(key), measured["ci95"].get(key))
                       for key, target in (targets or report.get("targets") or {}).items() if key in METRIC_NAMES]}


def external_validation(card: Mapping, fold_reports: Mapping[str, dict]) -> dict | None:
    """Leave-one-institution-out folds: the card's own and those whose files appeared since (these win), each
    institution the card expects listed, run or not; None when the card expects none and none was found."""
    section = card.get("external_validation") or {}
    folds = {**(section.get("folds") or {}), **fold_reports}
    expected = sorted(set(section.get("missing") or []) | set(folds))
    if not expected:
        return None
    targets = (card.get("targets") or {}).get("external") or {}
    institutions = [_fold(code, folds.get(code), targets) for code in expected]
    target_rows = []
    for key, target in targets.items():
        if key in METRIC_NAMES:
            cells = [next((c for c in fold["checks"] if c["key"] == key), None) if fold["run"] else None
                     for fold in institutions]
            target_rows.append({"name": METRIC_NAMES[key], "target": target, "cells": cells})
    return {"method": section.get("method"), "sequence": sequence_name(EXTERNAL_SEQUENCE),
            "institutions": institutions, "target_rows": target_rows,
            "not_run": [fold["code"] for fold in institutions if not fold["run"]]}


# --- Performance on held-out data ------------------------------------------------------------------

def metric_rows(card: Mapping) -> list[dict]:
    """The overall metrics table: one row per split, each figure with its 95% interval."""
    metrics = card.get("metrics") or {}
    return [_result_row(name, metrics[key]) for key, name in SPLIT_NAMES.items() if metrics.get(key)]


def collection_rows(card: Mapping, part: str) -> list[dict]:
    """Per collection of the `part` ("test" or "validation"): all its slices, then per sequence (FLAIR first) and
    per institution, each with its 95% interval (patient-level where the collection names patients)."""
    groups = []
    for source, entry in ((card.get("metrics") or {}).get(f"{part}_by_source") or {}).items():
        rows = [_result_row("All slices", entry.get("all") or {})]
        rows += [_result_row(sequence_name(code), result, "sequence")
                 for code, result in _flair_first(entry.get("by_sequence"))]
        rows += [_result_row(f"Institution {code}", result, "institution")
                 for code, result in sorted((entry.get("by_institution") or {}).items())]
        groups.append({"collection": source, "rows": rows, "recall_by_subtype": entry.get("recall_by_subtype") or {}})
    return groups


def subtype_recall(card: Mapping) -> dict[str, float]:
    """Share of test slices classified correctly per subtype folder, named by collection where there are several."""
    by_source = (card.get("metrics") or {}).get("test_by_source")
    if by_source is None:
        return dict((card.get("metrics") or {}).get("per_class_recall") or {})
    return {f"{source}: {name}": value for source, entry in by_source.items()
            for name, value in (entry.get("recall_by_subtype") or {}).items()}


def threshold(card: Mapping) -> dict | None:
    chosen = card.get("threshold")
    if not chosen:
        return None
    targets = chosen.get("target_sensitivity")
    # A card from before collections holds one target for the whole validation split.
    rows = (sorted(targets.items()) if isinstance(targets, Mapping)
            else [("validation split", targets)] if targets is not None else [])
    return {"value": chosen.get("value"), "rationale": chosen.get("rationale"), "chosen_on": chosen.get("chosen_on"),
            "targets": [{"collection": name, "target": target} for name, target in rows]}


def test_predictions(card: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """Labels, scores and (where recorded) the collection of every test slice."""
    stored = (card.get("metrics") or {}).get("test_predictions")
    if not stored or not stored.get("labels"):
        return None
    sources = np.asarray(stored["sources"], dtype=object) if stored.get("sources") else None
    return np.asarray(stored["labels"], dtype=int), np.asarray(stored["scores"], dtype=float), sources


# --- Calibration ------------------------------------------------------------------------------------

def calibration(card: Mapping) -> dict | None:
    recorded = card.get("calibration")
    if not recorded:
        return None
    rows = [{"name": name, **{field: recorded[key].get(field) for field in ("n", "ece", "brier")}}
            for key, name in CALIBRATION_PARTS.items() if key in recorded]
    return {"method": recorded.get("method"), "temperature": recorded.get("temperature"), "rows": rows}


def reliability_points(bins: list[Mapping]) -> list[dict]:
    """The card's reliability bins that hold slices, with a Wilson 95% interval on each observed tumor rate."""
    points = []
    for row in bins:
        if row.get("n") and row.get("confidence") is not None:
            low, high = evaluate.wilson_interval(round(row["frequency"] * row["n"]), row["n"])
            points.append({"low": row["low"], "high": row["high"], "n": row["n"], "confidence": row["confidence"],
                           "frequency": row["frequency"], "ci_low": low, "ci_high": high})
    return points


def reliability_curves(card: Mapping) -> dict[str, list[dict]]:
    recorded = card.get("calibration") or {}
    return {name: reliability_points(recorded[key]["reliability"]) for key, name in CALIBRATION_PARTS.items()
            if (recorded.get(key) or {}).get("reliability")}


# --- Where the evidence lies, stress suite, quality gate, series rule -------------------------------------

def localization(card: Mapping) -> dict | None:
    """Where the heatmap points on the test split's masked tumor slices; None when the card does not say."""
    return (card.get("localization") or {}).get("test")


def error_positions(card: Mapping) -> dict:
    """Where a whole-volume collection's test errors fall; with no rows, why not."""
    rows, why_none = position_rows(card)
    return {"rows": rows, "why_none": why_none}


def _family_descriptions(description: str) -> dict[str, str]:
    """The card's description lists each family as "- name: what it simulates;"."""
    return dict(re.findall(r"^- (\w+): (.+?)[;.]?$", description or "", flags=re.MULTILINE))


def stress(card: Mapping) -> dict | None:
    """Sensitivity and specificity per perturbation family at the served threshold, with the drop from clean."""
    suite = card.get("stress") or {}
    families = suite.get("families")
    if not families:
        return None
    described = _family_descriptions(suite.get("description", ""))
    sources = sorted({source for entry in families.values() for source in entry.get("by_source") or {}})
    rows = []
    for family, entry in families.items():
        drop = finite(entry.get("sensitivity_drop"))
        rows.append({"family": family.replace("_", " "),
                     "what": "the test slices as they are" if family == "clean" else described.get(family, ""),
                     "n": entry.get("n"), "sensitivity": finite(entry.get("sensitivity")),
                     "specificity": finite(entry.get("specificity")),
                     "drop_points": None if drop is None else round(100 * drop, 1),
                     "flagged": drop is not None and drop > STRESS_DROP_LIMIT,
                     "by_source": [finite(((entry.get("by_source") or {}).get(source) or {}).get("sensitivity"))
                                   for source in sources]})
    empties = [{"name": name.replace("_", " "), **entry} for name, entry in (suite.get("empty_images") or {}).items()]
    return {"n": suite.get("n"), "sources": sources, "rows": rows, "limit_points": round(100 * STRESS_DROP_LIMIT),
            "flagged": [row["family"] for row in rows if row["flagged"]], "empties": empties,
            "empties_as_tumor": [row["name"] for row in empties if row.get("label") == "tumor"]}


def quality_gate(card: Mapping) -> dict | None:
    """What the gate learned from, how many real slices it refuses and how many made negatives it stops."""
    gate = card.get("quality_gate")
    if not gate:
        return None
    parts = {name: gate.get(name) or {} for name in ("validation", "test")}
    kinds = [kind for kind in (parts["validation"].get("made_negatives_refused") or
                               parts["test"].get("made_negatives_refused") or {}) if kind != "all"]
    refused = [{"kind": kind.replace("_", " "), **{name: (part.get("made_negatives_refused") or {}).get(kind)
                                                   for name, part in parts.items()}}
               for kind in kinds + ["all"]]
    whole = gate.get("test_whole_gate") or {}
    whole_rows = [{"name": "All test slices", **whole["all"]}] if whole.get("all") else []
    for source, entry in (whole.get("by_source") or {}).items():
        whole_rows.append({"name": source, **(entry.get("all") or {})})
        whole_rows += [{"name": f"{source}, {sequence_name(code)} (head at least 15%)", "indent": True, **result}
                       for code, result in _flair_first(entry.get("by_sequence_head_at_least_15pct"))]
    return {"training": gate.get("training") or {}, "threshold": gate.get("threshold"),
            "threshold_rationale": gate.get("threshold_rationale"), "rules": gate.get("rules") or {},
            "false_rejection": [{"part": name.capitalize(), "slices": part.get("real_slices"),
                                 "share": part.get("learned_check_false_rejection")}
                                for name, part in parts.items() if part],
            "refused": refused, "whole_gate": whole_rows, "reserved": gate.get("reserved_for_testing")}


def series(card: Mapping) -> dict | None:
    rule = card.get("series")
    if not rule:
        return None
    by_window = sorted((rule.get("auc_by_window") or {}).items(), key=lambda item: int(item[0]))
    return {**rule, "rows": [{"window": int(window), "auc": finite(auc), "chosen": int(window) == rule.get("window")}
                             for window, auc in by_window]}


# --- Ablation (cards from before the new recipe) ------------------------------------------------------

def ablation(card: Mapping) -> dict | None:
    """Augmentation on vs off, when the card records that ablation; None otherwise."""
    recorded = card.get("ablation")
    if not recorded:
        return None
    arms = {"with": recorded["with_augmentation"], "without": recorded["without_augmentation"]}
    rows = [{"key": key, "name": METRIC_NAMES[key], **{
        arm: {"value": data["test"][key], "low": data["test"]["ci95"][key][0], "high": data["test"]["ci95"][key][1]}
        for arm, data in arms.items()}} for key in TABLE_METRICS]
    return {
        "hypothesis": recorded.get("hypothesis", "Data augmentation improves generalisation"),
        "verdict": recorded.get("verdict", "not recorded"), "gain": recorded.get("test_auc_gain"), "rows": rows,
        "arms": [{"name": name, "best_epoch": arms[arm].get("best_epoch"),
                  "validation_auc": arms[arm].get("validation_auc")}
                 for arm, name in (("with", "With augmentation"), ("without", "Without augmentation"))],
    }


# --- The page and its figures ---------------------------------------------------------------------------

def page(card: Mapping, fold_reports: Mapping[str, dict]) -> dict:
    """Everything the report page shows besides the stored figures, from the card and the fold files."""
    test_collections = collection_rows(card, "test")
    return {
        "collections": collections(card), "split_rows": split_rows(card), "parity_rows": parity_rows(card),
        "clean_targets": clean_targets(card), "external": external_validation(card, fold_reports),
        "metric_rows": metric_rows(card), "test_collections": test_collections,
        "collection_parts": [("Test", test_collections), ("Validation", collection_rows(card, "validation"))],
        "threshold": threshold(card), "calibration": calibration(card), "localization": localization(card),
        "error_positions": error_positions(card), "stress": stress(card), "gate": quality_gate(card),
        "series": series(card), "ablation": ablation(card),
    }


def _curves(labels: np.ndarray, scores: np.ndarray, sources: np.ndarray | None) -> list[tuple]:
    """The whole test split, then each collection that holds both labels."""
    groups = [("All test slices", np.ones(len(labels), bool))]
    if sources is not None and len(set(sources)) > 1:
        groups += [(str(name), sources == name) for name in sorted(set(sources))]
    return [(name, labels[rows], scores[rows]) for name, rows in groups if len(np.unique(labels[rows])) == 2]


def build_plots(card: Mapping) -> dict[str, plots.Plot]:
    """Every figure the card allows, keyed by its place on the page."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    figures = {}
    if card.get("history"):
        figures["history"] = plots.training_history(card["history"], card.get("best_epoch"))
    test = (card.get("metrics") or {}).get("test") or {}
    cut = float((card.get("threshold") or {}).get("value", 0.5))
    if all(key in test for key in ("tp", "fp", "tn", "fn")):
        figures["confusion"] = plots.confusion_matrix(test["tp"], test["fp"], test["tn"], test["fn"], cut)
    predictions = test_predictions(card)
    curves = _curves(*predictions) if predictions is not None else []
    if curves:
        labels, scores = curves[0][1], curves[0][2]
        predicted = scores >= cut
        sensitivity = float(predicted[labels == 1].mean())
        false_positive_rate = float(predicted[labels == 0].mean())
        precision = float(labels[predicted].mean()) if predicted.any() else 1.0
        figures["roc"] = plots.roc_curve([(name, *roc_curve(y, p)[:2], evaluate.auc(y, p)) for name, y, p in curves],
                                         (false_positive_rate, sensitivity))
        precisions, recalls, _ = precision_recall_curve(labels, scores)
        figures["pr"] = plots.precision_recall_curve(recalls, precisions, average_precision_score(labels, scores),
                                                     float(labels.mean()), (sensitivity, precision))
        figures["scores"] = plots.score_distribution(scores, labels, cut)
    recall = subtype_recall(card)
    if recall:
        labels_of = {name: "tumor" if class_label(name.rsplit(": ", 1)[-1]) == 1 else "no_tumor" for name in recall}
        figures["subtypes"] = plots.recall_by_subtype(recall, labels_of)
    reliability = reliability_curves(card)
    if reliability:
        figures["reliability"] = plots.reliability(reliability)
    targets = clean_targets(card)
    if targets["measured"]:
        figures["targets"] = plots.metrics_against_targets([row for row in targets["rows"] if row["measured"]],
                                                           targets["measured_on"])
    compared = ablation(card)
    if compared:
        figures["ablation"] = plots.ablation(compared["rows"])
    return figures


def measure_inference(version: ModelVersion, threads: int = 1, images: int = TIMING_IMAGES) -> dict:
    """Time the serving path on phantom slices, one image per call, after one warm-up call."""
    predictor = Predictor(version, threads=threads)
    slices = [make_phantom(seed, tumor=seed % 2 == 0) for seed in range(images)]
    predictor.assess(slices[:1])
    timings = [predictor.assess([gray])[0].timings_ms for gray in slices]
    return {
        "images": images, "threads": threads, "image_size": "224×224 phantom slices",
        "median_ms": {step: statistics.median(t[step] for t in timings) for step in timings[0]},
        "max_total_ms": max(t["total"] for t in timings),
    }
