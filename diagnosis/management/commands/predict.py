"""Assess image files with the served model and print probability, label and model version."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from diagnosis.inference import ModelUnavailable, get_predictor
from ml.imaging import UnreadableImage, read_image


class Command(BaseCommand):
    help = "Print, per FILE, the tumor probability, the label at the model's threshold and the model version."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)

    def handle(self, *args, **options):
        try:
            predictor = get_predictor()
        except ModelUnavailable as error:
            raise CommandError(str(error)) from error
        failures = 0
        for path in options["files"]:
            try:
                assessment = predictor.assess([read_image(path)], with_features=False)[0]
            except (UnreadableImage, OSError) as error:
                failures += 1
                self.stderr.write(f"{path}: cannot be assessed: {error}")
                continue
            self.stdout.write(f"{path}\tprobability={assessment.probability:.4f}\tlabel={assessment.label}\t"
                              f"model={assessment.model_version}")
        if failures:
            raise CommandError(f"{failures} file(s) could not be assessed")
