"""ray_relu: fit a ReLU unit with distributed SGD and quantized SGD (QSGD) on Ray.

Reproduces and extends "Fitting ReLUs via SGD and Quantized SGD" (Kalan,
Soltanolkotabi, Avestimehr, ISIT 2019).
"""

from .model import PlantedReLU

__version__ = "0.1.0"
__all__ = ["PlantedReLU", "__version__"]
