"""Preprocess -> inference -> postprocess for one loaded model version, with no
web framework inside: the routes hand it bytes and get a response body back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from models import preprocessing
from models.bundle import Bundle
from models.engines import tta as test_time
from models.engines.inference import Classifier
from models.engines.int8 import Int8Classifier
from models.predictions import PredictResponse, predict_response
from models.preprocessing import ImageTooLarge
from service.serving.batching import MicroBatcher

T = TypeVar("T")


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int
    max_delay_s: float
    queue_size: int
    on_batch: Callable[[int, float], None] | None = None


@dataclass(frozen=True)
class ImageUpload:
    data: bytes
    label: str | None = None  # how messages name it among several: "file 'a.jpg'", ...
    filename: str | None = None


class Predictor:
    """A loaded, warmed-up model version behind a micro-batcher."""

    def __init__(
        self, classifier: Classifier | Int8Classifier, batching: BatchSettings, max_pixels: int
    ):
        self.classifier = classifier
        self.max_pixels = max_pixels
        self._batcher = MicroBatcher(
            classifier.predict,
            max_batch_size=batching.max_batch_size,
            max_delay_s=batching.max_delay_s,
            queue_size=batching.queue_size,
            on_batch=batching.on_batch,
        )

    @property
    def bundle(self) -> Bundle:
        return self.classifier.bundle

    def preprocess(self, images: Sequence[ImageUpload]) -> np.ndarray:
        """Decode every image to the bundle's size; the first bad one names itself."""
        size = self.bundle.image_size
        arrays = []
        for image in images:
            try:
                arrays.append(
                    preprocessing.load_image(
                        image.data, size, max_pixels=self.max_pixels, name=image.label
                    )
                )
            except ImageTooLarge as exc:
                raise ImageTooLarge(f"{exc} (KTL_MAX_IMAGE_PIXELS); send a smaller image") from exc
        return np.stack(arrays)

    def infer(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities in label order, one row per image."""
        return self._batcher.predict(pixels)

    def run_alone(self, work: Callable[[], T]) -> T:
        """Run ``work`` on this model when its turn in the queue comes, by itself: for
        computations that cannot share a batch (Grad-CAM, feature maps)."""
        return self._batcher.run_alone(work)

    def predict(self, images: Sequence[ImageUpload], tta: bool = False) -> np.ndarray:
        """Probabilities of each image; with ``tta``, averaged over ``models.engines.tta``'s views
        (one batch of all of them: len(VIEWS) passes per image)."""
        with self._batcher.decoding():  # a leader gathering a batch waits for these
            pixels = self.preprocess(images)
            if not tta:
                return self.infer(pixels)
            return test_time.averaged(self.infer(test_time.views(pixels).numpy()), len(pixels))

    def predict_native(
        self,
        images: Sequence[ImageUpload],
        top_k: int,
        min_confidence: float | None = None,
        tta: bool = False,
    ) -> PredictResponse:
        """The native predict body, ``top_k`` clipped to the number of labels, each
        decision at the version's threshold or ``min_confidence``."""
        rows = self.predict(images, tta)
        filenames = [image.filename for image in images]
        return predict_response(self.bundle, rows, filenames, top_k, min_confidence)
