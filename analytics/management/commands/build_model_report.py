"""Draw the model report's figures from a version's card and time its serving path, once per card."""

from django.core.management.base import BaseCommand, CommandError

from analytics.management.versions import ModelVersionOption
from analytics.services import build_model_report
from diagnosis.inference import registry
from ml.registry import RegistryError


class Command(ModelVersionOption, BaseCommand):
    help = "Build the stored report of a model version (default: every registered version)."

    def add_arguments(self, parser):
        self.add_version_argument(parser, "Model version (default: all registered versions)")

    def handle(self, *args, **options):
        try:
            versions = ([registry().get(options["model_version"])] if options["model_version"]
                        else registry().versions())
        except RegistryError as error:
            raise CommandError(str(error)) from error
        if not versions:
            raise CommandError("No model is registered. Train one with `python manage.py train_model --data DIR`.")
        for version in versions:
            report = build_model_report(version)
            timing = report.inference.get("median_ms", {}).get("total")
            self.stdout.write(self.style.SUCCESS(
                f"{version.name}: {len(report.figures)} figures"
                + (f", {timing:.1f} ms per image" if timing is not None else ", inference not timed")))
