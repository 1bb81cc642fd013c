"""`ownkey batch ...`: submit a dataset as a batch, watch it, export its results.

A client of the HTTP API like any other: it needs `OWNKEY_TOKEN` (an API token; read
only from the environment, so it shows in neither the shell history nor `ps`) and the
API's address (`--api-url` or `OWNKEY_API_URL`), and never opens the database.

Watching is only watching: Ctrl-C detaches and the batch goes on; `ownkey batch watch
ID` picks it up again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

__all__ = ["batch_app"]

batch_app = typer.Typer(help="Batches: one run per dataset item.", no_args_is_help=True)

DEFAULT_API_URL = "http://127.0.0.1:8000"
POLL_SECONDS = 1.0
SHOWN_PROBLEMS = 20
UPLOAD_TYPES = {
    ".csv": "text/csv",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
}

ApiUrl = Annotated[
    str, typer.Option("--api-url", envvar="OWNKEY_API_URL", help="the ownkey API's address")
]
BatchId = Annotated[str, typer.Argument(help="the batch id")]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"ownkey: {message}", err=True)
    raise typer.Exit(code)


def _detail(response: httpx.Response) -> list[str]:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return [f"HTTP {response.status_code}"]
    if isinstance(detail, list):
        return [str(error.get("msg", error)) for error in detail if isinstance(error, dict)]
    return [str(detail)]


class Api:
    """The API, with the token from OWNKEY_TOKEN; any answer but the expected ones ends
    the command with the API's own words."""

    def __init__(self, url: str) -> None:
        token = os.environ.get("OWNKEY_TOKEN", "").strip()
        if not token:
            _fail("set OWNKEY_TOKEN to an API token (`ownkey token create`, or the web UI)")
        self.url = url.rstrip("/")
        self.client = httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(120.0, connect=10.0),
        )

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kw: Any) -> Any:
        try:
            response = self.client.request(method, path, **kw)
        except httpx.TransportError as exc:
            _fail(f"cannot reach the API at {self.url} ({type(exc).__name__}); is it running?")
        if response.status_code not in ok:
            _fail(f"{response.status_code}: " + "; ".join(_detail(response)))
        return response

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.call(method, path, **kw).json()


def _usd(value: float | None) -> str:
    if value is None:
        return "unknown"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}" if value >= 0.01 or value == 0 else f"${value:.6f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _counts(batch: dict[str, Any]) -> str:
    p = batch["progress"]
    return (
        f"{p['succeeded']} ok, {p['failed']} failed, {p['queued'] + p['running']} running, "
        f"{p['waiting']} waiting" + (f", {p['cancelled']} cancelled" if p["cancelled"] else "")
    )


def _fields_of(batch: dict[str, Any]) -> dict[str, Any]:
    return {
        "completed": batch["done"],
        "total": batch["total"],
        "counts": _counts(batch),
        "cost": _usd(batch["cost_usd"]),
        "eta": _duration(batch["eta_seconds"]),
    }


def _follow(api: Api, batch_id: str) -> dict[str, Any]:
    """Poll the batch with a live progress bar until it ends."""
    batch = api.json("GET", f"/batches/{batch_id}")
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("{task.fields[cost]}"),
        TextColumn("ETA {task.fields[eta]}"),
    )
    with Progress(*columns, console=Console()) as progress:
        label = escape(batch.get("name") or batch_id[:8])  # a name is text, not markup
        task = progress.add_task(label, **_fields_of(batch))
        while True:
            progress.update(task, **_fields_of(batch))
            if batch["status"] != "running":
                return dict(batch)
            time.sleep(POLL_SECONDS)
            batch = api.json("GET", f"/batches/{batch_id}")


