"""Training the fire verifier: one reproducible recipe, used by `citywatch train` and by the
leave-one-source-out folds of `citywatch evaluate --folds source`.

Recipe (all constants below; the seed fixes every random choice):

1. Each labelled media is replayed as the worker sees it (camera JPEG, reduced decode to 320 px);
   up to :data:`FRAMES_PER_CLIP` frames evenly spread over a clip (from the labelled onset on, for
   positives), one for a still. Flame-coloured patches of those frames
   (:mod:`detectors.fire_patches`) become rows labelled with the media's fire label (``ambiguous``
   media are left out); at most :data:`ROWS_PER_MEDIA` per media, each media weighing the same.
2. A small MLP (standardised inputs, :data:`HIDDEN` ReLU units, L2 :data:`ALPHA`) is fitted with
   scikit-learn and exported to ONNX for OpenCV's ``cv2.dnn``. The runtime needs neither
   scikit-learn nor onnx: they are the ``train`` extra.
3. The still threshold is fitted on the training sources only: out-of-fold scores from
   :data:`INNER_FOLDS` source-grouped folds, lowest grid value whose false alarms on negative
   stills stay within :data:`STILL_FALSE_ALARMS`. Live scenes use :data:`LIVE_THRESHOLD`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from detectors.fire_patches import FEATURES, candidate_rows
from pipeline.app.evaluate.run import LabeledMedia, as_camera_sends_it, media_frames
from pipeline.config.settings import CameraConfig, WorkerSettings
from pipeline.processing.worker import decode_for_analysis

T = TypeVar("T")

SEED = 13
HIDDEN = 24
ALPHA = 1.0
MAX_ITER = 600
FRAMES_PER_CLIP = 10
ROWS_PER_MEDIA = 200
INNER_FOLDS = 4
STILL_FALSE_ALARMS = 0.05  # share of negative stills the fitted still threshold may alarm on
THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
LIVE_THRESHOLD = 0.5
FPS = 2.0


@dataclass(frozen=True)
class MediaRows:
    """The training rows of one media: candidate patch rows per sampled frame."""

    path: str
    source: str
    label: int
    still: bool
    frames: tuple[np.ndarray, ...]

    @property
    def rows(self) -> int:
        return sum(len(f) for f in self.frames)


def fire_label(media: LabeledMedia) -> int | None:
    return {"pos": 1, "neg": 0, "neg_tricky": 0}.get(media.fire)


def worker_frames(media: LabeledMedia, path: Path, fps: float) -> list[tuple[float, np.ndarray]] | None:
    """``(seconds, frame)`` of a media as the worker would analyse them (camera JPEG, reduced
    decode) at ``fps``, one frame for a still; None if it cannot be read."""
    camera = CameraConfig(id="train", fps=fps)
    max_pixels = WorkerSettings().max_frame_pixels
    frames: list[tuple[float, np.ndarray]] = []
    try:
        for t, image in media_frames(path, fps, media.is_still):
            frames.append((t, decode_for_analysis(as_camera_sends_it(image), camera, max_pixels)))
            if media.is_still:
                break
    except Exception:  # noqa: BLE001 - an unreadable media is left out of training, not fatal
        return None
    return frames


def extract(media: LabeledMedia, root: Path, source: str | None = None) -> MediaRows | None:
    """Replay one media like the worker and keep its candidate patch rows; None if unlabelled for
    fire or unreadable."""
    label = fire_label(media)
    path = Path(root) / media.path
    if label is None or not path.exists():
        return None
    onset = (media.onset_s or 0.0) if label else 0.0
    replayed = worker_frames(media, path, FPS)
    if replayed is None:
        return None
    frames = [frame for t, frame in replayed if t + 1e-6 >= onset]
    if not frames:
        return None
    if len(frames) > FRAMES_PER_CLIP:
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, FRAMES_PER_CLIP).round().astype(int)]
    rows = tuple(candidate_rows(frame)[1] for frame in frames)
    return MediaRows(media.path, source or media.source, label, media.is_still, rows)


def _matrix(items: Iterable[MediaRows]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.RandomState(SEED)
    xs, ys, ws = [], [], []
    for item in items:
        rows = np.concatenate(item.frames) if item.frames else np.zeros((0, len(FEATURES)), np.float32)
        if len(rows) == 0:
            continue
        if len(rows) > ROWS_PER_MEDIA:
            rows = rows[rng.choice(len(rows), ROWS_PER_MEDIA, replace=False)]
        xs.append(rows)
        ys.append(np.full(len(rows), item.label))
        ws.append(np.full(len(rows), 1.0 / len(rows)))
    if not xs:
        raise ValueError("no training rows: no labelled media with flame-coloured patches")
    x, y, w = np.concatenate(xs).astype(np.float32), np.concatenate(ys), np.concatenate(ws)
    for cls in (0, 1):  # each class weighs the same in total, each media the same within its class
        if not (y == cls).any():
            raise ValueError(f"no training rows of class {cls}: need both fire and non-fire media")
        w[y == cls] *= len(w) / 2.0 / w[y == cls].sum()
    return x, y, w


def fit_mlp(items: list[MediaRows]) -> Any:
    """A standardising scaler + MLP fitted on ``items`` (scikit-learn, from the ``train`` extra)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    x, y, w = _matrix(items)
    model = make_pipeline(StandardScaler(), MLPClassifier((HIDDEN,), alpha=ALPHA, max_iter=MAX_ITER,
                                                          random_state=SEED))
    # One BLAS thread: multi-threaded sums vary in their last bits, and so would the model.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # the fixed iteration budget is the recipe
        model.fit(x, y, mlpclassifier__sample_weight=w)
    return model


