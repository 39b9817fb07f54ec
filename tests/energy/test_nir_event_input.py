"""Event input on the NIR energy path: a graph whose Input node carries binary events
``[T, N, *shape]`` is counted as ACs of those events through the first synapse layer
(exact fan-out), on the torch target and on loihi-emu, and equals the torch-hook count of
the same Norse model (an independent path: hooks on the real tensors) and a brute-force
count (events x enumerated fan-out)."""

from __future__ import annotations

import norse.torch as norse
import pytest
import torch
from torch import nn

from conversion.nir_export import to_nir
from energy.fanout import ConvGeometry
from energy.report import energy_report
from energy.sources import NIRModel
from neurall_neuro.errors import ConfigError

T, N = 6, 5


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = norse.SequentialState(
        nn.Conv2d(2, 3, 3, padding=1), norse.LIFBoxCell(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4)
    )
    with torch.no_grad():
        model[0].weight.mul_(6.0)
    return model


def _events() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return (torch.rand(T, N, 2, 6, 6, generator=generator) < 0.3).float()


def _first(report) -> object:
    return report.snn.layers[0]


@pytest.mark.parametrize("target", ["torch", "loihi-emu"])
def test_event_graph_counts_acs_of_the_events(target: str, brute) -> None:
    model, events = _model(), _events()
    graph = to_nir(model, example_input=events[0])
    report = energy_report(snn=NIRModel(graph, target=target, timesteps=T), images=events)
    first = _first(report)
    assert first.input_binary and first.macs == 0
    fanout = brute.conv_fanout(ConvGeometry.create(2, 3, 3, padding=1), 6, 6)
    expected = float((events.sum(dim=(0, 1)) * fanout).sum()) / N
    assert first.synops == pytest.approx(expected)
    hooks = energy_report(snn=model, images=events, timesteps=T, input_mode="sequence")
    assert first.synops == pytest.approx(_first(hooks).synops)
    assert report.snn.samples == N


def test_event_input_must_be_binary() -> None:
    model, events = _model(), _events()
    graph = to_nir(model, example_input=events[0])
    with pytest.raises(ConfigError, match="binary"):
        energy_report(snn=NIRModel(graph, timesteps=T, target="loihi-emu"), images=events * 0.5)
