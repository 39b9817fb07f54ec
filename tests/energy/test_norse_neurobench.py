"""Our counts equal NeuroBench's on the conv / linear layers of researcher-style Norse models.

NeuroBench 2.3.0 (``SynapticOperations``: a forward pre-hook on every ``Linear``/``Conv``
records each call's input; per call, ``single_layer_MACs`` runs a binarised copy of the
layer; ACs when the input is in {-1, 0, 1}, else MACs; dense with all-ones) is the
reference when it is installed (the ``dev`` extra); otherwise the test of that reference
is skipped and the independent re-implementation below (the definition of
``tests/energy/test_neurobench.py``) is checked against, on the same models.

The Norse models are stepped ``T`` times (``count_model(..., timesteps=T)``), so every
layer is called once per step; both sides see the same calls. Our NeuroBench view
(``fold_pooling=False``) counts pooled spikes as NeuroBench does (MACs of the pool's
output); the recurrent matrices of ``LIFRecurrentCell`` are not ``nn.Linear`` layers, so
NeuroBench does not hook them (only ours count them).
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from energy.input_modes import step_model
from energy.torch_counter import count_model

T = 4
MODELS = ("conv", "box", "residual", "recurrent")


def _drive(model: nn.Module, x: torch.Tensor, mode: str) -> None:
    with torch.no_grad():
        step_model(model, [x] * T if mode == "static" else list(x))


def _synaptic_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


def reimplemented(model: nn.Module, x: torch.Tensor, mode: str) -> dict[str, dict[str, float]]:
    """Per layer ``{"AC", "MAC", "dense"}`` per sample, by NeuroBench's definition."""
    calls: dict[str, list[torch.Tensor]] = defaultdict(list)
    layers = _synaptic_layers(model)
    handles = [
        layer.register_forward_pre_hook(lambda m, args, n=name: calls[n].append(args[0].clone()))
        for name, layer in layers.items()
    ]
    _drive(model, x, mode)
    for handle in handles:
        handle.remove()
    batch = x.shape[0] if mode == "static" else x.shape[1]
    result = {}
    for name, layer in layers.items():
        totals = {"AC": 0.0, "MAC": 0.0, "dense": 0.0}
        for inp in calls[name]:
            spiking = bool(((inp == 0) | (inp == 1) | (inp == -1)).all())
            binary_x, binary_w = (inp != 0).double(), (layer.weight != 0).double()
            if isinstance(layer, nn.Linear):
                effective = F.linear(binary_x, binary_w).sum()
                dense = F.linear(torch.ones_like(binary_x), torch.ones_like(binary_w)).sum()
            else:
                args = (None, layer.stride, layer.padding, layer.dilation, layer.groups)
                effective = F.conv2d(binary_x, binary_w, *args).sum()
                dense = F.conv2d(torch.ones_like(binary_x), torch.ones_like(binary_w), *args).sum()
            totals["AC" if spiking else "MAC"] += float(effective)
            totals["dense"] += float(dense)
        result[name] = {key: value / batch for key, value in totals.items()}
    return result


def neurobench(model: nn.Module, x: torch.Tensor, mode: str) -> dict[str, dict[str, float]]:
    """Per layer ``{"AC", "MAC", "dense"}`` per sample from NeuroBench 2.3.0 itself."""
    pytest.importorskip("neurobench", reason="NeuroBench is not installed (dev extra)")
    from neurobench.hooks.layer import LayerHook
    from neurobench.metrics.workload import SynapticOperations

    layers = _synaptic_layers(model)
    hooks = {name: LayerHook(layer) for name, layer in layers.items()}
    _drive(model, x, mode)
    batch = x.shape[0] if mode == "static" else x.shape[1]
    data = (torch.zeros(batch), torch.zeros(batch))  # NeuroBench divides by data[0].size(0)
    result = {}
    for name, hook in hooks.items():
        metric = SynapticOperations()
        values = metric(SimpleNamespace(connection_hooks=[hook]), None, data)
        hook.close()
        result[name] = {
            "AC": values["Effective_ACs"],
            "MAC": values["Effective_MACs"],
            "dense": values["Dense"],
        }
    return result


REFERENCES = {"reimplementation": reimplemented, "neurobench-2.3.0": neurobench}


@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("name", MODELS)
def test_norse_models_agree_with_neurobench(norse, name: str, reference: str) -> None:
    model = norse.models()[name]
    x, mode = norse.inputs(name, T)
    expected = REFERENCES[reference](model, x, mode)
    counts = count_model(model, x, timesteps=T, input_mode=mode, fold_pooling=False)
    assert expected
    for layer, ops in expected.items():
        row = counts.layer(layer)
        assert row.synops / counts.samples == ops["AC"], (layer, "AC")
        assert row.macs / counts.samples == ops["MAC"], (layer, "MAC")
        assert (row.synops_dense + row.macs_dense) / counts.samples == ops["dense"], layer
    assert any(counts.layer(layer).synops for layer in expected)  # spikes reached a layer


def test_hardware_view_counts_every_spike_of_a_folded_pool(norse) -> None:
    """Where we differ on purpose: with pooling folded, the conv after a pool of spikes
    does ACs on every un-pooled spike; NeuroBench does MACs on the pooled values."""
    model = norse.models()["conv"]
    x, mode = norse.inputs("conv", T)
    expected = reimplemented(model, x, mode)["3"]
    hardware = count_model(model, x, timesteps=T)
    assert expected["AC"] == 0 and expected["MAC"] > 0
    assert hardware.layer("3").macs == 0 and hardware.layer("3").synops > 0