def _watch(api: Api, batch_id: str) -> NoReturn:
    typer.echo(f"watching batch {batch_id} (Ctrl-C detaches; the batch goes on)")
    try:
        batch = _follow(api, batch_id)
    except KeyboardInterrupt:
        typer.echo(f"detached: batch {batch_id} goes on; reattach: ownkey batch watch {batch_id}")
        raise typer.Exit(0) from None
    tokens = batch["input_tokens"] + batch["output_tokens"]
    typer.echo(
        f"batch {batch_id} {batch['status']}: {_counts(batch)}; {tokens} tokens, "
        f"{_usd(batch['cost_usd'])}" + (" (incomplete)" if batch["cost_incomplete"] else "")
    )
    raise typer.Exit(0 if batch["status"] == "succeeded" else 1)


def _show_problems(response: httpx.Response) -> bool:
    """Print a 422's bad rows; False when the 422 is about something else."""
    errors = [e for e in response.json().get("detail", []) if isinstance(e, dict)]
    rows = [e for e in errors if "line" in e]
    if not rows:
        return False
    typer.echo("These rows cannot run:", err=True)
    for error in rows[:SHOWN_PROBLEMS]:
        typer.echo(f"  {error['msg']}", err=True)
    for error in errors:
        if error.get("loc", [])[-1:] == ["skip_invalid"]:  # "N of M rows cannot run: ..."
            typer.echo(f"  ({str(error['msg']).split(':')[0]})", err=True)
    return True


def _upload(file: Path, data: bytes, fields: dict[str, str]) -> dict[str, Any]:
    content_type = UPLOAD_TYPES.get(file.suffix.lower(), "application/octet-stream")
    return {"files": {"file": (file.name, data, content_type)}, "data": fields}


def _estimate(api: Api, file: Path, fields: dict[str, str], *, yes: bool) -> dict[str, Any]:
    """The estimate; on bad rows, ask whether to skip them (never skipped silently)."""
    data = file.read_bytes()
    response = api.call("POST", "/batches/estimate", ok=(200, 422), **_upload(file, data, fields))
    if response.status_code == 422:
        if not _show_problems(response):
            _fail("; ".join(_detail(response)))
        if yes or not typer.confirm("Skip these rows and run the others?", err=True):
            _fail("nothing submitted: fix the rows, or pass --skip-invalid")
        fields["skip_invalid"] = "true"
        response = api.call("POST", "/batches/estimate", **_upload(file, data, fields))
    estimate: dict[str, Any] = response.json()
    if estimate["skipped_count"]:
        count = estimate["skipped_count"]
        typer.echo(f"Skipping {count} row{'s' if count > 1 else ''}:", err=True)
        for row in estimate["skipped"][:SHOWN_PROBLEMS]:
            typer.echo(f"  {row['msg']}", err=True)
    return estimate


def _show_estimate(estimate: dict[str, Any]) -> None:
    expected = estimate["expected_usd"]
    typer.echo(
        f"Estimate for {estimate['items']} items of workflow '{estimate['workflow']}': "
        f"{_usd(estimate['low_usd'])} - {_usd(estimate['high_usd'])}"
        + (f" (expected {_usd(expected)})" if expected is not None else "")
    )
    typer.echo(f"  basis: {estimate['basis_detail']}")
    if estimate["unpriced_steps"]:
        unpriced = ", ".join(estimate["unpriced_steps"])
        typer.echo(f"  not included (no known price): {unpriced}")


def _fields(
    workflow: str, max_in_flight: int, name: str | None, fmt: str | None, skip: bool
) -> dict[str, str]:
    fields = {"workflow": workflow, "max_in_flight": str(max_in_flight)}
    if name:
        fields["name"] = name
    if fmt:
        fields["format"] = fmt
    if skip:
        fields["skip_invalid"] = "true"
    return fields


DatasetFile = Annotated[
    Path,
    typer.Argument(exists=True, dir_okay=False, readable=True, help="a .jsonl or .csv file"),
]
WorkflowOption = Annotated[str, typer.Option("--workflow", "-w", help="workflow name or id")]
FormatOption = Annotated[
    str | None, typer.Option("--format", help="jsonl, csv or json [default: from the name]")
]
SkipOption = Annotated[
    bool, typer.Option("--skip-invalid", help="run the valid rows; list the others")
]


