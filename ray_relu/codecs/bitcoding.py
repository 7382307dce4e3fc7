"""Lengths of the Elias codes, vectorized (for message sizes and the bits benchmark).

The codes themselves are written and read by the compiled kernels of
:mod:`ray_relu.codecs._kernels`.

Elias codes (Elias 1975) for integers ``n >= 1``, with ``L = floor(log2 n)``:

* gamma: ``L`` zeros, then the ``L + 1`` binary digits of ``n``; ``2L + 1`` bits.
  Written here as a *unary part* (``L`` zeros and the leading one) and a *tail*
  (the ``L`` digits after the leading one).
* delta: gamma code of ``L + 1``, then the ``L`` tail digits of ``n``;
  ``L + 2 floor(log2(L + 1)) + 1`` bits.
* omega: recursive length prefixes; only its length is computed here (for the
  comparison in ``benchmarks/bits_on_wire.py``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["bit_length", "gamma_length", "delta_length", "omega_length"]


def bit_length(n: np.ndarray) -> np.ndarray:
    """``floor(log2 n) + 1`` for integers ``1 <= n < 2**53``, as int64."""
    # read the exponent field of the (exact) float64 value: two light passes
    bits = np.asarray(n, dtype=np.float64).view(np.int64) >> 52
    bits -= 1022
    return bits


def gamma_length(n: np.ndarray) -> np.ndarray:
    """Length in bits of the Elias gamma code of each ``n >= 1``."""
    return 2 * bit_length(n) - 1


def delta_length(n: np.ndarray) -> np.ndarray:
    """Length in bits of the Elias delta code of each ``n >= 1``."""
    tail = bit_length(n) - 1
    return tail + gamma_length(tail + 1)


def omega_length(n: np.ndarray) -> np.ndarray:
    """Length in bits of the Elias omega code of each ``n >= 1``."""
    n = np.asarray(n, dtype=np.int64)
    total = np.ones(n.shape, dtype=np.int64)          # the terminating zero
    cur = n.copy()
    while True:                                        # <= 5 rounds for n < 2**64
        active = cur > 1
        if not active.any():
            return total
        bl = bit_length(np.where(active, cur, 1))
        total += np.where(active, bl, 0)
        cur = np.where(active, bl - 1, 1)
