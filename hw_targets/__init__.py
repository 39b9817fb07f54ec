"""Hardware targets that run exported NIR graphs: torch (CPU/CUDA), a bit-exact Loihi emulator, and Lava.

The target API (:mod:`hw_targets.base`), the registry, the parity report and the
registered targets (``torch``, ``loihi-emu``, ``lava-sim``: thin adapters) live here; all
Loihi knowledge lives in :mod:`hw_targets.loihi`.
"""
