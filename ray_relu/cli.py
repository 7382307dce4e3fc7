"""The ``ray-relu`` command line.

Exit codes: 0 success, 1 a fit that did not converge (``fit --strict``), a round that
timed out (``--round-timeout``) or a failed command, 2 bad arguments (one line on
stderr saying what was wrong).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

EXAMPLES = """examples:
  ray-relu demo
  ray-relu fit --d 1000 --n 8000 --workers 4 --mode all-to-all --codec qsgd --levels 4 \\
      --out history.parquet
  ray-relu fit --data shards/ --workers 8 --address auto
  ray-relu write-parquet --d 100 --n 5000 --out data.parquet
  ray-relu reproduce --quick --out results
  ray-relu cluster check cluster/aws.yaml
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: ``ray-relu: error: ...``, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"ray-relu: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


# Codec parameters with a flag of their own (QSGD's); any other: --codec-param.
CODEC_FLAGS = ("levels", "bucket_size", "norm", "coding")


def _codec_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of the chosen codec: its flags and --codec-param values
    that were given (anything left out takes the codec's own default), and the run's
    seed if the codec takes one. A parameter the codec does not take is an error
    naming the ones it does."""
    accepted = _codec_parameters(args.codec)
    from ._validation import parse_key_values
    options = parse_key_values(args.codec_param, "--codec-param")
    flags = {name: getattr(args, name) for name in CODEC_FLAGS if getattr(args, name) is not None}
    unknown = [f"--{n.replace('_', '-')}" for n in flags if n not in accepted] + \
        [f"--codec-param {n}" for n in options if n not in accepted]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not a parameter of --codec {args.codec}; "
                         f"its parameters: {', '.join(accepted) or 'none'}")
    options.update(flags)
    if "seed" in accepted:
        options.setdefault("seed", args.seed)
    return options


def _codec_parameters(name: str) -> list[str]:
    """The constructor parameters of registered codec ``name``."""
    from .codecs.base import constructor_parameters
    from .codecs.registry import codec_class
    return constructor_parameters(codec_class(name)) or []


def _add_fit_arguments(p: argparse.ArgumentParser) -> None:
    from .codecs import available_codecs, get_codec
    from .models import available_models
    codecs = available_codecs()
    levels = get_codec("qsgd").levels                 # QSGD's own default
    data = p.add_argument_group("data (a planted problem, or --data)")
    data.add_argument("--d", type=int, default=1000, help="input dimension (default 1000)")
    data.add_argument("--n", type=int, default=None, help="samples (default 8*d)")
    data.add_argument("--noise", type=float, default=0.0, help="label noise std (default 0)")
    data.add_argument("--data-seed", type=int, default=0, help="seed of the planted data")
    data.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                      help="how the planted rows are stored (float32: half the memory)")
    data.add_argument("--data", default=None,
                      help="Parquet file, directory or URI (file://, s3://, ...) "
                      "instead of a planted problem")
    run = p.add_argument_group("run")
    run.add_argument("--model", default="relu", choices=available_models(),
                     help="the model fitted, and the one labelling planted data "
                     "(default relu, the paper's)")
    run.add_argument("--model-param", action="append", default=[], metavar="KEY=VALUE",
                     help="a model parameter, e.g. alpha=0.2 (leaky), units=3 (hidden); "
                     "repeatable")
    run.add_argument("--workers", type=int, default=4, help="shard actors K (default 4)")
    run.add_argument("--mode", default="master", choices=["master", "all-to-all"])
    run.add_argument("--codec", default="fp32", choices=codecs)
    run.add_argument("--codec-param", action="append", default=[], metavar="KEY=VALUE",
                     help="a codec parameter, e.g. scale=none (fp16); repeatable")
    run.add_argument("--levels", type=int, default=None,
                     help=f"QSGD levels s (default {levels})")
    run.add_argument("--bucket-size", type=int, default=None, help="QSGD bucket size")
    run.add_argument("--norm", default=None, choices=["l2", "max"], help="QSGD scale")
    run.add_argument("--coding", default=None, choices=["auto", "elias", "dense"])
    run.add_argument("--downlink-codec", default=None, choices=codecs,
                     help="master mode: encode the update sent to workers")
    run.add_argument("--batch-size", type=int, default=None, help="rows per step (default: all)")
    run.add_argument("--step-size", type=float, default=None, help="default: derived")
    run.add_argument("--iterations", type=int, default=1000)
    run.add_argument("--tol", type=float, default=1e-8)
    run.add_argument("--init", default=None,
                     help="the model's initialization (default: the model's own; relu: "
                     "moment; also zero, random)")
    run.add_argument("--seed", type=int, default=0, help="seed of the run")
    run.add_argument("--placement", default="pack", choices=["pack", "spread"])
    run.add_argument("--cpus-per-worker", type=float, default=None)
    out = p.add_argument_group("output")
    out.add_argument("--out", default=None,
                     help="write the history to this Parquet file, on the machine the "
                     "driver runs on (a submitted job: the cluster's head)")
    out.add_argument("--json", action="store_true", help="print the summary as JSON")
    out.add_argument("--checkpoint", default=None,
                     help="path or URI (s3://bucket/key, file://...) of a checkpoint written "
                     "every --checkpoint-every rounds, at the end and when a round times out")
    out.add_argument("--checkpoint-every", type=int, default=100)
    out.add_argument("--resume", default=None,
                     help="path or URI of a checkpoint to continue from (same run "
                     "parameters); the history then equals an uninterrupted run's")
    out.add_argument("--round-timeout", type=float, default=None,
                     help="seconds a round may wait for a silent worker before the fit stops "
                     "with an error naming it (default 600)")
    out.add_argument("--address", default=None,
                     help="Ray address (e.g. auto); default: start a local Ray")
    out.add_argument("--no-progress", action="store_true")
    out.add_argument("--strict", action="store_true", help="exit 1 unless converged")


def _model(args: argparse.Namespace):
    from .models import get_model
    from ._validation import parse_key_values
    return get_model(args.model, **parse_key_values(args.model_param, "--model-param"))


def _problem(args: argparse.Namespace, model):
    from .data import ParquetData
    from .models import Planted
    if args.data is not None:
        return ParquetData(args.data)
    return Planted(model, args.d, args.n if args.n is not None else 8 * args.d,
                   noise=args.noise, seed=args.data_seed, dtype=args.dtype)


def _run_config(args: argparse.Namespace, model):
    """The run's RunConfig: every field the fit arguments name."""
    import dataclasses

    from .settings import RunConfig
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
              if hasattr(args, f.name)}
    return RunConfig(**{**values, "model": model, "codec_options": _codec_options(args)})


