"""Codec specs of the experiments: short strings such as ``"fp32"`` or ``"qsgd:sqrt"``.

A spec is ``"fp64"``, ``"fp32"``, ``"fp16"`` (half precision with a per-message
power-of-two scale, the codec's default), ``"fp16:none"`` (the plain cast, whose tiny
values flush to zero) or ``"qsgd:<s>"`` where ``s`` is a number of levels or ``sqrt``
for ``round(sqrt(d))`` (QSGD's dense regime, about 2.8 bits per coordinate in the QSGD
paper's analysis). One bucket spans the whole vector, as in the QSGD paper's basic
scheme.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

FULL_PRECISION = ("fp64", "fp32", "fp16")


@dataclass(frozen=True)
class CodecChoice:
    """A parsed spec: the ``fit`` arguments and a label for tables and legends."""

    spec: str
    label: str
    codec: str
    options: dict = field(default_factory=dict)

    @property
    def levels(self) -> int | None:
        """QSGD levels, None for full-precision codecs."""
        return self.options.get("levels") if self.codec == "qsgd" else None


def parse_codec(spec: str, d: int) -> CodecChoice:
    """Parse one spec for dimension ``d`` (see the module docstring)."""
    if not isinstance(spec, str):
        raise ValueError(f"a codec spec must be a string such as 'fp32' or 'qsgd:4', "
                         f"got {spec!r}")
    if spec in FULL_PRECISION:
        return CodecChoice(spec, spec, spec)
    if spec == "fp16:none":
        return CodecChoice(spec, "fp16 (no scale)", "fp16", {"scale": "none"})
    name, _, arg = spec.partition(":")
    if name != "qsgd" or not arg:
        raise ValueError(f"unknown codec spec {spec!r}; use one of "
                         f"{', '.join(FULL_PRECISION)}, fp16:none, 'qsgd:<levels>' or 'qsgd:sqrt'")
    if arg == "sqrt":
        levels = max(1, round(math.sqrt(d)))
        return CodecChoice(spec, f"qsgd s={levels} (sqrt d)", "qsgd", {"levels": levels})
    if not arg.isdigit() or int(arg) < 1:
        raise ValueError(f"QSGD levels in {spec!r} must be a positive integer or 'sqrt'")
    return CodecChoice(spec, f"qsgd s={int(arg)}", "qsgd", {"levels": int(arg)})


def parse_codecs(specs, d: int) -> list[CodecChoice]:
    """Parse a non-empty sequence of specs; duplicates are an error."""
    choices = [parse_codec(s, d) for s in specs]
    if not choices:
        raise ValueError("codecs must not be empty")
    labels = [c.label for c in choices]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate codecs in {list(specs)}")
    return choices
