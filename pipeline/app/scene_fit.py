"""Training the scene verifier's heads: one reproducible recipe, used by `citywatch train` and by the
leave-one-source-out folds of `citywatch evaluate --folds source`.

Recipe (all constants below; nothing here is random):

1. The backbone is fixed: ImageNet-pretrained MobileNetV2 (torchvision's weights), exported once by
   :mod:`pipeline.app.backbone_export` to ``pipeline/models/scene_backbone.onnx``. Nothing of it is
   fitted to the footage.
2. Each labelled media is replayed as the worker sees it (camera JPEG, reduced decode); up to
   :data:`FRAMES_PER_CLIP` frames evenly spread over a clip at :data:`FPS`, one for a still, go
   through the backbone with ``cv2.dnn`` exactly as at run time. Positives keep the frames from
   the labelled onset on.
3. Per type (fire, smoke, flood) a logistic regression (standardised inputs, L2, C = :data:`C`) on
   those embeddings; every media weighs the same, both classes the same in total. Labels as
   ``citywatch evaluate`` scores them (:func:`pipeline.app.evaluate.labels.truth`).
4. Each head's threshold is fitted on the training sources only: out-of-fold media scores from
   :data:`INNER_FOLDS` source-grouped folds, lowest value of :data:`THRESHOLD_GRID` whose false
   alarms on negative media stay within the type's budget (:data:`FALSE_ALARM_BUDGET`): a share
   of every held-out negative, as the task's false-alarm rate counts them, though smoke can only
   alarm on the clips among them (stills are not judged for it). A media's
   score is what the run-time rule needs to switch the type on: the best of two consecutive frames
   (the lower of each pair), the frame itself for a still.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detectors.scene import CONFIRM, EVENT_TYPES, Embedder, OnnxEmbedder
from pipeline.app.evaluate.labels import truth
from pipeline.app.evaluate.run import LabeledMedia
from pipeline.app.verifier_fit import MediaCache, worker_frames
from pipeline.processing.verifier_models import SCENE_BACKBONE, read_model

FPS = 2.0
FRAMES_PER_CLIP = 24
C = 0.01
INNER_FOLDS = 4
THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
#: Share of negative media each head may alarm on; fire and smoke share the fire negatives and
#: the fire task counts both, so they split its 5 %.
FALSE_ALARM_BUDGET = {"fire": 0.03, "smoke": 0.02, "flood": 0.05}
#: Types the run-time rule judges on stills (smoke needs a live scene, see detectors.scene)
JUDGES_STILLS = {"fire": True, "smoke": False, "flood": True}


@dataclass(frozen=True)
class MediaEmbeddings:
    """The embeddings of one media's sampled frames and its label per type (None = left out)."""

    path: str
    source: str
    still: bool
    labels: dict[str, bool | None]
    times: np.ndarray  # (frames,) s from the start
    embeddings: np.ndarray  # (frames, dim)
    onset_s: float

    def frames_for(self, event: str) -> np.ndarray:
        """The embeddings that carry the type's label: a positive's from the onset on."""
        if not self.labels.get(event):
            return self.embeddings
        keep = self.times + 1e-6 >= self.onset_s
        return self.embeddings[keep] if keep.any() else self.embeddings


def embed_media(media: LabeledMedia, root: Path, embedder: Embedder,
                source: str | None = None) -> MediaEmbeddings | None:
    """Replay one media like the worker and embed its sampled frames; None if unreadable."""
    path = Path(root) / media.path
    if not path.exists():
        return None
    frames = worker_frames(media, path, FPS)
    if not frames:
        return None
    picked = np.linspace(0, len(frames) - 1, min(FRAMES_PER_CLIP, len(frames))).round().astype(int)
    times = np.array([frames[i][0] for i in picked])
    embeddings = np.stack([embedder.embed(frames[i][1]) for i in picked]).astype(np.float32)
    labels = {event: truth(media, event) for event in EVENT_TYPES}
    return MediaEmbeddings(media.path, source or media.source, media.is_still, labels, times,
                           embeddings, media.onset_s or 0.0)


def _labelled(items: list[MediaEmbeddings], event: str) -> list[MediaEmbeddings]:
    return [i for i in items if i.labels.get(event) is not None]


