"""Compute the dataset study (averages, variability, montage pool, counts, duplicates, texture features)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from analytics.services import AnalyticsError, build_dataset_study


class Command(BaseCommand):
    help = ("Study a labelled folder (subfolders name the class; a Training/Testing level is understood) with the "
            "model's loader and preprocessing, and store the figures and numbers the analytics page shows.")

    def add_arguments(self, parser):
        parser.add_argument("--data", type=Path, required=True, help="Folder of labelled images")
        parser.add_argument("--seed", type=int, default=None,
                            help="Seed of the random montage pool (default: a new random one)")

    def handle(self, *args, **options):
        data = Path(options["data"])
        if not data.is_dir():
            raise CommandError(f"No such folder: {data}")
        try:
            study = build_dataset_study(data, seed=options["seed"], progress=options["verbosity"] > 0)
        except AnalyticsError as error:
            raise CommandError(str(error)) from error
        inventory = study.numbers["inventory"]
        duplicates = study.numbers["duplicates"]
        self.stdout.write(self.style.SUCCESS(
            f"Dataset study {study.pk} of {study.source}: {study.images} images "
            f"({inventory['by_label']['no_tumor']} no tumor, {inventory['by_label']['tumor']} tumor), "
            f"{duplicates['duplicates']} near-duplicates in {duplicates['groups_with_duplicates']} groups, "
            f"{inventory['skipped']} unreadable skipped; built in {study.seconds:.0f} s."))
