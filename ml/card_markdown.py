"""The figures of a model card as Markdown tables, for docs/model.md (so the page cannot drift from the card).

    python -m ml.card_markdown [VERSION_FOLDER]   # default: the active version in models/

prints the block that docs/model.md holds between its "card figures" markers; a test compares the two. The
external validation folds are read from their files (models/external-validation/), as the model report does,
because they finish after the release is trained.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

from ml.figures import position_rows
from ml.registry import EXTERNAL_FOLDER, ModelRegistry

BEGIN = "<!-- card figures: begin (python -m ml.card_markdown; do not edit by hand) -->"
END = "<!-- card figures: end -->"
SEQUENCES = {"flair": "FLAIR", "t1pre": "T1 before contrast", "t1post": "T1 after contrast"}
RATES = ("auc", "sensitivity", "specificity")


def _number(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _with_ci(result: Mapping, key: str) -> str:
    return _value_and_interval(result.get(key), (result.get("ci95") or {}).get(key))


def _value_and_interval(value, interval) -> str:
    if not interval or None in interval:
        return _number(value)
    return f"{_number(value)} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _result_row(name: str, result: Mapping) -> list[str]:
    patients = result.get("patients")
    return [name, str(result.get("n", "—")), str(patients) if patients else "—",
            *(_with_ci(result, key) for key in RATES)]


def results(card: Mapping) -> str:
    metrics = card["metrics"]
    rows = [_result_row("**All test slices**", metrics["test"])]
    for source, entry in metrics.get("test_by_source", {}).items():
        rows.append(_result_row(f"**{source}**", entry["all"]))
        rows += [_result_row(f"{source}, {SEQUENCES.get(code, code)}", result)
                 for code, result in sorted(entry.get("by_sequence", {}).items())]
        rows += [_result_row(f"{source}, institution {code}", result)
                 for code, result in sorted(entry.get("by_institution", {}).items())]
    return _table(["Test slices", "n", "Patients", "AUC [95% CI]", "Sensitivity [95% CI]",
                   "Specificity [95% CI]"], rows)


def targets(card: Mapping) -> str:
    recorded = card["targets"]
    measured = card["metrics"]["test_by_source"].get("brain-mri", {}).get("all", {})
    rows = [[key.capitalize() if key != "auc" else "AUC", f"{recorded[key]:.2f}", _with_ci(measured, key),
             "met" if measured.get(key, 0) >= recorded[key] else "**not met**"] for key in RATES if key in recorded]
    return _table(["On the " + recorded.get("measured_on", "test split"), "Target", "Measured [95% CI]", ""], rows)


def threshold_and_calibration(card: Mapping) -> str:
    calibration = card["calibration"]
    rows = [["Threshold (chosen on validation)", _number(card["threshold"]["value"], 4)],
            ["Temperature", _number(calibration["temperature"], 2)]]
    for key, name in (("validation_before", "validation, before scaling"),
                      ("validation_after", "validation, after scaling"), ("test", "test, as served")):
        part = calibration.get(key)
        if part:
            rows.append([f"ECE / Brier, {name} (n={part['n']})", f"{part['ece']:.3f} / {part['brier']:.3f}"])
    return _table(["Threshold and calibration", ""], rows)


def localization(card: Mapping) -> str:
    located = (card.get("localization") or {}).get("test") or {}
    if not located.get("n"):
        return "The card records no tumor slices with a mask on the test split."
    cells = located.get("cells_above_half") or {}
    rows = [["Tumor slices with a mask (test)", f"{located['n']} ({located.get('patients', '—')} patients)"],
            ["Pointing game [95% CI]", _with_ci({"ci95": {"p": located.get("pointing_game_ci95")},
                                                 "p": located.get("pointing_game")}, "p")],
            ["Share of the evidence on the lesion (mean / median)",
             f"{_number(located.get('mass_in_mask_mean'))} / {_number(located.get('mass_in_mask_median'))}"]]
    rows += [[f"Map cells above 0.5, {name.replace('_', ' ')} slices", f"{share:.3f}"]
             for name, share in cells.items() if isinstance(share, (int, float))]
    return _table(["Where the evidence lies", ""], rows)


def stress(card: Mapping) -> str:
    families = card["stress"]["families"]
    rows = [[name.replace("_", " "), _number(entry["sensitivity"]), _number(entry["specificity"]),
             f"{100 * entry['sensitivity_drop']:.1f}"] for name, entry in families.items()]
    return _table(["Stress family (test split)", "Sensitivity", "Specificity", "Sensitivity drop (points)"], rows)


def gate(card: Mapping) -> str:
    recorded = card["quality_gate"]
    rows = [["Learned check's threshold", _number(recorded["threshold"], 4)]]
    for part in ("validation", "test"):
        entry = recorded.get(part) or {}
        if entry:
            rows.append([f"Real {part} slices refused by the learned check (of {entry['real_slices']})",
                         f"{entry['learned_check_false_rejection']:.2%}"])
            refused = (entry.get("made_negatives_refused") or {}).get("all")
            if refused is not None:
                rows.append([f"Made negatives refused ({part})", f"{refused:.1%}"])
    whole = (recorded.get("test_whole_gate") or {}).get("by_source") or {}
    for source, entry in whole.items():
        parts = [(f"{source}, all test slices", entry.get("all"))]
        parts += [(f"{source}, {SEQUENCES.get(code, code)} with head ≥ 15%", result)
                  for code, result in sorted((entry.get("by_sequence_head_at_least_15pct") or {}).items())]
        rows += [[f"Whole gate, {name} (n={result['n']})",
                  f"{result['false_rejection']:.2%} refused ({result['refused']}, of which "
                  f"{result['refused_blank_images']} blank)"] for name, result in parts if result]
    return _table(["Quality gate", ""], rows)


def serving(card: Mapping) -> str:
    parity = (card.get("quantization") or {}).get("parity") or {}
    rows = [["Served graph", f"{card['serving']['file']} ({card['serving']['precision']})"]]
    if parity:
        rows += [["int8 − fp32 test AUC", f"{parity['auc_difference']:+.5f}"],
                 ["Same label, int8 vs fp32", f"{parity['same_label']:.2%}"],
                 ["Same heatmap peak cell on tumor slices", f"{parity['same_peak_cell_on_tumor_slices']:.2%}"],
                 ["Largest probability difference", f"{parity['max_probability_difference']:.4f}"]]
    series = card.get("series")
    if series:
        auc = series["auc_by_window"].get(str(series["window"]))
        rows.append([f"Series rule: window ({series['chosen_on']})",
                     f"{series['window']} slices" + (f" (validation AUC {auc:.3f})" if auc is not None else "")])
    return _table(["Serving", ""], rows)


def external(card: Mapping, folder: Path) -> str:
    fingerprint = card["hyperparameters"].get("recipe_fingerprint", "")
    reports = [json.loads(path.read_text()) for path in sorted(folder.glob(f"{fingerprint}-*.json"))]
    if not reports:
        return "No external validation fold of this recipe has finished yet."
    rows = []
    for report in reports:
        flair = report["by_sequence"].get("flair", {})
        pointing = (flair.get("localization") or {})
        rows.append([report["institution"], f"{report['test']['images']} ({report['test']['patients']} patients)",
                     f"{report['epochs']} (best {report['best_epoch']})",
                     *(_with_ci(flair, key) for key in RATES),
                     _with_ci({"p": pointing.get("pointing_game"), "ci95": {"p": pointing.get("pointing_game_ci95")}},
                              "p")])
    return _table(["Held out", "Test slices", "Epochs", "FLAIR AUC [95% CI]", "FLAIR sensitivity",
                   "FLAIR specificity", "FLAIR pointing game"], rows)


def errors_by_position(card: Mapping) -> str:
    """Where a whole-volume collection's errors fall (cards from before this breakdown have none)."""
    found, why_none = position_rows(card)
    if not found:
        return why_none
    rows = [[f"{row['collection']} {row['slices']}", str(row["n"]),
             f"{row['measure']} {_value_and_interval(row['value'], row['ci95'])}"] for row in found]
    return _table(["Test slices", "n", "At the served threshold [95% CI]"], rows)


def figures_markdown(card: Mapping, external_folder: Path) -> str:
    sections = [("Results on the test split", results(card)), ("Targets", targets(card)),
                ("Threshold and calibration", threshold_and_calibration(card)),
                ("Where the evidence lies", localization(card)),
                ("Where the errors fall", errors_by_position(card)), ("Stress suite", stress(card)),
                ("Quality gate", gate(card)), ("Serving", serving(card)),
                ("External validation (leave one institution out)", external(card, external_folder))]
    body = "\n\n".join(f"### {title}\n\n{table}" for title, table in sections)
    return f"{BEGIN}\n\n_Version {card['version']}, created {card['created_at']}._\n\n{body}\n\n{END}"


def main(argv: list[str]) -> None:
    if argv:
        path = Path(argv[0])
        card, registry_root = json.loads((path / "card.json").read_text()), path.parent
    else:
        registry = ModelRegistry(Path(__file__).resolve().parent.parent / "models")
        card, registry_root = registry.active().card, registry.root
    print(figures_markdown(card, Path(registry_root) / EXTERNAL_FOLDER))


if __name__ == "__main__":
    main(sys.argv[1:])
