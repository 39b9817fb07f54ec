"""HED stain augmentation and Macenko stain normalisation (``neurall_neuro.data.stain``)."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurall_neuro.data.dataset import ImageDataset
from neurall_neuro.data.preprocess import (
    ROBUSTNESS_TRANSFORMS,
    Preprocessing,
    get_robustness_transform,
)
from neurall_neuro.data.records import ImageRecord
from neurall_neuro.data.stain import (
    HEDAugment,
    HEDJitter,
    StainNormWarning,
    StainReference,
    fit_macenko,
    fit_stain_reference,
    hed_perturb,
    hed_to_rgb,
    rgb_to_hed,
)
from neurall_neuro.errors import ConfigError, DataError
from neurall_neuro.models.checkpoint import load_checkpoint, save_checkpoint
from neurall_neuro.models.registry import get_model

# Ruifrok & Johnston (2001) stain OD vectors, written out independently of the module.
RJ = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])


def _random_image(seed: int, size: int = 12, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Values in (0, 1]: uniform in [0.001, 1]."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, size, size, generator=g, dtype=dtype) * 0.999 + 0.001).clamp(max=1.0)


def _smear(seed: int, size: int = 48) -> np.ndarray:
    """An H&E-like uint8 image (Beer-Lambert mix of two stains on a light background)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    h = np.zeros((size, size))
    e = 0.15 + 0.1 * rng.random((size, size))
    for _ in range(5):
        cy, cx, r = rng.uniform(0.15, 0.85, 2).tolist() + [rng.uniform(0.08, 0.2)]
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
        h[blob] += rng.uniform(0.5, 1.0)
        e[blob] += rng.uniform(0.0, 0.3)
    he = np.array([[0.60, 0.75, 0.28], [0.10, 0.90, 0.42]])  # H and E OD vectors
    od = h[..., None] * he[0] + e[..., None] * he[1] + rng.normal(0, 0.02, (size, size, 3))
    return (np.clip(np.exp(-np.clip(od, 0, None)), 0, 1) * 255).astype(np.uint8)


def _write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


# --------------------------------------------------------------------------- HED
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hed_round_trip_is_the_identity(dtype: torch.dtype) -> None:
    for seed in range(3):
        x = _random_image(seed, dtype=dtype)
        assert torch.allclose(hed_to_rgb(rgb_to_hed(x)), x, atol=1e-4, rtol=0)
        assert torch.allclose(hed_perturb(x, [1, 1, 1], [0, 0, 0]), x, atol=1e-4, rtol=0)


def test_unmixing_matches_an_independent_solve() -> None:
    x = _random_image(4)
    od = np.log(x.numpy().reshape(3, -1).T) / np.log(1e-6)  # [pixels, RGB]
    # OD (row vector) = S @ RJ  <=>  RJ^T S^T = OD^T
    expected = np.linalg.solve(RJ.T, od.T)  # [stains, pixels]
    got = rgb_to_hed(x).numpy().reshape(3, -1)
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_perturbation_scales_and_shifts_the_stain_channels() -> None:
    x = _random_image(5) * 0.5 + 0.25  # mid-range: no clamping after the change
    alpha, beta = [1.03, 0.98, 1.0], [0.01, -0.005, 0.0]
    got = rgb_to_hed(hed_perturb(x, alpha, beta))
    expected = rgb_to_hed(x) * torch.tensor(alpha).view(3, 1, 1).double()
    expected = expected + torch.tensor(beta).view(3, 1, 1).double()
    assert torch.allclose(got, expected, atol=1e-6)
    assert (hed_perturb(x, alpha, beta) - x).abs().max() > 1e-3


