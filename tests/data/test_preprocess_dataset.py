"""The preprocessing pipeline, augmentation, robustness transforms and ImageDataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from neurall_neuro.data.dataset import ImageDataset
from neurall_neuro.data.preprocess import (
    ROBUSTNESS_TRANSFORMS,
    Preprocessing,
    apply_clahe,
    get_robustness_transform,
    grayscale,
    stain_jitter,
    train_augmentation,
)
from neurall_neuro.data.records import ImageRecord
from neurall_neuro.errors import BadImageError, ConfigError, UnknownNameError


def test_preprocessing_settings_round_trip_and_validation():
    p = Preprocessing(size=32, clahe=True)
    assert Preprocessing.from_dict(p.to_dict()) == p
    with pytest.raises(ConfigError, match="valid keys"):
        Preprocessing.from_dict({"size": 32, "mean": 0.5})
    with pytest.raises(ConfigError):
        Preprocessing(size=4)


def test_pipeline_output_and_resize(tmp_path, write_image):
    path = write_image(tmp_path / "a.png", size=40)
    x = Preprocessing(size=32).load(path)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    expected = np.array(Image.open(path).convert("RGB").resize((32, 32), Image.BILINEAR))
    assert torch.allclose(x, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    gray = write_image(tmp_path / "g.png", size=40, mode="L")
    g = Preprocessing(size=16).load(gray)
    assert g.shape == (3, 16, 16) and torch.equal(g[0], g[1])


def test_clahe_raises_local_contrast_of_a_flat_image():
    rng = np.random.default_rng(0)
    low = (120 + rng.normal(0, 3, (64, 64, 3))).clip(0, 255).astype(np.uint8)
    out = apply_clahe(low)
    assert out.shape == low.shape and out.dtype == np.uint8
    assert out.astype(float).std() > 1.5 * low.astype(float).std()
    assert np.array_equal(out, apply_clahe(low))


def test_train_augmentation_keeps_shape_and_range():
    torch.manual_seed(0)
    x = torch.rand(3, 32, 32)
    aug = train_augmentation()
    outs = [aug(x.clone()) for _ in range(4)]
    for y in outs:
        assert y.shape == x.shape
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert any(not torch.allclose(y, x) for y in outs)


def test_robustness_transforms():
    assert set(ROBUSTNESS_TRANSFORMS.names()) == {"none", "grayscale", "stain-jitter", "hed-jitter"}
    x = torch.rand(3, 16, 16)
    g = grayscale(x)
    luma = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    assert torch.allclose(g[0], luma) and torch.equal(g[0], g[2])
    jitter = stain_jitter(strength=1.0, seed=5)
    a, b = jitter(x, index=3), jitter(x, index=3)
    assert torch.equal(a, b)  # deterministic for (seed, index)
    assert not torch.allclose(a, jitter(x, index=4))
    assert not torch.allclose(a, stain_jitter(1.0, seed=6)(x, index=3))
    assert torch.equal(stain_jitter(0.0)(x, 1), x)
    assert torch.equal(get_robustness_transform("none")(x, 0), x)
    with pytest.raises(UnknownNameError, match="stain-jitter"):
        get_robustness_transform("sepia")


def test_dataset_items_cache_and_errors(tmp_path, write_image):
    paths = [write_image(tmp_path / f"{i}.png", seed=i, size=30) for i in range(4)]
    records = [ImageRecord(p, i % 2) for i, p in enumerate(paths)]
    ds = ImageDataset(records, Preprocessing(size=16))
    assert ds.cached and len(ds) == 4
    image, label, index = ds[2]
    assert image.shape == (3, 16, 16) and label == 0 and index == 2
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 16, 16) and batch[1].tolist() == [0, 1, 0, 1]

    # With the cache, a file that breaks after construction no longer matters ...
    before = ds[1][0]
    paths[1].write_bytes(b"broken")
    assert torch.equal(ds[1][0], before)
    # ... without it, the broken file is reported by name, not as a Pillow error.
    lazy = ImageDataset(records, Preprocessing(size=16), cache=False)
    assert lazy[0][0].shape == (3, 16, 16)
    with pytest.raises(BadImageError, match=r"1\.png"):
        lazy[1]
    with pytest.raises(BadImageError, match=r"1\.png"):
        ImageDataset(records, Preprocessing(size=16), cache=True)


def test_dataset_robustness_and_augmentation(tmp_path, write_image):
    paths = [write_image(tmp_path / f"{i}.png", seed=i, size=20) for i in range(2)]
    records = [ImageRecord(p, 0) for p in paths]
    gray = ImageDataset(records, Preprocessing(size=20), robustness="grayscale")
    x = gray[0][0]
    assert torch.equal(x[0], x[1])
    plain = ImageDataset(records, Preprocessing(size=20))[0][0]
    jit = ImageDataset(
        records, Preprocessing(size=20), robustness="stain-jitter", robustness_seed=1
    )
    assert torch.equal(jit[0][0], jit[0][0]) and not torch.allclose(jit[0][0], plain)
    aug = ImageDataset(records, Preprocessing(size=20), augment=True)
    assert aug[0][0].shape == (3, 20, 20)
