"""Readers for the deployment files (compose, Kubernetes, systemd, Dockerfile) and the
`ownkey` command line they call, shared by the deploy tests. Paths are absolute: the
tests run in a temporary working directory."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dockerfile
import typer.core
import typer.main
import yaml

from shared.cli import app as cli_app

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILES = [REPO / "docker-compose.yml", DEPLOY / "compose.worker.yml"]
K8S_DIR = DEPLOY / "k8s"
SYSTEMD_UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
DOCKERFILE = REPO / "Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in k8s_files():
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in k8s_documents() if doc["kind"] == kind]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def k8s_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container of every Deployment and Job."""
    for doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            for container in pod_spec(doc)["containers"]:
                yield doc, container


# --- the ownkey command line ------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    command: str  # "worker", "db upgrade"
    params: dict[str, Any]


class NotAnOwnkeyCommand(ValueError):
    pass


def parse_ownkey_args(args: Sequence[str]) -> Invocation:
    """Parse `ownkey ARGS` against the real typer app, as the CLI would, without running
    it. Raises NotAnOwnkeyCommand for an unknown command, option or argument."""
    command = typer.main.get_command(cli_app)
    ctx = typer.Context(command, info_name="ownkey")
    path: list[str] = []
    rest = list(args)
    while isinstance(command, typer.core.TyperGroup):
        sub = command.get_command(ctx, rest[0]) if rest else None
        if sub is None:
            raise NotAnOwnkeyCommand(f"ownkey has no command {' '.join([*path, *rest[:1]])!r}")
        path.append(rest.pop(0))
        command = sub
        ctx = typer.Context(command, info_name=path[-1], parent=ctx)
    try:
        # typer vendors click: its UsageError is not importable from a public name.
        parsed = command.make_context(path[-1], rest, parent=ctx.parent)
    except Exception as exc:
        raise NotAnOwnkeyCommand(f"ownkey {' '.join(args)}: {exc}") from exc
    return Invocation(" ".join(path), parsed.params)


# --- compose ----------------------------------------------------------------------------


def compose_services(path: Path) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = load_yaml(path)["services"]
    return services


def runs_ownkey(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith("${IMAGE")


def environment_names(environment: dict[str, Any] | list[str] | None) -> set[str]:
    if environment is None:
        return set()
    if isinstance(environment, dict):
        return set(environment)
    return {item.split("=", 1)[0] for item in environment}


_INTERPOLATION = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")


def interpolated_names(text: str) -> set[str]:
    """Variables compose substitutes: ${NAME...} and $NAME, but not $$ (a literal $)."""
    return {braced or bare for braced, bare in _INTERPOLATION.findall(text)}


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}


def duration_seconds(value: str) -> float:
    """A compose duration (`180s`, `2m30s`) in seconds."""
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"not a compose duration: {value!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


# --- systemd ----------------------------------------------------------------------------


def unit_directives(path: Path) -> dict[str, list[str]]:
    """`Section.Key` -> every value it is given (systemd allows repeats, e.g. Environment)."""
    directives: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        directives.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return directives


def unit_environment(path: Path) -> set[str]:
    names: set[str] = set()
    for value in unit_directives(path).get("Service.Environment", []):
        names |= {assignment.split("=", 1)[0] for assignment in shlex.split(value)}
    return names


def unit_ownkey_args(path: Path) -> list[str]:
    """ExecStart's arguments after the ownkey executable."""
    (exec_start,) = unit_directives(path)["Service.ExecStart"]
    executable, *args = shlex.split(exec_start)
    if Path(executable).name != "ownkey":
        raise AssertionError(f"{path.name} runs {executable}, not ownkey")
    return args


# --- Dockerfile -------------------------------------------------------------------------


def dockerfile_stages() -> list[list[dockerfile.Command]]:
    """The Dockerfile's instructions, one list per stage (each starts with its FROM)."""
    stages: list[list[dockerfile.Command]] = []
    for instruction in dockerfile.parse_file(str(DOCKERFILE)):
        if instruction.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def env_example_names() -> set[str]:
    """Names .env.example documents (`NAME=` lines, commented out or not)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