def _run_fit(args: argparse.Namespace) -> int:
    from .fit import fit
    from .result import summary_table
    model = _model(args)
    result = fit(_problem(args, model), _run_config(args, model),
                 progress=not args.no_progress, checkpoint=args.checkpoint,
                 checkpoint_every=args.checkpoint_every, resume=args.resume,
                 placement=args.placement, cpus_per_worker=args.cpus_per_worker,
                 address=args.address, **_round_timeout(args))
    if args.out:
        result.to_parquet(args.out)
    summary = {"codec": result.config["codec_label"], **result.summary()}
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(summary_table([summary]))
    if args.out:
        # --json keeps stdout to the JSON line; the note goes to stderr then.
        print(_written_where(args.out), file=sys.stderr if args.json else sys.stdout)
    return 0 if (result.converged or not args.strict) else 1


def _round_timeout(args: argparse.Namespace) -> dict:
    """``round_timeout`` for fit when ``--round-timeout`` was given (else fit's default)."""
    return {} if args.round_timeout is None else {"round_timeout": args.round_timeout}


def _written_where(path: str) -> str:
    """Where ``--out`` went: host and absolute path, and for a submitted Ray job (whose
    driver runs on the cluster's head) how to fetch it before ``ray down`` removes it."""
    import os
    import socket
    full = os.path.abspath(path)
    where = f"history written to {socket.gethostname()}:{full}"
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:   # set by Ray for job drivers
        where += (" (on the cluster's head, not your machine: fetch it before `ray down` "
                  f"deletes it, with `ray rsync-down CLUSTER.yaml {full} .` or, on the "
                  f"emulated cluster, `ray-relu cluster fetch {full}`)")
    return where


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(d=args.d, n=args.n, workers=args.workers, levels=args.levels,
             batch_size=args.batch_size, address=args.address)
    return 0