def media_score(predict: Any, item: MediaRows) -> float:
    """The media's appearance score as the runtime would see it: per frame the mean of its two
    best patches; a clip takes its second best frame (a one-frame blip does not alarm)."""
    scores = []
    for rows in item.frames:
        p = np.sort(predict(rows))[::-1] if len(rows) else np.zeros(1)
        scores.append(float(p[:2].mean()))
    scores.sort(reverse=True)
    return scores[1] if len(scores) > 1 else scores[0]


def fit_still_threshold(items: list[MediaRows]) -> float:
    """The still threshold from out-of-fold scores over source-grouped inner folds (see module)."""
    sources = sorted({i.source for i in items})
    groups = [sources[k::INNER_FOLDS] for k in range(INNER_FOLDS)]
    negatives: list[float] = []
    for held in groups:
        fit_on = [i for i in items if i.source not in held]
        if not {0, 1} <= {i.label for i in fit_on}:
            continue
        model = fit_mlp(fit_on)
        negatives += [media_score(lambda r, m=model: m.predict_proba(r)[:, 1], i)
                      for i in items if i.source in held and i.still and i.label == 0]
    for threshold in THRESHOLD_GRID:
        if sum(s >= threshold for s in negatives) <= STILL_FALSE_ALARMS * len(negatives):
            return threshold
    return THRESHOLD_GRID[-1]


