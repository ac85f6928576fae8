"""Rule settings chosen per fold: the choice rule, the cached replays, the fold trainer, and the
settings they tune (a jam must hold; cold-start flood evidence is scaled)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from detectors.congestion import CongestionDetector, CongestionSettings
from pipeline.app.evaluate.labels import LabeledMedia
from pipeline.app.rule_tuning import (
    FoldTrainer,
    GridPoint,
    RuleGrid,
    RuleTuner,
    choose,
    chosen_summary,
    tuned_factory,
    with_settings,
)
from pipeline.config.settings import AlertSettings, CameraConfig, CameraDetectors
from tests.test_detector_congestion import Road, run


def test_choose_takes_the_best_recall_inside_the_false_alarm_budget():
    points = [GridPoint(0.0, 5, 6, 2, 16), GridPoint(1.0, 5, 6, 1, 16), GridPoint(2.0, 5, 6, 1, 16),
              GridPoint(5.0, 3, 6, 0, 16)]
    assert choose(points, 0.10).value == 2.0  # 5 hits at 6 % beats 5 hits at 12 %; tie -> the stricter
    assert choose(points, 0.0).value == 5.0  # only the strictest is inside a zero budget
    outside = [GridPoint(1.0, 4, 5, 3, 10), GridPoint(2.0, 2, 5, 2, 10), GridPoint(3.0, 3, 5, 2, 10)]
    assert choose(outside, 0.05).value == 3.0  # none inside: fewest false alarms, then recall
    assert choose([GridPoint(1.0, 2, 5, 0, 10), GridPoint(4.0, 2, 5, 0, 10)], 0.05).value == 4.0


def test_with_settings_applies_values_and_can_run_one_detector_alone():
    tuned = with_settings(CameraDetectors(), {"congestion.jam_hold_s": 3.0}, only="congestion")
    assert tuned.congestion.jam_hold_s == 3.0 and tuned.congestion.enabled
    assert not any(getattr(tuned, d).enabled for d in ("fire", "smoke", "flood", "obstruction"))
    kept = with_settings(CameraDetectors(), {"flood.cold_start_factor": 1.5})
    assert kept.flood.cold_start_factor == 1.5 and kept.fire.enabled and kept.congestion.jam_hold_s == CongestionSettings().jam_hold_s
    with pytest.raises(ValidationError, match="cold_start_factor"):
        with_settings(CameraDetectors(), {"flood.cold_start_factor": 0.5})  # below its bound


@dataclass
class Replayed:
    alarmed: bool
    error: str | None = None

    def alarm_s(self, task):
        return 1.0 if self.alarmed else None


def _media(path: str, traffic: str) -> LabeledMedia:
    return LabeledMedia(path=path, fire="neg", flood="neg", traffic=traffic)


def test_tuner_chooses_on_the_training_media_and_replays_each_value_once():
    """Media "x/jam" needs a short hold to alarm; "y/junction" (free) alarms unless the hold is
    long. Holding 2 s keeps both right; the held-out source never takes part in its fold."""
    calls = []

    def replay(media, root, detectors):
        hold = detectors.congestion.jam_hold_s
        calls.append((media.path, hold))
        assert not detectors.flood.enabled  # only the tuned detector runs
        return Replayed({"x/jam": hold <= 2.0, "y/junction": hold < 2.0, "z/jam": hold <= 5.0}[media.path])

    grid = RuleGrid("congestion", "congestion", "jam_hold_s", (0.0, 2.0, 5.0), 0.10)
    tuner = RuleTuner(replay, grids=(grid,))
    media = [_media("x/jam", "congested"), _media("y/junction", "free"), _media("z/jam", "congested")]
    assert tuner.fit(media, Path("/footage")) == {"congestion.jam_hold_s": 2.0}
    assert tuner.fit([media[1], media[2]], Path("/footage")) == {"congestion.jam_hold_s": 5.0}  # tie: stricter
    assert tuner.fit([media[0], media[2]], Path("/footage")) == {"congestion.jam_hold_s": 2.0}  # no negative
    assert len(calls) == len(set(calls)) == 9  # 3 media x 3 values, each once over the folds
    assert chosen_summary(tuner) == ["congestion.jam_hold_s: 2 in 2 folds, 5 in 1 fold"]


def test_fold_trainer_builds_analyzers_for_cameras_carrying_the_chosen_values():
    seen = []

    def verifier(train, root):
        return lambda camera, alerts: seen.append(camera.detectors) or "analyzer"

    tuner = RuleTuner(lambda m, r, d: Replayed(d.congestion.jam_hold_s >= 5.0),
                      grids=(RuleGrid("congestion", "congestion", "jam_hold_s", (0.0, 5.0), 0.10),))
    make = FoldTrainer(verifier, tuner)([_media("a/one", "congested")], Path("/footage"))
    assert make(CameraConfig(id="cam"), AlertSettings()) == "analyzer"
    assert seen[-1].congestion.jam_hold_s == 5.0 and seen[-1].fire.enabled
    plain = tuned_factory(lambda camera, alerts: camera, {"flood.cold_start_factor": 3.0})
    assert plain(CameraConfig(id="cam"), AlertSettings()).detectors.flood.cold_start_factor == 3.0


@pytest.mark.parametrize("hold", [0.0, 4.0])
def test_a_jam_must_hold_before_the_flag_rises(hold):
    findings = run(CongestionDetector(CongestionSettings(jam_hold_s=hold)), Road(cars_per_lane=12, speed=0.01), 16)
    heavy = [t for t, f in findings if f.ready and f.measurements.get("los") == 5]
    active = [t for t, f in findings if f.active]
    assert heavy and active, "the packed crawling road is a jam"
    assert active[0] >= heavy[0] + hold and active[0] <= heavy[0] + hold + 1.0
    assert all(findings[int(t * 2)][1].level == "heavy" for t in heavy)  # the level is shown at once