@batch_app.command()
def submit(
    file: DatasetFile,
    workflow: WorkflowOption,
    max_in_flight: Annotated[int, typer.Option(help="runs in flight at once")] = 10,
    name: Annotated[str | None, typer.Option(help="a name for the batch")] = None,
    fmt: FormatOption = None,
    skip_invalid: SkipOption = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="submit without asking")] = False,
    detach: Annotated[bool, typer.Option(help="submit and return at once")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Show the cost estimate, ask, submit, and watch the batch with a progress bar."""
    api = Api(api_url)
    fields = _fields(workflow, max_in_flight, name, fmt, skip_invalid)
    _show_estimate(_estimate(api, file, fields, yes=yes))
    if not yes and not typer.confirm("Submit this batch?"):
        _fail("nothing submitted", code=1)
    accepted = api.json("POST", "/batches", ok=(202,), **_upload(file, file.read_bytes(), fields))
    batch_id = accepted["id"]
    skipped = f" ({accepted['skipped_count']} skipped)" if accepted["skipped_count"] else ""
    total = accepted["total"]
    typer.echo(f"batch {batch_id} accepted: {total} item{'s' if total != 1 else ''}{skipped}")
    if detach:
        typer.echo(f"watch it with: ownkey batch watch {batch_id}")
        return
    _watch(api, batch_id)


@batch_app.command()
def watch(batch_id: BatchId, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Follow a batch until it ends (Ctrl-C detaches). Exit 0 when every item succeeded."""
    _watch(Api(api_url), batch_id)


@batch_app.command()
def estimate(
    file: DatasetFile,
    workflow: WorkflowOption,
    fmt: FormatOption = None,
    skip_invalid: SkipOption = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """What running the dataset would cost; submits nothing."""
    fields = _fields(workflow, 1, None, fmt, skip_invalid)
    _show_estimate(_estimate(Api(api_url), file, fields, yes=True))


@batch_app.command("list")
def list_batches(api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """The latest batches."""
    for batch in Api(api_url).json("GET", "/batches")["data"]:
        typer.echo(
            f"{batch['id']}\t{batch['status']}\t{batch['workflow']}\t"
            f"{batch['done']}/{batch['total']}\t{_usd(batch['cost_usd'])}"
        )


@batch_app.command()
def cancel(batch_id: BatchId, api_url: ApiUrl = DEFAULT_API_URL) -> None:
    """Cancel a batch: waiting items never start, runs in flight are cancelled."""
    batch = Api(api_url).json("POST", f"/batches/{batch_id}/cancel")
    typer.echo(f"batch {batch_id} {batch['status']}: {_counts(batch)}")


@batch_app.command()
def retry(
    batch_id: BatchId,
    detach: Annotated[bool, typer.Option(help="return at once")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Run the failed items again, then watch the batch."""
    api = Api(api_url)
    batch = api.json("POST", f"/batches/{batch_id}/retry")
    typer.echo(f"batch {batch_id}: {batch['retried']} items run again")
    if batch["retried"] and not detach:
        _watch(api, batch_id)


@batch_app.command()
def export(
    batch_id: BatchId,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="a file; default or '-': stdout")
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
) -> None:
    """Each item's input with its outputs, tokens, cost and errors."""
    api = Api(api_url)
    api.call("GET", f"/batches/{batch_id}")  # a clear error before any output
    with api.client.stream("GET", f"/batches/{batch_id}/export", params={"format": fmt}) as r:
        if r.status_code != 200:
            r.read()
            _fail(f"{r.status_code}: " + "; ".join(_detail(r)))
        if output is None or str(output) == "-":
            for chunk in r.iter_text():
                typer.echo(chunk, nl=False)
            return
        with output.open("w", encoding="utf-8", newline="") as handle:
            for chunk in r.iter_text():
                handle.write(chunk)
    typer.echo(f"wrote {output}", err=True)
