"""jaxcv: the models of a computer-vision course as pure JAX/Flax functions."""
__version__ = "0.1.0"
