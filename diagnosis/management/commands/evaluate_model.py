"""Evaluate a registered model version on a labelled folder, through the serving path."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from diagnosis.inference import registry
from ml.folder_eval import evaluate_folder
from ml.predictor import Predictor
from ml.registry import RegistryError

JSON_KEYS = ("n", "accuracy", "sensitivity", "specificity", "auc", "threshold", "tp", "fp", "tn", "fn",
             "per_class_recall", "model_version", "unusable")
MASK_KEYS = ("pointing_game", "pointing_game_n", "mass_in_mask", "mass_in_mask_n")


class Command(BaseCommand):
    help = ("Evaluate a model version on DIR (class folders of JPEG, PNG or DICOM files) and print n, accuracy, "
            "sensitivity, specificity, AUC and more; the metrics cover every image, also those the quality gate "
            "refuses (counted in 'unusable').")

    def add_arguments(self, parser):
        parser.add_argument("--data", type=Path, required=True)
        parser.add_argument("--model", help="Model version (default: the served one)")
        parser.add_argument("--json", action="store_true", help="Print exactly one JSON object")
        parser.add_argument("--split", choices=("all", "test"), default="all",
                            help="'test': only the images of the model card's held-out test split")
        parser.add_argument("--masks", type=Path, metavar="MASKDIR",
                            help="Tumor masks (PNG named like each image's file stem, 255 = tumor): adds the pointing "
                                 "game and the share of evidence on the lesion")
        parser.add_argument("--stress", action="store_true",
                            help="Also report sensitivity and specificity under each stress-suite perturbation")

    def handle(self, *args, **options):
        try:
            version = registry().get(options["model"]) if options["model"] else registry().active()
            version.verify()
        except RegistryError as error:
            raise CommandError(str(error)) from error
        data = options["data"]
        only = test_files(version.card, data.name) if options["split"] == "test" else None
        try:
            result = evaluate_folder(Predictor(version), data, only=only, progress=not options["json"],
                                     masks=options["masks"], stress_families=options["stress"])
        except (ValueError, FileNotFoundError) as error:
            raise CommandError(str(error)) from error
        keys = JSON_KEYS + (MASK_KEYS if options["masks"] else ()) + (("stress",) if options["stress"] else ())
        if options["json"]:
            self.stdout.write(json.dumps({key: result[key] for key in keys}))
            return
        self.stdout.write("\n".join(describe(result)))


def test_files(card: dict, collection: str) -> set[str]:
    """The card's test files inside `collection` (the data folder's name), relative to it."""
    prefix = f"{collection}/"
    return {name[len(prefix):] for name in card["split"]["test_files"] if name.startswith(prefix)}


def describe(result: dict) -> list[str]:
    ci = result["ci95"]
    lines = [
        f"model version   {result['model_version']}",
        f"images (n)      {result['n']}" + (f"  ({result['skipped_unreadable']} unreadable skipped)"
                                             if result["skipped_unreadable"] else ""),
        f"unusable        {result['unusable']}  (refused by the quality gate; still counted below)",
        f"threshold       {result['threshold']:.4f}",
        f"accuracy        {result['accuracy']:.4f}  (95% CI {ci['accuracy'][0]:.4f}-{ci['accuracy'][1]:.4f})",
        f"sensitivity     {result['sensitivity']:.4f}  (95% CI {ci['sensitivity'][0]:.4f}-{ci['sensitivity'][1]:.4f})",
        f"specificity     {result['specificity']:.4f}  (95% CI {ci['specificity'][0]:.4f}-{ci['specificity'][1]:.4f})",
        f"AUC             {result['auc']:.4f}  (95% CI {ci['auc'][0]:.4f}-{ci['auc'][1]:.4f})",
        f"confusion       tp={result['tp']} fp={result['fp']} tn={result['tn']} fn={result['fn']}",
        "recall per subfolder:",
        *[f"  {name:<14}{value:.4f}" for name, value in result["per_class_recall"].items()],
    ]
    if "pointing_game_n" in result:
        lines.append(f"pointing game   {_number(result['pointing_game'])}  (n={result['pointing_game_n']})")
        lines.append(f"mass in mask    {_number(result['mass_in_mask'])}  (n={result['mass_in_mask_n']})")
    for family, rates in result.get("stress", {}).items():
        lines.append(f"stress {family:<17} sensitivity {_number(rates['sensitivity'])}  "
                     f"specificity {_number(rates['specificity'])}")
    return lines


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"
