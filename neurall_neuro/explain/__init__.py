"""Explanations: Grad-CAM (CNN and SNN) and spike activation maps (SAM, SNN).

``grad_cam(model, images)``, ``sam(model, images)`` return :class:`Explanation` maps;
``explain_images(checkpoint, images, out_dir)`` also writes overlay PNGs.
"""

from neurall_neuro.explain.gradcam import Explanation, grad_cam
from neurall_neuro.explain.runner import ExplainResult, explain_images
from neurall_neuro.explain.sam import sam, spike_activation_map

__all__ = [
    "ExplainResult",
    "Explanation",
    "explain_images",
    "grad_cam",
    "sam",
    "spike_activation_map",
]
