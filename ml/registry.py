"""Model versions on disk: one folder per version holding the weights, the card and checksums.

    <root>/<version>/model.keras   the trained classifier (for evaluation and further training)
    <root>/<version>/model.onnx    the serving graph: probability and evidence map
    <root>/<version>/gate.onnx     the quality gate's learned check (ml.gate)
    <root>/<version>/model.int8.onnx  the int8 serving graph (ml.quantize), served only if it kept parity
    <root>/<version>/card.json     the model card
    <root>/<version>/SHA256SUMS    sha256 of every file above, the card included
    <root>/ACTIVE                  the version the application serves
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

CARD = "card.json"
KERAS_FILE = "model.keras"
ONNX_FILE = "model.onnx"
GATE_FILE = "gate.onnx"
CHECKSUMS = "SHA256SUMS"
ACTIVE = "ACTIVE"
EXTERNAL_FOLDER = "external-validation"  # leave-one-institution-out fold results, beside the versions
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RegistryError(RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelVersion:
    name: str
    path: Path

    @property
    def card(self) -> dict:
        return json.loads((self.path / CARD).read_text())

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def keras_path(self) -> Path:
        return self.path / KERAS_FILE

    def checksums(self) -> dict[str, str]:
        lines = (self.path / CHECKSUMS).read_text().splitlines()
        return {name.strip(): digest for digest, name in (line.split(maxsplit=1) for line in lines if line)}

    def verify(self) -> None:
        """Raise if a weights file does not match the checksum recorded when it was registered."""
        for name, expected in self.checksums().items():
            if sha256_of(self.path / name) != expected:
                raise RegistryError(f"{self.path / name} does not match its recorded sha256")


class ModelRegistry:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def versions(self) -> list[ModelVersion]:
        if not self.root.is_dir():
            return []
        return [
            ModelVersion(path.name, path)
            for path in sorted(self.root.iterdir())
            if path.is_dir() and (path / CARD).is_file() and (path / ONNX_FILE).is_file()
        ]

    def get(self, name: str) -> ModelVersion:
        if not VERSION_PATTERN.match(name) or not (self.root / name / CARD).is_file():
            raise RegistryError(f"No model version {name!r} in {self.root}")
        return ModelVersion(name, self.root / name)

    def active_name(self) -> str | None:
        marker = self.root / ACTIVE
        if marker.is_file():
            return marker.read_text().strip() or None
        versions = self.versions()
        return versions[-1].name if versions else None

    def active(self) -> ModelVersion:
        name = self.active_name()
        if name is None:
            raise RegistryError(
                f"No model is registered in {self.root}. Train one with "
                "`python manage.py train_model --data DIR` (or `--phantoms` for a demo model)."
            )
        return self.get(name)

    def activate(self, name: str) -> None:
        self.get(name)
        tmp = self.root / f".{ACTIVE}.tmp"
        tmp.write_text(name + "\n")
        os.replace(tmp, self.root / ACTIVE)

    def new_version_name(self, prefix: str = "cnn") -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        name, suffix = f"{prefix}-{stamp}", 1
        while (self.root / name).exists():
            suffix += 1
            name = f"{prefix}-{stamp}-{suffix}"
        return name

    def register(self, name: str, files: dict[str, Path], card: dict, activate: bool = False) -> ModelVersion:
        """Move the given files into a new version folder, write the card and checksum them all.

        `files` maps the name inside the folder to a file written elsewhere by the caller.
        The card records the weights' sha256 so a prediction can name the exact weights; SHA256SUMS
        covers the card too (it holds the threshold and the calibration the predictor applies), so
        a card edited after training is detected like a changed weight.
        """
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=False)
        sums = {}
        for target, source in files.items():
            shutil.move(source, folder / target)
            sums[target] = sha256_of(folder / target)
        card = {**card, "version": name, "sha256": sums}
        (folder / CARD).write_text(json.dumps(card, indent=2, sort_keys=False, default=json_default) + "\n")
        sums[CARD] = sha256_of(folder / CARD)
        (folder / CHECKSUMS).write_text("".join(f"{digest}  {target}\n" for target, digest in sorted(sums.items())))
        if activate:
            self.activate(name)
        return ModelVersion(name, folder)


def amend(version: ModelVersion, files: dict[str, Path], card_updates: dict, by: str,
          redo: bool = False) -> ModelVersion:
    """Add what a later step of the training pipeline makes (an int8 graph, the series rule) to a version trained
    before that step existed: the files are moved in, the card gains `card_updates` and a line saying which
    command added what and when, and every checksum is written again. Nothing training wrote is changed; with
    `redo`, what the same command added before (and only that) is made again, and the line says so.
    """
    version.verify()
    card = version.card
    own = {name for line in card.get("amendments", []) if line["by"] == by for name in line["added"]} if redo else set()
    clash = (sorted(set(card_updates) & set(card) - own)
             + sorted(name for name in files if (version.path / name).exists() and name not in own))
    if clash:
        raise RegistryError(f"{version.name} already has {', '.join(clash)}; a version is only ever added to.")
    for target, source in files.items():
        shutil.move(source, version.path / target)
    sums = {name: digest for name, digest in version.checksums().items() if name != CARD}
    sums.update({target: sha256_of(version.path / target) for target in files})
    amendments = card.get("amendments", []) + [{
        "by": by, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "added": sorted(card_updates) + sorted(files),
        **({"made_again": sorted(own & (set(card_updates) | set(files)))} if own else {})}]
    card = {**card, **card_updates, "amendments": amendments,
            "sha256": {**card["sha256"], **{target: sums[target] for target in files}}}
    tmp = version.path / f".{CARD}.tmp"
    tmp.write_text(json.dumps(card, indent=2, sort_keys=False, default=json_default) + "\n")
    os.replace(tmp, version.path / CARD)
    sums[CARD] = sha256_of(version.path / CARD)
    (version.path / CHECKSUMS).write_text("".join(f"{digest}  {target}\n" for target, digest in sorted(sums.items())))
    return version


def json_default(value):
    """numpy arrays and scalars as JSON lists and numbers (json.dumps' `default`)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
