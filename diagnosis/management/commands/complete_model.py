"""Add to a model version trained before them the serving steps it lacks: the int8 graph with its parity check,
and the series rule. Each is recorded in the card with this command's name; nothing already there changes."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from diagnosis.inference import registry
from ml.registry import RegistryError


class Command(BaseCommand):
    help = ("Quantize an existing model version to int8 (served when it keeps parity with fp32 on its clean test "
            "split) and choose its series rule on its validation volumes; --data names the collections it was "
            "trained on.")

    def add_arguments(self, parser):
        parser.add_argument("version", help="The model version to complete")
        parser.add_argument("--data", type=Path, action="append", required=True,
                            help="A collection the version was trained on (repeat for several)")
        parser.add_argument("--redo", action="store_true",
                            help="Make again what an earlier run of this command added (after a fix to it); what "
                                 "training wrote is never changed")

    def handle(self, *args, **options):
        from ml.pipeline import complete_version

        try:
            version = registry().get(options["version"])
            version = complete_version(version, options["data"], cache_dir=settings.VAR_DIR / "cache",
                                       redo=options["redo"])
        except (RegistryError, ValueError, FileNotFoundError) as error:
            raise CommandError(str(error)) from error
        serving = version.card["serving"]
        self.stdout.write(self.style.SUCCESS(f"{version.name}: serves {serving['file']} ({serving['precision']}); "
                                             f"{serving['reason']}; series window {version.card['series']['window']}"))