def fit_head(items: list[MediaEmbeddings], event: str) -> tuple[np.ndarray, float]:
    """The type's logistic head on ``items`` as (weights, bias) on the raw embedding."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    xs, ys, ws = [], [], []
    for item in _labelled(items, event):
        x = item.frames_for(event)
        xs.append(x)
        ys.append(np.full(len(x), int(bool(item.labels[event]))))
        ws.append(np.full(len(x), 1.0 / len(x)))
    if not xs:
        raise ValueError(f"no media labelled for {event}")
    x, y, w = np.concatenate(xs).astype(np.float64), np.concatenate(ys), np.concatenate(ws)
    for cls in (0, 1):
        if not (y == cls).any():
            raise ValueError(f"no {'positive' if cls else 'negative'} media for {event}")
        w[y == cls] *= len(w) / 2.0 / w[y == cls].sum()
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-6] = 1.0
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        model = LogisticRegression(C=C, max_iter=3000).fit((x - mean) / scale, y, sample_weight=w)
    coef = model.coef_[0] / scale
    return coef.astype(np.float32), float(model.intercept_[0] - coef @ mean)


def probabilities(weights: np.ndarray, bias: float, embeddings: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(embeddings @ weights + bias, -60, 60)))


def media_score(p: np.ndarray) -> float:
    """What the run-time rule needs to switch on: the best run of :data:`CONFIRM` frames (its lowest)."""
    if len(p) < CONFIRM:
        return float(p.max())
    runs = np.lib.stride_tricks.sliding_window_view(p, CONFIRM).min(axis=1)
    return float(runs.max())


def fit_threshold(items: list[MediaEmbeddings], event: str) -> float:
    """The head's threshold from out-of-fold scores over source-grouped inner folds (see module)."""
    labelled = _labelled(items, event)
    sources = sorted({i.source for i in labelled})
    negatives: list[float] = []  # scores of the held-out negatives the type judges
    held_negatives = 0  # every held-out negative: the task's false-alarm share counts them all
    for k in range(INNER_FOLDS):
        held = set(sources[k::INNER_FOLDS])
        fit_on = [i for i in labelled if i.source not in held]
        if {True, False} - {bool(i.labels[event]) for i in fit_on}:
            continue
        w, b = fit_head(fit_on, event)
        held_out = [i for i in labelled if i.source in held and not i.labels[event]]
        held_negatives += len(held_out)
        negatives += [media_score(probabilities(w, b, i.embeddings))
                      for i in held_out if JUDGES_STILLS[event] or not i.still]
    budget = FALSE_ALARM_BUDGET[event] * held_negatives
    for threshold in THRESHOLD_GRID:
        if sum(s >= threshold for s in negatives) <= budget:
            return threshold
    return THRESHOLD_GRID[-1]


def train_heads(items: list[MediaEmbeddings]) -> dict[str, Any]:
    """The heads manifest: per type weights, bias and threshold, with the recipe and the data."""
    heads, skipped = {}, []
    for event in EVENT_TYPES:
        labelled = _labelled(items, event)
        if {True, False} - {bool(i.labels[event]) for i in labelled}:
            skipped.append(event)  # no positive or no negative media: the classical cues decide
            continue
        w, b = fit_head(items, event)
        heads[event] = {"weights": [round(float(v), 7) for v in w], "bias": round(b, 7),
                        "threshold": fit_threshold(items, event),
                        "media": len(labelled), "positives": sum(bool(i.labels[event]) for i in labelled)}
    return {
        "backbone": "scene_backbone.onnx", "heads": heads, "skipped": skipped,
        "recipe": {"fps": FPS, "frames_per_clip": FRAMES_PER_CLIP, "C": C, "inner_folds": INNER_FOLDS,
                   "threshold_grid": list(THRESHOLD_GRID), "false_alarm_budget": FALSE_ALARM_BUDGET,
                   "judges_stills": JUDGES_STILLS,
                   "confirm": CONFIRM},
        "training": {"media": len(items), "sources": sorted({i.source for i in items})},
    }


class SceneTrainer:
    """Fits the scene heads on the media it is given (plus the synthetic scenes). Embeddings are
    cached per media, so the folds of `citywatch evaluate` run each file through the backbone once."""

    def __init__(self, backbone: bytes | None = None, with_scenes: bool = True) -> None:
        self.backbone = backbone if backbone is not None else read_model(SCENE_BACKBONE, "scene backbone")
        self.embedder = OnnxEmbedder(self.backbone)
        self._embeddings: MediaCache[MediaEmbeddings] = MediaCache(
            lambda media, root, source: embed_media(media, root, self.embedder, source), with_scenes)

    def embeddings(self, media: LabeledMedia, root: Path, source: str | None = None) -> MediaEmbeddings | None:
        return self._embeddings.get(media, root, source)

    def items(self, train: list[LabeledMedia], root: Path) -> list[MediaEmbeddings]:
        return self._embeddings.items(train, root)

    def __call__(self, train: list[LabeledMedia], root: Path) -> dict[str, Any]:
        return train_heads(self.items(train, root))
