import math

from django import template

register = template.Library()
NOT_RECORDED = "—"


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@register.inclusion_tag("analytics/_figure.html")
def figure(entry, css_class: str = ""):
    """A stored plot with its title as caption and its alt text, also readable on the page."""
    return {"entry": entry, "css_class": css_class}


@register.simple_tag
def with_ci(value, interval, digits: int = 3) -> str:
    """0.912 (0.811–0.983); a dash for what was not recorded or could not be computed (NaN)."""
    value = _finite(value)
    if value is None:
        return NOT_RECORDED
    text = f"{value:.{digits}f}"
    bounds = [_finite(bound) for bound in interval or ()]
    if len(bounds) == 2 and None not in bounds:
        text += f" ({bounds[0]:.{digits}f}–{bounds[1]:.{digits}f})"
    return text


@register.filter
def number(value, digits: int = 3) -> str:
    """A measured value with `digits` decimals; a dash for what is missing or NaN."""
    value = _finite(value)
    return NOT_RECORDED if value is None else f"{value:.{digits}f}"


@register.filter
def share(value) -> str:
    """A proportion as a percentage with one decimal; a dash for what is missing or NaN."""
    value = _finite(value)
    return NOT_RECORDED if value is None else f"{value * 100:.1f}%"
