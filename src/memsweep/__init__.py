"""memsweep: sweeps that reproduce the memorization transition of diffusion and flow-matching models."""
__version__ = "0.1.0"
