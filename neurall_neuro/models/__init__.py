"""Models: the SE-SNN ``neurallnet`` (Norse), the Residual SE-CNN baseline, and their registry.

Use :func:`neurall_neuro.models.registry.get_model` / ``list_models``.
"""
