"""Train the model on one or more labelled collections and register it, or run one external validation fold."""

import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml.model import DEFAULT_WIDTHS
from ml.preprocess import INTENSITY_REFERENCES
from ml.registry import EXTERNAL_FOLDER
from ml.train import TrainConfig


def request_report(version) -> None:
    """Ask a worker for the new version's model report now, so the page has it when someone opens it."""
    from django.db import DatabaseError

    from analytics.services import request_model_report

    try:
        request_model_report(version)
    except DatabaseError:  # no database here (a training machine): the page asks for it when opened
        pass


class Command(BaseCommand):
    help = ("Train the network on the collections given with --data (folders of class folders: glioma, meningioma, "
            "pituitary, tumor, yes / notumor, no_tumor, no, normal, healthy, a Training/Testing level understood; "
            "or a folder with a slices.csv, like tcga-lgg) and register a model version. With "
            "--leave-out-institution, train the same recipe without that institution and write its external "
            "validation figures instead.")

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--data", type=Path, action="append", help="A collection folder (repeat for several)")
        source.add_argument("--phantoms", type=int, metavar="N",
                            help="Train a demo model on N synthetic phantoms per class instead of real data")
        parser.add_argument("--epochs", type=int, default=30)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--split-seed", type=int, default=None,
                            help="Seed of the split alone (default: --seed), to train again on the same split")
        parser.add_argument("--no-augment", action="store_true", help="Train without acquisition-shift augmentation")
        parser.add_argument("--variants", type=int, default=6,
                            help="Augmented copies of each training slice, used one per epoch in turn")
        parser.add_argument("--widths", default=",".join(map(str, DEFAULT_WIDTHS)),
                            help="Filters of the stem and of each encoder block, comma-separated")
        parser.add_argument("--patience", type=int, default=8, help="Early-stopping patience in epochs")
        parser.add_argument("--dropout", type=float, default=TrainConfig.dropout,
                            help="Spatial dropout before the map head (0 to below 1)")
        parser.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay,
                            help="AdamW's decoupled weight decay (Keras multiplies it by the learning rate)")
        parser.add_argument("--cell-weight", type=float, default=TrainConfig.cell_weight,
                            help="Weight of the map's loss against the tumor masks, beside the slice's loss")
        parser.add_argument("--intensity-reference", choices=INTENSITY_REFERENCES,
                            default=TrainConfig.intensity_reference,
                            help="Standardise intensities by percentiles of the whole head or of its interior")
        parser.add_argument("--weight-average", type=float, default=TrainConfig.weight_average, metavar="MOMENTUM",
                            help="Validate and keep an exponential moving average of the weights with this "
                                 "momentum, e.g. 0.999 (default 0: the raw weights)")
        parser.add_argument("--transplant", type=float, default=TrainConfig.transplant, metavar="SHARE",
                            help="Share of the no-tumor slices with a mask that receive, in each augmented copy, a "
                                 "lesion from another patient's slice of the same sequence (default 0: none)")
        parser.add_argument("--gate-epochs", type=int, default=None,
                            help="Epochs of the quality gate's learned check (default: the recipe's)")
        parser.add_argument("--gate-negatives-per-kind", type=int, default=None,
                            help="Made negatives per kind the gate learns from: documents, textures, ... "
                                 "(default: the recipe's)")
        parser.add_argument("--leave-out-institution", metavar="CODE",
                            help="Run the external validation fold that holds this institution out (e.g. CS)")
        parser.add_argument("--external-dir", type=Path, default=None,
                            help="Where fold figures are written and read (default: the registry's "
                                 f"{EXTERNAL_FOLDER}/)")
        parser.add_argument("--no-activate", action="store_true", help="Register without making it the served model")
        parser.add_argument("--registry", type=Path, default=None, help="Model registry folder (default: settings)")

    def handle(self, *args, **options):
        from ml.pipeline import external_fold, train_and_register

        try:
            widths = tuple(int(w) for w in options["widths"].split(","))
        except ValueError:
            raise CommandError("--widths takes comma-separated integers, e.g. 24,32,48,96,192") from None
        if len(widths) < 4:
            raise CommandError("--widths needs a stem and at least three blocks")
        gate = {key: options[key] for key in ("gate_epochs", "gate_negatives_per_kind") if options[key] is not None}
        if min(options["epochs"], options["variants"], *gate.values()) < 1:
            raise CommandError("--epochs, --variants, --gate-epochs and --gate-negatives-per-kind must be at least 1")
        if not 0 <= options["dropout"] < 1:
            raise CommandError(f"--dropout must be from 0 to below 1, not {options['dropout']}")
        if not 0 <= options["weight_average"] < 1:
            raise CommandError(f"--weight-average must be from 0 to below 1, not {options['weight_average']}")
        if not 0 <= options["transplant"] <= 1:
            raise CommandError(f"--transplant must be from 0 to 1, not {options['transplant']}")
        for flag in ("seed", "split_seed", "weight_decay", "cell_weight"):
            if options[flag] is not None and options[flag] < 0:
                raise CommandError(f"--{flag.replace('_', '-')} must be at least 0, not {options[flag]}")
        config = TrainConfig(epochs=options["epochs"], seed=options["seed"], split_seed=options["split_seed"],
                             augment=not options["no_augment"],
                             variants=options["variants"], widths=widths, patience=options["patience"],
                             dropout=options["dropout"], weight_decay=options["weight_decay"],
                             cell_weight=options["cell_weight"], intensity_reference=options["intensity_reference"],
                             weight_average=options["weight_average"], transplant=options["transplant"],
                             **gate)
        registry = options["registry"] or settings.MODEL_DIR
        external_dir = options["external_dir"] or Path(registry) / EXTERNAL_FOLDER
        cache = settings.VAR_DIR / "cache"
        with tempfile.TemporaryDirectory() as tmp:
            if options["phantoms"]:
                from ml.phantoms import write_phantom_folder

                folders, prefix = [write_phantom_folder(Path(tmp) / "phantoms", options["phantoms"],
                                                        seed=options["seed"])], "phantom"
            else:
                folders, prefix = options["data"], "cnn"
                for folder in folders:
                    if not folder.is_dir():
                        raise CommandError(f"No such folder: {folder}")
            try:
                if options["leave_out_institution"]:
                    path = external_fold(folders, options["leave_out_institution"], external_dir, config,
                                         cache_dir=cache)
                    self.stdout.write(self.style.SUCCESS(f"Wrote {path}"))
                    return
                version = train_and_register(folders, registry, config, activate=not options["no_activate"],
                                             verbose=1, name_prefix=prefix, cache_dir=cache,
                                             external_dir=external_dir)
            except (ValueError, FileNotFoundError) as error:
                raise CommandError(str(error)) from error
        card = version.card
        self.stdout.write(self.style.SUCCESS(f"Registered {version.name} in {registry}"))
        if registry == settings.MODEL_DIR:
            request_report(version)
        for source, figures in card["metrics"]["test_by_source"].items():
            test = figures["all"]
            self.stdout.write(f"test, {source}: AUC {test['auc']:.4f}, sensitivity {test['sensitivity']:.3f}, "
                              f"specificity {test['specificity']:.3f} at threshold {card['threshold']['value']:.4f}")
