"""Rule settings fitted like a model: chosen per fold from a grid, never on the media they score.

The classical detectors keep a few settings whose best value can only be read off footage (how
long a jam must hold, how much stronger cold-start flood evidence must be). Rather than set them
by hand on the whole dev set, :class:`RuleTuner` picks each from a small grid on the media it is
given: every training media is replayed once per grid value with only that detector running (the
alarm of a task depends on its detector and the alert policy alone), and the value with the best
recall inside the task's false-alarm budget wins (:func:`choose`). In ``citywatch evaluate --folds
source`` each fold chooses on the other sources, so the held-out figures are honest; the shipped
defaults are what the same rule chooses on all of ``../shared/footage`` (``citywatch tune``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.app.evaluate.labels import LabeledMedia, truth
from pipeline.config.settings import AlertSettings, CameraConfig, CameraDetectors

DETECTORS = tuple(CameraDetectors.model_fields)  # the detector sections of a camera


@dataclass(frozen=True)
class RuleGrid:
    """One tuned setting: ``detector.setting`` takes one of ``values``; judged on ``task`` with
    false alarms held to at most ``max_fa_rate`` of its negatives (the issue's target)."""

    task: str
    detector: str
    setting: str
    values: tuple[float, ...]
    max_fa_rate: float

    @property
    def name(self) -> str:
        return f"{self.detector}.{self.setting}"


GRIDS: tuple[RuleGrid, ...] = (
    RuleGrid("congestion", "congestion", "jam_hold_s", (0.0, 1.0, 2.0, 3.0, 5.0), 0.10),
    RuleGrid("flood", "flood", "cold_start_factor", (1.0, 1.5, 2.0, 2.5, 3.0), 0.05),
)


@dataclass(frozen=True)
class GridPoint:
    """How one value did on a set of media: true positives of ``positives``, false alarms of
    ``negatives``."""

    value: float
    hits: int
    positives: int
    false_alarms: int
    negatives: int

    @property
    def recall(self) -> float:
        return self.hits / self.positives if self.positives else 0.0

    @property
    def fa_rate(self) -> float:
        return self.false_alarms / self.negatives if self.negatives else 0.0


def choose(points: list[GridPoint], max_fa_rate: float) -> GridPoint:
    """The best recall among values inside the false-alarm budget (ties: fewer false alarms, then
    the larger value: every grid here runs from quick to strict, and on an unseen camera a false
    alarm costs the operators more than a second of latency); when none is inside, the fewest
    false alarms (ties: better recall, then the larger value)."""
    inside = [p for p in points if p.fa_rate <= max_fa_rate + 1e-9]
    if inside:
        return max(inside, key=lambda p: (p.hits, -p.false_alarms, p.value))
    return max(points, key=lambda p: (-p.false_alarms, p.hits, p.value))


def with_settings(detectors: CameraDetectors, values: dict[str, float], only: str | None = None) -> CameraDetectors:
    """``detectors`` with ``values`` ({"flood.cold_start_factor": 2.5, ...}) applied; with ``only``,
    every other detector is switched off (a tuning replay)."""
    update: dict[str, Any] = {}
    for name in DETECTORS:
        settings = getattr(detectors, name)
        changes = {key.split(".", 1)[1]: v for key, v in values.items() if key.split(".", 1)[0] == name}
        if only is not None and name != only:
            changes["enabled"] = False
        if changes:  # validated like a config file's settings: a bad grid value fails by name
            update[name] = type(settings).model_validate({**settings.model_dump(), **changes})
    return detectors.model_copy(update=update)


Replay = Callable[[LabeledMedia, Path, CameraDetectors], Any]  # -> a MediaResult


class RuleTuner:
    """Chooses every :data:`GRIDS` setting on the media it is given; replays are cached per
    (media, setting, value), so the folds of a cross-validation replay each file once per value."""

    def __init__(self, replay: Replay, grids: tuple[RuleGrid, ...] = GRIDS,
                 base: CameraDetectors | None = None) -> None:
        self.replay = replay
        self.grids = grids
        self.base = base or CameraDetectors()
        self._alarmed: dict[tuple[str, str, str, float], bool] = {}
        self.chosen: list[dict[str, GridPoint]] = []  # one entry per call, for the report

    def alarmed(self, media: LabeledMedia, root: Path, grid: RuleGrid, value: float) -> bool:
        key = (str(root), media.path, grid.name, value)
        if key not in self._alarmed:
            detectors = with_settings(self.base, {grid.name: value}, only=grid.detector)
            result = self.replay(media, root, detectors)
            self._alarmed[key] = result.error is None and result.alarm_s(grid.task) is not None
        return self._alarmed[key]

    def points(self, train: list[LabeledMedia], root: Path, grid: RuleGrid) -> list[GridPoint]:
        judged = [(m, truth(m, grid.task)) for m in train]
        judged = [(m, t) for m, t in judged if t is not None]
        points = []
        for value in grid.values:
            alarms = [(t, self.alarmed(m, root, grid, value)) for m, t in judged]
            points.append(GridPoint(value, sum(1 for t, a in alarms if t and a), sum(1 for t, _ in alarms if t),
                                    sum(1 for t, a in alarms if not t and a), sum(1 for t, _ in alarms if not t)))
        return points

    def fit(self, train: list[LabeledMedia], root: Path) -> dict[str, float]:
        """``{"detector.setting": chosen value}`` for every grid, chosen on ``train``."""
        chosen = {g.name: choose(self.points(train, root, g), g.max_fa_rate) for g in self.grids}
        self.chosen.append(chosen)
        return {name: point.value for name, point in chosen.items()}


def tuned_camera(camera: CameraConfig, values: dict[str, float]) -> CameraConfig:
    """``camera`` with the tuned rule settings applied to its detectors."""
    return camera.model_copy(update={"detectors": with_settings(camera.detectors, values)})


def tuned_factory(make: Callable[[CameraConfig, AlertSettings], Any], values: dict[str, float]
                  ) -> Callable[[CameraConfig, AlertSettings], Any]:
    """An analyzer factory building ``make``'s analyzers for cameras carrying ``values``."""
    def factory(camera: CameraConfig, alerts: AlertSettings) -> Any:
        return make(tuned_camera(camera, values), alerts)
    return factory


class FoldTrainer:
    """The ``Trainer`` of ``citywatch evaluate --folds source``: fits the learned verifier
    (``verifier``, itself a Trainer) and chooses the rule settings (``tuner``) on each fold's
    training media, and returns the factory using both."""

    def __init__(self, verifier: Callable[[list[LabeledMedia], Path], Any], tuner: RuleTuner) -> None:
        self.verifier = verifier
        self.tuner = tuner

    def __call__(self, train: list[LabeledMedia], root: Path) -> Callable[[CameraConfig, AlertSettings], Any]:
        make = self.verifier(train, root)
        return tuned_factory(make, self.tuner.fit(train, root))


def chosen_summary(tuner: RuleTuner) -> list[str]:
    """One line per grid: how often each value was chosen over the folds."""
    lines = []
    for grid in tuner.grids:
        counts: dict[float, int] = {}
        for chosen in tuner.chosen:
            value = chosen[grid.name].value
            counts[value] = counts.get(value, 0) + 1
        shown = ", ".join(f"{v:g} in {n} fold{'s' if n > 1 else ''}" for v, n in sorted(counts.items()))
        lines.append(f"{grid.name}: {shown or 'not fitted'}")
    return lines
