"""Assess image files with the served model: exactly the worker's answer for each file."""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from diagnosis.inference import ModelUnavailable, get_predictor
from ml.files import read_file
from ml.imaging import UnreadableImage


class Command(BaseCommand):
    help = ("Assess JPEG, PNG or DICOM files with the served model: per image, whether it can be assessed (the "
            "quality gate), and if so the tumor probability and the label at the model's threshold.")

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--json", action="store_true",
                            help="One JSON object per line: file, usable, reason, probability, label, model_version")

    def handle(self, *args, **options):
        try:
            predictor = get_predictor()
        except ModelUnavailable as error:
            raise CommandError(str(error)) from error
        failures = 0
        for path in options["files"]:
            try:
                image = read_file(path, settings.IMAGE_LIMITS)
            except UnreadableImage as error:
                failures += 1
                self.stderr.write(f"{path}: cannot be read: {error}")
                continue
            count = len(image.slices)
            for index, assessment in enumerate(predictor.assess(image.slices, with_features=False,
                                                                modalities=[image.modality] * count)):
                name = f"{path}#{index + 1}" if count > 1 else str(path)
                self.stdout.write(self.line(name, assessment, options["json"]))
        if failures:
            raise CommandError(f"{failures} file(s) could not be read")

    @staticmethod
    def line(name: str, assessment, as_json: bool) -> str:
        usable = assessment.usable
        if as_json:
            return json.dumps({"file": name, "usable": usable, "reason": None if usable else assessment.quality.message,
                               "probability": round(assessment.probability, 6) if usable else None,
                               "label": assessment.label if usable else None,
                               "model_version": assessment.model_version})
        if not usable:
            return f"{name}\tcannot be assessed: {assessment.quality.message}\tmodel={assessment.model_version}"
        return (f"{name}\tprobability={assessment.probability:.4f}\tlabel={assessment.label}\t"
                f"model={assessment.model_version}")
