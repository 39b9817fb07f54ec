"""Operation counting (SynOps, MACs, neuron updates, memory traffic) and energy per inference."""
