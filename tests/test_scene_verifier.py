"""The scene verifier (detectors/scene.py), its shipped models and its training recipe."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from detectors.base import Finding
from detectors.scene import (
    CANDIDATE_STEP_S,
    CHANGE_LEVELS,
    CONFIRM,
    CORROBORATED_P,
    IDLE_STEP_S,
    RELEASE_P,
    STEP_S,
    UNLIKELY_P,
    WARMUP_S,
    SceneHead,
    SceneModel,
    SceneVerifier,
)
from pipeline.config.settings import AlertSettings, CameraConfig
from pipeline.processing.analysis import FrameAnalyzer
from pipeline.processing.verifier_models import (
    build_verifiers,
    scene_types,
    shipped_scene_embedder,
    shipped_scene_heads,
)

FRAME = np.zeros((90, 160, 3), np.uint8)


class ScriptedEmbedder:
    """Returns the next scripted 1-d 'embedding' (its value is the logit of every head)."""

    def __init__(self, logits: list[float]) -> None:
        self.logits = list(logits)
        self.calls = 0

    def embed(self, frame: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.array([self.logits.pop(0) if len(self.logits) > 1 else self.logits[0]], np.float32)


def _model(logits: list[float], types: tuple[str, ...] = ("fire", "smoke", "flood"),
           threshold: float = 0.5) -> tuple[SceneModel, ScriptedEmbedder]:
    embedder = ScriptedEmbedder(logits)
    heads = {t: SceneHead(np.ones(1, np.float32), 0.0, threshold) for t in types}
    return SceneModel(embedder, heads), embedder


def _findings(candidate_pct: float = 0.0, flood_ready: bool = True, fire_ready: bool = True,
              static: bool = False) -> list[Finding]:
    return [Finding("fire", False, measurements={"candidate_pct": candidate_pct, "static_scene": float(static)},
                    ready=fire_ready,
                    boxes=((0.1, 0.1, 0.2, 0.2),)),
            Finding("smoke", False, ready=False),
            Finding("flood", False, ready=flood_ready, boxes=((0.0, 0.5, 1.0, 0.5),)),
            Finding("congestion", True, 0.7)]


def _by_type(findings: list[Finding]) -> dict[str, Finding]:
    return {f.type: f for f in findings}


def test_scores_first_frame_then_idle_steps_candidate_steps_and_fast_steps_to_confirm():
    model, embedder = _model([-5.0])  # every head far below its threshold
    verifier = SceneVerifier(model, warmup_s=0.0)  # each pace alone (the warm-up has its own test)
    for t in np.arange(0.0, 60.0, 0.5):
        verifier.verify(FRAME, float(t), _findings())
    assert embedder.calls == int(60 / IDLE_STEP_S), "a quiet camera is scored every idle step"
    model, embedder = _model([float(np.log(0.4 / 0.6))])  # P 0.4: below the threshold, not unlikely
    verifier = SceneVerifier(model, warmup_s=0.0)
    for t in np.arange(0.0, 60.0, 0.5):
        verifier.verify(FRAME, float(t), _findings(candidate_pct=1.0))
    assert embedder.calls == int(60 / CANDIDATE_STEP_S), "flame-coloured pixels: a faster pace"
    model, embedder = _model([-5.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    verifier = SceneVerifier(model, warmup_s=0.0)
    for t in np.arange(0.0, 60.0, 0.5):
        verifier.verify(FRAME, float(t), _findings())
    # t=0 below; t=20 above -> confirmed at t=22 (STEP_S later); then the idle pace again
    assert embedder.calls == 4 and STEP_S == 2.0 and IDLE_STEP_S == 20.0


def test_a_new_stream_is_scored_every_step_during_its_warm_up():
    model, embedder = _model([-5.0])
    verifier = SceneVerifier(model)
    for t in np.arange(0.0, 60.0, 0.5):
        verifier.verify(FRAME, 1000.0 + float(t), _findings())
    warm = int(WARMUP_S / STEP_S)  # t = 0, 2, 4, 6, 8
    assert warm == 5 and embedder.calls == warm + 2, "then the idle pace (t = 20, 40)"
    for t in np.arange(0.0, 10.0, 0.5):  # time went back: a new stream (a replay), a new warm-up
        verifier.verify(FRAME, 500.0 + float(t), _findings())
    assert embedder.calls == 2 * warm + 2


def test_an_event_under_way_when_a_camera_starts_is_confirmed_within_seconds():
    """A flood already in view a moment after a camera (or a worker) starts: the first scoring
    missed it, the warm-up pace confirms it by the third (t = 4 s) instead of at the idle step."""
    def first_active(verifier: SceneVerifier) -> float | None:
        for t in np.arange(0.0, 30.0, 0.5):
            if _by_type(verifier.verify(FRAME, float(t), _findings()))["flood"].active:
                return float(t)
        return None
    model, _ = _model([-5.0, 5.0, 5.0], types=("flood",))
    assert first_active(SceneVerifier(model)) == 2 * STEP_S
    model, _ = _model([-5.0, 5.0, 5.0], types=("flood",))
    assert first_active(SceneVerifier(model, warmup_s=0.0)) == IDLE_STEP_S + STEP_S


def test_a_type_switches_after_confirm_scorings_on_the_same_side():
    logits = [5.0, -5.0, 5.0, 5.0, -5.0, 5.0, -5.0, -5.0]
    model, _ = _model(logits, types=("smoke",))
    verifier = SceneVerifier(model, step_s=1.0, idle_step_s=1.0)
    states = [_by_type(verifier.verify(FRAME, float(t), _findings()))["smoke"].active for t in range(len(logits))]
    assert CONFIRM == 2
    assert states == [False, False, False, True, True, True, True, False]


def test_a_type_that_is_on_holds_until_its_p_falls_below_the_release_level():
    """Hysteresis: a fitted threshold of 0.9 starts the event; once on, P wavering between 0.6
    and 0.9 holds it (and is not rescored every STEP_S to confirm a switch); two scorings below
    RELEASE_P end it."""
    def logit(p: float) -> float:
        return float(np.log(p / (1 - p)))
    ps = [0.95, 0.95, 0.7, 0.6, 0.75, 0.4, 0.3, 0.7, 0.95]
    model, _ = _model([logit(p) for p in ps], types=("smoke",), threshold=0.9)
    verifier = SceneVerifier(model, step_s=1.0, idle_step_s=1.0)
    states = [_by_type(verifier.verify(FRAME, float(t), _findings()))["smoke"].active for t in range(len(ps))]
    assert RELEASE_P == 0.5 < 0.6
    assert states == [False, True, True, True, True, True, False, False, False]
    # at the shipped paces a burning scene that wavers under its threshold stays at the idle pace
    model, embedder = _model([logit(0.95), logit(0.95)] + [logit(0.7)] * 200, types=("smoke",), threshold=0.9)
    verifier = SceneVerifier(model, warmup_s=0.0)
    for t in np.arange(0.0, 120.0, 0.5):
        verifier.verify(FRAME, float(t), _findings())
    assert embedder.calls == 2 + int((120 - 20) / IDLE_STEP_S), "no confirmation scorings while it holds"


def test_fire_needs_flame_colour_and_flood_needs_a_road():
    model, _ = _model([5.0])
    verifier = SceneVerifier(model, step_s=1.0)
    for t in range(3):
        out = _by_type(verifier.verify(FRAME, float(t), _findings(candidate_pct=0.0, flood_ready=False)))
    assert not out["fire"].active, "no flame-coloured pixel: no fire, whatever the scene says"
    assert not out["flood"].active and not out["flood"].ready, "no road in view: flood is not judged"
    assert out["smoke"].active and out["smoke"].ready and out["smoke"].confidence > 0.99
    assert out["congestion"] == _findings()[3], "other types pass through"
    out = _by_type(verifier.verify(FRAME, 3.0, _findings(candidate_pct=1.0)))
    assert out["fire"].active and out["fire"].boxes == ((0.1, 0.1, 0.2, 0.2),)
    assert out["flood"].active and out["flood"].measurements["scene_p"] > 0.99
    out = _by_type(verifier.verify(FRAME, 4.0, _findings(candidate_pct=1.0, fire_ready=False)))
    assert not out["fire"].active, "a warming-up fire detector is not overruled"
    assert not out["smoke"].ready, "smoke waits for the fire detector to call the scene live"
    out = _by_type(verifier.verify(FRAME, 5.0, _findings(candidate_pct=1.0, static=True)))
    assert out["fire"].active and not out["smoke"].ready and not out["smoke"].active, \
        "a still or frozen stream is not judged for smoke"


def test_flames_the_classical_cues_see_burning_need_less_of_the_scene():
    """P(fire) = 0.6: below the head's fitted threshold (0.9), above the corroborated level. A live
    scene whose temporal flame cues are active is a fire; the same score alone is not, nor on a
    still (no temporal evidence there)."""
    logit = float(np.log(0.6 / 0.4))
    assert CORROBORATED_P < 0.6 < 0.9

    def fire_after(classical_active: bool, static: bool = False) -> bool:
        model, _ = _model([logit], types=("fire",), threshold=0.9)
        verifier = SceneVerifier(model)
        for t in np.arange(0.0, 6.0, 0.5):
            findings = _findings(candidate_pct=1.0, static=static)
            findings[0] = replace(findings[0], active=classical_active)
            out = _by_type(verifier.verify(FRAME, float(t), findings))["fire"]
        return out.active

    assert fire_after(classical_active=True)
    assert not fire_after(classical_active=False), "the scene alone must reach its own threshold"
    assert not fire_after(classical_active=True, static=True), "a still has no flame motion to corroborate"


def test_flame_colour_the_scene_finds_unlikely_backs_off_until_it_goes_or_grows():
    """A street lamp at night: flame-coloured pixels for hours, P(fire) and P(smoke) far below
    UNLIKELY_P. Each such scoring doubles the candidate step (6, 12, then the idle 20 s); a frame
    without flame colour, or twice the flame-coloured share, brings the candidate pace back."""
    def scoring_times(pcts: list[float]) -> list[float]:
        model, embedder = _model([-5.0], types=("fire", "smoke"))
        verifier = SceneVerifier(model, warmup_s=0.0)
        times = []
        for i, pct in enumerate(pcts):
            calls = embedder.calls
            verifier.verify(FRAME, i * 0.5, _findings(candidate_pct=pct))
            if embedder.calls > calls:
                times.append(i * 0.5)
        return times
    assert 1 / (1 + np.exp(5.0)) < UNLIKELY_P
    lamp = scoring_times([1.0] * 240)  # two minutes
    # 0: unlikely -> step 12 (the grid slot at 12); 12: unlikely again -> 24, capped at the idle 20
    assert lamp == [0.0, 12.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    assert len(lamp) < 120 / CANDIDATE_STEP_S / 2, "against 20 without the backoff"
    # the lamp goes off for one frame at 70 s: the candidate pace again (a new slot of its grid at once)
    gap = scoring_times([1.0] * 140 + [0.0] + [1.0] * 99)
    assert gap[:5] == lamp[:5] and gap[5:7] == [70.5, 72.0]
    # at 70 s the flame-coloured share triples (something new burns near the lamp): rescored at once
    grows = scoring_times([1.0] * 140 + [3.0] * 100)
    assert grows[:5] == lamp[:5] and grows[5:7] == [70.0, 72.0]
    # a quiet camera (no flame colour) whose idle scorings are all unlikely: flame colour that
    # appears at 80 s is looked at on the candidate grid from its first frame, as before
    quiet = scoring_times([0.0] * 160 + [1.0] * 40)
    assert quiet == [0.0, 20.0, 40.0, 60.0, 80.0, 84.0]


def test_an_ongoing_fire_is_rechecked_at_the_idle_pace():
    model, embedder = _model([5.0], types=("fire", "smoke"))  # fire and smoke, confirmed at t=0 and t=STEP_S
    verifier = SceneVerifier(model, warmup_s=0.0)
    for t in np.arange(0.0, 62.0, 0.5):
        out = _by_type(verifier.verify(FRAME, float(t), _findings(candidate_pct=1.0)))
    assert out["fire"].active
    # t=0, t=2 (confirmed), then only t=20, 40, 60: not every CANDIDATE_STEP_S while it burns
    assert embedder.calls == 2 + int(60 / IDLE_STEP_S) and CANDIDATE_STEP_S < IDLE_STEP_S
    embedder = ScriptedEmbedder([5.0])  # fire on, smoke off (its head's bias holds it down)
    heads = {"fire": SceneHead(np.ones(1, np.float32), 0.0, 0.5), "smoke": SceneHead(np.ones(1, np.float32), -10.0, 0.5)}
    verifier = SceneVerifier(SceneModel(embedder, heads), warmup_s=0.0)
    for t in np.arange(0.0, 62.0, 0.5):
        out = _by_type(verifier.verify(FRAME, float(t), _findings(candidate_pct=1.0)))
    assert out["fire"].active and not out["smoke"].active
    assert embedder.calls == 2 + int(60 / CANDIDATE_STEP_S), "smoke may still start: every CANDIDATE_STEP_S"


def test_classical_water_cues_raise_the_flood_pace_until_the_scene_confirms():
    model, embedder = _model([-5.0], types=("flood",))
    verifier = SceneVerifier(model, warmup_s=0.0)
    water = _findings()
    water[2] = Finding("flood", True, 0.6, ready=True)  # the classical cues call water
    for t in np.arange(0.0, 60.0, 0.5):
        verifier.verify(FRAME, float(t), water)
    assert embedder.calls == int(60 / CANDIDATE_STEP_S), "proposed by the water cues: every CANDIDATE_STEP_S"
    model, embedder = _model([5.0], types=("flood",))
    verifier = SceneVerifier(model, warmup_s=0.0)
    for t in np.arange(0.0, 60.5, 0.5):
        out = _by_type(verifier.verify(FRAME, float(t), water))
    assert out["flood"].active and embedder.calls == 2 + int(60 / IDLE_STEP_S), "confirmed: the idle pace again"


@pytest.mark.parametrize("phase", [0.0, 6.0, 11.5, 12.5, 13.0, 18.0])
def test_the_sample_flood_scene_alarms_whatever_the_phase_of_the_idle_grid(phase):
    """Frame times are wall-clock times, so the 20 s scoring grid falls anywhere in a stream; the
    synthetic flood (water rising through 30 s) must alarm at every phase (at 11.5-13.25 s it did
    not, before the classical water cues raised the pace)."""
    from pipeline.config.settings import WorkerSettings
    from pipeline.processing.batch import decode_for_analysis
    from sample_media import load_scene

    camera = CameraConfig(id="c", fps=2.0)
    analyzer = FrameAnalyzer(camera, AlertSettings())
    base = 1_764_800_000.0 + phase  # a multiple of IDLE_STEP_S plus the phase
    assert base % IDLE_STEP_S == phase
    starts = []
    for ts, jpeg in load_scene("flood"):
        frame = decode_for_analysis(jpeg, camera, WorkerSettings().max_frame_pixels)
        starts += [e for e in analyzer.analyze(frame, base + ts)[1] if e.type == "flood" and e.state == "start"]
    assert len(starts) == 1


def test_a_new_view_is_rescored_at_once_but_passing_traffic_is_not():
    model, embedder = _model([-5.0])
    verifier = SceneVerifier(model, warmup_s=0.0)
    street = np.full((90, 160, 3), 90, np.uint8)
    verifier.verify(street, 0.0, _findings())
    car = street.copy()
    car[40:60, 20:50] = 250  # a bright car over a few thumbnail cells
    for t in (2.0, 3.0, 4.0):
        verifier.verify(car, t, _findings())
    assert embedder.calls == 1, "a car crossing a fixed view is not a new scene"
    new_view = np.full((90, 160, 3), 90 + int(CHANGE_LEVELS) + 10, np.uint8)
    verifier.verify(new_view, 5.0, _findings())
    assert embedder.calls == 2, "most of the view changed: scored at once, not at the next idle step"
    verifier.verify(np.zeros_like(street), 6.0, _findings())
    assert embedder.calls == 2, "at most one scene-change scoring per STEP_S"
    verifier.verify(np.zeros_like(street), 7.0, _findings())
    assert embedder.calls == 3


def test_time_going_back_rescores():
    model, embedder = _model([-5.0])
    verifier = SceneVerifier(model)
    verifier.verify(FRAME, 100.0, _findings())
    verifier.verify(FRAME, 101.0, _findings())
    verifier.verify(FRAME, 50.0, _findings())
    assert embedder.calls == 2


def test_shipped_scene_model_and_the_verify_switches():
    heads = shipped_scene_heads()
    assert set(heads["heads"]) == {"fire", "smoke", "flood"}
    for head in heads["heads"].values():
        assert len(head["weights"]) == 1280 and 0.5 <= head["threshold"] < 1.0
    assert heads["recipe"]["false_alarm_budget"] and heads["training"]["sources"]
    z = shipped_scene_embedder().embed(FRAME)
    assert z.shape == (1280,) and np.isfinite(z).all()
    assert scene_types(CameraConfig(id="c")) == ("fire", "smoke", "flood")
    no_flood = CameraConfig.model_validate({"id": "c", "detectors": {"flood": {"verify": False}}})
    assert scene_types(no_flood) == ("fire", "smoke")
    assert set(build_verifiers(no_flood)[0].model.heads) == {"fire", "smoke"}
    smoke_only = CameraConfig.model_validate({"id": "c", "detectors": {
        "fire": {"verify": False}, "flood": {"enabled": False}}})
    chain = FrameAnalyzer(smoke_only, AlertSettings()).verifiers
    assert [type(v).__name__ for v in chain] == ["SceneVerifier"] and set(chain[0].model.heads) == {"smoke"}


def test_shipped_scene_model_alarms_on_the_synthetic_fire_not_on_the_quiet_street():
    import cv2

    from sample_media import load_scene

    def render_scene(name: str, at_s: float) -> np.ndarray:
        frames = load_scene(name)
        start = frames[0][0]
        _, jpeg = min(frames, key=lambda f: abs(f[0] - start - at_s))
        return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)

    heads = shipped_scene_heads()["heads"]
    model = SceneModel(shipped_scene_embedder(), {
        k: SceneHead(np.asarray(h["weights"], np.float32), h["bias"], h["threshold"]) for k, h in heads.items()})
    fire = model.probabilities(render_scene("fire", 12.0))
    quiet = model.probabilities(render_scene("quiet", 12.0))
    assert fire["fire"] >= heads["fire"]["threshold"] > quiet["fire"]
    assert quiet["flood"] < heads["flood"]["threshold"]


def test_head_training_is_deterministic_and_keeps_types_it_cannot_fit_out():
    pytest.importorskip("sklearn")
    from pipeline.app.scene_fit import MediaEmbeddings, media_score, train_heads

    rng = np.random.RandomState(0)

    def media(i: int, fire: bool) -> MediaEmbeddings:
        x = rng.normal(1.0 if fire else 0.0, 1.0, (6, 8)).astype(np.float32)
        return MediaEmbeddings(f"m{i}", f"s{i % 5}", False, {"fire": fire, "smoke": None, "flood": False},
                               np.arange(6.0), x, 0.0)

    items = [media(i, i % 2 == 0) for i in range(20)]
    a, b = train_heads(items), train_heads(items)
    assert a == b and set(a["heads"]) == {"fire"} and set(a["skipped"]) == {"smoke", "flood"}
    assert media_score(np.array([0.9, 0.1, 0.8, 0.7])) == pytest.approx(0.7)
    assert media_score(np.array([0.6])) == pytest.approx(0.6)


def test_smoke_budget_is_a_share_of_every_negative_though_it_judges_clips_only(monkeypatch):
    """The fire task's false-alarm rate counts every negative, stills too; smoke is not judged on
    stills, so its budget (2 % of 50 negatives: one media) must not shrink to 2 % of the 10 clips
    it can alarm on (nothing), which set its threshold above one borderline clip for no reason.
    The head fit is replaced by the identity, so the scores are the media's own (no scikit-learn)."""
    from pipeline.app import scene_fit

    monkeypatch.setattr(scene_fit, "fit_head", lambda items, event: (np.ones(1, np.float32), 0.0))
    monkeypatch.setattr(scene_fit, "FALSE_ALARM_BUDGET", {**scene_fit.FALSE_ALARM_BUDGET, "smoke": 0.02})

    def media(i: int, logit: float, smoke: bool, still: bool = False) -> scene_fit.MediaEmbeddings:
        frames = 1 if still else 4
        return scene_fit.MediaEmbeddings(f"m{i}", f"s{i}", still, {"fire": smoke, "smoke": smoke, "flood": None},
                                         np.arange(float(frames)), np.full((frames, 1), logit, np.float32), 0.0)

    borderline = float(np.log(0.75 / 0.25))  # a negative clip scored 0.75
    clips = [media(i, 5.0, True) for i in range(5)] + [media(5, borderline, False)] + \
        [media(i, -5.0, False) for i in range(6, 15)]
    stills = [media(i, -5.0, False, still=True) for i in range(15, 55)]
    assert scene_fit.fit_threshold(clips + stills, "smoke") == 0.5, "one false alarm in 50 negatives is within 2 %"
    assert scene_fit.fit_threshold(clips, "smoke") == 0.8, "in 10 negatives it is not"


def test_backbone_export_refuses_other_weights(tmp_path):
    from pipeline.app.backbone_export import BackboneError, export_backbone

    bogus = tmp_path / "weights.pth"
    bogus.write_bytes(b"not the weights")
    with pytest.raises(BackboneError, match="SHA-256"):
        export_backbone(bogus)
    with pytest.raises(BackboneError, match="cannot be read"):
        export_backbone(tmp_path / "missing.pth")


def test_a_type_the_heads_do_not_cover_is_left_to_the_classical_cues():
    from pipeline.processing.verifier_models import camera_verifiers, shipped_fire_model

    camera = CameraConfig(id="c")
    flood_only = {"heads": {"flood": shipped_scene_heads()["heads"]["flood"]}}
    chain = camera_verifiers(camera, shipped_fire_model(), ScriptedEmbedder([0.0]), flood_only)
    assert [type(v).__name__ for v in chain] == ["FireVerifier", "SceneVerifier"]
    assert chain[0].decide is True and set(chain[1].model.heads) == {"flood"}
    chain = camera_verifiers(camera, shipped_fire_model(), ScriptedEmbedder([0.0]), {"heads": {}})
    assert [type(v).__name__ for v in chain] == ["FireVerifier"] and chain[0].decide is True
