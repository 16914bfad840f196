"""Analytics pages. They read stored builds and model cards; nothing is drawn or measured in a request: a
model report that does not exist yet is asked of a worker, and the page says it is being prepared."""

from __future__ import annotations

import json
import secrets

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from analytics import model_report as report_content
from analytics import selectors, services, storage
from diagnosis import audit
from diagnosis.files import private_file_response
from diagnosis.models import AuditEvent

VIEWED = AuditEvent.Action.ANALYTICS_VIEWED


def _integer(value: str | None, default: int | None = None) -> int | None:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def _montage(study, shuffle: int | None) -> dict:
    """The images shown per label, with the whole pool as JSON for the page's reshuffle button."""
    montage = selectors.montage(study, shuffle)
    for images in montage.values():
        images["pool_json"] = json.dumps([{"src": reverse("analytics:figure", args=[image["name"]]),
                                           "caption": image["subtype"]} for image in images["pool"]])
    return montage


def _inventory_rows(inventory: dict) -> list[dict]:
    return [{**row, "modes": [inventory["modes"][row["name"]].get(mode, 0) for mode in inventory["all_modes"]],
             "sizes": ", ".join(f"{size} ({count})" for size, count in inventory["sizes"][row["name"]].items())}
            for row in inventory["by_subtype"]]


def _feature_rows(rows: list[dict], importance: dict | None) -> list[dict]:
    """The study's feature summary beside the active feature model's importance, most important first."""
    bars = {bar["name"]: bar for bar in importance["bars"]} if importance else {}
    merged = [{**row, "importance": bars.get(row["name"], {}).get("value"),
               "importance_width": bars.get(row["name"], {}).get("width")} for row in rows]
    return sorted(merged, key=lambda row: -(row["importance"] or 0)) if bars else merged


@login_required
@require_GET
def dataset(request):
    study = selectors.latest_dataset_study()
    active = selectors.active_version_name()
    importance = selectors.feature_importance(selectors.model_card(active) if active else {})
    audit.record(VIEWED, request=request, details={"page": "dataset"})
    context = {"study": study, "importance": importance, "next_shuffle": secrets.randbelow(1_000_000)}
    if study:
        numbers = study.numbers
        context.update({
            "numbers": numbers, "montage": _montage(study, _integer(request.GET.get("shuffle"))),
            "inventory_rows": _inventory_rows(numbers["inventory"]),
            "feature_rows": _feature_rows(numbers["features"]["rows"], importance),
        })
    return render(request, "analytics/dataset.html", context)


@login_required
@require_GET
def model_report(request):
    versions = selectors.model_versions()
    name = request.GET.get("version") or selectors.active_version_name()
    if name is None:
        return render(request, "analytics/model_report.html", {"versions": versions})
    version = selectors.model_version(name)
    if version is None or name not in versions:
        raise Http404("No such model version")
    card = version.card  # read afresh, not from the per-process cache: `complete_model` amends cards in place
    report = services.request_model_report(version)
    audit.record(VIEWED, request=request, details={"page": "model-report", "version": name})
    return render(request, "analytics/model_report.html", {
        "versions": versions, "version": name, "active": selectors.active_version_name(), "card": card,
        "report": report, "figures": report.figures, "curve": selectors.latest_learning_curve(name),
        **report_content.page(card, selectors.external_fold_reports(card)),
    })


@login_required
@require_GET
def monitoring(request):
    days = _integer(request.GET.get("days"), selectors.DEFAULT_WINDOW)
    if days not in selectors.MONITORING_WINDOWS:
        days = selectors.DEFAULT_WINDOW
    active = selectors.active_version_name()
    threshold = (selectors.model_card(active).get("threshold") or {}).get("value") if active else None
    audit.record(VIEWED, request=request, details={"page": "monitoring", "days": days})
    return render(request, "analytics/monitoring.html", {
        "data": selectors.monitoring(request.user, days, threshold=threshold), "windows": selectors.MONITORING_WINDOWS,
        "active": active,
    })


@login_required
@require_GET
def figure(request, name: str):
    """An analytics image, streamed from storage to a logged-in user; never a public URL."""
    if not storage.is_figure_name(name):
        raise Http404("No such figure")
    response = private_file_response(storage.full_name(name))
    if response.status_code == 200:
        # Every build writes to a new folder, so a name always means the same picture.
        response["Cache-Control"] = "private, max-age=86400"
    return response
