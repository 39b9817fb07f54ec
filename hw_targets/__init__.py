"""Hardware targets that run exported NIR graphs: torch (CPU/CUDA), a bit-exact Loihi emulator, and Lava."""
