import numpy as np
import pytest

from ml.data import thumbnail
from ml.dedup import duplicate_report, grouped_split, near_duplicate_groups
from ml.phantoms import make_phantom

pytestmark = pytest.mark.no_db


def thumbnails(grays):
    return np.stack([thumbnail(g) for g in grays])


def distinct_slices(count: int) -> list[np.ndarray]:
    """Phantoms placed differently on the canvas: unrelated slices, not near-duplicates."""
    out = []
    for seed in range(count):
        canvas = np.zeros((320, 320), np.float32)
        top, left = 10 + 11 * seed, 80 - 9 * seed
        canvas[top:top + 224, left:left + 224] = make_phantom(seed, tumor=seed % 2 == 0)
        out.append(canvas)
    return out


def test_copies_near_copies_and_mirror_images_share_a_group_distinct_slices_do_not():
    base = distinct_slices(6)
    noisy_copy = np.clip(base[0] + np.random.default_rng(0).normal(0, 0.01, base[0].shape), 0, 1)
    mirror = base[4][:, ::-1].copy()
    groups = near_duplicate_groups(thumbnails(base + [base[3].copy(), noisy_copy, mirror]))
    assert groups[6] == groups[3] and groups[7] == groups[0]
    assert groups[8] == groups[4], "a left-right mirrored copy is a duplicate"
    assert len(set(groups[:6])) == 6
    report = duplicate_report(groups)
    assert report["groups"] == 6 and report["duplicates"] == 3 and report["largest_group"] == 2


def test_a_shared_black_background_does_not_make_slices_alike():
    """Mean-centring: two different heads on the same large black canvas are not near-duplicates."""
    a, b = np.zeros((400, 400), np.float32), np.zeros((400, 400), np.float32)
    a[100:324, 100:324] = make_phantom(1, False)
    b[100:324, 100:324] = make_phantom(2, True)[::-1]
    assert len(set(near_duplicate_groups(thumbnails([a, b])))) == 2


def test_chains_of_neighbours_form_one_group():
    a = make_phantom(1, False)
    b = np.clip(a * 0.995 + 0.002, 0, 1)
    c = np.clip(b * 0.995 + 0.002, 0, 1)
    groups = near_duplicate_groups(thumbnails([a, c, b]))
    assert len(set(groups)) == 1


def test_patients_are_groups_and_only_copies_join_collections():
    slices = distinct_slices(4)
    subjects = np.array(["P1", "P1", "P2", ""], dtype=object)
    sources = np.array(["lgg", "lgg", "lgg", "other"], dtype=object)
    alike = slices[2] * 0.999  # a near copy of P2's slice, in another collection
    groups = near_duplicate_groups(thumbnails(slices[:3] + [alike]), subjects=subjects, sources=sources)
    assert groups[0] == groups[1] != groups[2]
    assert groups[3] == groups[2], "a copy across collections joins the patient's group"


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


def test_a_few_large_groups_cannot_skew_the_shares():
    groups = np.concatenate([np.repeat([0, 1], 300), np.arange(2, 602)])
    labels = np.zeros(len(groups), np.int8)
    split = grouped_split(labels, groups, seed=0)
    for index, share in ((split.train, 0.7), (split.validation, 0.15), (split.test, 0.15)):
        assert abs(len(index) / len(labels) - share) < 0.03


def test_strata_split_each_institution_and_a_lone_patient_stays_in_training():
    groups = np.repeat(np.arange(41), 10)
    labels = np.tile(np.r_[np.zeros(7, np.int8), np.ones(3, np.int8)], 41)
    strata = np.repeat(np.r_[["A"] * 20, ["B"] * 20, ["C"]], 10)
    split = grouped_split(labels, groups, seed=3, strata=strata)
    for institution in ("A", "B"):
        for index in (split.validation, split.test):
            assert (strata[index] == institution).sum() >= 20
    assert set(strata[split.train]) >= {"C"} and "C" not in set(strata[split.test]) | set(strata[split.validation])


def test_split_is_deterministic_by_seed():
    groups = np.arange(200) // 2
    labels = (np.arange(200) % 4 == 0).astype(int)
    first, second = grouped_split(labels, groups, seed=1), grouped_split(labels, groups, seed=1)
    np.testing.assert_array_equal(first.test, second.test)
    assert not np.array_equal(first.test, grouped_split(labels, groups, seed=2).test)
