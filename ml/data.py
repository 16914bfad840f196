"""Find and load labelled MRI slices from one or more collections.

A collection is either
- a folder of class folders (root/<class>/ or root/<Training|Testing>/<class>/), the layout of the
  brain-mri set and of most public sets; nothing is known of patients there, so near-duplicate
  grouping (ml.dedup) stands in for them; or
- a folder with a `slices.csv` (the tcga-lgg layout): one row per image with its patient,
  institution, sequence and tumor mask.
Every sample says which collection, patient, institution and sequence it comes from where that is
known, so splits can keep patients and institutions apart and figures can be reported per source.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml import imaging, preprocess
from ml.imaging import UnreadableImage, read_image
from ml.preprocess import IMAGE_SIZE, INTENSITY_REFERENCE, MAP_STRIDE, Prepared, crop_like, prepare, resize

log = logging.getLogger(__name__)

TUMOR_CLASSES = frozenset({"glioma", "meningioma", "pituitary", "tumor", "yes"})
NO_TUMOR_CLASSES = frozenset({"notumor", "no_tumor", "no", "normal", "healthy"})
SPLIT_FOLDERS = frozenset({"training", "testing"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".dcm"})
SLICE_TABLE = "slices.csv"
THUMBNAIL_SIZE = 32
LABEL_NAMES = ("no_tumor", "tumor")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 1 = tumor, 0 = no tumor
    subtype: str  # the class as named by its collection, lower-case: glioma, notumor, yes...
    source: str = ""  # the collection's folder name
    subject: str = ""  # patient, where the collection says
    institution: str = ""
    sequence: str = ""  # flair, t1pre, t1post... where the collection says
    mask: Path | None = None  # tumor mask (0 background, 255 tumor) at the image's resolution
    listed_head_fraction: float | None = None  # the share of head the collection lists for the slice
    slice_index: int | None = None  # where the slice lies in its volume, where the collection says


@dataclass
class Dataset:
    """Preprocessed images with what is known of each; `thumbnails` feed near-duplicate grouping.

    `cells` is the share of tumor in each cell of the network's map, where it is known: on a slice
    with a mask, and on every no-tumor slice (nothing there); `has_cells` says where.
    """

    images: np.ndarray  # (n, size, size, 1) float32
    labels: np.ndarray  # (n,) int8
    cells: np.ndarray  # (n, size / MAP_STRIDE, size / MAP_STRIDE) float16
    has_cells: np.ndarray  # (n,) bool
    head_fractions: np.ndarray  # (n,) float32
    thumbnails: np.ndarray  # (n, THUMBNAIL_SIZE**2) float32
    samples: list[Sample]
    source_sizes: list[tuple[int, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reference: str = INTENSITY_REFERENCE  # the intensity reference `images` were standardised by

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def paths(self) -> list[str]:
        return [str(s.path) for s in self.samples]

    @property
    def subtypes(self) -> list[str]:
        return [s.subtype for s in self.samples]

    def column(self, name: str) -> np.ndarray:
        """One attribute of every sample (source, subject, institution, sequence...) as an array."""
        return np.array([getattr(s, name) for s in self.samples], dtype=object)

    def subset(self, index: np.ndarray) -> "Dataset":
        index = np.asarray(index, dtype=int)
        return Dataset(
            images=self.images[index], labels=self.labels[index], cells=self.cells[index],
            has_cells=self.has_cells[index], head_fractions=self.head_fractions[index],
            thumbnails=self.thumbnails[index], samples=[self.samples[i] for i in index],
            source_sizes=[self.source_sizes[i] for i in index], reference=self.reference,
        )

    def prepare(self, gray: np.ndarray) -> Prepared:
        """Another slice (a file of the dataset read again, an augmented or perturbed one) prepared as `images`."""
        return prepare(gray, self.images.shape[1], self.reference)


def collection_name(dataset: Dataset, index: int, roots: list[Path]) -> str:
    """A file named by its collection's folder and its path inside it: brain-mri/Training/glioma/x.jpg."""
    path = Path(dataset.paths[index])
    for root in roots:
        if path.is_relative_to(root):
            return f"{root.name}/{path.relative_to(root)}"
    return str(path)


def class_label(folder_name: str) -> int | None:
    name = folder_name.lower()
    if name in TUMOR_CLASSES:
        return 1
    if name in NO_TUMOR_CLASSES:
        return 0
    return None


