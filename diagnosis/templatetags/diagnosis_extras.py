from urllib.parse import urlencode

from django import template
from django.urls import reverse
from django.utils.html import format_html

from diagnosis.selectors import feature_rows

register = template.Library()

LABELS = {"tumor": "Tumor suspected", "no_tumor": "No tumor found"}
ACQUISITION_LABELS = {
    "modality": "Modality", "series_description": "Series", "sequence_name": "Sequence",
    "slice_thickness": "Slice thickness (mm)", "pixel_spacing": "Pixel spacing (mm)", "frame": "Frame",
    "magnetic_field_strength": "Field strength (T)", "repetition_time": "Repetition time (ms)",
    "echo_time": "Echo time (ms)", "patient_sex": "Sex", "patient_age": "Age",
}
FEATURE_LABELS = {
    "mean": "Mean brightness", "std": "Standard deviation", "asm": "Angular second moment",
    "contrast": "Contrast (GLCM)", "energy": "Energy (GLCM)",
}


@register.filter
def percent(value) -> str:
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.1f}%"


@register.filter
def figure(value) -> str:
    """A measurement with four significant digits, without scientific notation for everyday sizes."""
    if value is None or value == "":
        return "—"
    value = float(value)
    return f"{value:.4g}" if value == 0 or 1e-4 <= abs(value) < 1e6 else f"{value:.3e}"


QUALITY_REASONS = {"not_mr": "Not an MR image (DICOM modality)", "colour": "In colour", "too_small": "Too small",
                   "empty": "Empty or uniform", "noise": "Noise", "too_little_head": "Too little of a head",
                   "not_brain_mri": "Not a brain MRI slice"}


@register.filter
def quality_reason(code: str) -> str:
    """A quality gate code (ml.gate) in words, for tables."""
    return QUALITY_REASONS.get(code, code or "—")


@register.filter
def label_display(label: str) -> str:
    return LABELS.get(label, label or "—")


@register.filter
def acquisition_label(key: str) -> str:
    return ACQUISITION_LABELS.get(key, key.replace("_", " ").capitalize())


@register.filter
def acquisition_value(value) -> str:
    """A pixel spacing [0.9, 0.9] reads 0.9 × 0.9."""
    if isinstance(value, (list, tuple)):
        return " × ".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


@register.simple_tag
def model_report_link(version: str):
    url = reverse("analytics:model-report") + "?" + urlencode({"version": version})
    return format_html('<a href="{}">{}</a>', url, version)


@register.inclusion_tag("diagnosis/includes/probability_meter.html")
def probability_meter(prediction):
    """The probability as a bar, with the decision threshold marked on it."""
    probability, threshold = _clamp(prediction.probability), _clamp(prediction.threshold)
    anchor = "start" if threshold < 0.15 else "end" if threshold > 0.85 else "middle"
    return {"prediction": prediction, "fill": f"{probability * 100:.2f}%", "mark": f"{threshold * 100:.2f}%",
            "anchor": anchor, "above": prediction.probability >= prediction.threshold}


@register.inclusion_tag("diagnosis/includes/feature_table.html")
def feature_table(prediction, image_number=1):
    rows = [_beside_ranges(row) for row in feature_rows(prediction)]
    return {"rows": rows, "has_ranges": any(row["strip"] for row in rows), "image_number": image_number}


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, float(value)))


def _beside_ranges(row: dict) -> dict:
    """A feature row with where its value lies against each label's typical range, in words and as a strip."""
    row = {**row, "label": FEATURE_LABELS.get(row["name"], row["name"].replace("_", " ").capitalize()),
           "strip": None, "comparison": ""}
    no_tumor, tumor, value = row["typical_no_tumor"], row["typical_tumor"], row["value"]
    if not (no_tumor and tumor) or value is None:
        return row
    low, high = min(value, *no_tumor, *tumor), max(value, *no_tumor, *tumor)
    margin = (high - low) * 0.08 or abs(high) * 0.1 or 1.0
    low, high = low - margin, high + margin

    def x(v: float) -> float:
        return (v - low) / (high - low) * 100

    def band(bounds) -> dict:
        return {"x": f"{x(bounds[0]):.2f}%", "width": f"{max(x(bounds[1]) - x(bounds[0]), 0.6):.2f}%"}

    row["strip"] = {"no_tumor": band(no_tumor), "tumor": band(tumor), "value": f"{x(value):.2f}%"}
    row["comparison"] = _comparison(value, no_tumor, tumor)
    return row


def _comparison(value: float, no_tumor, tumor) -> str:
    in_no, in_tumor = no_tumor[0] <= value <= no_tumor[1], tumor[0] <= value <= tumor[1]
    if in_no and in_tumor:
        return "within both typical ranges"
    if in_no:
        return "typical of no tumor"
    if in_tumor:
        return "typical of tumor"
    if value < min(no_tumor[0], tumor[0]):
        return "below both typical ranges"
    if value > max(no_tumor[1], tumor[1]):
        return "above both typical ranges"
    return "between the two typical ranges"


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with some parameters replaced (for pagination links)."""
    query = context["request"].GET.copy()
    for key, value in changes.items():
        query[key] = value
    return query.urlencode()
