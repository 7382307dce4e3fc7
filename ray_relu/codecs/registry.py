"""Codec registry: look codecs up by name or config, numcodecs style."""

from __future__ import annotations

from typing import Any

from .base import Codec, check_codec_id

__all__ = ["register_codec", "get_codec", "available_codecs", "codec_class"]

_REGISTRY: dict[str, type[Codec]] = {}


def register_codec(cls: type[Codec], name: str | None = None) -> type[Codec]:
    """Register ``cls`` under ``name`` (default ``cls.codec_id``); usable as a decorator.

    A later registration under the same name replaces the earlier one. The name is
    written into message headers, so it must be 1-8 printable ASCII characters.
    """
    if not (isinstance(cls, type) and issubclass(cls, Codec)):
        raise ValueError(f"cls must be a Codec subclass, got {cls!r}")
    name = check_codec_id(getattr(cls, "codec_id", None) if name is None else name,
                          f"codec {cls.__name__}")
    _REGISTRY[name] = cls
    return cls


def available_codecs() -> list[str]:
    """Sorted names accepted by :func:`get_codec`."""
    return sorted(_REGISTRY)


def codec_class(name: str) -> type[Codec]:
    """The class registered under ``name``; a ValueError lists the registered names."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown codec {name!r}; available: "
                         f"{', '.join(available_codecs())}")
    return _REGISTRY[name]


def get_codec(spec: str | dict[str, Any] | Codec, **params: Any) -> Codec:
    """Build a codec from a name (plus keyword parameters), a config dict, or a Codec.

    >>> get_codec("qsgd", levels=4)
    QSGD(levels=4, bucket_size=None, norm='l2', coding='auto', seed=None)

    A Codec instance is returned unchanged (no parameters allowed then). A config
    dict is :meth:`Codec.get_config` output; ``params`` add to it (no overlap).
    """
    if isinstance(spec, Codec):
        if params:
            raise ValueError(f"parameters {sorted(params)} cannot be applied to an "
                             f"existing codec instance {spec!r}")
        check_codec_id(getattr(spec, "codec_id", None), f"codec {type(spec).__name__}")
        return spec
    if isinstance(spec, str):
        config = {"id": spec, **params}
    elif isinstance(spec, dict):
        if "id" not in spec:
            raise ValueError(f"codec config must have an 'id' key, got keys {sorted(spec)}")
        overlap = sorted(set(spec) & set(params))
        if overlap:
            raise ValueError(f"parameters {overlap} given both in the config and as keywords")
        config = {**spec, **params}
    elif isinstance(spec, type) and issubclass(spec, Codec):
        raise ValueError(f"codec spec must be a name, a config dict or a Codec instance, "
                         f"got the class {spec.__name__}; pass an instance, "
                         f"{spec.__name__}(...)")
    else:
        raise ValueError(f"codec spec must be a name, a config dict or a Codec, got "
                         f"{type(spec).__name__}")
    name = config["id"]
    cls = codec_class(name)
    try:
        return cls.from_config(config)
    except TypeError as exc:                  # e.g. a missing required argument
        raise ValueError(f"invalid parameters for codec {name!r}: {exc}") from None
