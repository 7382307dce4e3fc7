"""The compiled codec kernels: same bytes as the pure-numpy codec they replaced.

``tests/data/codec_corpus.json`` holds hashes written by the numpy codec (see
``tests/codec_corpus.py``); every one must be reproduced, so the wire format and the
random stream (same seed, same bytes) are unchanged.
"""

from __future__ import annotations

import json

import codec_corpus


def test_corpus_hashes_are_reproduced():
    entries = json.loads(codec_corpus.PATH.read_text())
    assert len(entries) == len(codec_corpus.cases())
    bad = []
    for entry in entries:
        case = {k: entry[k] for k in ("recipe", "d", "seed", "codec")}
        got = codec_corpus.run_case(case)
        if got != {"msg": entry["msg"], "dec": entry["dec"]}:
            bad.append((case, got))
    assert not bad, f"{len(bad)} of {len(entries)} cases changed, first: {bad[:3]}"
