from django import template
from django.urls import NoReverseMatch, reverse
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


@register.filter
def percent(value) -> str:
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.1f}%"


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
    try:
        url = reverse("analytics:model-report") + f"?version={version}"
    except NoReverseMatch:
        return version
    return format_html('<a href="{}">{}</a>', url, version)


@register.inclusion_tag("diagnosis/includes/feature_table.html")
def feature_table(prediction):
    return {"rows": feature_rows(prediction)}


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with some parameters replaced (for pagination links)."""
    query = context["request"].GET.copy()
    for key, value in changes.items():
        query[key] = value
    return query.urlencode()