def _run_write_parquet(args: argparse.Namespace) -> int:
    from .data import write_parquet
    from .models import PlantedReLU
    p = PlantedReLU(args.d, args.n, noise=args.noise, seed=args.data_seed, dtype=args.dtype)
    write_parquet(p, args.out, layout=args.layout)
    print(f"wrote {p} to {args.out}")
    return 0


def _run_reproduce(args: argparse.Namespace) -> int:
    import matplotlib
    matplotlib.use("Agg")   # files only, never a window
    from .experiments import reproduce
    if args.quick and args.profile not in (None, "quick"):
        raise ValueError(f"--quick contradicts --profile {args.profile}")
    profile = "quick" if args.quick else (args.profile or "full")
    only = None if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    results = reproduce(profile, args.out, only=only, address=args.address, seed=args.seed,
                        log=lambda line: print(line, flush=True))
    failed = [name for name, r in results.items() if not r.holds]
    if failed:
        print(f"claims not confirmed: {', '.join(failed)}")
    return 1 if failed and args.strict else 0


def _add_reproduce_arguments(p: argparse.ArgumentParser) -> None:
    from .experiments import EXPERIMENTS, PROFILES
    p.add_argument("--quick", action="store_true",
                   help="the 2-core profile, a few minutes (same as --profile quick)")
    p.add_argument("--profile", default=None, choices=list(PROFILES),
                   help="sizes: smoke (seconds), quick, full (default; for a cluster)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated subset of: {', '.join(EXPERIMENTS)}")
    p.add_argument("--out", default="results", help="output directory (default results)")
    p.add_argument("--seed", type=int, default=0, help="seed of every experiment")
    p.add_argument("--address", default=None,
                   help="Ray address (e.g. auto); default: start a local Ray")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 if a claim is not confirmed by the measurements")


def _run_cluster(args: argparse.Namespace) -> int:
    from .cluster_check import main as cluster_main
    return cluster_main([args.action, *args.rest])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ray-relu", description="Fit a ReLU unit with distributed SGD "
                     "and QSGD on Ray (Kalan, Soltanolkotabi, Avestimehr, ISIT 2019).",
                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("fit", help="run one fit and print its summary")
    _add_fit_arguments(p)
    p.set_defaults(func=_run_fit)
    p = sub.add_parser("demo", help="QSGD vs fp32 in both modes on a local Ray")
    p.add_argument("--d", type=int, default=1000)
    p.add_argument("--n", type=int, default=None, help="default 8*d")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--address", default=None)
    p.set_defaults(func=_run_demo)
    p = sub.add_parser("write-parquet", help="write a planted problem to Parquet")
    p.add_argument("--d", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="feature type written (float32: float columns, half the size)")
    p.add_argument("--layout", default="list", choices=["list", "columns"])
    p.add_argument("--out", required=True)
    p.set_defaults(func=_run_write_parquet)
    p = sub.add_parser("reproduce", help="run the paper's experiments; write Parquet + PNG")
    _add_reproduce_arguments(p)
    p.set_defaults(func=_run_reproduce)
    p = sub.add_parser("cluster", help="check cluster YAML; run the emulated cluster",
                       epilog="ray-relu cluster check cluster/aws.yaml\n"
                       "ray-relu cluster up --nodes 3 --rate 100mbit   (root; see "
                       "cluster/README.md)\n"
                       "ray-relu cluster submit -- ray-relu fit --workers 3 --placement "
                       "spread --address auto --out history.parquet\n"
                       "ray-relu cluster logs JOB_ID\n"
                       "ray-relu cluster fetch history.parquet\n"
                       "ray-relu cluster down",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", help="check FILE... | up | down | status | shape | block | unblock | submit | "
                   "logs | fetch | exec | ssh | env (the last ones drive cluster/emulate.sh; "
                   "ACTION --help for each)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the action's arguments")
    p.set_defaults(func=_run_cluster)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ray-relu``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .client_auth import ClusterAuthError
    from .coordinator import RoundTimeoutError
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        sys.stderr.write(f"ray-relu: error: {exc}\n")
        return 2
    except (ClusterAuthError, RoundTimeoutError) as exc:
        sys.stderr.write(f"ray-relu: error: {exc}\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
