"""``FitResult`` and the history table every fit produces."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .tables import text_table

HISTORY_SCHEMA = pa.schema([
    ("iteration", pa.int64()),
    ("loss", pa.float64()),        # mean loss over the rows used at w_t (all rows: full batch)
    ("rel_error", pa.float64()),   # ||w_t - w*|| / ||w*|| (NaN when w* is unknown)
    ("rel_change", pa.float64()),  # ||w_t - w_{t-1}|| / ||w_{t-1}|| (NaN in the first row)
    ("bytes_up", pa.int64()),      # worker -> master messages received in round t
    ("bytes_down", pa.int64()),    # master -> worker messages received in round t
    ("bytes_peer", pa.int64()),    # worker -> worker messages received in round t
    ("compute_s", pa.float64()),   # slowest worker's loss+gradient time
    ("encode_s", pa.float64()),    # slowest worker's encode+decode, plus the master's
    ("comm_s", pa.float64()),      # the rest of the round: Ray scheduling and transfers
    ("wall_s", pa.float64()),      # the round, as the driver saw it
])

# Columns that are a function of the inputs only (not of timing): what "the same
# history" means for restarts and resumes.
DETERMINISTIC_COLUMNS = ("iteration", "loss", "rel_error", "rel_change", "bytes_up",
                         "bytes_down", "bytes_peer")


def history_table(records: Iterable[Any]) -> pa.Table:
    """Build the history table from :class:`~ray_relu.coordinator.RoundRecord` rows."""
    rows = [asdict(r) if not isinstance(r, dict) else r for r in records]
    return pa.Table.from_pydict({f.name: [r[f.name] for r in rows] for f in HISTORY_SCHEMA},
                                schema=HISTORY_SCHEMA)


@dataclass
class FitResult:
    """What :func:`ray_relu.fit` returns.

    Attributes
    ----------
    w : the final iterate ``w_T``.
    w_star : the planted ``w*``, or None when the data has none.
    converged : True only when the stopping rule fired (see ``stopping_rule``).
    iterations : number of updates applied (``T``; the history has rows 0..T).
    replica_divergence : max |difference| between the workers' final replicas of ``w``.
    history : pyarrow Table, one row per round (see ``HISTORY_SCHEMA``).
    stopping_rule : ``"rel_error"`` (``||w - w*||/||w*|| <= tol``, when ``w*`` is known)
        or ``"rel_change"`` (``||w_t - w_{t-1}||/||w_{t-1}|| <= tol``).
    step_size : the step used (the derived default unless given).
    restarts : rounds resubmitted because a worker died.
    config : the run's parameters (problem, codec, mode, workers, ...).
    """

    w: np.ndarray
    w_star: np.ndarray | None
    converged: bool
    iterations: int
    replica_divergence: float
    history: pa.Table
    stopping_rule: str
    step_size: float
    restarts: int = 0
    config: dict = field(default_factory=dict)

    @property
    def rel_error(self) -> float:
        """Final ``||w - w*|| / ||w*||`` (NaN when ``w*`` is unknown)."""
        if self.w_star is None:
            return float("nan")
        return float(np.linalg.norm(self.w - self.w_star) / np.linalg.norm(self.w_star))

    def startup_bytes(self) -> int:
        """Bytes of history row 0, the start-up exchange before the first update: the
        workers' moment sums in float64 (``8d + 29`` bytes each; all-to-all: each
        worker gets the ``K - 1`` others'), and in master mode also ``w_0`` down and the
        first gradients up."""
        return int(sum(int(self.history.column(c)[0].as_py())
                       for c in ("bytes_up", "bytes_down", "bytes_peer")))

    def bytes_per_iteration(self) -> float:
        """Mean bytes moved per iteration (up + down + peer) over rounds ``1..T``; the
        start-up exchange is not an iteration and is left out (see
        :meth:`startup_bytes`). 0.0 when no iteration ran."""
        h = self.history.slice(1)
        if h.num_rows == 0:
            return 0.0
        moved = sum(np.asarray(h.column(c)).sum()
                    for c in ("bytes_up", "bytes_down", "bytes_peer"))
        return float(moved / h.num_rows)

    def total_bytes(self) -> int:
        """All bytes moved by the fit: ``startup_bytes() + T x bytes_per_iteration()``."""
        return int(sum(np.asarray(self.history.column(c)).sum()
                       for c in ("bytes_up", "bytes_down", "bytes_peer")))

    def summary(self) -> dict:
        """The headline numbers, JSON-serializable.

        Bytes come as three figures that add up: ``total_bytes == startup_bytes +
        iterations x bytes_per_iteration`` (so ``total_bytes / iterations`` is larger
        than ``bytes_per_iteration`` by the start-up exchange spread over the run).
        """
        wall = float(np.asarray(self.history.column("wall_s")).sum())
        return {"converged": self.converged, "iterations": self.iterations,
                "rel_error": self.rel_error, "stopping_rule": self.stopping_rule,
                "step_size": self.step_size, "startup_bytes": self.startup_bytes(),
                "bytes_per_iteration": self.bytes_per_iteration(),
                "total_bytes": self.total_bytes(), "wall_s": wall,
                "replica_divergence": self.replica_divergence, "restarts": self.restarts}

    def __repr__(self) -> str:
        s = self.summary()
        return (f"FitResult(converged={s['converged']}, iterations={s['iterations']}, "
                f"rel_error={s['rel_error']:.3g}, bytes/iter={s['bytes_per_iteration']:.0f} "
                f"(+{s['startup_bytes']} at start-up), "
                f"replica_divergence={s['replica_divergence']})")

    def to_parquet(self, path: str | os.PathLike) -> None:
        """Write the history to Parquet, with the run's config and summary as metadata."""
        meta = {b"ray_relu": json.dumps({"config": self.config, "summary": self.summary()},
                                        default=str)}
        pq.write_table(self.history.replace_schema_metadata(meta), path)

    def plot(self, axes: Any = None):
        """Log-scale error against iteration and against cumulative bytes.

        Plots ``rel_error`` (or ``rel_change`` when ``w*`` is unknown). Returns the
        matplotlib Figure; pass two Axes to draw into an existing figure.
        """
        import matplotlib.pyplot as plt
        if axes is None:
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        else:
            fig = axes[0].figure
        column = "rel_error" if self.w_star is not None else "rel_change"
        err = np.asarray(self.history.column(column), dtype=float)
        it = np.asarray(self.history.column("iteration"))
        moved = np.cumsum(sum(np.asarray(self.history.column(c), dtype=float)
                              for c in ("bytes_up", "bytes_down", "bytes_peer")))
        label = self.config.get("codec_label", "")
        axes[0].semilogy(it, err, label=label)
        axes[0].set_xlabel("iteration")
        axes[1].semilogy(moved / 1e6, err, label=label)
        axes[1].set_xlabel("MB moved (cumulative)")
        for ax in axes:
            ax.set_ylabel(column)
            ax.grid(True, which="both", alpha=0.3)
        return fig


# The summary columns users look at first, in order, with their formats.
SUMMARY_COLUMNS = {"codec": None, "converged": None, "iterations": None, "rel_error": ".2e",
                   "startup_bytes": ",", "bytes_per_iteration": ",.0f", "total_bytes": ",",
                   "wall_s": ".2f", "replica_divergence": ".1e"}


def summary_table(rows: Sequence[dict]) -> str:
    """Plain-text table of :meth:`FitResult.summary` dicts (plus ``codec`` and any
    ``vs_*`` comparison columns, which follow the headline columns)."""
    if not rows:
        raise ValueError("summary_table needs at least one summary row, got none")
    extra = [k for k in rows[0] if k.startswith("vs_")]
    return text_table(rows, [*SUMMARY_COLUMNS, *extra],
                      formats={k: f for k, f in SUMMARY_COLUMNS.items() if f})
