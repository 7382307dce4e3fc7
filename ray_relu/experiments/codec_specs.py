"""Codec specs of the experiments: short strings such as ``"fp32"`` or ``"qsgd:sqrt"``.

A spec is the name of any registered codec (:func:`ray_relu.codecs.available_codecs`),
which builds it with its defaults, optionally followed by ``:value`` for the codec's
first constructor parameter or by ``:key=value,key=value`` for any of them:
``"qsgd:4"`` (4 levels), ``"qsgd:sqrt"`` (``round(sqrt(d))`` levels, QSGD's dense
regime, about 2.8 bits per coordinate in the QSGD paper's analysis), ``"fp16:none"``
(the plain half cast, whose tiny values flush to zero; plain ``"fp16"`` scales each
message by a power of two), ``"topk:ratio=0.05"``, ``"qsgd:levels=16,coding=dense"``.
Values are read as JSON where they are (numbers), else as strings. QSGD uses one
bucket for the whole vector, as in the QSGD paper's basic scheme.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CodecChoice:
    """A parsed spec: the ``fit`` arguments and a label for tables and legends."""

    spec: str
    label: str
    codec: str
    options: dict = field(default_factory=dict)

    @property
    def levels(self) -> int | None:
        """QSGD levels, None for other codecs."""
        return self.options.get("levels") if self.codec == "qsgd" else None


def parse_codec(spec: str, d: int) -> CodecChoice:
    """Parse one spec for dimension ``d`` (see the module docstring); the codec is built
    once here, so a bad value is reported with the spec."""
    from .._validation import parse_key_values
    from ..codecs import available_codecs, get_codec
    from ..codecs.base import constructor_parameters
    from ..codecs.registry import codec_class
    names = available_codecs()
    if not isinstance(spec, str):
        raise ValueError(f"a codec spec must be a string such as 'fp32' or 'qsgd:4', "
                         f"got {spec!r}")
    name, sep, arg = spec.partition(":")
    if name not in names or (sep and not arg):
        raise ValueError(f"unknown codec spec {spec!r}; use a codec name ("
                         f"{', '.join(names)}), optionally with ':value' for its first "
                         f"parameter or ':key=value,...', e.g. 'qsgd:4', 'qsgd:sqrt', "
                         f"'fp16:none', 'topk:ratio=0.05'")
    if not sep:
        choice = CodecChoice(spec, name, name)
    elif name == "qsgd" and arg == "sqrt":
        levels = max(1, round(math.sqrt(d)))
        choice = CodecChoice(spec, f"qsgd s={levels} (sqrt d)", "qsgd", {"levels": levels})
    else:
        if "=" in arg:
            options = parse_key_values(arg.split(","), f"codec spec {spec!r}")
        else:
            first = (constructor_parameters(codec_class(name)) or [None])[0]
            if first is None:
                raise ValueError(f"codec spec {spec!r}: codec {name!r} takes no parameters")
            options = parse_key_values([f"{first}={arg}"], f"codec spec {spec!r}")
        label = f"qsgd s={options['levels']}" if list(options) == ["levels"] and \
            name == "qsgd" else f"{name} " + ",".join(f"{k}={v}" for k, v in options.items())
        choice = CodecChoice(spec, label, name, options)
    try:
        get_codec(choice.codec, **choice.options)
    except ValueError as exc:
        raise ValueError(f"codec spec {spec!r}: {exc}") from None
    return choice



def parse_codecs(specs, d: int) -> list[CodecChoice]:
    """Parse a non-empty sequence of specs; duplicates are an error."""
    choices = [parse_codec(s, d) for s in specs]
    if not choices:
        raise ValueError("codecs must not be empty")
    labels = [c.label for c in choices]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate codecs in {list(specs)}")
    return choices
