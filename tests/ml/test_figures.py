"""Where a whole-volume collection's errors fall: by distance to the lesion, and by the lesion's size."""

from pathlib import Path

import numpy as np
import pytest

from ml import card_markdown
from ml.data import Dataset, Sample
from ml.error_positions import recorded_errors_by_position
from ml.figures import breakdown, errors_by_position, slices_to_lesion

pytestmark = pytest.mark.no_db


def volume_dataset() -> Dataset:
    """Two patients, 20 FLAIR slices each, tumor on slices 8-12 (lesion growing to the middle slice), and one
    T1 volume of the first patient without a tumor slice."""
    samples, lesion = [], []
    for subject in ("P1", "P2"):
        for position in range(1, 21):
            tumor = 8 <= position <= 12
            samples.append(Sample(Path(f"volumes/{subject}-{position}.png"), int(tumor),
                                  "tumor" if tumor else "no_tumor", source="volumes", subject=subject,
                                  institution="XX", sequence="flair", slice_index=position))
            lesion.append(0.05 - 0.02 * abs(position - 10) if tumor else 0.0)  # 1%, 3%, 5%, 3%, 1%
    for position in range(1, 4):
        samples.append(Sample(Path(f"volumes/P1-t1-{position}.png"), 0, "no_tumor", source="volumes", subject="P1",
                              institution="XX", sequence="t1pre", slice_index=position))
        lesion.append(0.0)
    n = len(samples)
    cells = np.zeros((n, 10, 10), np.float16)
    for i, share in enumerate(lesion):
        cells[i].flat[:int(round(share * 100))] = 1.0
    return Dataset(images=np.zeros((n, 40, 40, 1), np.float32), labels=np.array([s.label for s in samples], np.int8),
                   cells=cells, has_cells=np.ones(n, bool), head_fractions=np.ones(n, np.float32),
                   thumbnails=np.zeros((n, 8, 8), np.float32), samples=samples, source_sizes=[(40, 40)] * n)


def test_slices_to_lesion_counts_within_the_same_volume():
    distance = slices_to_lesion(volume_dataset())
    assert list(distance[:20]) == [7, 6, 5, 4, 3, 2, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert list(distance[40:]) == [-1, -1, -1]  # the T1 volume holds no tumor slice


def test_errors_by_position_bins_no_tumor_slices_by_distance_and_tumors_by_lesion_share():
    dataset = volume_dataset()
    distance = slices_to_lesion(dataset)
    # Alarms on every no-tumor slice within two slices of the lesion; the smallest lesions are missed.
    scores = np.where(dataset.labels == 1, 0.9, np.where((distance >= 1) & (distance <= 2), 0.8, 0.1))
    scores[[7, 11, 27, 31]] = 0.2  # the 1% lesions at either end of each tumor
    index = np.arange(len(dataset))
    found = errors_by_position(dataset, index, scores, threshold=0.5)
    near, far = found["no_tumor_by_slices_to_lesion"]["1-2"], found["no_tumor_by_slices_to_lesion"]["6-10"]
    assert near["n"] == 8 and near["specificity"] == 0.0 and near["patients"] == 2
    assert far["n"] == 2 * 5 and far["specificity"] == 1.0 and len(near["ci95"]["specificity"]) == 2
    assert "11+" not in found["no_tumor_by_slices_to_lesion"]  # none so far away
    by_size = found["tumor_by_lesion_share"]
    assert "<1%" not in by_size
    assert by_size["1-3%"]["n"] == 4 and by_size["1-3%"]["sensitivity"] == 0.0
    assert by_size["3%+"]["n"] == 6 and by_size["3%+"]["sensitivity"] == 1.0
    assert breakdown(dataset, index, scores, 0.5)["by_source"]["volumes"]["errors_by_position"] == found


def test_the_model_page_shows_the_breakdown_with_intervals():
    dataset = volume_dataset()
    index = np.arange(len(dataset))
    scores = np.where(dataset.labels == 1, 0.9, 0.1)
    card = {"metrics": {"test_by_source": breakdown(dataset, index, scores, 0.5)["by_source"]}}
    table = card_markdown.errors_by_position(card)
    assert "| volumes no-tumor slices, 1-2 slices from the lesion | 8 | specificity 1.000 [" in table
    assert "| volumes tumor slices, lesion 3%+ of the input | 6 | sensitivity 1.000 [" in table


def test_a_version_trained_before_the_breakdown_gets_it_from_its_recorded_test_scores():
    dataset = volume_dataset()
    test = np.arange(0, len(dataset), 2)
    scores = np.linspace(0.05, 0.95, len(test))
    card = {"split": {"test_files": [f"volumes/{dataset.samples[i].path.name}" for i in test]},
            "metrics": {"test_predictions": {"scores": list(scores)}}, "threshold": {"value": 0.4}}
    found = recorded_errors_by_position(card, dataset, [Path("volumes")])
    assert found == {"volumes": errors_by_position(dataset, test, scores, 0.4)}
    card["split"]["test_files"][3] = "volumes/elsewhere.png"
    with pytest.raises(ValueError, match="1 of the card's 22 test files are not in these collections"):
        recorded_errors_by_position(card, dataset, [Path("volumes")])


def test_the_command_names_a_missing_version_or_folder_without_a_traceback(tmp_path, capsys):
    from ml.error_positions import main

    for argv, message in ((["models/no-such-version", "--data", str(tmp_path)], "No model version 'no-such-version'"),
                          (["models/cnn-20261207-032957", "--data", str(tmp_path / "absent")], "absent")):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2 and message in capsys.readouterr().err
