"""Retrain a model version's recipe on 10/25/50/100% of its train split and store the learning curve."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from analytics.management.versions import ModelVersionOption
from analytics.services import AnalyticsError, build_learning_curve
from diagnosis.inference import ModelUnavailable, registry, serving_version
from ml.registry import RegistryError


def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"  # None: nothing to count at that point


class Command(ModelVersionOption, BaseCommand):
    help = ("Train the same network on growing shares of the model's own grouped train split (from --data, the "
            "collections it was trained on) and measure each on its test split. CPU-heavy: four trainings.")

    def add_arguments(self, parser):
        parser.add_argument("--data", type=Path, action="append", required=True,
                            help="A collection the model was trained on (repeat for several, in the training order)")
        self.add_version_argument(parser, "Model version (default: the one in service)")
        parser.add_argument("--epochs", type=int, default=None, help="Most epochs per training (default: the card's)")
        parser.add_argument("--fractions", default="0.1,0.25,0.5,1.0",
                            help="Shares of the train split, comma-separated")
        parser.add_argument("--any-data", action="store_true",
                            help="Accept data that does not reproduce the model's test split (use its own split)")

    def handle(self, *args, **options):
        try:
            version = registry().get(options["model_version"]) if options["model_version"] else serving_version()
        except (RegistryError, ModelUnavailable) as error:
            raise CommandError(str(error)) from error
        try:
            fractions = tuple(float(f) for f in options["fractions"].split(","))
        except ValueError:
            raise CommandError("--fractions takes comma-separated numbers, e.g. 0.1,0.25,0.5,1.0") from None
        if options["epochs"] is not None and options["epochs"] < 1:
            raise CommandError("--epochs must be at least 1")
        for folder in options["data"]:
            if not folder.is_dir():
                raise CommandError(f"No such folder: {folder}")
        try:
            curve = build_learning_curve(options["data"], version, epochs=options["epochs"], fractions=fractions,
                                         any_data=options["any_data"], progress=options["verbosity"] > 0)
        except (AnalyticsError, ValueError) as error:
            raise CommandError(str(error)) from error
        for point in curve.points:
            test = point["test"]
            self.stdout.write(f"{point['fraction']:>5.0%} ({point['train_images']} images): test AUC "
                              f"{_number(test['auc'], 4)}, sensitivity {_number(test['sensitivity'])}, "
                              f"specificity {_number(test['specificity'])}")
        self.stdout.write(self.style.SUCCESS(f"Learning curve of {version.name} stored in {curve.seconds:.0f} s."))
