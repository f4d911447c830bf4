"""jaxgan: generative adversarial networks in JAX and Flax."""

__version__ = "0.2.0"
