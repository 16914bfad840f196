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

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

NO_TUMOR_COLOUR = "#0072B2"
TUMOR_COLOUR = "#D55E00"
TRAIN_COLOUR = "#0072B2"
VALIDATION_COLOUR = "#E69F00"
NEUTRAL_COLOUR = "#555555"
TARGET_COLOUR = "#009E73"
LABEL_COLOURS = {"no_tumor": NO_TUMOR_COLOUR, "tumor": TUMOR_COLOUR}
LABEL_NAMES = {"no_tumor": "No tumor", "tumor": "Tumor"}
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

    rcParams are process-wide, so drawing is serialised: a web process may draw a report on first
    view while another thread draws another.
    """
    def wrapper(*args, **kwargs) -> Plot:
        with _drawing, matplotlib.rc_context(STYLE):
            return function(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
    return wrapper


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

@styled
def training_history(history: Sequence[Mapping[str, float]], best_epoch: int | None) -> Plot:
    """Loss and accuracy per epoch, training vs validation, with the kept epoch marked."""
    epochs = np.arange(1, len(history) + 1)
    figure = _figure(9.0, 3.4)
    panels = figure.subplots(1, 2)
    summary = []
    for axes, metric, label in zip(panels, ("loss", "accuracy"), ("Loss (binary cross-entropy)", "Accuracy")):
        for key, name, colour, style in ((metric, "Training", TRAIN_COLOUR, "-"),
                                         (f"val_{metric}", "Validation", VALIDATION_COLOUR, "--")):
            values = [row.get(key) for row in history]
            if all(v is not None for v in values):
                axes.plot(epochs, values, style, color=colour, marker="o", markersize=3, label=name)
                summary.append(f"{name.lower()} {metric} from {values[0]:.3f} to {values[-1]:.3f}")
        if best_epoch:
            axes.axvline(best_epoch, color=NEUTRAL_COLOUR, linestyle=":", label=f"Kept epoch ({best_epoch})")
        axes.set_xlabel("Epoch")
        axes.set_ylabel(label)
        axes.set_title(label.split(" (")[0])
        axes.legend()
    alt = (f"Learning curves over {len(history)} epochs: " + "; ".join(summary) +
           (f". The weights of epoch {best_epoch}, best on validation AUC, were kept." if best_epoch else "."))
    return _render(figure, "Training history: loss and accuracy per epoch", alt)


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
def roc_curve(fpr: np.ndarray, tpr: np.ndarray, auc: float, point: tuple[float, float]) -> Plot:
    figure = _figure(4.6, 4.2)
    axes = figure.subplots()
    axes.plot(fpr, tpr, color=TUMOR_COLOUR, linewidth=2, label=f"CNN (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], color=NEUTRAL_COLOUR, linestyle=":", label="Chance")
    axes.plot(*point, "o", color="black", label="Operating threshold")
    axes.set_xlabel("False positive rate (1 − specificity)")
    axes.set_ylabel("True positive rate (sensitivity)")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.legend(loc="lower right")
    alt = (f"ROC curve on the test split, area under the curve {auc:.3f}. At the operating threshold the false "
           f"positive rate is {point[0]:.3f} and the sensitivity {point[1]:.3f}.")
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
def calibration(bins: Sequence[Mapping[str, float]]) -> Plot:
    """Reliability diagram: observed share of tumors per bin of predicted probability, with counts below."""
    filled = [b for b in bins if b["count"]]
    figure = _figure(4.8, 5.0)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color=NEUTRAL_COLOUR, linestyle=":", label="Perfect calibration")
    predicted = [b["mean_predicted"] for b in filled]
    observed = [b["observed"] for b in filled]
    errors = np.array([[b["observed"] - b["ci_low"], b["ci_high"] - b["observed"]] for b in filled]).T
    top.errorbar(predicted, observed, yerr=errors, fmt="o-", color=TUMOR_COLOUR, capsize=3,
                 label="CNN (95% CI per bin)")
    top.set_ylabel("Observed share of tumors")
    top.set_ylim(-0.02, 1.02)
    top.legend(loc="upper left")
    edges = [b["low"] for b in bins] + [bins[-1]["high"]]
    bottom.hist([b["low"] for b in bins], bins=edges, weights=[b["count"] for b in bins], color=NEUTRAL_COLOUR)
    bottom.set_ylabel("Images")
    bottom.set_xlabel("Predicted tumor probability")
    bottom.set_xlim(0, 1)
    parts = ", ".join(f"{b['low']:.1f}-{b['high']:.1f}: predicted {b['mean_predicted']:.2f}, observed "
                      f"{b['observed']:.2f} (n={b['count']})" for b in filled)
    alt = ("Reliability diagram on the test split. Points on the diagonal would mean the predicted probability "
           "equals the observed share of tumors. Per probability bin: " + parts + ".")
    return _render(figure, "Calibration (reliability) on the test split", alt)


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
def metrics_against_targets(rows: Sequence[Mapping]) -> Plot:
    """H1: each metric with its 95% CI beside the project's target. Rows: name, value, low, high, target."""
    figure = _figure(6.0, 0.7 * len(rows) + 1.7)
    axes = figure.subplots()
    positions = np.arange(len(rows))
    values = [r["value"] for r in rows]
    errors = np.array([[r["value"] - r["low"], r["high"] - r["value"]] for r in rows]).T
    axes.errorbar(values, positions, xerr=errors, fmt="o", color=TUMOR_COLOUR, capsize=4, label="Test (95% CI)")
    axes.scatter([r["target"] for r in rows], positions, marker="|", s=400, color=TARGET_COLOUR, label="Target",
                 zorder=3)
    axes.set_yticks(positions, [r["name"] for r in rows])
    axes.invert_yaxis()
    axes.set_xlabel("Value on the test split")
    low = min(min(r["low"] for r in rows), min(r["target"] for r in rows))
    axes.set_xlim(max(0.0, low - 0.05), 1.005)
    axes.grid(axis="y", visible=False)
    figure.legend(loc="outside lower center", ncols=2)
    alt = "Test metrics with 95% confidence intervals against the targets: " + "; ".join(
        f"{r['name']} {r['value']:.3f} (CI {r['low']:.3f}-{r['high']:.3f}), target {r['target']:.2f}" for r in rows
    ) + "."
    return _render(figure, "H1: test metrics against the targets", alt)


