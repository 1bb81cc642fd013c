"""The table printed to stdout and BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from bench.results import Figure, ScenarioResult


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "not installed":
        return "not installed"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _ratio(figure: Figure) -> str:
    return "—" if figure.ratio is None else f"{figure.ratio:.2f}x"


HEADERS = ("#", "scenario", "figure", "ownkey", "baseline", "ratio", "target", "result")


def rows(results: list[ScenarioResult]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for result in results:
        if result.error is not None:
            out.append((result.key, result.title, "DID NOT COMPLETE", "", "", "", "", "ERROR"))
            continue
        for figure in result.figures:
            baseline = ""
            if figure.baseline is not None:
                unit = "" if figure.unit == "not installed" else figure.unit
                baseline = f"{_num(figure.baseline, unit)} ({figure.baseline_name})"
            out.append(
                (
                    result.key,
                    result.title,
                    figure.metric,
                    _num(figure.value, figure.unit),
                    baseline,
                    f"{_ratio(figure)} {figure.ratio_label}".strip()
                    if figure.ratio is not None
                    else "—",
                    figure.target,
                    figure.verdict,
                )
            )
    return out


def text_table(results: list[ScenarioResult], *, judge: bool = True) -> str:
    """The results as a text table; without `judge` (smoke scale, whose figures are too
    small to mean anything) the target and result columns are left out."""
    table = [HEADERS, *rows(results)]
    if not judge:
        table = [row[:-2] for row in table]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    commit = "unknown"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if head:
            commit = head + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        pass
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": ram,
        "Python": platform.python_version(),
        "OS": platform.platform(),
        "commit": commit,
    }


def markdown(
    results: list[ScenarioResult], *, db: str, db_version: str, scale: str, command: str
) -> str:
    info = machine()
    info["database"] = f"{db} ({db_version})"
    info["scale"] = scale
    info["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# ownkey benchmarks",
        "",
        "Produced by `make bench` (`bench/`). Everything is real: fake-llm on loopback, a private",
        "Redis, `ownkey api`, `ownkey worker` processes (threads pool), the database below.",
        "Scenario 8 runs its workers as separate servers: as root, network namespaces on a",
        "private bridge, each with its own hostname (`tests/servers.py`).",
        "This machine is shared and noisy, so every figure that matters is a ratio against",
        "a baseline measured in the same run; the absolute numbers move between runs.",
        "",
        "Reproduce from a clone (it installs the `bench` extra into `.venv` first):",
        "",
        "```bash",
        command,
        "```",
        "",
        "## Machine",
        "",
        *[f"- **{k}**: {v}" for k, v in info.items()],
        "",
        "## Results",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    for row in rows(results):
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    out += ["", "## Notes per scenario", ""]
    for result in results:
        out.append(f"### {result.key}. {result.title} ({result.seconds:.0f} s)")
        out.append("")
        if result.error:
            out.append(f"- **did not complete**: {result.error}")
        out += [f"- {note}" for note in result.notes]
        out.append("")
    analysis = Path(__file__).with_name("analysis.md")
    if analysis.exists():
        out += ["", analysis.read_text().rstrip(), ""]
    return "\n".join(out)
