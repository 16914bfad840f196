import numpy as np
import pytest

from ml.data import thumbnail
from ml.dedup import duplicate_report, grouped_split, near_duplicate_groups
from ml.phantoms import make_phantom

pytestmark = pytest.mark.no_db


def thumbnails(grays):
    return np.stack([thumbnail(g) for g in grays])


def test_copies_and_near_copies_share_a_group_distinct_slices_do_not():
    base = [make_phantom(seed, tumor=seed % 2 == 0) for seed in range(6)]
    noisy_copy = np.clip(base[0] + np.random.default_rng(0).normal(0, 0.01, base[0].shape), 0, 1)
    groups = near_duplicate_groups(thumbnails(base + [base[3].copy(), noisy_copy]))
    assert groups[6] == groups[3]
    assert groups[7] == groups[0]
    assert len(set(groups[:6])) == 6
    report = duplicate_report(groups)
    assert report["groups"] == 6 and report["duplicates"] == 2 and report["largest_group"] == 2


def test_chains_of_neighbours_form_one_group():
    a = make_phantom(1, False)
    b = np.clip(a * 0.995 + 0.002, 0, 1)
    c = np.clip(b * 0.995 + 0.002, 0, 1)
    groups = near_duplicate_groups(thumbnails([a, c, b]))
    assert len(set(groups)) == 1


def test_no_group_spans_two_splits_and_labels_are_stratified():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(300), rng.integers(1, 6, 300))
    labels = (groups % 3 != 0).astype(np.int8)
    split = grouped_split(labels, groups, seed=4)
    parts = [set(groups[index]) for index in (split.train, split.validation, split.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(len(index) for index in (split.train, split.validation, split.test)) == len(labels)
    for index, share in ((split.train, 0.7), (split.validation, 0.15), (split.test, 0.15)):
        assert abs(len(index) / len(labels) - share) < 0.05
        assert abs(labels[index].mean() - labels.mean()) < 0.08


def test_split_is_deterministic_by_seed():
    groups = np.arange(200) // 2
    labels = (np.arange(200) % 4 == 0).astype(int)
    first, second = grouped_split(labels, groups, seed=1), grouped_split(labels, groups, seed=1)
    np.testing.assert_array_equal(first.test, second.test)
    assert not np.array_equal(first.test, grouped_split(labels, groups, seed=2).test)
