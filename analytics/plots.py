"""Every analytics figure, in one style: matplotlib on the Agg backend, rendered to PNG bytes.

Figures are drawn when a command builds them, never per request. Each function returns a `Plot`
with the PNG, its title and an alt text that states what the picture shows in words, so the page
can offer the same information to someone who cannot see the image. Colours are the Okabe-Ito
palette (distinguishable with colour-blindness); no tumor is always blue, tumor always vermilion.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

# matplotlib is imported where a figure is drawn, not with this module: the web processes and workers import
# the analytics views and tasks, and would otherwise each load it (0.4 s at every start, and its memory).
if TYPE_CHECKING:
    from matplotlib.figure import Figure

NO_TUMOR_COLOUR = "#0072B2"
TUMOR_COLOUR = "#D55E00"
VALIDATION_COLOUR = "#E69F00"
NEUTRAL_COLOUR = "#555555"
TARGET_COLOUR = "#009E73"
LABEL_COLOURS = {"no_tumor": NO_TUMOR_COLOUR, "tumor": TUMOR_COLOUR}
LABEL_NAMES = {"no_tumor": "No tumor", "tumor": "Tumor"}
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")  # Okabe-Ito
HISTORY_NAMES = {"loss": "Training loss", "logit_loss": "Training loss, slice", "cells_loss": "Training loss, map",
                 "val_loss": "Validation loss", "auc": "Training AUC", "val_auc": "Validation AUC"}
DPI = 110
_drawing = threading.Lock()
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}


@dataclass(frozen=True)
class Plot:
    png: bytes
    title: str
    alt: str


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _render(figure: Figure, title: str, alt: str) -> Plot:
    figure.suptitle(title, fontweight="bold")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return Plot(buffer.getvalue(), title, alt)


def styled(function):
    """Draw inside the shared style, then restore matplotlib's defaults.

    rcParams are process-wide, so drawing is serialised: a worker's threads may draw two reports at once.
    """
    def wrapper(*args, **kwargs) -> Plot:
        import matplotlib

        with _drawing, matplotlib.rc_context(STYLE):
            return function(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
    return wrapper


def _error_bars(values: Sequence[float], lows: Sequence[float | None], highs: Sequence[float | None]) -> np.ndarray:
    """(2, n) distances from each value to its interval; a bootstrap interval need not contain its point
    estimate, and matplotlib refuses negative lengths, so those are drawn as zero."""
    values = np.asarray(values, dtype=float)
    below = values - np.asarray([v if low is None else low for v, low in zip(values, lows)], dtype=float)
    above = np.asarray([v if high is None else high for v, high in zip(values, highs)], dtype=float) - values
    return np.clip(np.array([below, above]), 0.0, None)


def _image_axes(axes, image: np.ndarray, title: str, **kwargs):
    shown = axes.imshow(image, interpolation="nearest", **kwargs)
    axes.set_title(title)
    axes.set_axis_off()
    return shown


# --- Dataset study ------------------------------------------------------------------------------

@styled
def average_and_variability(mean: np.ndarray, std: np.ndarray, group: str, count: int, std_max: float) -> Plot:
    """The average image and the pixel-wise standard deviation of one group, on shared scales."""
    figure = _figure(6.4, 3.0)
    left, right = figure.subplots(1, 2)
    shown = _image_axes(left, mean, "Average", cmap="gray", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=left, shrink=0.85, label="Brightness (0-1)")
    shown = _image_axes(right, std, "Variability (std)", cmap="magma", vmin=0.0, vmax=std_max)
    figure.colorbar(shown, ax=right, shrink=0.85, label="Standard deviation")
    title = f"{group}: average and variability of {count:,} preprocessed images"
    alt = (f"Left: the average of {count:,} {group} images after preprocessing, brightness 0 to 1. Right: the "
           f"standard deviation at each pixel, from 0 to {std_max:.2f}; bright areas vary most between images. "
           f"Overall average brightness {float(mean.mean()):.2f}, average variability {float(std.mean()):.2f}.")
    return _render(figure, title, alt)


@styled
def differences(panels: Mapping[str, np.ndarray], title: str, reference: str) -> Plot:
    """Average differences against a reference group, diverging colours centred on zero, one shared scale."""
    from matplotlib.colors import TwoSlopeNorm

    limit = max(float(np.abs(d).max()) for d in panels.values()) or 1e-6
    figure = _figure(3.4 * len(panels) + 0.9, 3.3)
    axes_list = np.atleast_1d(figure.subplots(1, len(panels)))
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    shown = None
    for axes, (name, difference) in zip(axes_list, panels.items()):
        # One panel needs no title of its own: the figure's title says it.
        shown = _image_axes(axes, difference, f"{name} − {reference}" if len(panels) > 1 else "",
                            cmap="RdBu_r", norm=norm)
    bar = figure.colorbar(shown, ax=list(axes_list), shrink=0.85)
    bar.set_label("Brightness difference")
    parts = []
    for name, difference in panels.items():
        parts.append(f"{name} minus {reference}: largest brighter difference {float(difference.max()):+.2f}, "
                     f"largest darker {float(difference.min()):+.2f}, mean {float(difference.mean()):+.3f}")
    alt = ("Difference of average images on a blue-white-red scale centred on zero (white: no difference), from "
           f"{-limit:.2f} to {limit:.2f}. " + "; ".join(parts) + ".")
    return _render(figure, title, alt)


@styled
def class_balance(counts: Sequence[tuple[str, str, int]]) -> Plot:
    """Images per subfolder, coloured by label. `counts` holds (subfolder, label, images)."""
    from matplotlib.patches import Patch

    figure = _figure(6.4, 0.45 * len(counts) + 1.4)
    axes = figure.subplots()
    names = [name for name, _, _ in counts]
    values = [value for _, _, value in counts]
    bars = axes.barh(names, values, color=[LABEL_COLOURS[label] for _, label, _ in counts])
    axes.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3)
    axes.invert_yaxis()
    axes.set_xlabel("Images")
    axes.set_ylabel("Subfolder")
    axes.set_xlim(0, max(values) * 1.15)
    axes.grid(axis="y", visible=False)
    handles = [Patch(color=c, label=LABEL_NAMES[k]) for k, c in LABEL_COLOURS.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=2)
    alt = "Images per subfolder: " + ", ".join(f"{n} {v:,} ({LABEL_NAMES[lab].lower()})" for n, lab, v in counts) + "."
    return _render(figure, "Class balance: images per subfolder", alt)


@styled
def feature_distributions(features: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> Plot:
    """Box plots of each texture feature per label (whiskers 5th-95th percentile, no outlier dots)."""
    columns = 4
    rows = int(np.ceil(len(names) / columns))
    figure = _figure(9.6, 2.1 * rows + 0.6)
    grid = figure.subplots(rows, columns, squeeze=False)
    medians = []
    for index, axes in enumerate(grid.ravel()):
        if index >= len(names):
            axes.set_visible(False)
            continue
        groups = [features[labels == 0, index], features[labels == 1, index]]
        boxes = axes.boxplot(groups, whis=(5, 95), showfliers=False, patch_artist=True, widths=0.6,
                             medianprops={"color": "black"})
        for patch, colour in zip(boxes["boxes"], (NO_TUMOR_COLOUR, TUMOR_COLOUR)):
            patch.set_facecolor(colour)
            patch.set_alpha(0.75)
        axes.set_xticks([1, 2], ["No tumor", "Tumor"])
        axes.set_title(names[index])
        axes.grid(axis="x", visible=False)
        medians.append(f"{names[index]} {np.median(groups[0]):.3g} vs {np.median(groups[1]):.3g}")
    figure.supylabel("Feature value")
    alt = ("Box plots of the 13 texture features for no-tumor (blue) and tumor (vermilion) images; boxes span the "
           "middle half, whiskers the 5th to 95th percentile. Medians, no tumor vs tumor: " + "; ".join(medians) + ".")
    return _render(figure, "Texture features by label", alt)


# --- Model report -------------------------------------------------------------------------------

def _history_series(history: Sequence[Mapping[str, float]], keys: Sequence[str]) -> list[tuple[str, list[float]]]:
    """The per-epoch values of each key every epoch recorded, in the order given."""
    return [(key, [row[key] for row in history]) for key in keys if all(row.get(key) is not None for row in history)]


def _history_name(key: str) -> str:
    if key.startswith("val_auc_"):
        return f"Validation AUC, {key.removeprefix('val_auc_')}"
    return HISTORY_NAMES.get(key, key)


@styled
def training_history(history: Sequence[Mapping[str, float]], best_epoch: int | None) -> Plot:
    """Training losses and validation AUC (overall and per collection) per epoch, with the kept epoch marked."""
    epochs = np.arange(1, len(history) + 1)
    keys = list(dict.fromkeys(key for row in history for key in row))
    panels = (("Loss", [k for k in keys if k.endswith("loss")]), ("AUC", [k for k in keys if "auc" in k]))
    figure = _figure(9.0, 3.4)
    summary = []
    for axes, (label, wanted) in zip(figure.subplots(1, 2), panels):
        for (key, values), colour in zip(_history_series(history, wanted), PALETTE):
            axes.plot(epochs, values, "--" if key.startswith("val_") else "-", color=colour, marker="o", markersize=3,
                      label=_history_name(key))
            summary.append(f"{_history_name(key).lower()} from {values[0]:.3f} to {values[-1]:.3f}")
        if best_epoch:
            axes.axvline(best_epoch, color=NEUTRAL_COLOUR, linestyle=":", label=f"Kept epoch ({best_epoch})")
        axes.set_xlabel("Epoch")
        axes.set_ylabel(label)
        axes.set_title(label)
        axes.legend(fontsize=8)
    alt = (f"Training over {len(history)} epochs: " + "; ".join(summary) +
           (f". The weights of epoch {best_epoch}, best on validation AUC, were kept." if best_epoch else "."))
    return _render(figure, "Training history: losses and validation AUC per epoch", alt)


@styled
def confusion_matrix(tp: int, fp: int, tn: int, fn: int, threshold: float) -> Plot:
    """Counts of the test split at the decision threshold, rows the truth, columns the prediction."""
    matrix = np.array([[tn, fp], [fn, tp]])
    figure = _figure(4.6, 3.9)
    axes = figure.subplots()
    axes.imshow(matrix, cmap="Blues", vmin=0)
    axes.grid(False)
    names = ["No tumor", "Tumor"]
    axes.set_xticks([0, 1], names)
    axes.set_yticks([0, 1], names)
    axes.set_xlabel("Predicted")
    axes.set_ylabel("Actual")
    peak = matrix.max() or 1
    for (row, column), value in np.ndenumerate(matrix):
        share = value / max(matrix[row].sum(), 1)
        axes.text(column, row, f"{value:,}\n({share:.1%} of row)", ha="center", va="center", fontsize=11,
                  color="white" if value > peak * 0.55 else "black")
    alt = (f"Confusion matrix on the test split at threshold {threshold:.3f}: {tp} tumors found, {fn} tumors "
           f"missed, {tn} no-tumor images cleared, {fp} false alarms.")
    return _render(figure, "Confusion matrix (test split)", alt)


@styled
def roc_curve(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], point: tuple[float, float]) -> Plot:
    """ROC curves given as (name, false positive rates, true positive rates, AUC), the first one the whole test
    split with the operating point on it."""
    figure = _figure(4.6, 4.2)
    axes = figure.subplots()
    for index, ((name, fpr, tpr, auc), colour) in enumerate(zip(curves, (TUMOR_COLOUR, *PALETTE))):
        axes.plot(fpr, tpr, color=colour, linewidth=2 if index == 0 else 1.3, linestyle="-" if index == 0 else "--",
                  label=f"{name} (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], color=NEUTRAL_COLOUR, linestyle=":", label="Chance")
    axes.plot(*point, "o", color="black", label="Operating threshold")
    axes.set_xlabel("False positive rate (1 − specificity)")
    axes.set_ylabel("True positive rate (sensitivity)")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.legend(loc="lower right", fontsize=8)
    alt = ("ROC curves on the test split: " + "; ".join(f"{name}, area under the curve {auc:.3f}"
                                                         for name, _, _, auc in curves) +
           f". At the operating threshold the false positive rate is {point[0]:.3f} and the sensitivity "
           f"{point[1]:.3f} on all test slices.")
    return _render(figure, "ROC curve (test split)", alt)


@styled
def precision_recall_curve(recall: np.ndarray, precision: np.ndarray, average_precision: float,
                           prevalence: float, point: tuple[float, float]) -> Plot:
    figure = _figure(4.6, 4.2)
    axes = figure.subplots()
    axes.step(recall, precision, where="post", color=TUMOR_COLOUR, linewidth=2,
              label=f"CNN (average precision {average_precision:.3f})")
    axes.axhline(prevalence, color=NEUTRAL_COLOUR, linestyle=":", label=f"Chance ({prevalence:.2f})")
    axes.plot(*point, "o", color="black", label="Operating threshold")
    axes.set_xlabel("Recall (sensitivity)")
    axes.set_ylabel("Precision")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.legend(loc="lower left")
    alt = (f"Precision-recall curve on the test split, average precision {average_precision:.3f} against "
           f"{prevalence:.2f} by chance. At the operating threshold recall is {point[0]:.3f} and precision "
           f"{point[1]:.3f}.")
    return _render(figure, "Precision-recall curve (test split)", alt)


@styled
def reliability(curves: Mapping[str, Sequence[Mapping[str, float]]]) -> Plot:
    """Reliability diagram: observed tumor rate against mean predicted probability per bin, one line per set of
    slices (Wilson 95% intervals on the last, as served on test), with the last set's counts below."""
    figure = _figure(5.2, 5.2)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color=NEUTRAL_COLOUR, linestyle=":", label="Perfect calibration")
    names = list(curves)
    for name, colour in zip(names, (VALIDATION_COLOUR, NO_TUMOR_COLOUR, TUMOR_COLOUR)[-len(names):]):
        points = curves[name]
        confidence = [p["confidence"] for p in points]
        frequency = [p["frequency"] for p in points]
        if name == names[-1]:
            errors = _error_bars(frequency, [p["ci_low"] for p in points], [p["ci_high"] for p in points])
            top.errorbar(confidence, frequency, yerr=errors, fmt="o-", color=colour, capsize=3, label=name)
        else:
            top.plot(confidence, frequency, "s--", color=colour, markersize=4, label=name)
    top.set_ylabel("Observed share of tumors")
    top.set_ylim(-0.02, 1.02)
    top.legend(loc="upper left", fontsize=8)
    last = curves[names[-1]]
    bottom.bar([p["low"] for p in last], [p["n"] for p in last], width=[p["high"] - p["low"] for p in last],
               align="edge", color=NEUTRAL_COLOUR)
    bottom.set_ylabel("Slices")
    bottom.set_xlabel("Predicted tumor probability")
    bottom.set_xlim(0, 1)
    parts = ", ".join(f"{p['low']:.1f}-{p['high']:.1f}: predicted {p['confidence']:.2f}, observed "
                      f"{p['frequency']:.2f} (n={p['n']})" for p in last)
    alt = ("Reliability diagram: points on the diagonal would mean the predicted probability equals the observed "
           f"share of tumors. Lines: {', '.join(names)}. {names[-1]}, per probability bin: {parts}.")
    return _render(figure, "Calibration (reliability)", alt)