@styled
def ablation(rows: Sequence[Mapping]) -> Plot:
    """H2: test metrics with and without augmentation side by side. Rows: name, with, without (value, low, high)."""
    figure = _figure(6.4, 3.6)
    axes = figure.subplots()
    positions = np.arange(len(rows))
    width = 0.38
    for offset, key, colour, name in ((-width / 2, "with", TUMOR_COLOUR, "With augmentation"),
                                      (width / 2, "without", NEUTRAL_COLOUR, "Without augmentation")):
        values = [r[key]["value"] for r in rows]
        errors = np.array([[r[key]["value"] - r[key]["low"], r[key]["high"] - r[key]["value"]] for r in rows]).T
        axes.bar(positions + offset, values, width, yerr=errors, capsize=3, color=colour, alpha=0.85, label=name)
    axes.set_xticks(positions, [r["name"] for r in rows])
    low = min(min(r["with"]["low"], r["without"]["low"]) for r in rows)
    axes.set_ylim(max(0.0, low - 0.05), 1.0)
    axes.set_ylabel("Value on the test split (95% CI)")
    axes.grid(axis="x", visible=False)
    axes.legend(loc="lower right")
    alt = "Test metrics of the same network trained with and without data augmentation: " + "; ".join(
        f"{r['name']} {r['with']['value']:.3f} with, {r['without']['value']:.3f} without" for r in rows) + "."
    return _render(figure, "H2: with vs without data augmentation", alt)


@styled
def data_learning_curve(points: Sequence[Mapping]) -> Plot:
    """Test AUC, sensitivity and specificity against the number of training images."""
    figure = _figure(6.4, 3.8)
    axes = figure.subplots()
    sizes = [p["train_images"] for p in points]
    summary = []
    for key, name, colour, marker in (("auc", "AUC", TUMOR_COLOUR, "o"), ("sensitivity", "Sensitivity",
                                      NO_TUMOR_COLOUR, "s"), ("specificity", "Specificity", TARGET_COLOUR, "^")):
        values = np.array([p["test"][key] for p in points])
        low = np.array([p["test"]["ci95"][key][0] for p in points])
        high = np.array([p["test"]["ci95"][key][1] for p in points])
        axes.plot(sizes, values, marker=marker, color=colour, label=name)
        axes.fill_between(sizes, low, high, color=colour, alpha=0.12)
        summary.append(f"{name} " + ", ".join(f"{v:.3f}" for v in values))
    axes.set_xscale("log")
    axes.set_xticks(sizes, [f"{s:,}\n({p['fraction']:.0%})" for s, p in zip(sizes, points)])
    axes.minorticks_off()
    axes.set_xlabel("Training images (share of the train split)")
    axes.set_ylabel("Value on the test split")
    axes.set_ylim(max(0.0, min(p["test"]["ci95"][k][0] for p in points for k in ("auc", "sensitivity",
                                                                                   "specificity")) - 0.05), 1.01)
    axes.legend(loc="lower right")
    alt = (f"Test metrics of the same network trained on {', '.join(f'{s:,}' for s in sizes)} images, with 95% "
           "confidence bands: " + "; ".join(summary) + ".")
    return _render(figure, "Learning curve: performance against training-set size", alt)
