"""One seed, many independent streams.

Every random choice in ray_relu is drawn from a generator keyed by the user's seed plus
a *purpose tag* and the coordinates of the draw (data block, iteration, worker). Keys,
not shared generator state, make the draws independent of how work is split and of
restarts: a worker rebuilt after a crash at iteration t draws exactly what it would have.
"""

from __future__ import annotations

import numpy as np

# Purpose tags: the first element of every spawn key. Never reuse or renumber them,
# or data sets and runs made with older versions stop being reproducible.
W_STAR = 0
DATA_X = 1
DATA_NOISE = 2
BATCH = 3
QUANTIZE = 4
RANDOM_INIT = 5
DOWNLINK = 6


def rng_for(seed: int, tag: int, *key: int) -> np.random.Generator:
    """Return the generator of stream ``(tag, *key)`` under ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(tag, *key)))
