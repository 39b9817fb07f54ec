"""The fast inference path computes exactly what the Norse reference loop computes."""

from __future__ import annotations

import pytest
import torch

from neurall_neuro.models.inference import lif_multi_step
from neurall_neuro.models.neurons import LIFLayer
from neurall_neuro.models.registry import get_model


def _firing_model(se_mode: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = get_model(
        "neurallnet", se_mode=se_mode, input_size=16, channels=[6, 8, 12, 12], timesteps=5
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3):
                module.weight.mul_(5.0)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.uniform_(0.0, 1.2)
    return model.eval()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("se_mode", ["none", "analog", "spiking"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_path_matches_norse_reference_exactly(se_mode, channels_last, threads):
    """Bit-identical at any thread count (kernels choose blocking by batch and threads)."""
    torch.set_num_threads(threads)  # restored by the suite's conftest
    model = _firing_model(se_mode)
    fast = model.to_inference(channels_last=channels_last)
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model.run_stepwise(images, record=True)
    got = fast.run(images, record=True)
    assert got.spikes.keys() == ref.spikes.keys()
    for name in ref.spikes:
        assert ref.spikes[name].sum() > 0, f"{name} is silent: the test would prove nothing"
        assert torch.equal(got.spikes[name], ref.spikes[name]), name
    assert torch.equal(got.logits.argmax(1), ref.logits.argmax(1))
    assert torch.allclose(got.logits, ref.logits, atol=1e-5)


def test_fast_path_does_not_change_the_model():
    model = _firing_model("spiking")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.to_inference(channels_last=True).run(torch.rand(2, 3, 16, 16))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).is_contiguous()


def test_lif_multi_step_equals_the_norse_cell_bit_for_bit():
    torch.manual_seed(3)
    layer = LIFLayer(tau_mem=3e-4, v_th=0.7, dt=1e-4)
    currents = torch.randn(9, 4, 5, 6, 7) * 2
    expected = layer(currents)
    decay = layer.dt * layer.params.tau_mem_inv
    assert torch.equal(lif_multi_step(currents, decay, layer.v_th), expected)
    constant = currents[0]
    assert torch.equal(
        lif_multi_step(constant, decay, layer.v_th, steps=9),
        layer(constant.expand(9, *constant.shape)),
    )
