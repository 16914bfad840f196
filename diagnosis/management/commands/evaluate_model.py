"""Evaluate a registered model version on a labelled folder, through the serving path."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from diagnosis.inference import registry
from ml.folder_eval import evaluate_folder
from ml.predictor import Predictor
from ml.registry import RegistryError

JSON_KEYS = ("n", "accuracy", "sensitivity", "specificity", "auc", "threshold", "tp", "fp", "tn", "fn",
             "per_class_recall", "model_version")


class Command(BaseCommand):
    help = "Evaluate a model version on DIR and print n, accuracy, sensitivity, specificity, AUC and more."

    def add_arguments(self, parser):
        parser.add_argument("--data", type=Path, required=True)
        parser.add_argument("--model", help="Model version (default: the served one)")
        parser.add_argument("--json", action="store_true", help="Print exactly one JSON object")
        parser.add_argument("--split", choices=("all", "test"), default="all",
                            help="'test': only the images of the model card's held-out test split")

    def handle(self, *args, **options):
        try:
            version = registry().get(options["model"]) if options["model"] else registry().active()
        except RegistryError as error:
            raise CommandError(str(error)) from error
        only = set(version.card["split"]["test_files"]) if options["split"] == "test" else None
        try:
            result = evaluate_folder(Predictor(version), options["data"], only=only, progress=not options["json"])
        except (ValueError, FileNotFoundError) as error:
            raise CommandError(str(error)) from error
        if options["json"]:
            self.stdout.write(json.dumps({key: result[key] for key in JSON_KEYS}))
            return
        ci = result["ci95"]
        lines = [
            f"model version   {result['model_version']}",
            f"images (n)      {result['n']}" + (f"  ({result['skipped_unreadable']} unreadable skipped)"
                                                 if result["skipped_unreadable"] else ""),
            f"threshold       {result['threshold']:.4f}",
            f"accuracy        {result['accuracy']:.4f}  (95% CI {ci['accuracy'][0]:.4f}-{ci['accuracy'][1]:.4f})",
            f"sensitivity     {result['sensitivity']:.4f}  (95% CI {ci['sensitivity'][0]:.4f}-{ci['sensitivity'][1]:.4f})",
            f"specificity     {result['specificity']:.4f}  (95% CI {ci['specificity'][0]:.4f}-{ci['specificity'][1]:.4f})",
            f"AUC             {result['auc']:.4f}  (95% CI {ci['auc'][0]:.4f}-{ci['auc'][1]:.4f})",
            f"confusion       tp={result['tp']} fp={result['fp']} tn={result['tn']} fn={result['fn']}",
            "recall per subfolder:",
            *[f"  {name:<14}{value:.4f}" for name, value in result["per_class_recall"].items()],
        ]
        self.stdout.write("\n".join(lines))
