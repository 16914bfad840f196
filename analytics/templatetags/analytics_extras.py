from django import template

register = template.Library()


@register.inclusion_tag("analytics/_figure.html")
def figure(entry, css_class: str = ""):
    """A stored plot with its title as caption and its alt text, also readable on the page."""
    return {"entry": entry, "css_class": css_class}


@register.simple_tag
def with_ci(value, interval, digits: int = 3) -> str:
    """0.912 (95% CI 0.811–0.983); a dash for what was not recorded."""
    if value is None:
        return "—"
    text = f"{float(value):.{digits}f}"
    if interval and all(bound is not None for bound in interval):
        text += f" ({float(interval[0]):.{digits}f}–{float(interval[1]):.{digits}f})"
    return text
