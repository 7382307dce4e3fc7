"""ray_relu: fit a ReLU unit with distributed SGD and quantized SGD (QSGD) on Ray.

Reproduces and extends "Fitting ReLUs via SGD and Quantized SGD" (Kalan,
Soltanolkotabi, Avestimehr, ISIT 2019)::

    import ray_relu
    result = ray_relu.fit(ray_relu.PlantedReLU(d=1000, n=8000), codec="qsgd",
                          codec_options={"levels": 4}, workers=4, mode="all-to-all")
"""

from . import codecs
from .fit import fit
from .model import PlantedReLU
from .result import FitResult

__version__ = "0.1.0"
__all__ = ["fit", "FitResult", "PlantedReLU", "codecs", "__version__"]
