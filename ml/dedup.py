"""Group slices that must stay on one side of every split, and split by group.

Two slices are near-duplicates when the cosine similarity of their mean-centred 32x32 thumbnails,
or of one and the other's mirror image, is at least `SIMILARITY`: plain copies, re-encodings,
left-right mirrored copies and neighbouring slices of one scan. Mean-centring keeps the black
background, which every slice shares, from making unrelated slices look alike. A group is a
connected component of that relation joined with "same patient": a collection that names its
patients (tcga-lgg) is grouped by patient. Across collections only copies count
(`CROSS_SIMILARITY`): two collections share no neighbouring slices, and at 0.95 unrelated axial
slices of brain-mri and tcga-lgg chained 21 patients into one group (no pair reached 0.97).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

SIMILARITY = 0.95
CROSS_SIMILARITY = 0.98
BLOCK = 1024
SMALL_STRATUM = 3  # a stratum with fewer groups than this (one patient of an institution) stays in training


def centred_units(thumbnails: np.ndarray) -> np.ndarray:
    """(n, side*side) thumbnails -> mean-centred unit vectors."""
    centred = thumbnails - thumbnails.mean(axis=1, keepdims=True)
    return (centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def mirrored(units: np.ndarray) -> np.ndarray:
    """The left-right mirror image of each (square) thumbnail."""
    side = int(round(np.sqrt(units.shape[1])))
    return units.reshape(-1, side, side)[:, :, ::-1].reshape(len(units), -1)


def similarity_edges(thumbnails: np.ndarray, sources: np.ndarray, skip: np.ndarray,
                     similarity: float = SIMILARITY) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) whose thumbnails, one of them mirrored or not, are alike: at least `similarity`
    within a source, CROSS_SIMILARITY across sources. Pairs whose `skip` keys are equal and not empty
    are left out."""
    units = centred_units(thumbnails)
    both = np.concatenate([units, mirrored(units)])  # (2n, d)
    n = len(units)
    rows, cols = [], []
    for start in range(0, n, BLOCK):
        block = units[start:start + BLOCK] @ both.T  # (block, 2n)
        r, c = np.nonzero(np.maximum(block[:, :n], block[:, n:]) >= min(similarity, CROSS_SIMILARITY))
        score = np.maximum(block[r, c], block[r, c + n])
        r = r + start
        needed = np.where(sources[r] == sources[c], similarity, CROSS_SIMILARITY)
        keep = (c > r) & (score >= needed) & ~((skip[r] == skip[c]) & (skip[r] != ""))
        rows.append(r[keep])
        cols.append(c[keep])
    return np.concatenate(rows), np.concatenate(cols)


def near_duplicate_groups(thumbnails: np.ndarray, similarity: float = SIMILARITY,
                          subjects: np.ndarray | None = None, sources: np.ndarray | None = None) -> np.ndarray:
    """A group id per row of `thumbnails` (n, d); ids are 0..groups-1 in first-seen order.

    With `subjects` (one per row, "" when unknown), rows of one subject form one group. Within a
    collection that names its subjects the subject is the unit (slices of one scan look alike
    across patients too, and must not chain patients together); across collections, and where no
    subject is named, near-duplicates join groups.
    """
    n = len(thumbnails)
    subjects = np.full(n, "", dtype=object) if subjects is None else np.asarray(subjects, dtype=object)
    sources = np.full(n, "", dtype=object) if sources is None else np.asarray(sources, dtype=object)
    named_source = np.array([s if subjects[i] else "" for i, s in enumerate(sources)], dtype=object)
    rows, cols = similarity_edges(thumbnails, sources, named_source, similarity)
    first_of_subject: dict = {}
    for index, subject in enumerate(subjects):
        if subject:
            key = (sources[index], subject)
            if key in first_of_subject:
                rows, cols = np.append(rows, first_of_subject[key]), np.append(cols, index)
            else:
                first_of_subject[key] = index
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    _, groups = connected_components(graph, directed=False)
    return _renumber_first_seen(groups)


def _renumber_first_seen(groups: np.ndarray) -> np.ndarray:
    _, first = np.unique(groups, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[groups]


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def parts(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def summary(self, labels: np.ndarray, groups: np.ndarray) -> dict:
        return {
            name: {
                "images": int(len(index)),
                "groups": int(len(np.unique(groups[index]))),
                "tumor": int(labels[index].sum()),
                "no_tumor": int(len(index) - labels[index].sum()),
            }
            for name, index in self.parts().items()
        }

    def without(self, drop: np.ndarray) -> "Split":
        """The same split with the rows where `drop` (a boolean mask) is true removed from every part."""
        return Split(*(index[~drop[index]] for index in (self.train, self.validation, self.test)))


def grouped_split(
    labels: np.ndarray, groups: np.ndarray, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0,
    strata: np.ndarray | None = None,
) -> Split:
    """Assign whole groups to train/validation/test, stratified.

    A group's stratum is its majority label, or, with `strata` (one key per row, e.g. collection,
    institution and label), the key of its first row. Within each stratum the groups, largest
    first (ties in a seeded random order), each go to the split furthest below its share of the
    stratum's images, so that a few large groups cannot skew the shares; a stratum of fewer than
    SMALL_STRATUM groups goes to training whole.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError("fractions must sum to 1")
    rng = np.random.default_rng(seed)
    group_ids, first_row = np.unique(groups, return_index=True)
    if strata is not None:
        group_stratum = np.asarray(strata, dtype=object)[first_row].astype(str)
    else:
        group_stratum = np.array([str(round(labels[groups == g].mean())) for g in group_ids])
    group_size = np.bincount(groups)[group_ids]
    assignment = np.zeros(len(group_ids), dtype=np.int8)
    shares = np.asarray(fractions, dtype=float)
    for stratum in sorted(set(group_stratum)):
        members = rng.permutation(np.flatnonzero(group_stratum == stratum))
        if len(members) < SMALL_STRATUM:
            continue
        members = members[np.argsort(-group_size[members], kind="stable")]
        filled = np.zeros(3)
        total = group_size[members].sum()
        for member in members:
            target = int(np.argmax(shares * total - filled))
            assignment[member] = target
            filled[target] += group_size[member]
    split_of_image = assignment[np.searchsorted(group_ids, groups)]
    return Split(*(np.flatnonzero(split_of_image == k) for k in range(3)))


def duplicate_report(groups: np.ndarray) -> dict:
    """Numbers the model card and the analytics page show about near-duplicate groups."""
    sizes = np.bincount(groups)
    return {
        "images": int(len(groups)),
        "groups": int(len(sizes)),
        "groups_with_duplicates": int((sizes > 1).sum()),
        "images_in_duplicate_groups": int(sizes[sizes > 1].sum()),
        "duplicates": int(len(groups) - len(sizes)),
        "largest_group": int(sizes.max()) if len(sizes) else 0,
        "similarity_threshold": SIMILARITY,
    }