def test_strength_zero_is_the_identity_and_output_stays_in_range() -> None:
    x = _random_image(6, dtype=torch.float32)
    assert torch.equal(HEDAugment(sigma=0.0)(x), x)
    assert torch.equal(HEDJitter(strength=0.0, seed=3)(x, 7), x)
    torch.manual_seed(0)
    strong = [HEDAugment(sigma=1.0)(x) for _ in range(5)]
    strong += [HEDJitter(strength=20.0, seed=1)(x, i) for i in range(5)]
    for y in strong:
        assert y.shape == x.shape and y.dtype == x.dtype
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert any((y - x).abs().max() > 0.05 for y in strong)


def test_hed_jitter_is_deterministic_per_seed_and_index() -> None:
    x = _random_image(7, dtype=torch.float32)
    jitter = get_robustness_transform("hed-jitter", strength=1.0, seed=3)
    assert isinstance(jitter, HEDJitter) and "hed-jitter" in ROBUSTNESS_TRANSFORMS.names()
    assert torch.equal(jitter(x, 5), HEDJitter(strength=1.0, seed=3)(x, 5))
    assert not torch.equal(jitter(x, 5), jitter(x, 6))
    assert not torch.equal(jitter(x, 5), HEDJitter(strength=1.0, seed=4)(x, 5))
    p = jitter.params(5)
    assert all(0.95 <= a <= 1.05 for a in p["alpha"]) and all(-0.05 <= b <= 0.05 for b in p["beta"])


def test_hed_augment_draws_from_the_seeded_global_generator() -> None:
    x = _random_image(8, dtype=torch.float32)
    aug = HEDAugment(sigma=0.05)
    torch.manual_seed(11)
    first = [aug(x) for _ in range(2)]
    torch.manual_seed(11)
    again = [aug(x) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])  # a new draw per call


def test_dataset_stain_augmentation(tmp_path: Path) -> None:
    records = [ImageRecord(_write(tmp_path / f"{i}.png", _smear(i, 16)), 0) for i in range(2)]
    plain = ImageDataset(records, Preprocessing(size=16))
    aug = ImageDataset(records, Preprocessing(size=16), stain_augment="hed")
    torch.manual_seed(0)
    a = aug[0][0]
    torch.manual_seed(0)
    assert torch.equal(aug[0][0], a)
    assert not torch.equal(a, plain[0][0])
    with pytest.raises(ConfigError, match="valid options: none, hed"):
        ImageDataset(records, Preprocessing(size=16), stain_augment="rgb")


# --------------------------------------------------------------------------- Macenko
def test_macenko_wrapper_equals_torchstain(tmp_path: Path) -> None:
    import torchstain

    ref_img, img = _smear(0), _smear(1)
    direct = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    direct.fit(ref_img)
    expected, _, _ = direct.normalize(img)

    reference = fit_macenko(ref_img)
    assert reference is not None
    np.testing.assert_allclose(np.asarray(reference.he), direct.HERef)
    pre = Preprocessing(size=48, stain_norm="macenko", stain_reference=reference)
    np.testing.assert_array_equal(pre.process_array(img), expected)
    assert not np.array_equal(expected, img)
    # Through a file and the dataset cache: the same pixels.
    dataset = ImageDataset([ImageRecord(_write(tmp_path / "a.png", img), 0)], pre)
    np.testing.assert_array_equal(dataset.pixels(0), expected)


def test_stored_reference_reproduces_after_a_checkpoint_round_trip(tmp_path: Path) -> None:
    paths = [_write(tmp_path / "train" / f"{i}.png", _smear(10 + i)) for i in range(5)]
    reference = fit_stain_reference(paths, root=tmp_path)
    assert reference.image.startswith("train/")
    pre = Preprocessing(size=16, stain_norm="macenko", stain_reference=reference)
    model = get_model("se-cnn", input_size=16, channels=[4, 8, 8, 8])
    ckpt = save_checkpoint(tmp_path / "m.pt", model, ["a", "b", "c", "d"], pre.to_dict())
    (tmp_path / "train").rename(tmp_path / "gone")  # no reference image needed any more
    loaded = Preprocessing.from_dict(load_checkpoint(ckpt).preprocessing)
    assert loaded == pre
    img = _smear(99)
    np.testing.assert_array_equal(loaded.process_array(img), pre.process_array(img))
    assert not np.array_equal(loaded.process_array(img), Preprocessing(size=16).process_array(img))


