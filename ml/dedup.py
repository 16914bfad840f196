"""Group near-duplicate slices and split by group, so that no group spans two splits.

Two slices are near-duplicates when the cosine similarity of their 32x32 thumbnails is at least
`SIMILARITY` (plain copies, re-encodings and neighbouring slices of one patient). Groups are the
connected components of that relation, so a chain of neighbouring slices stays together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIMILARITY = 0.99
BLOCK = 1024


def near_duplicate_groups(thumbnails: np.ndarray, similarity: float = SIMILARITY) -> np.ndarray:
    """Return a group id per row of `thumbnails` (n, d); ids are 0..groups-1 in first-seen order."""
    n = len(thumbnails)
    norms = np.linalg.norm(thumbnails, axis=1, keepdims=True)
    unit = (thumbnails / np.maximum(norms, 1e-12)).astype(np.float32)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, BLOCK):
        block = unit[start:start + BLOCK] @ unit.T  # (block, n)
        rows, cols = np.nonzero(block >= similarity)
        for row, col in zip(rows + start, cols):
            if col > row:
                root_a, root_b = find(row), find(col)
                if root_a != root_b:
                    parent[max(root_a, root_b)] = min(root_a, root_b)
    roots = np.array([find(i) for i in range(n)])
    _, groups = np.unique(roots, return_inverse=True)
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

    def summary(self, labels: np.ndarray, groups: np.ndarray) -> dict:
        return {
            name: {
                "images": int(len(index)),
                "groups": int(len(np.unique(groups[index]))),
                "tumor": int(labels[index].sum()),
                "no_tumor": int(len(index) - labels[index].sum()),
            }
            for name, index in (("train", self.train), ("validation", self.validation), ("test", self.test))
        }


def grouped_split(
    labels: np.ndarray, groups: np.ndarray, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> Split:
    """Assign whole groups to train/validation/test, stratified by each group's majority label.

    Within each label the groups are shuffled (seeded) and filled into the splits until each
    holds its fraction of that label's images.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError("fractions must sum to 1")
    rng = np.random.default_rng(seed)
    group_ids = np.unique(groups)
    group_label = np.array([round(labels[groups == g].mean()) for g in group_ids])
    group_size = np.bincount(groups)[group_ids]
    assignment = np.empty(len(group_ids), dtype=np.int8)
    bounds = np.cumsum(fractions)[:-1]
    for label in np.unique(group_label):
        members = rng.permutation(np.flatnonzero(group_label == label))
        filled = np.cumsum(group_size[members]) / group_size[members].sum()
        # The split is decided by where a group's middle image falls.
        middle = filled - group_size[members] / (2 * group_size[members].sum())
        assignment[members] = np.searchsorted(bounds, middle, side="right")
    split_of_image = assignment[np.searchsorted(group_ids, groups)]
    return Split(*(np.flatnonzero(split_of_image == k) for k in range(3)))


def duplicate_report(groups: np.ndarray) -> dict:
    """Numbers the model card and the analytics page show about near-duplicates."""
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
