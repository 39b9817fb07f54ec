"""Built-in mappings of concrete model and module classes.

* Whole-model NIR exporters, one module per model class (``neurallnet``): each registers
  its exporter with :func:`conversion.model_exporters.register_model_exporter`; they are
  listed in :data:`conversion.model_exporters.BUILTIN_MODEL_EXPORTER_MODULES`.
* Module mappings of third-party layers (``norse``: Norse 1.1.0's neuron modules), listed
  in :data:`conversion.nir_mappings.BUILTIN_MAPPING_MODULES`.

Both kinds are imported on the first export. Only these modules know concrete model
classes; the generic export (:mod:`conversion.nir_export`, :mod:`conversion.fx_trace`)
and the per-module mappings of :mod:`conversion.nir_mappings` do not.
"""
