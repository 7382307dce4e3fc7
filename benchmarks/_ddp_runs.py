"""DDP rounds on the cluster: a Ray Train ``TorchTrainer`` driven from the head.

``python -m benchmarks._ddp_runs --d 10000 --rounds 100 --hooks fp32,fp16`` joins the
running Ray (``address="auto"``), starts ``TorchTrainer`` with
``ScalingConfig(num_workers=K, use_gpu=False)`` (gloo; one worker per one-CPU worker
host) and runs :func:`benchmarks._torch_ddp.run_worker` in each: every hook for
``--rounds`` rounds, then bare gloo allreduce loops. Rank 0's rows come back through
a collector actor and are printed as ``DDP_RESULT {...}`` lines (``JobOutput.results(MARK)`` reads them).
"""

from __future__ import annotations

import json
import sys
import tempfile

from benchmarks._common import cluster_driver_parser
from benchmarks._torch_ddp import HOOKS

MARK = "DDP_RESULT "


def _train_loop(config: dict) -> None:
    import ray
    import ray.train

    from benchmarks._torch_ddp import run_worker

    config = dict(config)
    collector = config.pop("collector")
    rows = run_worker(**config)
    if ray.train.get_context().get_world_rank() == 0:
        ray.get(collector.put.remote(rows))


def _collector():
    """An actor that keeps rank 0's rows: Ray Train 2's ``Result.metrics`` holds only
    what was reported with a checkpoint, and these runs have none."""
    import ray

    @ray.remote(num_cpus=0)
    class Collector:
        def __init__(self) -> None:
            self.rows: list[dict] = []

        def put(self, rows: list[dict]) -> None:
            self.rows.extend(rows)

        def get(self) -> list[dict]:
            return self.rows

    return Collector.remote()


def main(argv: list[str] | None = None) -> int:
    parser = cluster_driver_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--hooks", default=",".join(HOOKS))
    # 10x: a bare allreduce is ~1-10 ms, and the link counters are sampled every few
    # tens of ms (benchmarks._links), so its window must be longer
    parser.add_argument("--allreduce-rounds", type=int, default=None,
                        help="bare allreduce rounds per dtype (default 10 x --rounds; "
                             "0: none)")
    args = parser.parse_args(argv)
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from ray_relu.runtime import ensure_ray
    ensure_ray(args.address, log_to_driver=False)
    config = {"d": args.d, "n": args.n or 8 * args.d, "hooks": args.hooks.split(","),
              "batch": args.batch_per_worker, "rounds": args.rounds, "tol": 0.0,
              "allreduce_rounds": 10 * args.rounds if args.allreduce_rounds is None
              else args.allreduce_rounds, "collector": _collector()}
    trainer = TorchTrainer(
        _train_loop, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=args.workers, use_gpu=False,
                                     resources_per_worker={"CPU": 1}),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(name="peers", storage_path=tempfile.mkdtemp()))
    trainer.fit()
    for row in ray.get(config["collector"].get.remote()):
        print(MARK + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
