"""The labels file of ``citywatch evaluate``: one validated row per media file, the task each label
counts for, the media's source (its first path component) and the event onset its description gives.

Only ``path``, ``fire``, ``flood`` and ``traffic`` are required; ``description`` and ``fps`` are
read when present (``fps`` converts an onset given as a frame number to seconds).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from pipeline.config.settings import format_validation_error
from pipeline.frames.ingest import IMAGE_SUFFIXES


class EvaluationError(ValueError):
    """A labels file that cannot be evaluated; the message names the file, line and column."""


_NUM = r"(\d+(?:\.\d+)?)"
#: Phrases that say from when the labelled event shows, e.g. "first visible at frame 76 (~12.7 s)",
#: "from frame 82 (13.7 s)", "from ~12 s", "flames from ~0.3 s", "from ~frame 50", "starts pouring
#: from under a van at ~2.6 s", "catches fire at 5 s", "from about 8 s", "first ~150 frames are a
#: selfie with no flood". The earliest phrase in the text wins; within it a seconds figure wins over
#: a frame number.
_ABOUT = r"(?:~|about\s+|approx\.?\s+)?"
_ONSET = re.compile(
    r"(?:\bfrom|\bvisible at|\b(?:starts?|begins?|appears?|catch(?:es)? fire)\b[^.;,()]*?\bat)\s+"
    rf"{_ABOUT}(?:frame\s+{_ABOUT}(?P<frame>\d+)(?:\s*\({_ABOUT}{_NUM}\s*s\))?|{_NUM}\s*s\b)"
    r"|\bfirst\s+~?(?P<lead>\d+)\s+frames\b",
    re.IGNORECASE,
)


def parse_onset(description: str, fps: float | None = None) -> float | None:
    """Seconds from the start of the media to the labelled event's onset, if the text gives one.

    A frame number converts with ``fps``; frame 0 is 0 s without it; any other frame number
    without an fps gives None (unknown onset)."""
    match = _ONSET.search(description or "")
    if match is None:
        return None
    paren_s, plain_s = match.group(2), match.group(3)
    if paren_s is not None or plain_s is not None:
        return float(paren_s if paren_s is not None else plain_s)
    frame = int(match.group("frame") if match.group("frame") is not None else match.group("lead"))
    if frame == 0:
        return 0.0
    return round(frame / fps, 3) if fps else None


class LabeledMedia(BaseModel):
    """One row of the labels file (only the columns evaluation needs)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    path: str
    fire: Literal["pos", "neg", "neg_tricky", "ambiguous"]
    flood: Literal["pos", "neg", "neg_tricky", "ambiguous"]
    traffic: Literal["congested", "medium", "free", "empty", "na"]
    description: str = ""
    fps: float | None = None
    line: int = 0

    @field_validator("fps", mode="before")
    @classmethod
    def _no_fps(cls, value: object) -> object:
        """Stills list their fps as "-" (or leave it empty)."""
        if isinstance(value, str) and value.strip().lower() in ("", "-", "na", "n/a"):
            return None
        return value

    @field_validator("description", mode="before")
    @classmethod
    def _no_description(cls, value: object) -> object:
        return "" if value is None else value

    @property
    def is_still(self) -> bool:
        return Path(self.path).suffix.lower() in IMAGE_SUFFIXES

    @property
    def source(self) -> str:
        """The first component of the path: the repository or set the media came from."""
        parts = PurePosixPath(self.path.replace("\\", "/")).parts
        return parts[0] if parts else self.path

    @property
    def onset_s(self) -> float | None:
        """The labelled onset of the event (seconds) from the description, None if it gives none."""
        return parse_onset(self.description, self.fps)


def read_labels(path: Path) -> list[LabeledMedia]:
    """Parse and validate a labels CSV; raises :class:`EvaluationError` naming what is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvaluationError(f"labels file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"labels file {path} cannot be read: {exc}") from None
    reader = csv.DictReader(text.splitlines())
    missing = {"path", "fire", "flood", "traffic"} - set(reader.fieldnames or [])
    if missing:
        raise EvaluationError(f"{path}: header lacks column(s) {sorted(missing)} (has {reader.fieldnames})")
    rows = []
    for row in reader:
        try:
            rows.append(LabeledMedia.model_validate({**row, "line": reader.line_num}))
        except ValidationError as exc:
            raise EvaluationError(f"{path}:{reader.line_num}: {format_validation_error(exc)}") from None
    if not rows:
        raise EvaluationError(f"{path} lists no media")
    return rows


def truth(media: LabeledMedia, task: str) -> bool | None:
    """Whether ``media`` is a positive (True) or negative (False) for ``task``; None = left out."""
    if task == "congestion":
        return {"congested": True, "free": False, "empty": False}.get(media.traffic)
    if task == "congestion_medium":
        return True if media.traffic == "medium" else None
    if task == "smoke":  # the fires whose description shows smoke, against every fire negative
        if media.fire == "pos":
            return True if "smoke" in media.description.lower() else None
        return {"neg": False, "neg_tricky": False}.get(media.fire)
    label = media.flood if task == "flood" else media.fire
    return {"pos": True, "neg": False, "neg_tricky": False}.get(label)


#: Reported task -> incident types whose start alarms it. The first three are the headline.
TASKS: dict[str, tuple[str, ...]] = {
    "fire": ("fire", "smoke"),
    "flood": ("flood",),
    "congestion": ("congestion",),
    "fire_only": ("fire",),
    "smoke_only": ("smoke",),
    "smoke": ("smoke",),  # smoke incidents on the media whose description shows smoke
    "congestion_medium": ("congestion",),
}
HEADLINE = ("fire", "flood", "congestion")
