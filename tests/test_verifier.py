"""The learned fire verifier: patch rows, the decision rules, the ONNX export, the shipped model and
the training recipe (reproducible, fitted only on what it is given)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from detectors.base import Finding
from detectors.fire_patches import FEATURES, PATCH, candidate_rows, candidates, patch_box, patch_rows
from detectors.verifier import ANNOTATE_STEP_S, STEP_S, FireVerifier, FireVerifierModel
from pipeline.config.settings import AlertSettings, CameraConfig
from pipeline.processing.analysis import FrameAnalyzer
from pipeline.processing.verifier_models import build_verifiers, shipped_fire_model


def _scene(flame_at: tuple[int, int] | None = (48, 96)) -> np.ndarray:
    frame = np.full((180, 320, 3), 90, np.uint8)
    if flame_at:
        y, x = flame_at
        frame[y:y + PATCH, x:x + PATCH] = (40, 140, 250)  # BGR orange
    return frame


class FixedClassifier:
    """Answers a fixed probability and counts the rows it was asked about."""

    def __init__(self, p: float) -> None:
        self.p, self.calls, self.rows = p, 0, 0

    def predict_proba(self, rows):
        self.calls += 1
        self.rows += len(rows)
        assert rows.shape[1] == len(FEATURES)
        return np.full(len(rows), self.p, np.float32)


def _fire(active: bool, static: bool, candidate_pct: float = 1.0, ready: bool = True) -> Finding:
    return Finding("fire", active, 0.8 if active else 0.0,
                   {"candidate_pct": candidate_pct, "static_scene": float(static)}, ready=ready)


def test_patch_rows_mark_the_flame_coloured_patch_and_its_box():
    rows = patch_rows(_scene())
    assert rows.shape == ((180 // PATCH) * (320 // PATCH), len(FEATURES))
    picked = np.flatnonzero(candidates(rows))
    assert list(picked) == [2 * (320 // PATCH) + 4]  # row 2, column 4
    x, y, w, h = patch_box(int(picked[0]), (180, 320, 3))
    assert (round(x * 320), round(y * 180), round(w * 320), round(h * 180)) == (96, 48, PATCH, PATCH)
    assert not candidates(patch_rows(_scene(None))).any()
    assert patch_rows(np.zeros((10, 10, 3), np.uint8)).shape == (0, len(FEATURES))


def test_candidate_rows_equal_the_full_computation():
    rng = np.random.RandomState(3)
    frame = _scene((120, 264))  # a candidate touching the right edge
    frame[0:30, 0:50] = rng.randint(0, 255, (30, 50, 3))  # noisy texture in the top-left corner
    frame[60:90, 150:200] = (30, 120, 230)
    full = patch_rows(frame)
    index, rows = candidate_rows(frame)
    assert list(index) == list(np.flatnonzero(candidates(full))) and len(index) >= 2
    assert np.abs(rows - full[index]).max() < 1e-5


@pytest.mark.parametrize("p, static, classical, expected", [
    (0.95, True, False, True),    # a still: appearance alone decides, above the still threshold
    (0.85, True, True, False),    # ... and below it the classical still test does not rescue it
    (0.6, False, True, True),     # live: classical temporal evidence and appearance
    (0.6, False, False, False),   # live appearance alone never alarms
    (0.3, False, True, False),    # live classical alarm vetoed by the appearance
])
def test_decision_rules(p, static, classical, expected):
    verifier = FireVerifier(FireVerifierModel(FixedClassifier(p), still_threshold=0.9, live_threshold=0.5))
    (out,) = verifier.verify(_scene(), 10.0, [_fire(classical, static)])
    assert out.active is expected
    assert out.measurements["verified_p"] == pytest.approx(p)
    assert (out.confidence > 0) is expected
    if expected:
        assert out.boxes


def test_scores_candidates_only_at_most_once_per_step():
    clf = FixedClassifier(0.95)
    verifier = FireVerifier(FireVerifierModel(clf), step_s=1.0)
    other = Finding("flood", True)
    for i in range(8):  # 4 s at 2 frames/s
        out = verifier.verify(_scene(), 100.0 + 0.5 * i, [_fire(False, True), other])
        assert out[1] is other and out[0].active
    assert clf.calls == 4
    # not a candidate (no flame colour, not active): no scoring, and the kept score is cleared
    out = verifier.verify(_scene(None), 104.0, [_fire(False, True, candidate_pct=0.0)])
    assert clf.calls == 4 and not out[0].active and out[0].measurements["verified_p"] == 0.0
    # a detector still warming up passes through untouched
    warming = _fire(False, False, ready=False)
    assert verifier.verify(_scene(), 105.0, [warming]) == [warming]


def test_annotating_only_boxes_active_fires_that_have_no_boxes():
    clf = FixedClassifier(0.95)
    verifier = FireVerifier(FireVerifierModel(clf), step_s=1.0, decide=False)
    quiet, boxed = _fire(False, False), replace(_fire(True, False), boxes=((0.1, 0.1, 0.2, 0.2),))
    assert verifier.verify(_scene(), 10.0, [quiet]) == [quiet]  # the deciding stage said no
    assert verifier.verify(_scene(), 10.5, [boxed]) == [boxed]  # the detector's own boxes stay
    assert clf.calls == 0, "nothing to annotate: nothing scored"
    unboxed = _fire(True, True)  # e.g. a still the scene verifier judged on fire
    for i in range(4):  # 2 s at 2 frames/s: scored at 11.0 and 12.0
        (out,) = verifier.verify(_scene(), 11.0 + 0.5 * i, [unboxed])
        assert out.active and out.confidence == unboxed.confidence
        assert out.boxes and out.measurements["verified_p"] == pytest.approx(0.95)
    assert clf.calls == 2
    verifier.verify(_scene(), 13.0, [quiet])  # the fire ended: the next one is scored afresh
    verifier.verify(_scene(), 13.5, [unboxed])
    assert clf.calls == 3


def test_annotating_refreshes_the_boxes_of_a_burning_fire_at_the_slower_pace():
    clf = FixedClassifier(0.95)
    verifier = FireVerifier(FireVerifierModel(clf), decide=False)
    assert FireVerifier(FireVerifierModel(clf)).step_s == STEP_S < ANNOTATE_STEP_S == verifier.step_s
    for t in np.arange(0.0, 12.0, 0.5):  # an active fire without boxes for 12 s at 2 frames/s
        (out,) = verifier.verify(_scene(), 100.0 + float(t), [_fire(True, True)])
        assert out.boxes, "boxed on every frame, from the kept scoring"
    assert clf.calls == 2, "scored when it started and once ANNOTATE_STEP_S later"


def test_shipped_model_loads_and_the_setting_turns_it_off():
    onnx, manifest = shipped_fire_model()
    assert len(onnx) < 100_000 and manifest["features"] == list(FEATURES)
    assert 0.5 <= manifest["thresholds"]["still"] <= 1.0
    assert manifest["recipe"]["seed"] and manifest["data"], "manifest lists recipe and data"
    camera = CameraConfig(id="cam1")
    chain = build_verifiers(camera)
    assert [type(v).__name__ for v in chain] == ["SceneVerifier", "FireVerifier"]
    assert chain[1].decide is False, "the scene verifier decides fire; the patches only box it"
    off = CameraConfig.model_validate({"id": "cam1", "detectors": {
        "fire": {"verify": False}, "smoke": {"verify": False}, "flood": {"verify": False}}})
    assert build_verifiers(off) == [] and FrameAnalyzer(off, AlertSettings()).verifiers == []
    p = chain[1].model.classifier.predict_proba(patch_rows(_scene())[:3])
    assert p.shape == (3,) and ((p >= 0) & (p <= 1)).all()


def test_onnx_export_matches_scikit_learn():
    pytest.importorskip("sklearn")
    pytest.importorskip("onnx")
    from detectors.verifier import OnnxClassifier
    from pipeline.app.verifier_fit import MediaRows, fit_mlp, to_onnx

    rng = np.random.RandomState(0)
    items = [MediaRows(f"m{i}", f"s{i % 3}", i % 2, False,
                       (rng.rand(30, len(FEATURES)).astype(np.float32) + 0.3 * (i % 2),)) for i in range(6)]
    model = fit_mlp(items)
    x = np.concatenate([i.frames[0] for i in items])
    assert np.abs(model.predict_proba(x)[:, 1] - OnnxClassifier(to_onnx(model)).predict_proba(x)).max() < 1e-5


@pytest.mark.slow
def test_training_on_the_synthetic_scenes_is_reproducible():
    pytest.importorskip("sklearn")
    from pipeline.app.verifier_fit import VerifierTrainer

    runs = []
    for _ in range(2):
        trainer = VerifierTrainer()
        factory = trainer([], None)
        runs.append(trainer.trained[-1])
    assert runs[0].onnx == runs[1].onnx and runs[0].manifest == runs[1].manifest
    assert runs[0].manifest["training"]["sources"] == ["synthetic"]
    analyzer = factory(CameraConfig(id="cam1"), AlertSettings())
    assert len(analyzer.verifiers) == 2
