"""Error feedback ("memory"): compress ``g + e`` and carry the error ``e`` forward.

With a biased compressor ``C`` (top-k, sign, PowerSGD) SGD may stall or diverge;
error feedback (Seide et al. 2014; Karimireddy et al. 2019) fixes it by adding what
was lost last round to this round's gradient::

    c_t = g_t + e_t,    message = C(c_t),    e_{t+1} = c_t - decode(message)

The residual is state, and state belongs to whoever encodes: :meth:`ErrorFeedback.compress`
takes it and returns the next one instead of hiding it in the codec, so a worker keeps
it beside its replica, a checkpoint saves it, and a restarted worker that replays the
same rounds rebuilds the same residual and so the same bytes. Messages are the inner
codec's own; :meth:`decode` is the inner codec's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Codec
from .registry import get_codec

__all__ = ["ErrorFeedback"]


class ErrorFeedback(Codec):
    """``codec`` with error feedback; ``ErrorFeedback("sign")`` or a Codec instance."""

    codec_id = "ef"

    def __init__(self, codec: Any = "sign") -> None:
        inner = get_codec(codec)
        if isinstance(inner, ErrorFeedback):
            raise ValueError("ErrorFeedback(ErrorFeedback(...)) has no meaning; wrap the "
                             "compressor itself")
        self.codec = inner

    def get_config(self) -> dict[str, Any]:
        """``{"id": "ef", "codec": the inner codec's config}`` (JSON-able)."""
        return {"id": self.codec_id, "codec": self.codec.get_config()}

    def compress(self, g: np.ndarray, residual: np.ndarray | None, *,
                 rng: np.random.Generator | None = None
                 ) -> tuple[bytes, np.ndarray]:
        """Encode ``g + residual`` (residual None: zero); return the message and the
        next residual."""
        message, _, residual = self.compress_with_value(g, residual, rng=rng)
        return message, residual

    def compress_with_value(self, g: np.ndarray, residual: np.ndarray | None, *,
                            rng: np.random.Generator | None = None
                            ) -> tuple[bytes, np.ndarray, np.ndarray]:
        """:meth:`compress`, with what the message decodes to between the two."""
        corrected = g if residual is None else g + residual
        message, value = self.codec.encode_with_value(corrected, rng=rng)
        return message, value, corrected - value

    def encode(self, vec: np.ndarray, *, rng: np.random.Generator | None = None) -> bytes:
        """The inner codec's message for ``vec`` with a zero residual (stateless; the
        engine calls :meth:`compress` and keeps the residual)."""
        return self.codec.encode(vec, rng=rng)

    def decode(self, buf: bytes | bytearray | memoryview, *,
               max_dim: int | None = None) -> np.ndarray:
        """The inner codec's decode."""
        return self.codec.decode(buf, max_dim=max_dim)

    def variance_bound(self, d: int) -> float | None:
        """The inner codec's bound for one message (error feedback changes what is
        encoded, not how well)."""
        return self.codec.variance_bound(d)

    def max_message_bytes(self, d: int) -> int | None:
        """The inner codec's bound: the messages are its own."""
        return self.codec.max_message_bytes(d)
