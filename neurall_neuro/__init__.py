"""neurall-neuro: spiking neural networks for neuromorphic hardware.

The package is deliberately thin at the top level: import what you need from its
sub-modules (``neurall_neuro.models``, ``neurall_neuro.data``, ...).
"""

__version__ = "0.1.0"
