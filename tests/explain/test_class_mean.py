"""Class-mean saliency equals the average of per-image maps computed one by one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurall_neuro.errors import ConfigError
from neurall_neuro.explain.class_mean import class_mean_maps, plot_class_mean_maps
from neurall_neuro.explain.gradcam import grad_cam
from neurall_neuro.explain.sam import sam
from neurall_neuro.models.registry import get_model

CLASSES = ["Benign", "Early", "Pre", "Pro"]


@pytest.fixture(scope="module")
def snn() -> torch.nn.Module:
    torch.manual_seed(0)
    model = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=2)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 3, 16, 16))
    return model.eval()


def test_class_means_match_one_by_one_maps(snn: torch.nn.Module, tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(7, 3, 16, 16, generator=gen)
    labels = torch.tensor([0, 0, 1, 2, 2, 2, 0])  # no image of class 3
    result = class_mean_maps(snn, images, labels, CLASSES, batch_size=3)
    assert set(result.maps) == {"gradcam", "sam"} and result.counts == [3, 1, 3, 0]
    for k in range(3):
        idx = (labels == k).nonzero().flatten().tolist()
        cam = torch.stack([grad_cam(snn, images[i : i + 1], target=k).maps[0] for i in idx])
        spam = torch.stack([sam(snn, images[i : i + 1]).maps[0] for i in idx])
        torch.testing.assert_close(result.maps["gradcam"][k], cam.mean(0), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(result.maps["sam"][k], spam.mean(0), atol=1e-5, rtol=1e-4)
    assert torch.count_nonzero(result.maps["gradcam"][3]) == 0
    png = plot_class_mean_maps(result, tmp_path / "mean.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_mismatched_labels_are_rejected(snn: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="one label per image"):
        class_mean_maps(snn, torch.rand(3, 3, 16, 16), torch.tensor([0, 1]), CLASSES)
