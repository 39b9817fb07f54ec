"""Model construction, SE modes, ablations, stepwise vs layer-major execution."""

from __future__ import annotations

import pytest
import torch

from neurall_neuro.errors import ConfigError, DuplicateNameError, UnknownNameError
from neurall_neuro.models.neurons import LIFLayer
from neurall_neuro.models.registry import MODELS, get_model, list_models
from neurall_neuro.models.se_block import AND_THRESHOLD, SEBlock
from neurall_neuro.models.summary import model_size

TINY_SNN = dict(input_size=16, channels=[4, 8, 8, 8], timesteps=3)


def test_registry_lists_models_and_rejects_unknown_and_duplicates():
    assert {"neurallnet", "neurallnet-nose", "se-cnn", "se-cnn-nose"} <= set(list_models())
    with pytest.raises(UnknownNameError, match="valid options: .*neurallnet"):
        get_model("resnet50")
    with pytest.raises(DuplicateNameError):
        MODELS.register("neurallnet", MODELS.get("neurallnet"))


def test_unknown_config_option_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown option.*valid options: .*timesteps"):
        get_model("neurallnet", timestep=4)
    with pytest.raises(ConfigError, match="se_mode.*valid options: none, analog, spiking"):
        get_model("neurallnet", se_mode="soft")
    with pytest.raises(ConfigError, match="divisible"):
        get_model("neurallnet", input_size=60)


@pytest.mark.parametrize("name", ["neurallnet", "neurallnet-nose", "se-cnn", "se-cnn-nose"])
@pytest.mark.parametrize("classes", [2, 4])
def test_output_shapes(name, classes):
    cfg = (
        dict(TINY_SNN)
        if name.startswith("neurallnet")
        else dict(input_size=16, channels=[4, 8, 8, 8])
    )
    model = get_model(name, num_classes=classes, **cfg).eval()
    out = model(torch.rand(5, 3, 16, 16))
    assert out.shape == (5, classes)
    assert torch.isfinite(out).all()


def test_default_sizes_match_the_paper_budget():
    snn = model_size(get_model("neurallnet"))
    # NeurALLNet: ~0.3 M parameters, 1.35 MB
    assert 250_000 <= snn.parameters <= 337_500
    assert snn.fp32_megabytes <= 1.35
    cnn = model_size(get_model("se-cnn"))
    assert 1_000_000 <= cnn.parameters <= 1_500_000
    assert model_size(get_model("neurallnet-nose")).parameters < snn.parameters
    assert model_size(get_model("se-cnn-nose")).parameters < cnn.parameters


def test_binary_cnn_head_is_a_sigmoid():
    model = get_model("se-cnn", num_classes=2, input_size=16, channels=[4, 8, 8, 8]).eval()
    assert model.fc.out_features == 1
    x = torch.rand(4, 3, 16, 16)
    logits = model(x)
    z = model.fc(model.flatten(model.pool(model.features(x))))[:, 0]
    assert torch.allclose(logits.softmax(1)[:, 1], torch.sigmoid(z), atol=1e-6)


@pytest.mark.parametrize("se_mode", ["none", "analog", "spiking"])
def test_stepwise_and_layer_major_give_identical_spikes(se_mode):
    torch.manual_seed(0)
    model = get_model("neurallnet", se_mode=se_mode, **TINY_SNN)
    _make_it_fire(model)
    model.eval()
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        fast = model.run(x, record=True)
        ref = model.run_stepwise(x, record=True)
    assert fast.spikes.keys() == ref.spikes.keys()
    total = 0.0
    for name in fast.spikes:
        assert torch.equal(fast.spikes[name], ref.spikes[name]), name
        total += fast.spikes[name].sum().item()
    assert total > 0, "test network should fire"
    assert torch.allclose(fast.logits, ref.logits, atol=1e-5)


