"""``ExperimentResult``: what every experiment returns, and how it is written to disk."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

_META_KEY = b"ray_relu_experiment"


@dataclass
class ExperimentResult:
    """The outcome of one experiment.

    Attributes
    ----------
    name : the experiment's registry name (``"convergence"``, ...).
    table : pyarrow Table, one row per configuration: the measured numbers.
    curves : pyarrow Table in long format, one row per (configuration, iteration):
        the trajectories the figure is drawn from.
    figure : the matplotlib Figure.
    claim : one sentence stating what was measured, with the numbers.
    holds : whether the measured numbers satisfy the claim's criterion (stated in the
        experiment's docstring).
    params : the arguments the experiment ran with (JSON-serializable).
    """

    name: str
    table: pa.Table
    curves: pa.Table
    figure: Any
    claim: str
    holds: bool
    params: dict = field(default_factory=dict)

    def metadata(self) -> dict:
        """What is stored alongside the tables: name, claim, verdict, parameters."""
        return {"name": self.name, "claim": self.claim, "holds": self.holds,
                "params": self.params}

    def save(self, out_dir: str | Path, *, dpi: int = 110) -> list[Path]:
        """Write ``<name>.parquet`` (table), ``<name>_curves.parquet`` and ``<name>.png``.

        The metadata (:meth:`metadata`) is stored in both Parquet schemas under the key
        ``ray_relu_experiment``. Returns the paths written.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = {_META_KEY: json.dumps(self.metadata(), default=str)}
        paths = [out / f"{self.name}.parquet", out / f"{self.name}_curves.parquet",
                 out / f"{self.name}.png"]
        pq.write_table(self.table.replace_schema_metadata(meta), paths[0])
        pq.write_table(self.curves.replace_schema_metadata(meta), paths[1])
        self.figure.savefig(paths[2], dpi=dpi, bbox_inches="tight")
        return paths


def read_metadata(path: str | Path) -> dict:
    """The experiment metadata stored in a Parquet file written by :meth:`ExperimentResult.save`."""
    meta = pq.read_schema(path).metadata or {}
    if _META_KEY not in meta:
        raise ValueError(f"{path} has no ray_relu experiment metadata")
    return json.loads(meta[_META_KEY])
