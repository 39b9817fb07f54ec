"""A model built from another framework's spiking neurons (snnTorch) is refused as a torch
module by the counter, naming its neurons and the NIR route, instead of being counted as
a network without neurons; the NIR route then counts its spikes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from energy.report import energy_report
from energy.torch_counter import count_model
from neurall_neuro.errors import ConfigError

snn = pytest.importorskip("snntorch")


def leaky(n: int, output: bool = False) -> nn.Module:
    """Per-neuron beta/threshold and reset to zero, as snnTorch's NIR export needs."""
    return snn.Leaky(
        beta=torch.full((n,), 0.9), threshold=torch.full((n,), 0.5), init_hidden=True,
        reset_mechanism="zero", reset_delay=False, output=output,
    )  # fmt: skip


class SnnTorchNet(nn.Module):
    """The snnTorch tutorial's shape: Linear -> Leaky -> Linear -> Leaky, a step per call."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 8)
        self.lif1 = leaky(8)
        self.fc2 = nn.Linear(8, 3)
        self.lif2 = leaky(3, output=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spikes, _ = self.lif2(self.fc2(self.lif1(self.fc1(x))))
        return spikes


@pytest.mark.parametrize("role", ["snn", "cnn"])
def test_an_snntorch_module_is_refused_in_either_role(role):
    with pytest.raises(ConfigError) as info:
        energy_report(**{role: SnnTorchNet()}, images=torch.rand(2, 12), profiles="loihi")
    message = str(info.value)
    assert "Leaky at 'lif1'" in message and "Leaky at 'lif2'" in message, message
    assert "snntorch.export_to_nir" in message and "--nir" in message, message
    assert "non-spiking" not in message, message


def test_the_counter_refuses_it_too():
    with pytest.raises(ConfigError, match="no counting rule"):
        count_model(SnnTorchNet(), torch.rand(2, 12))


def test_the_nir_route_counts_its_spikes():
    import contextlib
    import io

    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = SnnTorchNet()
    with torch.no_grad():
        net.fc1.weight.mul_(4)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints
        graph = export_to_nir(net, torch.zeros(1, 12), ignore_dims=[0])
    graph.metadata = {"dt": 1e-4}  # snnTorch's dt (its graphs store none)
    report = energy_report(snn=graph, images=torch.rand(4, 12), timesteps=3, profiles="loihi")
    assert report.snn.totals["synops"] > 0
