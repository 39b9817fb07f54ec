"""BatchNorm statistics recomputed before validation: exact population moments, nothing
else touched, and in a run the same weights with honest validation figures."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from neurall_neuro.data.dataset import ImageDataset
from neurall_neuro.data.layouts import load_cohort
from neurall_neuro.data.preprocess import Preprocessing, to_tensor
from neurall_neuro.models.checkpoint import load_checkpoint
from neurall_neuro.models.registry import get_model
from neurall_neuro.training import TrainConfig, train
from neurall_neuro.training.distributed import DistContext
from neurall_neuro.training.precise_bn import (
    batchnorm_layers,
    recalibrate_batchnorm,
    recalibration_loader,
)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5), nn.Dropout(0.5),
    )  # fmt: skip


def test_running_statistics_become_the_population_moments() -> None:
    net = _net()
    batches = [(torch.rand(6, 3, 8, 8) * 0.2,) for _ in range(3)]
    with torch.no_grad():
        conv_out = torch.cat([net[0](b[0]) for b in batches])  # the first BN's input
    net.train()
    params = {k: v.clone() for k, v in net.named_parameters()}
    tracked = [m.num_batches_tracked.clone() for m in batchnorm_layers(net)]
    assert recalibrate_batchnorm(net, batches, DistContext()) == 18
    bn = net[1]
    torch.testing.assert_close(bn.running_mean, conv_out.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(bn.running_var, conv_out.var(dim=(0, 2, 3), unbiased=True))
    # Nothing else changed: parameters, momenta, counters, modes.
    assert all(torch.equal(v, params[k]) for k, v in net.named_parameters())
    assert [m.num_batches_tracked for m in batchnorm_layers(net)] == tracked
    assert all(m.momentum == 0.1 for m in batchnorm_layers(net))
    assert all(m.training for m in net.modules())


def test_one_batch_eval_output_matches_training_normalisation() -> None:
    """Recalibrated on a single batch, eval mode reproduces that batch's training-mode
    normalisation through both layers (up to the N/(N-1) variance correction)."""
    net = _net()
    net[5].p = 0.0  # compare without dropout noise
    x = torch.rand(16, 3, 8, 8) * 0.2
    with torch.no_grad():
        expected = net.train()(x)
    recalibrate_batchnorm(net, [(x,)], DistContext())
    with torch.no_grad():
        got = net.eval()(x)
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=2e-3)


def test_recalibration_loader_is_a_fixed_unaugmented_subset(tiny_cohort_dir: Path) -> None:
    cohort = load_cohort(tiny_cohort_dir)
    dataset = ImageDataset(cohort, Preprocessing(size=16), augment=True)
    loader = recalibration_loader(dataset, 20, 8, DistContext(), seed=3)
    first = [idx.tolist() for _, _, idx in loader]
    assert sum(len(i) for i in first) == 20 and len(set(sum(first, []))) == 20
    assert [idx.tolist() for _, _, idx in loader] == first  # the same subset every epoch
    images, labels, idx = next(iter(loader))
    assert torch.equal(images[0], to_tensor(dataset.pixels(int(idx[0]))))  # no augmentation
    assert int(labels[0]) == dataset.records[int(idx[0])].label
    everything = recalibration_loader(dataset, 10_000, 8, DistContext())
    assert sum(len(i) for _, _, i in everything) == len(dataset)


def test_run_weights_are_unchanged_only_bn_buffers_differ(
    tiny_cohort_dir: Path, tmp_path: Path
) -> None:
    def run(n: int) -> dict[str, torch.Tensor]:
        out = tmp_path / f"run{n}"
        train(
            TrainConfig(
                model="neurallnet", data=tiny_cohort_dir, out=out, size=16, timesteps=2,
                model_options={"channels": [4, 8, 8, 8]}, epochs=1, batch_size=8,
                bn_recal_images=n, evaluate_test=False, log=False, device="cpu", threads=1,
            )
        )  # fmt: skip
        return load_checkpoint(out / "last.pt").model.state_dict()

    plain, recal = run(0), run(256)
    model = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=2)
    params = {name for name, _ in model.named_parameters()}
    assert all(torch.equal(plain[k], recal[k]) for k in params)
    buffers = [k for k in plain if k.endswith(("running_mean", "running_var"))]
    assert buffers and any(not torch.equal(plain[k], recal[k]) for k in buffers)
