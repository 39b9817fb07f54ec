r"""Class weights for an imbalanced training set.

Inverse-frequency ("balanced") weights, the convention of scikit-learn's
``compute_class_weight("balanced")``:

.. math::
    w_c = \frac{N}{K\, n_c}

with :math:`N` training images, :math:`K` classes and :math:`n_c` images of class
:math:`c`. Every class then carries the same total weight :math:`N / K` in the loss,
and a balanced set gets all-ones weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from neurall_neuro.errors import DataError


def class_weights(labels: Sequence[int], class_names: Sequence[str]) -> torch.Tensor:
    """Balanced weights ``[K]`` (float32) for integer ``labels`` over ``class_names``.

    Raises:
        DataError: a class has no training images (its weight would be infinite); the
            message names the classes so the split or the data can be fixed.
    """
    k = len(class_names)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=k)[:k]
    empty = [class_names[c] for c in range(k) if counts[c] == 0]
    if empty:
        raise DataError(
            f"class(es) {empty} have no training images, so they cannot be learnt; "
            "check the data folder or the split (or remove the class)"
        )
    weights = counts.sum() / (k * counts.astype(np.float64))
    return torch.tensor(weights, dtype=torch.float32)
