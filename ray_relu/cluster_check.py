"""``ray-relu cluster ...``: check cluster YAML offline; drive the emulated cluster.

``ray-relu cluster check FILE [FILE ...]`` validates Ray cluster launcher files the
way ``ray up`` does before it contacts any cloud: ``validate_config(prepare_config(c))``
from ``ray.autoscaler._private.util`` (defaults merged, node types filled in, then Ray's
JSON schema and consistency checks). Neither step talks to the network: for AWS,
``prepare_config`` only reads Ray's bundled ``defaults.yaml``; everything that needs
boto3 and credentials (resource autodetection, IAM, key pairs, subnets, security
groups) happens later, in ``ray up``'s bootstrap step. On top, our own rules:

- **security**: no security-group rule opens anything but SSH (tcp/22) to the world
  (``0.0.0.0/0`` or ``::/0``);
- **token auth**: every ``ray start`` runs with ``RAY_AUTH_MODE=token`` and the token
  file it reads is shipped to the nodes by ``file_mounts``; nothing disables it;
- **install**: the setup commands install ray_relu on head and workers, pinned (a
  version ``==X``, a git ref ``@ref`` or a wheel file);
- **credentials**: no AWS keys, private keys or literal Ray tokens in the file.

Every file given is checked and every problem reported, one line each
(``ray-relu: error: FILE: what is wrong``); exit code 2 if any file has one. Warnings
(``ray-relu: warning: FILE: ...``) do not fail the check: placeholder values that
``ray up`` would fail on later (the example AMI id, documentation IP addresses,
``YOUR_...`` words), and setup commands that leave ``RAY_AUTH_MODE=token`` out of the
nodes' shell profile (``ray status`` in ``ray attach`` then fails).

The other actions (``up``, ``down``, ``status``, ``shape``, ``block``, ``unblock``,
``submit``, ``logs``, ``fetch``, ``exec``, ``ssh``, ``env``) run ``cluster/emulate.sh`` of the source checkout:
the emulated multi-node cluster (see ``cluster/README.md`` and :mod:`ray_relu.emulated`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

EMULATE_ACTIONS = ("up", "down", "status", "shape", "block", "unblock", "submit", "logs",
                   "fetch", "exec", "ssh", "env")
WORLD = ("0.0.0.0/0", "::/0")
DEFAULT_TOKEN_PATH = "~/.ray/auth_token"
USAGE = ("usage: ray-relu cluster check FILE [FILE ...]\n"
         "       ray-relu cluster {up,down,status,shape,block,unblock,submit,logs,fetch,exec,"
         "ssh,env} [ARGS ...]\n"
         "       (the emulated cluster; `ray-relu cluster ACTION --help` says more)")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_CREDENTIAL_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                    "aws_credentials", "password")
# A requirement naming the project: ray_relu, ray-relu[extra]==0.1.0, ray_relu @ URL,
# or a wheel file name ray_relu-0.1.0-py3-none-any.whl (the name, then a version).
_REQUIREMENT = re.compile(r"^ray[_-]relu(\[[^\]]*\])?($|\s*[=<>~!@]|-[\d*])", re.I)
_PIP_INSTALL = re.compile(r"\bpip3?(\.\S*)?\s+install\b|\buv\s+pip\s+install\b")


class ClusterConfigError(ValueError):
    """A cluster YAML file that ``ray up`` would reject, or that breaks our rules."""


@dataclass
class CheckReport:
    """What :func:`check_file` found in one file: problems (``ray up`` would fail, or
    our rules are broken), warnings (placeholders ``ray up`` would fail on later) and
    notes (what cannot be checked offline)."""

    path: str
    provider: str | None = None
    node_types: list[str] = field(default_factory=list)
    max_workers: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """One line for the terminal (a file that passed)."""
        warned = f"; {len(self.warnings)} warning(s) on stderr" if self.warnings else ""
        return (f"ok: {self.path} (provider {self.provider}, node types "
                f"{', '.join(self.node_types)}, max_workers {self.max_workers}): Ray's "
                f"validator, security, token auth, install and credential checks passed"
                f"{warned}")


def load_yaml(path: str | os.PathLike) -> dict:
    """Parse ``path``; syntax errors name the line and column."""
    import yaml
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ClusterConfigError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ClusterConfigError(f"{path}: cannot read: {exc}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ClusterConfigError(f"{path}: YAML syntax error{where}: {what}") from None
    if not isinstance(config, dict):
        raise ClusterConfigError(f"{path}: expected a mapping of cluster settings at the "
                                 f"top level, got {type(config).__name__}")
    return config


def ray_validate(config: dict) -> dict:
    """Ray's own offline validation, in ``ray up``'s order; returns the prepared config.

    Raises :class:`ClusterConfigError` with a one-line message.
    """
    provider = config.get("provider")
    if not isinstance(provider, dict) or "type" not in provider:
        raise ClusterConfigError("missing provider: add a 'provider:' mapping with a "
                                 "'type' (aws, local, gcp, azure, ...)")
    import click
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config
    out = io.StringIO()
    ray_logger = logging.getLogger("ray.autoscaler")
    level = ray_logger.level
    try:
        # Ray's cli_logger prints warnings and aborts, its loggers chat at INFO: keep
        # all of it out of our one-line answer.
        ray_logger.setLevel(logging.WARNING)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            prepared = prepare_config(copy.deepcopy(config))
            validate_config(prepared)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "top level"
        raise ClusterConfigError(f"Ray's schema: at {where}: {_one_line(exc.message)}") \
            from None
    except click.ClickException as exc:
        raise ClusterConfigError(f"Ray: {_one_line(exc.message)}") from None
    except NotImplementedError as exc:
        raise ClusterConfigError(f"Ray: {_one_line(str(exc))}") from None
    except (ValueError, KeyError, TypeError, AssertionError, RuntimeError) as exc:
        raise ClusterConfigError(f"Ray: {type(exc).__name__}: {_one_line(str(exc))}") \
            from None
    finally:
        ray_logger.setLevel(level)
    return prepared


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(_ANSI.sub("", str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, value) in a nested config."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def check_security(config: dict) -> list[str]:
    """Security-group rules: only tcp/22 may be open to the world."""
    problems = []
    for path, node in _walk(config):
        if not isinstance(node, dict):
            continue
        cidrs = [r.get("CidrIp") for r in node.get("IpRanges") or [] if isinstance(r, dict)]
        cidrs += [r.get("CidrIpv6") for r in node.get("Ipv6Ranges") or []
                  if isinstance(r, dict)]
        world = [c for c in cidrs if c in WORLD]
        if not world:
            continue
        proto = str(node.get("IpProtocol", "-1"))
        lo, hi = node.get("FromPort"), node.get("ToPort")
        if proto == "tcp" and lo == 22 and hi == 22:
            continue
        ports = "all ports" if proto == "-1" or lo in (None, -1) else \
            (f"{proto}/{lo}" if lo == hi else f"{proto}/{lo}-{hi}")
        problems.append(f"{path} opens {ports} to the world ({world[0]}); only SSH "
                        "(tcp/22) may be: reach the dashboard and job API through "
                        "`ray dashboard` (an SSH tunnel)")
    return problems


def _commands(config: dict, key: str) -> list[str]:
    value = config.get(key) or []
    return [str(c) for c in value] if isinstance(value, list) else [str(value)]


def _env_assignments(command: str) -> dict[str, str]:
    return dict(re.findall(r"\b(RAY_AUTH_[A-Z_]+)=(\S+)", command))


def check_token_auth(config: dict) -> list[str]:
    """Every ``ray start`` runs with token auth, and its token file is shipped."""
    problems = []
    mounts = {_home(k) for k in (config.get("file_mounts") or {})}
    for key, head in (("head_start_ray_commands", True), ("worker_start_ray_commands", False)):
        starts = [c for c in _commands(config, key) if re.search(r"\bray\s+start\b", c)]
        if not starts:
            problems.append(f"{key}: no `ray start` command (Ray's default starts "
                            "without RAY_AUTH_MODE=token); write the commands out")
            continue
        for c in starts:
            env = _env_assignments(c)
            if head and "--head" not in c:
                problems.append(f"{key}: `ray start` without --head")
            if env.get("RAY_AUTH_MODE", "").strip("'\";") != "token":
                problems.append(f"{key}: `ray start` must run with RAY_AUTH_MODE=token "
                                "(e.g. `export RAY_AUTH_MODE=token; ray start ...`)")
                continue
            if "RAY_AUTH_TOKEN" in env:
                problems.append(f"{key}: a literal RAY_AUTH_TOKEN is a credential; ship "
                                "the token file with file_mounts instead")
            token = _home(env.get("RAY_AUTH_TOKEN_PATH", DEFAULT_TOKEN_PATH).strip("'\";"))
            if token not in mounts:
                problems.append(f"{key}: the token file {token} is not in file_mounts "
                                f"(add \"{token}\": \"~/.ray/auth_token\")")
    for path, node in _walk(config):
        if isinstance(node, str) and re.search(r"RAY_AUTH_MODE=['\"]?disabled", node):
            problems.append(f"{path}: RAY_AUTH_MODE=disabled turns token auth off")
    return sorted(set(problems), key=problems.index)


_PROFILE = re.compile(r"(~|\$HOME)/\.(profile|bashrc|bash_profile)\b"
                      r"|/etc/(profile|environment|bash\.bashrc)\b")


def check_shell_auth(config: dict) -> list[str]:
    """A setup command puts ``RAY_AUTH_MODE=token`` into the nodes' shell profile.

    Without it ``ray status`` and ``ray job list`` in a shell on a node (``ray attach``,
    ``ray exec``) fail with ``AuthenticationError ... RAY_AUTH_MODE is currently
    'disabled'``: only the ``ray start`` commands set the mode. A warning, not an error:
    the cluster itself works.
    """
    node_types = config.get("available_node_types") or {}
    commands = [*_commands(config, "setup_commands"),
                *_commands(config, "head_setup_commands"),
                *_commands(config, "worker_setup_commands"),
                *(str(c) for nt in node_types.values() if isinstance(nt, dict)
                  for c in nt.get("worker_setup_commands") or [])]
    if any(re.search(r"RAY_AUTH_MODE=['\"]?token", c) and _PROFILE.search(c)
           for c in commands):
        return []
    return ["setup_commands: nothing puts RAY_AUTH_MODE=token into the nodes' shell "
            "profile, so `ray status` and `ray job list` in `ray attach` fail with "
            "AuthenticationError: append `export RAY_AUTH_MODE=token` to ~/.profile (see "
            "cluster/aws.yaml)"]


def _home(path: str) -> str:
    """``$HOME/x`` and ``${HOME}/x`` as ``~/x``, for comparing remote paths."""
    return re.sub(r"^(\$HOME|\$\{HOME\})(?=/|$)", "~", path.strip())


def _install_targets(command: str) -> list[str]:
    """The ray_relu requirement(s) a pip install command names."""
    if not _PIP_INSTALL.search(command):
        return []
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    found, i = [], 0
    while i < len(words):
        w = words[i]
        if _REQUIREMENT.match(w):
            # "ray_relu @ git+...": the requirement spans three words.
            if i + 2 < len(words) and words[i + 1] == "@":
                w = f"{w} @ {words[i + 2]}"
                i += 2
            found.append(w)
        elif (w.endswith(".whl") and _REQUIREMENT.match(os.path.basename(w))) or \
                ("git+" in w and re.search(r"ray[_-]relu(\.git)?($|[@#])", w, re.I)):
            found.append(w)
        i += 1
    return found


def _pinned(requirement: str) -> bool:
    if requirement.endswith(".whl"):
        return True
    if "==" in requirement:
        return True
    url = requirement.split("git+", 1)
    return len(url) == 2 and "@" in url[1].split("://", 1)[-1]


def check_install(config: dict) -> list[str]:
    """The setup commands install ray_relu, pinned, on the head and on the workers."""
    node_types = config.get("available_node_types") or {}
    worker_specific = [c for nt in node_types.values() if isinstance(nt, dict)
                       for c in nt.get("worker_setup_commands") or []]
    scopes = {"setup_commands": _commands(config, "setup_commands"),
              "head_setup_commands": _commands(config, "head_setup_commands"),
              "worker_setup_commands": _commands(config, "worker_setup_commands")
              + [str(c) for c in worker_specific]}
    found = {k: [t for c in v for t in _install_targets(c)] for k, v in scopes.items()}
    problems = []
    for scope, targets in found.items():
        for t in targets:
            if not _pinned(t):
                problems.append(f"{scope}: `{t}` is not pinned: install a version "
                                "(ray_relu==0.1.0), a git ref (git+URL@v0.1.0) or a wheel")
    on_head = found["setup_commands"] or found["head_setup_commands"]
    on_workers = found["setup_commands"] or found["worker_setup_commands"]
    if not (on_head and on_workers):
        missing = " and ".join(n for n, ok in (("head", on_head), ("workers", on_workers))
                               if not ok)
        problems.append(f"setup_commands: nothing installs ray_relu on the {missing} "
                        "(e.g. `pip install ~/wheelhouse/ray_relu-0.1.0-py3-none-any.whl`)")
    return problems


def check_credentials(config: dict, text: str) -> list[str]:
    """No AWS keys, private keys or credential fields in the file."""
    problems = []
    if _AWS_KEY_ID.search(text):
        problems.append("contains what looks like an AWS access key id: remove it and "
                        "use your AWS profile or environment")
    if _PRIVATE_KEY.search(text):
        problems.append("contains a private key: point auth.ssh_private_key at a file")
    reported: list[str] = []
    for path, node in _walk(config):
        if isinstance(node, dict) and not any(path.startswith(r) for r in reported):
            for k in node:
                if str(k).lower() in _CREDENTIAL_KEYS:
                    where = f"{path}.{k}" if path else str(k)
                    reported.append(where)    # one line, not one more per field inside
                    problems.append(f"{where}: credentials do not belong in the file; "
                                    "use your AWS profile or environment")
    return problems


# Values `ray up` would fail on later (the bootstrap or the first SSH), left in from the
# shipped examples or the docs.
_PLACEHOLDER_WORD = re.compile(
    r"\b(YOUR_[A-Z_]+|CHANGE_?ME|REPLACE_?ME|PLACEHOLDER|TODO)\b|<[^<>]+>")
_AMI = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
_EXAMPLE_AMI = re.compile(r"0123456789abcdef|12345678|abcdef01|deadbeef")
# RFC 5737: addresses reserved for documentation, never a machine.
_DOC_NETS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")


def check_placeholders(config: dict) -> list[str]:
    """Placeholder values that pass Ray's offline validation but fail ``ray up`` later:
    the example AMI id, documentation IP addresses, ``YOUR_...``/``<...>`` words."""
    import ipaddress
    warnings = []
    for path, node in _walk(config):
        if not isinstance(node, str):
            continue
        key = path.rsplit(".", 1)[-1].split("[", 1)[0]
        value = node.strip()
        if key == "ImageId":
            if not _AMI.match(value):
                warnings.append(f"{path}: {value!r} is not an AMI id (ami- and 8 or 17 hex "
                                "digits): put an image of your region there")
            elif _EXAMPLE_AMI.search(value):
                warnings.append(f"{path}: {value} is the example AMI id (a placeholder); "
                                "`ray up` fails on it: put an Ubuntu 24.04 amd64 AMI of your "
                                "region (see cluster/README.md)")
            continue
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            ip = None
        if ip is not None:
            if any(ip in ipaddress.ip_network(net) for net in _DOC_NETS):
                warnings.append(f"{path}: {value} is a documentation address (RFC 5737), "
                                "not a machine: put your machine's address there")
            continue
        word = _PLACEHOLDER_WORD.search(value)
        if word and "commands" not in path:
            warnings.append(f"{path}: {word.group(0)} is a placeholder: replace it")
    return warnings


def check_config(config: dict, text: str = "") -> CheckReport:
    """Ray's validation, then our rules, every one of them: a failing Ray validation
    does not hide our rules' findings. Returns a :class:`CheckReport` (path empty)."""
    report = CheckReport("")
    prepared = None
    try:
        prepared = ray_validate(config)
    except ClusterConfigError as exc:
        report.problems.append(str(exc))
    for rule in (check_security, check_token_auth, check_install):
        try:
            report.problems += rule(config)
        except (AttributeError, TypeError, ValueError) as exc:
            # A file Ray already refused can be shaped so that a rule cannot read it.
            if prepared is not None:
                raise
            report.problems.append(f"{rule.__name__}: could not apply to this file "
                                   f"({type(exc).__name__}: {_one_line(str(exc))})")
    report.problems += check_credentials(config, text)
    report.warnings += check_shell_auth(config) + check_placeholders(config)
    provider = config.get("provider")
    report.provider = provider.get("type") if isinstance(provider, dict) else None
    if prepared is not None:
        report.node_types = list(prepared.get("available_node_types") or {})
        report.max_workers = int(prepared.get("max_workers", 0))
        for name, nt in (prepared.get("available_node_types") or {}).items():
            groups = (nt.get("node_config") or {}).get("SecurityGroupIds")
            if groups:
                report.notes.append(f"node type {name} uses existing security groups "
                                    f"{groups}: their rules cannot be checked offline")
    return report


