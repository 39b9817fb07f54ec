"""Bad inputs: truncated, non-image, empty, unreadable files; unusual but valid image modes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurall_neuro.data.imageio import decode_rgb, read_rgb
from neurall_neuro.data.records import ImageRecord
from neurall_neuro.data.scan import scan_images
from neurall_neuro.errors import BadImageError


@pytest.fixture
def bad_files(tmp_path, write_image) -> dict[str, Path]:
    full = write_image(tmp_path / "full.jpg", size=64)
    data = full.read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    text = tmp_path / "readme.txt"
    text.write_text("this is not an image\n")
    empty = tmp_path / "empty.png"
    empty.touch()
    return {"truncated": truncated, "noise": noise, "text": text, "empty": empty}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated", "truncated or corrupt"),
        ("noise", "not an image"),
        ("text", "not an image"),
        ("empty", "empty file"),
    ],
)
def test_bad_file_raises_bad_image_error_naming_path_and_reason(bad_files, name, reason):
    path = bad_files[name]
    with pytest.raises(BadImageError) as info:
        read_rgb(path)
    assert str(path) in str(info.value)
    assert reason in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(BadImageError, match="file not found"):
        read_rgb(tmp_path / "nope.png")


def test_unreadable_permission(tmp_path, write_image):
    path = write_image(tmp_path / "locked.png")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root (or a permissive file system) reads it anyway
            pytest.skip("running as root: chmod 000 does not block reads")
        with pytest.raises(BadImageError, match="permission denied"):
            read_rgb(path)
        report = scan_images([ImageRecord(path, 0)])
        assert report.bad == [(path, "permission denied")]
    finally:
        path.chmod(0o644)


def test_valid_modes_are_converted_to_rgb(tmp_path, write_image):
    gray = write_image(tmp_path / "gray.png", mode="L")
    rgba = tmp_path / "rgba.png"
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = 0  # fully transparent: composited on white
    arr[:4, :, 3] = 255  # top half opaque red-ish
    Image.fromarray(arr, "RGBA").save(rgba)
    palette = write_image(tmp_path / "pal.png", mode="P")
    deep = tmp_path / "deep16.png"
    values = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(deep)  # a 16-bit grayscale PNG

    g, mode = decode_rgb(gray)
    assert mode == "L" and g.shape == (24, 24, 3) and (g[..., 0] == g[..., 2]).all()
    r, mode = decode_rgb(rgba)
    assert mode == "RGBA"
    assert r[0, 0].tolist() == [200, 0, 0] and r[7, 0].tolist() == [255, 255, 255]
    assert decode_rgb(palette)[1] == "P"
    d, mode = decode_rgb(deep)
    assert mode.startswith("I")  # Pillow opens 16-bit PNGs as I;16 or I
    assert d[..., 0].tolist() == [[0, 128], [255, 4]]  # scaled by 255/65535, not clipped

    report = scan_images([ImageRecord(p, 0) for p in (gray, rgba, palette, deep)])
    assert len(report.ok) == 4 and report.bad == []
    assert sum(report.converted.values()) == 4
    assert report.converted["L"] == 1 and report.converted["RGBA"] == 1


def test_scan_skips_bad_files_by_default_and_strict_lists_them(tmp_path, bad_files, write_image):
    good = [write_image(tmp_path / f"ok{i}.png", seed=i) for i in range(3)]
    records = [ImageRecord(p, 0) for p in [*good, *bad_files.values()]]
    report = scan_images(records)
    assert [r.path for r in report.ok] == good
    assert {p for p, _ in report.bad} == set(bad_files.values())
    assert "3 ok, 4 bad" in report.summary()
    with pytest.raises(BadImageError) as info:
        scan_images(records, strict=True)
    for path in bad_files.values():
        assert str(path) in str(info.value)