def to_onnx(model: Any) -> bytes:
    """The scaler + MLP as an ONNX graph OpenCV's dnn runs: (x - mean) / scale -> Gemm -> ReLU ->
    Gemm -> Sigmoid, input ``rows`` [n, features], output ``p`` [n, 1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scaler, mlp = model[0], model[-1]
    consts = {"mean": scaler.mean_, "scale": scaler.scale_, "w1": mlp.coefs_[0], "b1": mlp.intercepts_[0],
              "w2": mlp.coefs_[1], "b2": mlp.intercepts_[1]}
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()]
    nodes = [helper.make_node("Sub", ["rows", "mean"], ["centred"]),
             helper.make_node("Div", ["centred", "scale"], ["z"]),
             helper.make_node("Gemm", ["z", "w1", "b1"], ["h"]),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "w2", "b2"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["p"])]
    graph = helper.make_graph(nodes, "citywatch_fire_verifier", [
        helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["n", len(FEATURES)])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 1])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="citywatch train")
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


@dataclass(frozen=True)
class TrainedFire:
    """A trained fire verifier: ONNX bytes and the manifest fields that go with them."""

    onnx: bytes
    manifest: dict[str, Any]


def train_fire(items: list[MediaRows]) -> TrainedFire:
    """Fit the model and its still threshold on ``items`` (see the module docstring)."""
    model = fit_mlp(items)
    still = fit_still_threshold(items)
    manifest = {
        "type": "fire", "features": list(FEATURES), "thresholds": {"still": still, "live": LIVE_THRESHOLD},
        "recipe": {"seed": SEED, "hidden": HIDDEN, "alpha": ALPHA, "max_iter": MAX_ITER, "fps": FPS,
                   "frames_per_clip": FRAMES_PER_CLIP, "rows_per_media": ROWS_PER_MEDIA,
                   "inner_folds": INNER_FOLDS, "still_false_alarms": STILL_FALSE_ALARMS,
                   "threshold_grid": list(THRESHOLD_GRID)},
        "training": {"media": len(items), "positives": sum(i.label for i in items),
                     "rows": int(sum(min(i.rows, ROWS_PER_MEDIA) for i in items)),
                     "sources": sorted({i.source for i in items})},
    }
    return TrainedFire(to_onnx(model), manifest)


def synthetic_scenes() -> tuple[list[LabeledMedia], Path]:
    """The project's own synthetic scenes (sample_media/scenes): always part of the training data."""
    import sample_media
    from pipeline.app.evaluate.run import read_labels

    root = Path(sample_media.__file__).resolve().parent / "scenes"
    return read_labels(root / "labels.csv"), root


class MediaCache(Generic[T]):
    """What ``extract(media, root, source)`` gives per media, computed once per (root, path); and
    the training set of a fold: its media plus, with ``with_scenes``, the synthetic scenes."""

    def __init__(self, extract: Callable[[LabeledMedia, Path, str | None], T | None], with_scenes: bool) -> None:
        self._extract = extract
        self.with_scenes = with_scenes
        self._cache: dict[tuple[str, str], T | None] = {}

    def get(self, media: LabeledMedia, root: Path, source: str | None = None) -> T | None:
        key = (str(root), media.path)
        if key not in self._cache:
            self._cache[key] = self._extract(media, root, source)
        return self._cache[key]

    def items(self, train: list[LabeledMedia], root: Path) -> list[T]:
        items = [self.get(m, root) for m in train]
        if self.with_scenes:
            scenes, scene_root = synthetic_scenes()
            items += [self.get(m, scene_root, "synthetic") for m in scenes]
        return [i for i in items if i is not None]


class VerifierTrainer:
    """Fits the fire patch verifier and the scene heads on the media it is given (plus the
    synthetic scenes) and returns the analyzer factory that uses them: the ``Trainer`` of
    ``evaluate(..., folds="source")``. Extracted rows and embeddings are cached per media, so the
    folds replay each file once."""

    def __init__(self, with_scenes: bool = True, scene: Any = None) -> None:
        from pipeline.app.scene_fit import SceneTrainer

        self._rows = MediaCache(extract, with_scenes)
        self.scene = scene if scene is not None else SceneTrainer(with_scenes=with_scenes)
        self.trained: list[TrainedFire] = []
        self.scene_heads: list[dict[str, Any]] = []

    def rows(self, media: LabeledMedia, root: Path, source: str | None = None) -> MediaRows | None:
        return self._rows.get(media, root, source)

    def items(self, train: list[LabeledMedia], root: Path) -> list[MediaRows]:
        return self._rows.items(train, root)

    def __call__(self, train: list[LabeledMedia], root: Path) -> Any:
        from pipeline.processing.analysis import FrameAnalyzer
        from pipeline.processing.verifier_models import camera_verifiers

        trained = train_fire(self.items(train, root))
        heads = self.scene(train, root)
        self.trained.append(trained)
        self.scene_heads.append(heads)
        embedder = self.scene.embedder

        def factory(camera: CameraConfig, alerts: Any) -> FrameAnalyzer:
            verifiers = camera_verifiers(camera, (trained.onnx, trained.manifest), embedder, heads)
            return FrameAnalyzer(camera, alerts, verifiers=verifiers)

        return factory