def check_file(path: str | os.PathLike) -> CheckReport:
    """Check one cluster YAML file; every problem found is in the report (a file that
    cannot be read or parsed has that as its one problem)."""
    try:
        config = load_yaml(path)
    except ClusterConfigError as exc:
        return CheckReport(str(path), problems=[str(exc).removeprefix(f"{path}: ")])
    report = check_config(config, Path(path).read_text())
    report.path = str(path)
    return report


def emulate_script() -> Path:
    """``cluster/emulate.sh`` of the source checkout this package runs from."""
    env = os.environ.get("RAY_RELU_EMULATE_SH")
    script = Path(env) if env else Path(__file__).resolve().parent.parent / "cluster" / \
        "emulate.sh"
    if not script.is_file():
        raise ClusterConfigError(f"{script} not found: the emulated cluster ships with "
                                 "the source checkout (git clone), not with the wheel")
    return script


def run_emulate(argv: list[str]) -> int:
    """Run ``emulate.sh``; its hints name ``ray-relu cluster``, and Ctrl-C is its to
    handle: the script gets the same SIGINT, says "interrupted", tears down and exits
    130, so this process waits for that instead of leaving with a traceback."""
    env = dict(os.environ, RAY_RELU_EMU_CMD="ray-relu cluster")
    proc = subprocess.Popen(argv, env=env)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def main(argv: Sequence[str] | None = None) -> int:
    """``ray-relu cluster ACTION ...``; returns the exit code (2: bad file or usage)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    action, rest = args[0], args[1:]
    try:
        if action == "check":
            if rest in (["-h"], ["--help"]):
                print(USAGE)
                return 0
            if not rest or any(a.startswith("-") for a in rest):
                raise ClusterConfigError("cluster check needs one or more YAML files: "
                                         "ray-relu cluster check cluster/aws.yaml")
            failed = 0
            for path in rest:
                report = check_file(path)
                for problem in report.problems:
                    sys.stderr.write(f"ray-relu: error: {path}: {problem}\n")
                for warning in report.warnings:
                    sys.stderr.write(f"ray-relu: warning: {path}: {warning}\n")
                if report.ok:
                    print(report.line())
                    for note in report.notes:
                        print(f"  note: {note}")
                failed += not report.ok
            if failed and len(rest) > 1:
                sys.stderr.write(f"ray-relu: error: {failed} of {len(rest)} files failed "
                                 "the check\n")
            return 2 if failed else 0
        if action in EMULATE_ACTIONS:
            if action == "submit" and "--" not in rest and rest[:1] not in (["-h"], ["--help"]):
                # argparse drops a leading "--": without it `ray job submit` would
                # take the entrypoint's options (e.g. fit's --d) for its own.
                rest = ["--", *rest]
            return run_emulate(["bash", str(emulate_script()), action, *rest])
        raise ClusterConfigError(f"unknown cluster action {action!r}; expected check or "
                                 f"one of {', '.join(EMULATE_ACTIONS)}")
    except ClusterConfigError as exc:
        sys.stderr.write(f"ray-relu: error: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
