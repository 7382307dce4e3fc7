"""ray_relu: distributed SGD with compressed gradients (QSGD first) on Ray.

Reproduces and extends "Fitting ReLUs via SGD and Quantized SGD" (Kalan,
Soltanolkotabi, Avestimehr, ISIT 2019), and fits the models, data and codecs its users
bring::

    import ray_relu
    result = ray_relu.fit(ray_relu.PlantedReLU(d=1000, n=8000), codec="qsgd",
                          codec_options={"levels": 4}, workers=4, mode="all-to-all")

The top-level names load on first use (PEP 562), so ``import ray_relu.codecs`` or
``import ray_relu.models`` stays pure numpy and never imports Ray.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"
__all__ = ["fit", "FitResult", "RunConfig", "PlantedReLU", "Planted", "models", "codecs",
           "__version__"]

# name -> (module, attribute); attribute None means the module itself.
_LAZY = {"FitResult": (".result", "FitResult"), "PlantedReLU": (".models", "PlantedReLU"),
         "Planted": (".models", "Planted"), "RunConfig": (".settings", "RunConfig"),
         "models": (".models", None),
         "codecs": (".codecs", None)}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ray_relu' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The package module, with ``fit`` always the function.

    The function ``fit`` lives in the submodule ``ray_relu.fit``. Importing a submodule
    binds it as an attribute of its package, so once anything imported ``ray_relu.fit``
    (the CLI, the demo, the experiments do) a plain lazy name would become the module
    and ``ray_relu.fit(...)`` would fail. A property on the module's class wins over
    that binding.
    """

    @property
    def fit(self) -> Any:
        return self.__dict__.get("_fit_override") or importlib.import_module(".fit",
                                                                            __name__).fit

    @fit.setter
    def fit(self, value: Any) -> None:
        # The import system binding the submodule is ignored; anything else (a test's
        # monkeypatch, say) replaces the function as a plain attribute would.
        if not isinstance(value, types.ModuleType):
            self.__dict__["_fit_override"] = value


sys.modules[__name__].__class__ = _Package