def test_spiking_gate_product_equals_threshold_and_neuron():
    # Exhaustive on binary inputs: s * g == Theta(s + g - 1.5)
    s = torch.tensor([0.0, 0.0, 1.0, 1.0])
    g = torch.tensor([0.0, 1.0, 0.0, 1.0])
    and_neuron = LIFLayer(tau_mem=1e-4, v_th=AND_THRESHOLD, dt=1e-4)  # tau = dt: memoryless
    assert torch.equal(and_neuron((s + g)[None])[0], s * g)

    # In the SE block: a memoryless threshold neuron fed feature + broadcast gate
    torch.manual_seed(1)
    block = SEBlock(6, mode="spiking", reduction=2).eval()
    spikes = (torch.rand(5, 2, 6, 4, 4) < 0.4).float()
    gate = block.gate_values(spikes)  # [T, B, C, 1, 1], binary
    assert set(gate.unique().tolist()) <= {0.0, 1.0}
    gated = block(spikes)
    and_out = and_neuron(spikes + gate.expand_as(spikes))
    assert torch.equal(gated, and_out)
    assert 0 < gated.sum() < spikes.sum() or torch.equal(gated, spikes)


def test_analog_gate_is_a_sigmoid_scaling():
    torch.manual_seed(2)
    block = SEBlock(8, mode="analog", reduction=2).eval()
    spikes = (torch.rand(3, 2, 8, 4, 4) < 0.5).float()
    gate = block.gate_values(spikes)
    assert ((gate > 0) & (gate < 1)).all()
    assert torch.allclose(block(spikes), spikes * gate)


def test_no_se_ablation_differs_from_se_model():
    torch.manual_seed(0)
    se = get_model("neurallnet", **TINY_SNN)
    nose = get_model("neurallnet-nose", **TINY_SNN)
    assert any(name.startswith("se") for name, _ in se.body.named_children())
    assert not any(name.startswith("se") for name, _ in nose.body.named_children())
    # Same weights where shared: the SE blocks alone change the output.
    _make_it_fire(se)
    nose.load_state_dict({k: v for k, v in se.state_dict().items() if not k.startswith("body.se")})
    with torch.no_grad():
        se.body.se3.fc2.bias.fill_(-5.0)  # close every gate of the first SE block
    se.eval()
    nose.eval()
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        assert nose.run(x, record=True).spikes["lif4"].sum() > 0
        assert not torch.allclose(se(x), nose(x))


def test_surrogate_gradients_reach_the_first_layer():
    torch.manual_seed(0)
    model = get_model("neurallnet", **TINY_SNN)
    out = model(torch.rand(8, 3, 16, 16))
    torch.nn.functional.cross_entropy(out, torch.randint(0, 4, (8,))).backward()
    grad = model.stem.conv.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_first_layer_current_is_computed_once_per_image():
    model = get_model("neurallnet", **TINY_SNN).eval()
    calls = []
    model.stem.conv.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.no_grad():
        model.run(torch.rand(2, 3, 16, 16), timesteps=5)
    assert calls == [2]


def _make_it_fire(model: torch.nn.Module) -> None:
    """Scale conv weights and shift BatchNorm so an untrained tiny network spikes in every layer."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3):
                module.weight.mul_(6.0)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.fill_(0.6)


def test_functional_joins_are_parameterless_modules_hooks_see() -> None:
    """The residual add and the readout are modules (hooks see them) that add no state."""
    from neurall_neuro.models.blocks import MeanOverTime, ResidualAdd

    seen: list[str] = []
    for name, spec in (("neurallnet", TINY_SNN), ("se-cnn", dict(input_size=16, channels=[4, 8]))):
        model = get_model(name, **spec).eval()
        for path, module in model.named_modules():
            if isinstance(module, ResidualAdd | MeanOverTime):
                assert not list(module.state_dict())
                module.register_forward_hook(lambda m, i, o, path=path: seen.append(path))
        assert not any(k.endswith(("residual", "readout")) for k in model.state_dict())
        with torch.no_grad():
            model(torch.rand(2, 3, 16, 16))
    assert seen == ["readout", "features.stage1.residual", "features.stage2.residual"]


def test_inference_path_does_not_import_the_model() -> None:
    """neurallnet -> inference -> spiking, never back (no import cycle, lazy or not)."""
    import ast
    from pathlib import Path

    import neurall_neuro.models.inference as inference

    tree = ast.parse(Path(inference.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert "neurall_neuro.models.neurallnet" not in imported
    assert "neurall_neuro.models.spiking" in imported