def find_samples(root: str | Path) -> list[Sample]:
    """The labelled images of one collection, in a deterministic order (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"No such data folder: {root}")
    if (root / SLICE_TABLE).is_file():
        return table_samples(root)
    return folder_samples(root)


def folder_samples(root: Path) -> list[Sample]:
    """root/<class>/ or root/<Training|Testing>/<class>/; unknown folder names are ignored with a warning."""
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
            Sample(path=path, label=label, subtype=class_dir.name.lower(), source=root.name)
            for path in sorted(class_dir.iterdir())
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        )
    return samples


def table_samples(root: Path) -> list[Sample]:
    """One sample per row of root/slices.csv (patient, institution, sequence, image, mask, label)."""
    samples = []
    with open(root / SLICE_TABLE, newline="") as handle:
        for row in csv.DictReader(handle):
            label = class_label(row["label"])
            if label is None:
                raise ValueError(f"{root / SLICE_TABLE}: unknown label {row['label']!r}")
            samples.append(Sample(
                path=root / row["image"], label=label, subtype="glioma" if label else "notumor", source=root.name,
                subject=row["patient"], institution=row.get("institution", ""), sequence=row.get("sequence", ""),
                mask=root / row["mask"] if row.get("mask") else None,
                listed_head_fraction=float(row["head_fraction"]) if row.get("head_fraction") else None,
                slice_index=int(row["slice"]) if row.get("slice") else None,
            ))
    return samples


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """A flattened 32x32 copy of the whole slice, the unit of near-duplicate comparison."""
    return resize(gray, THUMBNAIL_SIZE).ravel()


def read_mask(path: Path) -> np.ndarray:
    """A tumor mask as a bool array (anything above half grey is tumor)."""
    return read_image(path) > 0.5


def load_dataset(roots: str | Path | list, size: int = IMAGE_SIZE, cache_dir: str | Path | None = None,
                 progress: bool = False, reference: str = INTENSITY_REFERENCE) -> Dataset:
    """Decode and preprocess every image of one or more collections, skipping unreadable files with a warning.

    With `cache_dir`, the arrays are kept in an .npz keyed by the files' names, sizes and times,
    so repeated experiments and test runs do not decode thousands of images again.
    """
    roots = roots if isinstance(roots, (list, tuple)) else [roots]
    samples = [sample for root in roots for sample in find_samples(root)]
    if not samples:
        raise ValueError(f"No labelled images found under {', '.join(map(str, roots))}")
    cache_path = _cache_path(samples, size, reference, cache_dir) if cache_dir else None
    if cache_path and cache_path.exists():
        return _read_cache(cache_path, samples, reference)
    dataset = _decode_all(samples, size, reference, progress)
    if dataset.skipped:
        log.warning("Skipped %d unreadable file(s), first: %s", len(dataset.skipped), dataset.skipped[0])
    if cache_path:
        _write_cache(cache_path, dataset)
    return dataset


def cell_targets(sample: Sample, prepared, size: int) -> tuple[np.ndarray, bool]:
    """The share of tumor in each map cell, and whether it is known (see Dataset)."""
    cells = size // MAP_STRIDE
    if sample.mask is not None:
        return crop_like(read_mask(sample.mask), prepared, cells), True
    return np.zeros((cells, cells), np.float32), sample.label == 0


def _decode_all(samples: list[Sample], size: int, reference: str, progress: bool) -> Dataset:
    images, cells, known, heads, thumbs, kept, sizes, skipped = [], [], [], [], [], [], [], []
    iterator = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, desc="Loading images", unit="img")
    for sample in iterator:
        try:
            gray = read_image(sample.path)
            prepared = prepare(gray, size, reference)
            target, is_known = cell_targets(sample, prepared, size)
        except UnreadableImage as error:
            skipped.append((str(sample.path), str(error)))
            continue
        images.append(prepared.tensor)
        cells.append(target)
        known.append(is_known)
        heads.append(prepared.head_fraction)
        thumbs.append(thumbnail(prepared.work))
        sizes.append((gray.shape[1], gray.shape[0]))
        kept.append(sample)
    if not kept:
        raise ValueError("None of the images could be read")
    return Dataset(
        images=np.stack(images), labels=np.array([s.label for s in kept], dtype=np.int8),
        cells=np.stack(cells).astype(np.float16), has_cells=np.array(known), head_fractions=np.array(heads, np.float32),
        thumbnails=np.stack(thumbs), samples=kept, source_sizes=sizes, skipped=skipped, reference=reference,
    )


def _cache_path(samples: list[Sample], size: int, reference: str, cache_dir: str | Path) -> Path:
    """Keyed by the files and by the code that decodes and preprocesses them: a change to either is a new cache."""
    digest = hashlib.sha256(f"v2|{size}|{MAP_STRIDE}|{reference}".encode())
    for module in (imaging, preprocess, sys.modules[__name__]):
        digest.update(Path(module.__file__).read_bytes())
    for sample in samples:
        stat = sample.path.stat()
        digest.update(f"{sample}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return Path(cache_dir) / f"dataset-{digest.hexdigest()[:16]}.npz"


def _write_cache(path: Path, dataset: Dataset) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp, images=dataset.images, labels=dataset.labels, cells=dataset.cells, has_cells=dataset.has_cells,
        head_fractions=dataset.head_fractions, thumbnails=dataset.thumbnails,
        paths=np.array(dataset.paths), source_sizes=np.array(dataset.source_sizes),
        skipped=np.array(dataset.skipped, dtype=str).reshape(-1, 2),
    )
    tmp.replace(path)


def _read_cache(path: Path, samples: list[Sample], reference: str) -> Dataset:
    by_path = {str(sample.path): sample for sample in samples}
    with np.load(path) as data:
        return Dataset(
            images=data["images"], labels=data["labels"], cells=data["cells"], has_cells=data["has_cells"],
            head_fractions=data["head_fractions"], thumbnails=data["thumbnails"],
            samples=[by_path[p] for p in data["paths"].tolist()],
            source_sizes=[tuple(s) for s in data["source_sizes"].tolist()],
            skipped=[tuple(s) for s in data["skipped"].tolist()], reference=reference,
        )
