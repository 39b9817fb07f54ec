"""Conversion between Norse/torch models, NIR graphs and lava-dl netx HDF5 files."""
