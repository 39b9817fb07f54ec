"""Conversion between Norse/torch models and NIR graphs (Loihi and netx: ``hw_targets.loihi``)."""
