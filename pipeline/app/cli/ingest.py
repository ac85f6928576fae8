"""`citywatch ingest SOURCE --camera ID`: replay a video, folder, image or stream into the frames bucket."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.config.settings import ConfigError, load_config
from pipeline.frames.ingest import IngestError, IngestResult, ingest
from pipeline.frames.keys import InvalidCameraId, validate_camera_id
from pipeline.frames.notices import start_notice_publisher
from pipeline.frames.store import FrameStore, FrameStoreUnavailable, make_minio


def _parse_start(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time such as 2026-11-22T20:00:00Z",
                                 param_hint="--start") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _summary(result: IngestResult, bucket: str, url: str) -> str:
    rate = result.frames / result.elapsed_s if result.elapsed_s > 0 else 0.0
    lines = [
        f"{'interrupted: ' if result.interrupted else ''}put {result.frames} frame(s), "
        f"{result.bytes / 1e6:.2f} MB, for camera {result.camera_id} into {url}/{bucket} "
        f"in {result.elapsed_s:.1f} s ({rate:.1f} frames/s)",
    ]
    if result.first_key:
        lines.append(f"keys {result.first_key} .. {result.last_key}")
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)}: " + "; ".join(f"{n} ({r})" for n, r in result.skipped[:5]))
    return "\n".join(lines)


def _fail(err: Console, exc: Exception, code: int) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
    return typer.Exit(code)


def ingest_command(
    source: str = typer.Argument(..., help="Video file, folder of images, image, or rtsp:// / http:// stream"),
    camera: str = typer.Option(..., "--camera", "-c", help="Camera id [A-Za-z0-9_-]{1,64}"),
    fps: float | None = typer.Option(None, help="Sampling rate (default: the camera's fps in the config, else 2)"),
    speed: float | None = typer.Option(None, help="Pace uploads at X times media speed (default: as fast as possible)"),
    realtime: bool = typer.Option(False, "--realtime", help="Pace uploads at media speed (--speed 1)"),
    test: bool = typer.Option(False, "--test", help="Mark frames as test footage: their alerts say \"test\": true"),
    config: Path | None = typer.Option(None, "--config", help="Config YAML (default $CITYWATCH_CONFIG)"),
    start: str | None = typer.Option(None, help="Time of the first frame, ISO 8601 (default now; no zone = UTC)"),
    duration: float | None = typer.Option(None, help="Seconds: replay a single image as a static scene, or stop a stream"),
    quality: int = typer.Option(90, min=1, max=100, help="JPEG quality of the uploaded frames"),
    notify: bool = typer.Option(True, "--notify/--no-notify", help="Announce each frame on "
                                "<prefix>/frames/new so workers process it at once (as MinIO's bucket "
                                "notifications do); off: workers find it at their next poll"),
) -> None:
    """Put frames into the frames bucket under the object-key contract, as that camera would."""
    err = Console(stderr=True, soft_wrap=True)
    if speed is not None and realtime:
        raise typer.BadParameter("use either --speed or --realtime, not both", param_hint="--realtime")
    first_time = _parse_start(start)
    try:
        validate_camera_id(camera)
        cfg = load_config(config)
    except (InvalidCameraId, ConfigError) as exc:
        raise _fail(err, exc, 2) from None
    registered = cfg.camera(camera)
    if registered is None and cfg.cameras:
        err.print(f"warning: camera {camera} is not in the registry; the watch flow will not analyse its frames",
                  highlight=False)
    fps = fps if fps is not None else (registered.fps if registered else 2.0)
    notices = start_notice_publisher(cfg.mqtt, f"citywatch-ingest-{camera}-{os.getpid()}",
                                     cfg.s3.frames_bucket) if notify else None
    store = FrameStore(make_minio(cfg.s3), cfg.s3.frames_bucket, on_put=notices)

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.fields[key]}"), console=err, transient=False) as bar:
        task = bar.add_task(f"ingest {camera}", total=None, key="")

        def on_frame(done: int, expected: int | None, key: str) -> None:
            bar.update(task, completed=done, total=max(expected, done) if expected else None,
                       key=key.rsplit("/", 1)[-1])

        try:
            result = ingest(source, camera, store, fps, 1.0 if realtime else speed, test, first_time,
                            duration=duration, jpeg_quality=quality, on_frame=on_frame)
        except IngestError as exc:
            raise _fail(err, exc, 2) from None
        except FrameStoreUnavailable as exc:
            raise _fail(err, exc, 1) from None
        finally:
            if notices is not None:
                notices.stop()
    typer.echo(_summary(result, cfg.s3.frames_bucket, cfg.s3.url))
    if result.interrupted:
        raise typer.Exit(130)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
