"""Agreement with NeuroBench's synaptic-operation definitions on plain conv / linear layers.

NeuroBench (Yik et al., "NeuroBench: A Framework for Benchmarking Neuromorphic Computing
Algorithms and Systems", arXiv:2304.04640; metric ``SynapticOperations`` in
``neurobench.benchmarks.workload_metrics``) defines, per sample:

* **Effective_ACs / Effective_MACs**: for each hooked ``Linear`` / ``Conv`` layer call,
  run a copy of the layer whose weights are binarised (non-zero -> 1) and whose bias is
  removed, on the input binarised (non-zero -> 1), and sum the outputs: the number of
  (non-zero input, non-zero weight) pairs. The layer's input is *spiking* (the ops are
  ACs) when all its values are in {-1, 0, 1}, else they are MACs. Bias is not counted.
* **Dense**: the same with all-ones inputs and weights (every possible operation).

NeuroBench is not installed here; :func:`neurobench_reference` re-implements that
definition independently (a layer evaluation, not our fan-out maps), and the tests show
equality on conv/linear layers. Where and why we count more (also in docs/energy.md):

1. Pooling before a synaptic layer (hardware view): we count every input spike through
   the folded convolution; NeuroBench counts one MAC per non-zero *pooled* value. Our
   ``fold_pooling=False`` view reproduces NeuroBench exactly.
2. Zero weights: we count structural synapses (a chip delivers the event even if the
   weight is 0, unless pruned at compile time); NeuroBench skips zero weights.
3. Inputs in {-1, 0, 1} with -1 present: NeuroBench calls them spikes (ACs); we count
   MACs (our spikes are 0/1; a signed event needs a sign, i.e. a multiply by -1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from energy.torch_counter import count_model


def neurobench_reference(layer: nn.Module, x: torch.Tensor) -> tuple[float, float, bool]:
    """``(effective, dense, spiking)`` per sample by NeuroBench's definition (see module doc)."""
    spiking = bool(((x == 0) | (x == 1) | (x == -1)).all())
    binary_x = (x != 0).to(torch.float64)
    binary_w = (layer.weight != 0).to(torch.float64)
    ones_x, ones_w = torch.ones_like(binary_x), torch.ones_like(binary_w)
    if isinstance(layer, nn.Linear):
        effective = F.linear(binary_x, binary_w).sum()
        dense = F.linear(ones_x, ones_w).sum()
    else:

        def run(inp: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            return F.conv2d(
                inp, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups
            )

        effective, dense = run(binary_x, binary_w).sum(), run(ones_x, ones_w).sum()
    batch = x.shape[0]
    return float(effective) / batch, float(dense) / batch, spiking


@st.composite
def layer_and_input(draw: st.DrawFn) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(draw(st.integers(0, 1000)))
    batch = draw(st.integers(1, 3))
    if draw(st.booleans()):
        layer: nn.Module = nn.Linear(draw(st.integers(1, 8)), draw(st.integers(1, 6)))
        shape: tuple[int, ...] = (batch, layer.in_features)
    else:
        groups = draw(st.sampled_from([1, 2]))
        layer = nn.Conv2d(
            2 * groups, 2 * groups, draw(st.integers(1, 3)), stride=draw(st.integers(1, 2)),
            padding=draw(st.integers(0, 1)), dilation=draw(st.integers(1, 2)), groups=groups,
        )  # fmt: skip
        size = draw(st.integers(5, 7))
        shape = (batch, layer.in_channels, size, size)
    density = draw(st.floats(0.0, 1.0))
    mask = (torch.rand(shape) < density).float()
    x = mask if draw(st.booleans()) else mask * (torch.rand(shape) + 0.1)
    return layer, x


@settings(deadline=None, max_examples=30)
@given(layer_and_input())
def test_counts_equal_neurobench_on_conv_and_linear(case) -> None:
    layer, x = case
    effective, dense, spiking = neurobench_reference(layer, x)
    counts = count_model(nn.Sequential(layer), x)
    row = counts.layer("0")
    if spiking:
        assert counts.per_sample("synops") == effective and counts.per_sample("macs") == 0
        assert counts.per_sample("synops_dense") == dense
    else:
        assert counts.per_sample("macs") == effective and counts.per_sample("synops") == 0
        assert counts.per_sample("macs_dense") == dense
    assert row.bias_adds >= 0  # listed separately, never part of the synaptic operations


def test_neurobench_view_equals_neurobench_on_pool_then_conv() -> None:
    """With pooling counted (fold off), the conv's MACs are NeuroBench's on the pooled input;
    the hardware view counts more: every spike is an event of the folded convolution."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(3, 4, 3, padding=1, bias=False))
    x = (torch.rand(2, 3, 8, 8) < 0.3).float()
    effective, dense, spiking = neurobench_reference(model[1], model[0](x))
    assert not spiking  # averages of spikes are not spikes
    neurobench_view = count_model(model, x, fold_pooling=False)
    assert neurobench_view.per_sample("macs") == effective
    assert neurobench_view.per_sample("macs_dense") == dense
    hardware = count_model(model, x)
    assert hardware.per_sample("macs") == 0
    assert hardware.per_sample("synops") > effective


def test_we_count_structural_synapses_where_neurobench_skips_zero_weights() -> None:
    layer = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        layer.weight[0].zero_()  # output 0 is disconnected (pruned)
    x = torch.ones(1, 4)
    effective, _, _ = neurobench_reference(layer, x)
    assert effective == 8
    assert count_model(nn.Sequential(layer), x).per_sample("synops") == 12


def test_signed_events_are_macs_for_us_acs_for_neurobench() -> None:
    layer = nn.Linear(3, 2)
    x = torch.tensor([[1.0, -1.0, 0.0]])
    effective, _, spiking = neurobench_reference(layer, x)
    counts = count_model(nn.Sequential(layer), x)
    assert spiking and counts.per_sample("macs") == effective == 4
