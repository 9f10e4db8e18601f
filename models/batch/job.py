"""The scoring loop: decode a batch (many threads, the next batch while this one is
classified), classify it with the version's engine, build each image's native
predict body, append the batch's lines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.batch.inputs import Inputs
from models.batch.output import Writer
from models.batch.progress import Progress
from models.predictions import predict_response
from models.preprocessing import SkippedImage, decode_each, load_image

if TYPE_CHECKING:
    from models.bundle import Bundle, ServingEngine


@dataclass(frozen=True)
class ScoreOptions:
    batch: int = 16
    threads: int = 4
    top_k: int = 5
    min_confidence: float | None = None


@dataclass(frozen=True)
class ScoreSummary:
    scored: int  # lines with a prediction written by this run
    errors: int  # error lines written by this run
    seconds: float

    @property
    def rate(self) -> float:
        return (self.scored + self.errors) / self.seconds if self.seconds else 0.0


def score(
    bundle: Bundle,
    engine: ServingEngine,
    inputs: Inputs,
    writer: Writer,
    options: ScoreOptions,
    progress: Progress,
) -> ScoreSummary:
    """Score every key of ``inputs`` (those already done left out by the caller)."""
    start = time.monotonic()
    scored = errors = 0
    for records in _batches(bundle, engine, inputs, options):
        writer.write(records)
        failed = sum("error" in record for record in records)
        scored, errors = scored + len(records) - failed, errors + failed
        progress.update(len(records), failed)
    progress.finish()
    return ScoreSummary(scored, errors, time.monotonic() - start)


Decoded = tuple[list[str], np.ndarray, dict[int, SkippedImage]]


def _batches(
    bundle: Bundle, engine: ServingEngine, inputs: Inputs, options: ScoreOptions
) -> Iterator[list[dict[str, Any]]]:
    keys, size = inputs.keys, bundle.image_size
    chunks = [keys[i : i + options.batch] for i in range(0, len(keys), options.batch)]
    decode = partial(_decode, inputs, size=size, threads=options.threads)
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1) as ahead:
        pending = [ahead.submit(decode, chunks[0])]
        for following in [*chunks[1:], None]:
            batch_keys, pixels, skipped = pending.pop().result()
            if following is not None:  # decoded while this batch is classified
                pending.append(ahead.submit(decode, following))
            yield _records(bundle, engine, batch_keys, pixels, skipped, options)


def _decode(inputs: Inputs, keys: list[str], *, size: tuple[int, int], threads: int) -> Decoded:
    def decode(path: Path) -> np.ndarray:
        key = path.as_posix()
        return load_image(inputs.read(key), size, name=key)

    skipped: dict[int, SkippedImage] = {}
    decoded = list(
        decode_each(keys, decode, lambda s: skipped.update({s.position: s}), threads=threads)
    )
    pixels = [p for _, _, p in decoded]
    stacked = np.stack(pixels) if pixels else np.zeros((0, *size, 3), np.uint8)
    return keys, stacked, skipped


def _records(
    bundle: Bundle,
    engine: ServingEngine,
    keys: list[str],
    pixels: np.ndarray,
    skipped: dict[int, SkippedImage],
    options: ScoreOptions,
) -> list[dict[str, Any]]:
    """Each key's line, in order: its native predict body (one prediction) or its error."""
    good = [key for position, key in enumerate(keys) if position not in skipped]
    rows = engine.predict(pixels) if good else np.zeros((0, len(bundle.labels)), np.float32)
    names = [key.rsplit("/", 1)[-1] for key in good]
    body = predict_response(bundle, rows, names, options.top_k, options.min_confidence)
    answers = iter(body.predictions)
    records: list[dict[str, Any]] = []
    for position, key in enumerate(keys):
        if position in skipped:
            bad = skipped[position]
            records.append({"image": key, "error": bad.reason, "code": bad.code})
        else:
            one = body.model_copy(update={"predictions": [next(answers)]})
            records.append({"image": key, **one.model_dump(mode="json")})
    return records
