"""Write tests/data/relu_golden.json: reference runs of the planted ReLU, bit for bit.

Run once with a trusted build; tests/test_models.py checks that the ReLU model still
produces these iterates and history to the last bit (float.hex), whatever the
refactor. Rerun only for a deliberate change of the numbers, and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ray_relu.reference import sgd

CASES = [
    {"problem": {"d": 6, "n": 90, "noise": 0.0, "seed": 1}, "options": {}},
    {"problem": {"d": 6, "n": 90, "noise": 0.1, "seed": 2},
     "options": {"workers": 3, "batch_size": 12, "init": "random"}},
    {"problem": {"d": 9, "n": 120, "noise": 0.0, "seed": 3},
     "options": {"workers": 2, "codec": "qsgd", "codec_options": {"levels": 4}}},
    {"problem": {"d": 9, "n": 120, "noise": 0.0, "seed": 4},
     "options": {"workers": 3, "codec": "fp16", "init": "zero",
                 "downlink_codec": "qsgd"}},
    {"problem": {"d": 5, "n": 40, "noise": 0.0, "seed": 5},
     "options": {"workers": 4, "batch_size": 8, "codec": "qsgd", "step_size": 0.3}},
]
ITERATIONS = 25


def run(case: dict) -> dict:
    from ray_relu.models import PlantedReLU
    problem = PlantedReLU(**case["problem"])
    ref = sgd(problem, iterations=ITERATIONS, tol=0.0, **case["options"])
    columns = {name: [float(v).hex() for v in ref.history.column(name).to_pylist()]
               for name in ("loss", "rel_error", "rel_change")}
    digest = hashlib.sha256(np.ascontiguousarray(ref.iterates).tobytes()).hexdigest()
    return {**case, "iterates_sha256": digest, "history": columns}


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "tests" / "data" / "relu_golden.json"
    out.write_text(json.dumps({"iterations": ITERATIONS, "cases": [run(c) for c in CASES]},
                              indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
