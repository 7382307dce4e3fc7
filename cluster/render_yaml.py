"""Render ``templates/emulated-local.yaml`` for ``emulate.sh up`` (run with the venv's python).

    python cluster/render_yaml.py TEMPLATE DEST KEY=VALUE... [--worker-cpus N]

Every ``$NAME`` of the template gets its ``NAME=VALUE``. With ``--worker-cpus N``
(``up --autoscale``) the result is the config as ``ray up`` prepares it for the local
provider (Ray's ``prepare_config``: defaults merged, the single node type
``local.cluster.node`` filled in) with ``resources: {CPU: N}`` on that node type. Ray
leaves it empty for the local provider and then takes the resources of the nodes it
sees; with only a head that advertises no CPU, the autoscaler would conclude that no
worker host can serve a CPU request and never start one. ``ray up`` and the head's
autoscaler keep a config that already names ``local.cluster.node`` as it is.
"""

from __future__ import annotations

import argparse
import string
import sys
from pathlib import Path


def render(template: str, values: dict[str, str], worker_cpus: int | None = None) -> str:
    """The template with ``values`` substituted; prepared with ``worker_cpus`` if given."""
    text = string.Template(template).substitute(values)
    if worker_cpus is None:
        return text
    import yaml
    from ray.autoscaler._private.local.config import LOCAL_CLUSTER_NODE_TYPE
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load(text))
    config["available_node_types"][LOCAL_CLUSTER_NODE_TYPE]["resources"] = {
        "CPU": int(worker_cpus)}
    validate_config(config)
    lines = text.splitlines()
    header = "".join(line + "\n" for line in
                     lines[:next(i for i, ln in enumerate(lines) if not ln.startswith("#"))])
    return (header + "# Prepared for `up --autoscale` by cluster/render_yaml.py.\n"
            + yaml.safe_dump(config, sort_keys=False, width=1000))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("template")
    parser.add_argument("dest")
    parser.add_argument("values", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--worker-cpus", type=int, default=None)
    args = parser.parse_args(argv)
    values = dict(item.split("=", 1) for item in args.values)
    Path(args.dest).write_text(render(Path(args.template).read_text(), values,
                                      args.worker_cpus))
    return 0


if __name__ == "__main__":
    sys.exit(main())
