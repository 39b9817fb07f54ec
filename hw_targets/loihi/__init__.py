"""Everything the library knows about Intel's Loihi, in one package.

* :mod:`~hw_targets.loihi.spec`: every limit, bit width and shift of the chip (and of
  Lava's and lava-dl's models of it), named once, with its source;
* :mod:`~hw_targets.loihi.network`: the fixed-point network IR (``LoihiNetwork``);
* :mod:`~hw_targets.loihi.mapping`: which NIR structures become which neuron groups
  and synapse layers (float, before quantisation);
* :mod:`~hw_targets.loihi.quantize`: NIR graph -> ``LoihiNetwork`` (``quantize_graph``);
* :mod:`~hw_targets.loihi.to_nir`: ``LoihiNetwork`` -> float NIR graph;
* :mod:`~hw_targets.loihi.netx`: lava-dl netx HDF5 files <-> ``LoihiNetwork``;
* :mod:`~hw_targets.loihi.fixed_point`: Lava's bit-accurate integer rules (torch);
* :mod:`~hw_targets.loihi.emulator`: the vectorised bit-exact emulator;
* :mod:`~hw_targets.loihi.lava` and :mod:`~hw_targets.loihi.lava_runtime`: building a
  Lava process graph for a network and running it in Lava's simulator;
  :mod:`~hw_targets.loihi.lava_procs`: the small Lava processes they use (recorders);
* :mod:`~hw_targets.loihi.resolve`, :mod:`~hw_targets.loihi.options`,
  :mod:`~hw_targets.loihi.run`: what both Loihi targets share (turning a graph argument
  into a ``LoihiNetwork``, their compile options, one run from inputs to a result).

The registered targets ``loihi-emu`` and ``lava-sim`` are thin adapters in
:mod:`hw_targets.loihi_emu` and :mod:`hw_targets.lava_sim`. This package imports
nothing at import time (no re-exports): import the module you need.
"""
