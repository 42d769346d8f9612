"""genmod: fast few-step generative models in JAX/Flax on one sharded training loop."""
__version__ = "0.1.0"
