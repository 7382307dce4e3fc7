"""``make demo``: fp32 against QSGD, master and all-to-all, on a local Ray."""

from __future__ import annotations

from .fit import fit
from .models import PlantedReLU
from .result import summary_table


def run_demo(d: int = 1000, n: int | None = None, workers: int = 2, levels: int = 4,
             batch_size: int | None = None, address: str | None = None) -> list[dict]:
    """Fit the same planted problem four ways; print and return the summaries.

    Each QSGD row shows its bytes per iteration as a fraction of fp32's in the same mode.
    """
    problem = PlantedReLU(d, n if n is not None else 8 * d, seed=0)
    print(f"{problem}, K={workers} workers, target rel_error 1e-6\n")
    rows = []
    for mode in ("master", "all-to-all"):
        baseline = None
        for codec, options in (("fp32", {}), ("qsgd", {"levels": levels})):
            result = fit(problem, codec=codec, codec_options=options, workers=workers,
                         mode=mode, batch_size=batch_size, tol=1e-6, iterations=3000,
                         progress=True, address=address)
            row = {"codec": result.config["codec_label"], **result.summary()}
            if baseline is None:
                baseline = row["bytes_per_iteration"]
            row["vs_fp32_bytes"] = f"{row['bytes_per_iteration'] / baseline:.3f}x"
            rows.append(row)
    print(summary_table(rows))
    return rows