def test_reference_choice_is_deterministic_and_order_free(tmp_path: Path) -> None:
    paths = [_write(tmp_path / f"{i:02d}.png", _smear(20 + i, 24)) for i in range(7)]
    blank = _write(tmp_path / "blank.png", np.full((24, 24, 3), 255, np.uint8))
    first = fit_stain_reference([*paths, blank], root=tmp_path)
    again = fit_stain_reference([blank, *reversed(paths)], root=tmp_path)
    assert first == again and first.image in {p.name for p in paths}
    with pytest.raises(DataError, match="failed on all 1"):
        fit_stain_reference([blank])


def test_blank_image_falls_back_with_one_counting_warning(tmp_path: Path) -> None:
    reference = fit_macenko(_smear(0))
    assert reference is not None
    pre = Preprocessing(size=16, stain_norm="macenko", stain_reference=reference)
    blank = np.full((16, 16, 3), 255, np.uint8)
    with pytest.warns(StainNormWarning, match="1 of 1"):
        out = pre.process_array(blank)
    np.testing.assert_array_equal(out, blank)

    records = [
        ImageRecord(_write(tmp_path / "b1.png", blank), 0),
        ImageRecord(_write(tmp_path / "ok.png", _smear(3, 16)), 0),
        ImageRecord(_write(tmp_path / "b2.png", blank), 0),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = ImageDataset(records, pre)
    stain = [w for w in caught if issubclass(w.category, StainNormWarning)]
    assert len(stain) == 1 and "2 of 3" in str(stain[0].message)
    np.testing.assert_array_equal(dataset.pixels(0), blank)


def test_preprocessing_dicts_stay_compatible() -> None:
    assert Preprocessing(size=16).to_dict() == {"size": 16, "clahe": False}
    old = Preprocessing.from_dict({"size": 16, "clahe": True})  # an older checkpoint
    assert old.stain_norm == "none" and old.stain_reference is None
    reference = StainReference.from_arrays(np.full((3, 2), 0.5), np.array([1.5, 0.8]), "x.png")
    pre = Preprocessing(size=16, stain_norm="macenko", stain_reference=reference)
    data = pre.to_dict()
    assert data["stain_norm"] == "macenko"
    assert data["stain_reference"] == {
        "he": [[0.5, 0.5]] * 3,
        "max_c": [1.5, 0.8],
        "image": "x.png",
    }
    assert all(isinstance(v, float) for row in data["stain_reference"]["he"] for v in row)
    assert Preprocessing.from_dict(data) == pre
    assert dataclasses.replace(pre, stain_norm="none", stain_reference=None).to_dict() == {
        "size": 16,
        "clahe": False,
    }


def test_bad_stain_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="valid options: none, macenko"):
        Preprocessing(stain_norm="reinhard")
    with pytest.raises(ConfigError, match="valid options: none, macenko"):
        Preprocessing.from_dict({"size": 16, "clahe": False, "stain_norm": "vahadane"})
    with pytest.raises(ConfigError, match="stain_reference"):
        Preprocessing.from_dict({"size": 16, "stain_norm": "macenko", "stain_reference": [1]})
    with pytest.raises(ConfigError, match="fitted stain_reference"):
        Preprocessing(size=16, stain_norm="macenko").process_array(_smear(0, 16))
    with pytest.raises(ConfigError, match="max_c > 0"):
        StainReference.from_arrays(np.ones((3, 2)), np.array([1.0, 0.0]))
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        HEDAugment(sigma=1.5)
    with pytest.raises(ConfigError, match="hed-jitter strength"):
        HEDJitter(strength=-1.0)
