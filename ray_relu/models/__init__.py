"""Models: what is fitted. Pure numpy; importing this package never imports Ray.

The contract
------------
A model is an instance of a :class:`Model` subclass. It travels to the Ray workers
as a value (pickled), so a class defined in a script or a notebook works on a cluster.
A subclass implements:

``model_id`` (class attribute, required)
    A short name, recorded in results and checkpoints.
``loss_and_gradient(w, X, y) -> (float, ndarray)`` (required)
    The mean loss over the rows of ``X`` (shape ``(m, d)``) and labels ``y`` (shape
    ``(m,)``) at the parameters ``w``, and its gradient, shaped like ``w``. Inputs are
    validated float64 arrays. With ``m = 0`` return ``(0.0, zeros)``.
``num_params(d) -> int`` (default ``d``)
    Length of the flat parameter vector ``w`` for ``d`` features; a model with a
    matrix of parameters flattens it (and says its shape in ``param_shapes(d)``).
``init_methods``, ``initial_point(init, d, *, seed, statistic, n)``
    The names of the initializations it knows (the first is the default) and
    ``w_0`` for each. ``"zero"`` and ``"random"`` come for free. An initialization
    that needs the data (the paper's moment estimate) is listed in ``data_inits`` and
    implements ``shard_statistic(init, X, y)``: each worker computes its shard's part,
    the engine sums the K parts exactly and in worker order, and ``initial_point``
    receives the sum and the number of rows ``n``. The engine does not know what the
    statistic means.
``default_step_size(batch_size, d, *, workers, variance_factor, downlink_variance)``
    (default: a unit-curvature model's :func:`isotropic_step_size`)
    The step used when the user gives none; ``variance_factor`` is the codec's
    variance bound ``q``.

Optional: ``predict(w, X)`` and ``planted_parameters(d, seed)`` /
``planted_labels(...)`` make :class:`Planted` problems of the model;
``check_labels(y)`` rejects labels the model cannot fit (Logistic: outside [0, 1]);
``error_meter(w_star)`` measures the distance to ``w*`` (a network with permutable
units overrides it); ``get_config()`` / ``from_config()`` / equality / repr default
to the instance's public attributes, numcodecs style.

Shipped: :class:`ReLU` (the paper), :class:`Linear`, :class:`LeakyReLU`,
:class:`Logistic` and :class:`OneHiddenLayer` (a ``k x d`` matrix of parameters).
The mathematics: ``docs/model.md`` (the ReLU) and ``docs/models.md`` (the others).
"""

from __future__ import annotations

from typing import Any

from .base import Model, isotropic_step_size, relative_error
from .hidden_layer import OneHiddenLayer
from .planted import Planted, PlantedReLU
from .single_index import LeakyReLU, Linear, Logistic, ReLU

__all__ = ["Model", "ReLU", "Linear", "LeakyReLU", "Logistic", "OneHiddenLayer",
           "Planted", "PlantedReLU", "get_model", "available_models",
           "isotropic_step_size", "relative_error"]

_SHIPPED = {cls.model_id: cls for cls in (ReLU, Linear, LeakyReLU, Logistic, OneHiddenLayer)}


def available_models() -> list[str]:
    """Names accepted by :func:`get_model`."""
    return sorted(_SHIPPED)


def get_model(spec: str | dict[str, Any] | Model | None, **params: Any) -> Model:
    """A model from a name (plus parameters), a config dict, or a Model (returned as is).

    ``None`` means the paper's :class:`ReLU`.

    >>> get_model("leaky", alpha=0.2)
    LeakyReLU(alpha=0.2)
    """
    if isinstance(spec, Model):
        if params:
            raise ValueError(f"parameters {sorted(params)} cannot be applied to an "
                             f"existing model {spec!r}")
        return spec
    if spec is None:
        spec = "relu"
    if isinstance(spec, str):
        config = {"id": spec, **params}
    elif isinstance(spec, dict) and "id" in spec:
        config = {**spec, **params}
    else:
        raise ValueError("model must be a Model, a name or a config dict with an 'id'; "
                         f"got {spec!r}")
    if config["id"] not in _SHIPPED:
        raise ValueError(f"unknown model {config['id']!r}; available: "
                         f"{', '.join(available_models())}, or pass a Model instance")
    try:
        return _SHIPPED[config["id"]].from_config(config)
    except TypeError as exc:
        raise ValueError(f"invalid parameters for model {config['id']!r}: {exc}") from None
