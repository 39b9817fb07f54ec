"""snnTorch 1.0.0 loads our exported files and predicts what our runtime and Norse predict.

snnTorch's ``import_from_nir`` builds a torch.fx module that advances one timestep per call
(states live in the neuron modules and are reset between samples with ``reset_mem``).
Semantic differences found between its importer and our NIR convention
(:mod:`conversion.nir_conventions`):

* **dt** is hard-coded to ``1e-4`` s (our convention, on purpose).
* **LIF scaling.** ``LIF(tau, r)`` becomes ``snn.Leaky(beta = 1 - dt/tau)`` with the
  input left unscaled and the *threshold* divided by ``r * dt / tau`` instead: its
  membrane is ``mem = v * tau / (r dt)``. Spikes are mathematically identical; the float
  rounding differs slightly, so a membrane landing within ~1e-7 of threshold can flip.
  A LIF with ``tau = dt`` becomes ``beta = 0``: ``mem = I`` exactly (Norse computes
  ``v + 1 * (I - v)``; for the integer inputs of the SE gate/AND neurons both are exact).
* **Reset.** ``reset_mechanism="zero"`` with ``reset_delay=False``: reset to 0 in the
  same step, as ours, but ``v_reset`` is ignored (always 0; our exports use 0).
* **Threshold comparison** is strict (``mem - threshold > 0``), as ours.
* **Flatten.** NIR's batch-free ``start_dim``/``end_dim`` are passed unchanged to
  ``torch.nn.Flatten``, which counts the batch: our head's ``Flatten(start_dim=0)``
  flattens the batch away, so the imported module only works with batch size 1 (the test
  runs one image at a time).
* **Grouped convolutions** fail: the importer builds ``nn.Conv2d(in_channels =
  weight.shape[1], groups = groups)``, which torch rejects for ``groups > 1``. The spiking
  SE broadcast is therefore exported with ``se_broadcast="dense"`` (the equivalent
  ``groups=1`` convolution) for snnTorch.
* **IF** becomes ``snn.Leaky(beta=0.9)``, a leaky neuron (not used by our exports).
* **Multiple edges into a node** are summed by nirtorch, as ours (the SE AND neuron).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path

import pytest

from conversion.nir_export import export_nir, to_nir
from conversion.nir_runtime import load_nir

pytest.importorskip("snntorch")

_spec = importlib.util.spec_from_file_location(
    "nir_export_tests", Path(__file__).with_name("test_nir_export.py")
)
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
make_model, images = _helpers.make_model, _helpers.images
_zoo_spec = importlib.util.spec_from_file_location(
    "zoo_models", Path(__file__).parents[1] / "zoo_models.py"
)
zoo_models = sys.modules.setdefault("zoo_models", importlib.util.module_from_spec(_zoo_spec))
if not hasattr(zoo_models, "ZOO"):  # loaded once per process (shared with tests/zoo)
    _zoo_spec.loader.exec_module(zoo_models)
snntorch_scores = zoo_models.snntorch_scores

N_IMAGES = 32


@pytest.mark.parametrize("se_mode", ["none", "analog", "spiking"])
def test_snntorch_agrees_with_our_runtime_and_norse(tmp_path, se_mode):
    model = make_model(se_mode)
    path = tmp_path / f"{se_mode}.nir"
    export_nir(
        model,
        path,
        calibration=images(24, seed=5) if se_mode == "analog" else None,
        se_broadcast="dense",
    )
    x = images(N_IMAGES, seed=11)
    ours = load_nir(path).run(x).output.mean(0)
    theirs = snntorch_scores(path, x, model.config.timesteps)
    agreement = (ours.argmax(1) == theirs.argmax(1)).float().mean().item()
    print(
        f"snnTorch vs runtime ({se_mode}): prediction agreement {agreement:.4f}, "
        f"max |score diff| {(ours - theirs).abs().max():.3g}"
    )
    assert agreement >= 0.99
    if se_mode != "analog":  # the folded graph is an approximation of the dynamic model
        norse = model.run(x).logits.argmax(1)
        assert (norse == theirs.argmax(1)).float().mean().item() >= 0.99


def test_snntorch_cannot_build_grouped_convolutions():
    """Why the spiking export for snnTorch uses ``se_broadcast="dense"``."""
    from snntorch.import_nir import import_from_nir

    graph = to_nir(make_model("spiking"), se_broadcast="grouped")  # the compact form
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(ValueError, match="groups"):
        import_from_nir(graph)
