"""Volumes: NIfTI read the right way up, zip archives bounded, a series put in anatomical order, its result."""

import gzip
import io
import zipfile

import nibabel
import numpy as np
import pytest

from ml.volumes import (SeriesRefused, SliceGeometry, is_nifti, nifti_slices, slice_order, smoothed,
                        suspicious_region, zip_members)

pytestmark = pytest.mark.no_db


def marked_volume() -> np.ndarray:
    """A 40 x 50 x 6 volume (x: right, y: anterior, z: superior): a body a little brighter in each slice up,
    and a bright block at its front right."""
    volume = np.zeros((40, 50, 6), np.float32)
    for z in range(6):
        volume[5:35, 5:45, z] = 100 + 5 * z
    volume[30:40, 40:50, :] = 300  # right (high x), anterior (high y)
    return volume


def nifti_bytes(volume: np.ndarray, affine: np.ndarray, compressed: bool = False) -> bytes:
    data = nibabel.Nifti1Image(volume, affine).to_bytes()
    return gzip.compress(data) if compressed else data


@pytest.mark.parametrize("compressed", [False, True])
def test_axial_slices_come_inferior_to_superior_anterior_up_and_right_on_the_left(compressed):
    data = nifti_bytes(marked_volume(), np.eye(4), compressed)
    assert is_nifti(data[:352])
    slices = nifti_slices(data)
    assert len(slices) == 6 and slices[0].shape == (50, 40)  # rows: anterior to posterior, columns: right to left
    assert [round(float(s[25, 20]), 2) for s in slices] == sorted(round(float(s[25, 20]), 2) for s in slices)
    top = slices[-1]
    bright = np.argwhere(top == top.max())
    assert bright[:, 0].max() < 10 and bright[:, 1].max() < 10  # front (top rows), patient's right (left columns)
    assert top[5:10, 30:35].max() < top.max()  # the patient's left shows no block


def test_the_axial_axis_is_found_from_the_affine_whatever_order_the_file_stores():
    volume = marked_volume()
    stored = np.transpose(volume, (2, 0, 1))  # the file stores z first
    affine = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)  # voxel (k, i, j) -> (i, j, k)
    np.testing.assert_allclose(nifti_slices(nifti_bytes(stored, affine)), nifti_slices(nifti_bytes(volume, np.eye(4))),
                               atol=1e-6)


def test_a_volume_over_the_limits_is_refused_from_its_header():
    volume = np.zeros((16, 16, 30), np.int16)
    with pytest.raises(SeriesRefused, match="at most 20"):
        nifti_slices(nifti_bytes(volume, np.eye(4)), max_slices=20)
    with pytest.raises(SeriesRefused, match="inflates past"):
        nifti_slices(nifti_bytes(np.zeros((64, 64, 64), np.int16), np.eye(4), compressed=True), max_bytes=10_000)


def test_zip_members_are_bounded_before_and_while_inflating():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("series/1.dcm", b"a" * 1000)
        archive.writestr("series/.DS_Store", b"junk")
        archive.writestr("__MACOSX/series/._1.dcm", b"junk")
        archive.writestr("series/2.dcm", b"b" * 1000)
    data = buffer.getvalue()
    assert [name for name, _ in zip_members(data, max_members=5, max_total=10_000)] == ["series/1.dcm", "series/2.dcm"]
    with pytest.raises(SeriesRefused, match="at most 1"):
        list(zip_members(data, max_members=1, max_total=10_000))
    with pytest.raises(SeriesRefused, match="inflates past"):
        list(zip_members(data, max_members=5, max_total=1500))
    with pytest.raises(SeriesRefused, match="damaged"):
        list(zip_members(b"PK\x03\x04not a zip", max_members=5, max_total=1500))


AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def geometry(z: float | None, instance: int | None = None, series: str = "1.2.3", orientation=AXIAL) -> SliceGeometry:
    return SliceGeometry(series, 64, 64, orientation, (0.0, 0.0, z) if z is not None else None, instance)


def test_slices_are_ordered_by_position_along_the_normal_not_by_name():
    assert slice_order([geometry(z) for z in (12.5, -5.0, 0.0, 30.0)]) == [1, 2, 0, 3]
    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # rows along y, columns down z: the normal (row x column) is -x
    sagittal_slices = [SliceGeometry("s", 64, 64, sagittal, (x, 0.0, 0.0), None) for x in (3.0, 1.0, 2.0)]
    assert slice_order(sagittal_slices) == [0, 2, 1]
    assert slice_order([geometry(None, instance) for instance in (3, 1, 2)]) == [1, 2, 0]


@pytest.mark.parametrize("slices,message", [
    ([geometry(0.0), geometry(1.0, series="9.9")], "2 different series"),
    ([geometry(0.0), SliceGeometry("1.2.3", 128, 128, AXIAL, (0, 0, 1.0), None)], "differ in size"),
    ([geometry(0.0), geometry(1.0, orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0))], "different planes"),
    ([geometry(0.0), geometry(0.0)], "same position"),
])
def test_mixed_series_are_refused_with_the_reason(slices, message):
    with pytest.raises(SeriesRefused, match=message) as refused:
        slice_order(slices)
    assert refused.value.code == "mixed_series"


def test_the_region_is_the_best_run_and_one_bright_slice_counts_less_than_a_lesion_seen_on_several():
    positions = list(range(10))
    single = [0.1, 0.1, 0.95, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    lesion = [0.1, 0.1, 0.1, 0.1, 0.7, 0.8, 0.75, 0.1, 0.1, 0.1]
    a, b = suspicious_region(positions, single, 0.5, 3), suspicious_region(positions, lesion, 0.5, 3)
    assert a["score"] < 0.5 <= b["score"] and (b["first"], b["last"], b["peak"]) == (4, 6, 5)
    assert a["suspicious"] == [2] and b["runs"] == [[4, 6]] and b["suspicious"] == [4, 5, 6]
    assert suspicious_region(positions, single, 0.5, 1)["score"] == 0.95  # one slice at a time: the maximum
    assert suspicious_region([0, 2, 3], [0.9, 0.8, 0.7], 0.5, 5)["window"] == 3  # no longer than the series
    assert suspicious_region([], [], 0.5, 3)["score"] is None


def test_smoothing_keeps_the_length_and_averages_neighbours():
    np.testing.assert_allclose(smoothed(np.array([0.0, 3.0, 0.0, 0.0]), 3), [1.5, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(smoothed(np.array([0.2, 0.4]), 1), [0.2, 0.4])