@styled
def score_distribution(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Plot:
    figure = _figure(6.0, 3.4)
    axes = figure.subplots()
    edges = np.linspace(0, 1, 41)
    # A good model piles most images at 0 and 1; a log scale keeps the few in between visible.
    logarithmic = len(scores) > 200
    for value, key in ((0, "no_tumor"), (1, "tumor")):
        axes.hist(scores[labels == value], bins=edges, alpha=0.6, color=LABEL_COLOURS[key], log=logarithmic,
                  label=f"{LABEL_NAMES[key]} (n={int((labels == value).sum())})")
    axes.axvline(threshold, color="black", linestyle="--", label=f"Threshold {threshold:.3f}")
    axes.set_xlabel("Predicted tumor probability")
    axes.set_ylabel("Images (log scale)" if logarithmic else "Images")
    axes.legend()
    missed = int(((scores < threshold) & (labels == 1)).sum())
    alarms = int(((scores >= threshold) & (labels == 0)).sum())
    alt = (f"Histogram of predicted tumor probabilities on the test split, by true label, with the threshold at "
           f"{threshold:.3f}: {missed} tumor images fall below it and {alarms} no-tumor images above it.")
    return _render(figure, "Predicted probabilities by true label (test split)", alt)


@styled
def recall_by_subtype(recall: Mapping[str, float], labels: Mapping[str, str]) -> Plot:
    """Share of each subfolder classified correctly (recall for tumor types, specificity for normals)."""
    names = list(recall)
    figure = _figure(6.0, 0.5 * len(names) + 1.4)
    axes = figure.subplots()
    bars = axes.barh(names, [recall[n] for n in names], color=[LABEL_COLOURS.get(labels.get(n), NEUTRAL_COLOUR)
                                                                for n in names])
    axes.bar_label(bars, labels=[f"{recall[n]:.1%}" for n in names], padding=3)
    axes.invert_yaxis()
    axes.set_xlim(0, 1.12)
    axes.set_xlabel("Share classified correctly")
    axes.set_ylabel("Subfolder")
    axes.grid(axis="y", visible=False)
    alt = "Share of test images classified correctly per subfolder: " + ", ".join(
        f"{n} {recall[n]:.1%}" for n in names) + "."
    return _render(figure, "Share correct per subfolder (test split)", alt)


@styled
def metrics_against_targets(rows: Sequence[Mapping], measured_on: str) -> Plot:
    """Each metric with its 95% CI beside its target. Rows: name, value, low, high (None: unknown), target."""
    figure = _figure(6.0, 0.7 * len(rows) + 1.7)
    axes = figure.subplots()
    positions = np.arange(len(rows))
    values = [r["value"] for r in rows]
    errors = _error_bars(values, [r["low"] for r in rows], [r["high"] for r in rows])
    axes.errorbar(values, positions, xerr=errors, fmt="o", color=TUMOR_COLOUR, capsize=4, label="Measured (95% CI)")
    axes.scatter([r["target"] for r in rows], positions, marker="|", s=400, color=TARGET_COLOUR, label="Target",
                 zorder=3)
    axes.set_yticks(positions, [r["name"] for r in rows])
    axes.invert_yaxis()
    axes.set_xlabel(f"Value on the {measured_on}")
    low = min(min(r["value"] if r["low"] is None else min(r["low"], r["value"]) for r in rows),
              min(r["target"] for r in rows))
    axes.set_xlim(max(0.0, low - 0.05), 1.005)
    axes.grid(axis="y", visible=False)
    figure.legend(loc="outside lower center", ncols=2)
    alt = f"Metrics on the {measured_on} with 95% confidence intervals against the targets: " + "; ".join(
        f"{r['name']} {r['value']:.3f}" + (f" (CI {r['low']:.3f}-{r['high']:.3f})" if r["low"] is not None else "")
        + f", target {r['target']:.2f}" for r in rows) + "."
    return _render(figure, f"Targets on the {measured_on}", alt)


@styled
def ablation(rows: Sequence[Mapping]) -> Plot:
    """Test metrics with and without augmentation side by side. Rows: name, with, without (value, low, high)."""
    figure = _figure(6.4, 3.6)
    axes = figure.subplots()
    positions = np.arange(len(rows))
    width = 0.38
    for offset, key, colour, name in ((-width / 2, "with", TUMOR_COLOUR, "With augmentation"),
                                      (width / 2, "without", NEUTRAL_COLOUR, "Without augmentation")):
        values = [r[key]["value"] for r in rows]
        errors = _error_bars(values, [r[key]["low"] for r in rows], [r[key]["high"] for r in rows])
        axes.bar(positions + offset, values, width, yerr=errors, capsize=3, color=colour, alpha=0.85, label=name)
    axes.set_xticks(positions, [r["name"] for r in rows])
    low = min(min(r["with"]["low"], r["without"]["low"]) for r in rows)
    axes.set_ylim(max(0.0, low - 0.05), 1.0)
    axes.set_ylabel("Value on the test split (95% CI)")
    axes.grid(axis="x", visible=False)
    axes.legend(loc="lower right")
    alt = "Test metrics of the same network trained with and without data augmentation: " + "; ".join(
        f"{r['name']} {r['with']['value']:.3f} with, {r['without']['value']:.3f} without" for r in rows) + "."
    return _render(figure, "Augmentation ablation: with vs without data augmentation", alt)


@styled
def data_learning_curve(points: Sequence[Mapping]) -> Plot:
    """Test AUC, sensitivity and specificity against the number of training images."""
    figure = _figure(6.4, 3.8)
    axes = figure.subplots()
    sizes = [p["train_images"] for p in points]
    summary = []
    for key, name, colour, marker in (("auc", "AUC", TUMOR_COLOUR, "o"), ("sensitivity", "Sensitivity",
                                      NO_TUMOR_COLOUR, "s"), ("specificity", "Specificity", TARGET_COLOUR, "^")):
        # None (nothing to count at a point) becomes NaN: a gap in the line, not an error.
        values = np.array([p["test"][key] for p in points], dtype=float)
        low = np.array([p["test"]["ci95"][key][0] for p in points], dtype=float)
        high = np.array([p["test"]["ci95"][key][1] for p in points], dtype=float)
        axes.plot(sizes, values, marker=marker, color=colour, label=name)
        axes.fill_between(sizes, low, high, color=colour, alpha=0.12)
        summary.append(f"{name} " + ", ".join(f"{v:.3f}" for v in values))
    axes.set_xscale("log")
    axes.set_xticks(sizes, [f"{s:,}\n({p['fraction']:.0%})" for s, p in zip(sizes, points)])
    axes.minorticks_off()
    axes.set_xlabel("Training images (share of the train split)")
    axes.set_ylabel("Value on the test split")
    lows = [p["test"]["ci95"][k][0] for p in points for k in ("auc", "sensitivity", "specificity")]
    axes.set_ylim(max(0.0, np.nanmin(np.array(lows, dtype=float), initial=1.0) - 0.05), 1.01)
    axes.legend(loc="lower right")
    alt = (f"Test metrics of the same network trained on {', '.join(f'{s:,}' for s in sizes)} images, with 95% "
           "confidence bands: " + "; ".join(summary) + ".")
    return _render(figure, "Learning curve: performance against training-set size", alt)
