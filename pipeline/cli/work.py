"""``sealscribe worker``, ``transcribe``, ``scan``, and ``meeting transcript``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.cli.output import JsonOption, console, emit, err_console, guarded, runtime
from pipeline.config import get_settings
from pipeline.errors import Conflict, InvalidInput
from pipeline.formats import FORMATS, render
from pipeline.queue import INTERIM_QUEUE, QUEUE
from pipeline.scan import scan as scan_for
from pipeline.services.records import verify_meeting
from pipeline.services.transcripts import read_transcript, speakers_note, submit_file, wait_for


@guarded
def worker(
    concurrency: int = typer.Option(
        0, "--concurrency", "-c", min=0, help="Worker processes (default: one per core)."
    ),
    loglevel: str = typer.Option("info", "--loglevel", help="Celery log level."),
    beat: bool = typer.Option(
        False,
        "--beat",
        help="Also run the periodic retention purge (run it in exactly one worker).",
    ),
    metrics_port: int = typer.Option(
        0,
        "--metrics-port",
        min=0,
        max=65535,
        help="Serve Prometheus metrics, summed over the worker's processes, on this port (0: off).",
    ),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host"),
    node_name: str = typer.Option(
        "celery@%h",
        "--node-name",
        "-n",
        help="Celery node name (%h: the host name). Several workers on one host need names "
        "of their own when the broker is RabbitMQ, which gives each name one control queue.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Start a Celery worker that transcribes sealed audio."""
    made = _multiprocess_metrics_dir() if metrics_port else None
    from workers.app import app as celery_app

    procs = concurrency or (os.cpu_count() or 1)
    # Split the cores between processes so they do not oversubscribe them.
    os.environ.setdefault("SEALSCRIBE_CPU_THREADS", str(max(1, (os.cpu_count() or 1) // procs)))
    get_settings().home.mkdir(parents=True, exist_ok=True)
    try:
        if metrics_port:
            from workers.metrics import serve as serve_metrics

            serve_metrics(metrics_port, metrics_host)
        celery_app.worker_main(
            [
                "worker",
                f"--concurrency={procs}",
                f"--loglevel={loglevel}",
                "--pool=prefork",
                "--without-gossip",
                "--without-mingle",
                f"--hostname={node_name}",
                "-Q",
                f"{QUEUE},{INTERIM_QUEUE}",
                *(["--beat"] if beat else []),
            ]
        )
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def _multiprocess_metrics_dir() -> Path | None:
    """Point prometheus-client's multiprocess mode at an empty directory, before anything
    imports it: ``PROMETHEUS_MULTIPROC_DIR`` if set (emptied of old counts), else a new one
    in the temp directory. Returns the directory if it made it (to remove at exit)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink()
        return None
    made = Path(tempfile.mkdtemp(prefix="sealscribe-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(made)
    return made


@guarded
def transcribe(
    file: Path = typer.Argument(..., help="Audio or video file (any format FFmpeg reads)."),
    tenant: str = typer.Option(..., "--tenant", "-t", help="Tenant id."),
    meeting: str | None = typer.Option(
        None, "--meeting", "-m", help="Existing meeting (default: a new one)."
    ),
    fmt: str = typer.Option("txt", "--format", "-f", help=", ".join(FORMATS)),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds to wait."),
    as_json: bool = JsonOption,
) -> None:
    """Transcribe a recorded file through the same sealed path as live audio."""
    from pipeline.queue import workers_alive

    if fmt not in FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(FORMATS)}")
    rt = runtime()
    if not workers_alive():
        raise Conflict("no worker is running: start one with `sealscribe worker`")
    job = submit_file(rt, file, tenant, meeting)
    with Progress(
        TextColumn("[bold]transcribing[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=as_json,
        transient=True,
    ) as bar:
        task = bar.add_task("segments", total=max(job.segments, 1))
        wait_for(rt, job, lambda done, total: bar.update(task, completed=done), timeout)
    segments = read_transcript(rt, job.meeting.id)
    if as_json:
        # the transcript in its JSON export format (text included: the user asked for it)
        emit(
            True,
            {
                "meeting": job.meeting.id,
                "segments": job.segments,
                "audio_seconds": job.audio_seconds,
                "transcript": json.loads(render(segments, "json")),
            },
            lambda: None,
        )
    else:
        err_console.print(
            f"meeting {job.meeting.id}: {job.segments} segments, {job.audio_seconds:.1f} s of audio"
        )
        print(render(segments, fmt), end="")


@guarded
def transcript(
    meeting: str = typer.Argument(..., help="Meeting id."),
    fmt: str = typer.Option("txt", "--format", "-f", help=", ".join(FORMATS)),
    as_json: bool = JsonOption,
) -> None:
    """Export a meeting's transcript (opened with your key, purpose `deliver`); says on
    stderr where its speaker names come from (each person's track, or a mixed room's talking
    events) and whether it is complete (the manifests) or names each missing segment."""
    if fmt not in FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(FORMATS)}")
    rt = runtime()
    segments = read_transcript(rt, meeting)
    print(render(segments, "json" if as_json else fmt), end="")
    record = verify_meeting(rt, meeting)
    err_console.print(speakers_note(rt, meeting)[1], markup=False)
    if record.complete:
        err_console.print("transcript complete: every sealed segment is accounted for")
    else:
        err_console.print(f"[bold red]transcript incomplete[/]: {len(record.missing)} missing")
        for missing in record.missing:
            err_console.print(f"  {missing}", markup=False)
        for note in record.notes:
            err_console.print(f"  note: {note}", markup=False)


@guarded
def scan(
    canary: str = typer.Option(..., "--canary", help="Text that must be found nowhere."),
    log_dir: list[Path] = typer.Option([], "--log-dir", help="Extra log directories."),
    as_json: bool = JsonOption,
) -> None:
    """Search Redis (Celery's keys too), $SEALSCRIBE_HOME, logs and the temp directory for
    plaintext. Exit 1 if the canary is found anywhere."""
    settings = get_settings()
    rt = runtime()
    findings = scan_for(rt.store.redis, canary, settings.home, log_dir)

    def human() -> None:
        if not findings:
            console.print(
                "[green]canary found nowhere[/]: Redis, "
                f"{settings.home}, logs and temp directory are clean"
            )
        for f in findings:
            console.print(f"[bold red]FOUND[/] in {f.where}: {f.name}")

    emit(as_json, {"found": findings}, human)
    if findings:
        raise typer.Exit(1)
