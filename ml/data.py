"""Find and load labelled MRI slices from a folder whose subfolders name the class."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml.imaging import UnreadableImage, read_image
from ml.preprocess import IMAGE_SIZE, preprocess, resize

log = logging.getLogger(__name__)

TUMOR_CLASSES = frozenset({"glioma", "meningioma", "pituitary", "tumor", "yes"})
NO_TUMOR_CLASSES = frozenset({"notumor", "no_tumor", "no", "normal", "healthy"})
SPLIT_FOLDERS = frozenset({"training", "testing"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
THUMBNAIL_SIZE = 32
LABEL_NAMES = ("no_tumor", "tumor")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 1 = tumor, 0 = no tumor
    subtype: str  # the folder name as found, lower-case: glioma, notumor, yes...


@dataclass
class Dataset:
    """Preprocessed images with their labels; `thumbnails` feed near-duplicate grouping."""

    images: np.ndarray  # (n, size, size, 1) float32
    labels: np.ndarray  # (n,) int8
    subtypes: list[str]
    paths: list[str]
    thumbnails: np.ndarray  # (n, THUMBNAIL_SIZE**2) float32
    source_sizes: list[tuple[int, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "Dataset":
        return Dataset(
            images=self.images[index], labels=self.labels[index],
            subtypes=[self.subtypes[i] for i in index], paths=[self.paths[i] for i in index],
            thumbnails=self.thumbnails[index], source_sizes=[self.source_sizes[i] for i in index],
        )


def class_label(folder_name: str) -> int | None:
    name = folder_name.lower()
    if name in TUMOR_CLASSES:
        return 1
    if name in NO_TUMOR_CLASSES:
        return 0
    return None


def find_samples(root: str | Path) -> list[Sample]:
    """List the labelled images under root/<class>/ or root/<Training|Testing>/<class>/.

    Unknown folder names are ignored with a warning; the order is deterministic.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"No such data folder: {root}")
    class_dirs = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if child.name.lower() in SPLIT_FOLDERS:
            class_dirs.extend(sorted(p for p in child.iterdir() if p.is_dir()))
        else:
            class_dirs.append(child)
    samples = []
    for class_dir in class_dirs:
        label = class_label(class_dir.name)
        if label is None:
            log.warning("Ignoring folder %s: its name is not a known class", class_dir)
            continue
        samples.extend(
            Sample(path=path, label=label, subtype=class_dir.name.lower())
            for path in sorted(class_dir.iterdir())
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        )
    return samples


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """A flattened 32x32 copy of the whole slice, the unit of near-duplicate comparison."""
    return resize(gray, THUMBNAIL_SIZE).ravel()


def load_dataset(
    root: str | Path,
    size: int = IMAGE_SIZE,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> Dataset:
    """Decode and preprocess every image under root, skipping unreadable files with a warning.

    With `cache_dir`, the arrays are kept in an .npz keyed by the files' names, sizes and times,
    so repeated experiments and test runs do not decode thousands of JPEGs again.
    """
    samples = find_samples(root)
    if not samples:
        raise ValueError(f"No labelled images found under {root}")
    cache_path = _cache_path(samples, size, cache_dir) if cache_dir else None
    if cache_path and cache_path.exists():
        return _read_cache(cache_path)
    dataset = _decode_all(samples, size, progress)
    if dataset.skipped:
        log.warning("Skipped %d unreadable file(s), first: %s", len(dataset.skipped), dataset.skipped[0])
    if cache_path:
        _write_cache(cache_path, dataset)
    return dataset


def _decode_all(samples: list[Sample], size: int, progress: bool) -> Dataset:
    images, thumbs, kept, sizes, skipped = [], [], [], [], []
    iterator = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, desc="Loading images", unit="img")
    for sample in iterator:
        try:
            gray = read_image(sample.path)
        except UnreadableImage as error:
            skipped.append((str(sample.path), str(error)))
            continue
        images.append(preprocess(gray, size)[0])
        thumbs.append(thumbnail(gray))
        sizes.append((gray.shape[1], gray.shape[0]))
        kept.append(sample)
    if not kept:
        raise ValueError("None of the images could be read")
    return Dataset(
        images=np.stack(images), labels=np.array([s.label for s in kept], dtype=np.int8),
        subtypes=[s.subtype for s in kept], paths=[str(s.path) for s in kept],
        thumbnails=np.stack(thumbs), source_sizes=sizes, skipped=skipped,
    )


def _cache_path(samples: list[Sample], size: int, cache_dir: str | Path) -> Path:
    digest = hashlib.sha256(f"v1|{size}".encode())
    for sample in samples:
        stat = sample.path.stat()
        digest.update(f"{sample.path}|{stat.st_size}|{stat.st_mtime_ns}|{sample.subtype}\n".encode())
    return Path(cache_dir) / f"dataset-{digest.hexdigest()[:16]}.npz"


def _write_cache(path: Path, dataset: Dataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp, images=dataset.images, labels=dataset.labels, subtypes=np.array(dataset.subtypes),
        paths=np.array(dataset.paths), thumbnails=dataset.thumbnails,
        source_sizes=np.array(dataset.source_sizes), skipped=np.array(dataset.skipped, dtype=str).reshape(-1, 2),
    )
    tmp.replace(path)


def _read_cache(path: Path) -> Dataset:
    with np.load(path) as data:
        return Dataset(
            images=data["images"], labels=data["labels"], subtypes=data["subtypes"].tolist(),
            paths=data["paths"].tolist(), thumbnails=data["thumbnails"],
            source_sizes=[tuple(s) for s in data["source_sizes"].tolist()],
            skipped=[tuple(s) for s in data["skipped"].tolist()],
        )
