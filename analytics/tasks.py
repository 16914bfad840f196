"""Analytics builds that run in a worker, never in a web request."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="analytics.tasks.build_model_report")
def build_model_report_task(version_name: str) -> str:
    from analytics import services
    from diagnosis.inference import registry

    report = services.build_model_report(registry().get(version_name))
    return f"{version_name}: {len(report.figures)} figures"
