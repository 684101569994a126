"""Optional nudity detector: NudeNet's 320n YOLOv8 model, which boxes exposed body parts.

Installed with the ``dignity[nudenet]`` extra. NudeNet is AGPL-3.0 (its wheel's LICENSE file;
the "MIT" in its metadata is stale), so it is kept out of the default install. The weights ship
inside the ``nudenet`` wheel as ``nudenet/320n.onnx``; we load that file with our own
onnxruntime session (one thread, shared per process) and do the pre- and post-processing here,
with OpenCV, which NudeNet itself requires. The facts we follow are NudeNet's: pad the picture
with black on the right and bottom to a square, resize it to 320 x 320 with OpenCV's bilinear
filter, scale to [0, 1] in NCHW order; read each of the model's 2100 rows as a centre box plus
18 class probabilities, keep rows whose best class reaches 0.2, and suppress overlaps across
classes with ``cv2.dnn.NMSBoxes`` (score 0.25, IoU 0.45). One deliberate difference: we feed the
channels as RGB, the order the YOLOv8 model was trained on and that NudeNet's browser demo and
earlier Python releases fed; NudeNet 3.4.2's ``detect()`` swaps them twice for files read with
``cv2.imread`` and so feeds BGR (NudeNet issue #203). The score is the highest confidence among
the boxes whose label is in :data:`EXPOSED_LABELS`; every box is reported in ``detail``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import math
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from dignity.media import Media
from dignity.settings import Settings
from dignity.signals.base import Classifier, ClassifierReport
from dignity.signals.nudity import file_sha256, onnx_session, package_version, packaged_file

__all__ = ["EXPOSED_LABELS", "LABELS", "NudeNetClassifier", "create", "model_path"]

log = logging.getLogger("dignity.signals")

_PACKAGE: Final = "nudenet"
_MODEL_FILE: Final = "320n.onnx"
_PIPELINE_VERSION: Final = "1"
_SIZE: Final = 320

# The model's classes, in the order of its outputs (NudeNet 3.4's label list).
LABELS: Final[tuple[str, ...]] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

# The labels that make a picture intimate imagery. Faces, covered parts, feet, armpits and
# bellies are reported as boxes but never raise the score; neither does MALE_BREAST_EXPOSED,
# which every beach or sports photo of a man would trigger.
EXPOSED_LABELS: Final = frozenset(
    {
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)
_EXPOSED_IDS: Final = frozenset(i for i, label in enumerate(LABELS) if label in EXPOSED_LABELS)

_CANDIDATE_THRESHOLD: Final = 0.2
_NMS_SCORE_THRESHOLD: Final = 0.25
_NMS_IOU_THRESHOLD: Final = 0.45


def model_path() -> Path | None:
    """Where the installed ``nudenet`` keeps its 320n ONNX weights, or None without it."""
    return packaged_file(_PACKAGE, _MODEL_FILE)


def preprocess(pixels: NDArray[np.uint8]) -> tuple[NDArray[np.float32], float]:
    """The model's 1 x 3 x 320 x 320 RGB input for an H x W x 3 RGB array, and the factor
    from model coordinates back to the array's (the padded square's side over 320)."""
    import cv2

    height, width = pixels.shape[:2]
    side = max(height, width)
    # Padded on the right and bottom only, so box corners need no offset to map back.
    square = cv2.copyMakeBorder(
        np.ascontiguousarray(pixels), 0, side - height, 0, side - width, cv2.BORDER_CONSTANT
    )
    blob = cv2.dnn.blobFromImage(
        square, 1 / 255.0, (_SIZE, _SIZE), (0, 0, 0), swapRB=False, crop=False
    )
    return np.ascontiguousarray(blob, dtype=np.float32), side / _SIZE


def postprocess(
    output: NDArray[np.float32], scale: float, width: int, height: int
) -> list[tuple[int, float, tuple[float, float, float, float]]]:
    """Detections from the model's 1 x 22 x N output: ``(class id, score, (x, y, w, h))``
    with the box in the coordinates of the ``width`` x ``height`` array that was fed in."""
    import cv2

    rows = np.asarray(output, dtype=np.float32).reshape(output.shape[-2], output.shape[-1]).T
    classes = rows[:, 4:]
    if classes.shape[1] != len(LABELS):
        raise ValueError(f"the model gave {classes.shape[1]} classes, not {len(LABELS)}")
    best = classes.max(axis=1)
    keep = np.flatnonzero(best >= _CANDIDATE_THRESHOLD)
    if keep.size == 0:
        return []
    ids = classes[keep].argmax(axis=1)
    scores = best[keep]
    cx, cy, w, h = (rows[keep, i].astype(np.float64) * scale for i in range(4))
    x = np.clip(cx - w / 2, 0, width)
    y = np.clip(cy - h / 2, 0, height)
    w = np.minimum(w, width - x)
    h = np.minimum(h, height - y)
    boxes = np.stack([x, y, w, h], axis=1)
    chosen = cv2.dnn.NMSBoxes(
        boxes.tolist(), scores.tolist(), _NMS_SCORE_THRESHOLD, _NMS_IOU_THRESHOLD
    )
    result = []
    for index in np.asarray(chosen, dtype=np.int64).reshape(-1):
        bx, by, bw, bh = (float(v) for v in boxes[index])
        result.append((int(ids[index]), float(scores[index]), (bx, by, bw, bh)))
    return result


class NudeNetClassifier:
    """NudeNet's exposed-body-part detector; the score is its most confident exposed part."""

    name = "nudenet"
    signal = "nudity"

    def __init__(self, path: Path | None = None) -> None:
        resolved = path if path is not None else model_path()
        if resolved is None:
            raise FileNotFoundError(f"nudenet is not installed or lacks {_MODEL_FILE}")
        self.path = resolved
        self.sha256 = file_sha256(resolved)
        self.version = (
            f"nudenet-{package_version(_PACKAGE)}-320n-sha256:{self.sha256[:12]}"
            f"/{_PIPELINE_VERSION}"
        )

    def classify(self, media: Media) -> ClassifierReport:
        try:
            session = onnx_session(self.path)
            pixels = media.pixels
            batch, scale = preprocess(pixels)
            (output,) = session.run(None, {session.get_inputs()[0].name: batch})
            found = postprocess(output, scale, pixels.shape[1], pixels.shape[0])
        except Exception as exc:  # a report, never an exception, whatever the pixels hold
            log.warning("nudenet failed on a %dx%d image: %r", media.width, media.height, exc)
            return ClassifierReport(
                score=None, detail={"model": self.name, "error": f"{type(exc).__name__}: {exc}"}
            )
        # Boxes are found on media.image, which may be a reduced JPEG draft; they are
        # reported in the coordinates of the full upright picture.
        sx = media.width / pixels.shape[1]
        sy = media.height / pixels.shape[0]
        boxes: list[dict[str, Any]] = []
        score = 0.0
        for class_id, confidence, (x, y, w, h) in found:
            if not math.isfinite(confidence):
                continue
            if class_id in _EXPOSED_IDS:
                score = max(score, confidence)
            boxes.append(
                {
                    "label": LABELS[class_id],
                    "score": confidence,
                    "box": [round(x * sx), round(y * sy), round(w * sx), round(h * sy)],
                }
            )
        return ClassifierReport(
            score=min(1.0, max(0.0, score)), detail={"model": self.name, "boxes": boxes}
        )


def create(settings: Settings) -> list[Classifier]:
    """The NudeNet detector, or nothing where the ``nudenet`` extra is not installed."""
    del settings  # nothing to configure: the model and its thresholds are NudeNet's
    try:
        # Importing proves its dependencies (OpenCV, onnxruntime) load; it runs no model.
        importlib.import_module(_PACKAGE)
    except ImportError as exc:
        log.info("nudenet detector unavailable: %s", exc)
        return []
    try:
        return [NudeNetClassifier()]
    except OSError as exc:
        log.warning("nudenet detector unavailable: %s", exc)
        return []
