"""Train a CNN from scratch on a labelled folder and register it as a new model version."""

import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml.model import DEFAULT_FILTERS


class Command(BaseCommand):
    help = ("Train the CNN on DIR (subfolders name the class: glioma, meningioma, pituitary, tumor, yes / notumor, "
            "no_tumor, no, normal, healthy; a Training/Testing level is understood) and register a model version.")

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--data", type=Path, help="Folder of labelled images")
        source.add_argument("--phantoms", type=int, metavar="N",
                            help="Train a demo model on N synthetic phantoms per class instead of real data")
        parser.add_argument("--epochs", type=int, default=40)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--no-augment", action="store_true", help="Train without data augmentation")
        parser.add_argument("--ablation", action="store_true",
                            help="Also train the same network with augmentation switched the other way, and record "
                                 "both results in the model card (hypothesis H2)")
        parser.add_argument("--filters", default=",".join(map(str, DEFAULT_FILTERS)),
                            help="Filters per convolutional block, comma-separated")
        parser.add_argument("--patience", type=int, default=10, help="Early-stopping patience in epochs")
        parser.add_argument("--ensemble", type=int, default=2,
                            help="Networks trained from consecutive seeds and averaged by the served model")
        parser.add_argument("--no-activate", action="store_true", help="Register without making it the served model")
        parser.add_argument("--registry", type=Path, default=None, help="Model registry folder (default: settings)")

    def handle(self, *args, **options):
        from ml.pipeline import train_and_register
        from ml.train import TrainConfig

        try:
            filters = tuple(int(f) for f in options["filters"].split(","))
        except ValueError:
            raise CommandError("--filters takes comma-separated integers, e.g. 16,32,64,128,128") from None
        if options["epochs"] < 1 or options["ensemble"] < 1:
            raise CommandError("--epochs and --ensemble must be at least 1")
        config = TrainConfig(epochs=options["epochs"], seed=options["seed"], augment=not options["no_augment"],
                             filters=filters, patience=options["patience"], ensemble=options["ensemble"])
        registry = options["registry"] or settings.MODEL_DIR
        with tempfile.TemporaryDirectory() as tmp:
            if options["phantoms"]:
                from ml.phantoms import write_phantom_folder

                data, prefix, citation = write_phantom_folder(Path(tmp) / "phantoms", options["phantoms"],
                                                              seed=options["seed"]), "phantom", "Synthetic phantoms"
            else:
                data, prefix, citation = options["data"], "cnn", None
                if not data.is_dir():
                    raise CommandError(f"No such folder: {data}")
            kwargs = {"citation": citation} if citation else {}
            try:
                version = train_and_register(data, registry, config, ablation=options["ablation"],
                                             activate=not options["no_activate"], verbose=1, name_prefix=prefix,
                                             cache_dir=settings.VAR_DIR / "cache", **kwargs)
            except (ValueError, FileNotFoundError) as error:
                raise CommandError(str(error)) from error
        card = version.card
        test = card["metrics"]["test"]
        self.stdout.write(self.style.SUCCESS(f"Registered {version.name} in {registry}"))
        self.stdout.write(f"test: AUC {test['auc']:.4f}, sensitivity {test['sensitivity']:.3f}, specificity "
                          f"{test['specificity']:.3f} at threshold {card['threshold']['value']:.4f}")
