r"""The conventions of the NIR graphs neurall-neuro writes (and the Loihi path reads).

NIR stores continuous-time equations and no time step, so every importer picks its own
``dt``. Our graphs pin the discretisation down in metadata:

* **dt.** One simulation step is ``dt`` seconds (``1e-4`` for our models:
  ``model.config.dt``, the NIR paper's and snnTorch's importer convention). It is stored
  in the graph's ``metadata["dt"]`` and in every neuron node's ``metadata["dt"]``.
* **LIF** (forward Euler, Norse's ``lif_box_feed_forward_step`` order of operations):

  .. math::
      v[t] = v[t-1] + \frac{dt}{\tau}\bigl(v_\text{leak} - v[t-1] + r\, I[t]\bigr),\quad
      z[t] = [v[t] > v_\text{th}],\quad v[t] \leftarrow v_\text{reset} \text{ where } z[t] = 1

  with ``v[-1] = 0``. Our exports use ``r = 1``, ``v_leak = v_reset = 0``. A LIF with
  ``tau = dt`` is memoryless (``v[t] = I[t]`` for the integer-valued inputs it gets).
* **T** timesteps per sample (``metadata["timesteps"]``).
* **Input.** ``metadata["input_encoding"] == "static"``: the image is presented
  unchanged at every step (direct encoding; the first convolution's current is
  constant).
* **Readout.** ``metadata["readout"] == "mean_over_time"``: the class scores are the
  mean over the ``T`` steps of the output node's values.

HDF5 cannot store lists of strings or ``None``; structured metadata (class names, the
model config) is stored as JSON strings under keys ending in ``_json`` and decoded by
:func:`decode_metadata`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

#: Version of the metadata layout below (bumped on incompatible changes).
METADATA_FORMAT = "neurall-nir"
METADATA_FORMAT_VERSION = 1

#: One-line statement of the discretisation, stored in every graph's metadata.
CONVENTION = (
    "forward Euler with step dt (seconds): "
    "v[t] = v[t-1] + (dt/tau) * (v_leak - v[t-1] + r * I[t]); "
    "spike iff v[t] > v_threshold, then v[t] = v_reset; v[-1] = 0; "
    "all edges into a node are summed; stateless nodes act on each step independently"
)

READOUT_MEAN_OVER_TIME = "mean_over_time"
INPUT_STATIC = "static"
INPUT_PER_STEP = "per_step"

#: Suffix of metadata keys holding JSON-encoded values.
JSON_SUFFIX = "_json"


def encode_metadata(values: dict[str, Any]) -> dict[str, Any]:
    """Make ``values`` HDF5-storable: lists, tuples of strings, ``None`` and nested
    non-numeric structures become JSON strings under ``key + "_json"``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, (str, bool, int, float, np.ndarray, np.generic)):
            out[key] = value
        elif isinstance(value, dict) and all(
            isinstance(v, (str, bool, int, float, np.ndarray, np.generic)) for v in value.values()
        ):
            out[key] = dict(value)
        else:
            out[key + JSON_SUFFIX] = json.dumps(value)
    return out


def decode_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_metadata`; also turns bytes into str and 0-d arrays into
    Python scalars (as they come back from HDF5)."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, bytes):
            value = value.decode("utf8")
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if isinstance(value, np.generic):
            value = value.item()
        if key.endswith(JSON_SUFFIX) and isinstance(value, str):
            out[key[: -len(JSON_SUFFIX)]] = json.loads(value)
        elif isinstance(value, dict):
            out[key] = decode_metadata(value)
        else:
            out[key] = value
    return out
