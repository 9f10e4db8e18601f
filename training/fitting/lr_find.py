"""The learning-rate range test (Smith 2017; fastai's ``lr_find``): train for a
short while with a rate that grows exponentially each step, watch the smoothed
loss, stop when it diverges, and pick a rate from the curve.

The rule that picks it is fastai's "valley": the longest stretch over which the
smoothed loss keeps falling, and a rate two thirds of the way down it: high enough
to learn fast, well before the loss turns. The model's weights and optimizer are
put back afterwards, so the test leaves no trace on training.
"""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from training.fitting.regime import Regime, loss_and_metric

START, END, STEPS = 1e-7, 10.0, 100
SMOOTHING = 0.98  # exponential moving average of the loss, debiased
DIVERGED = 4.0  # stop once the smoothed loss is this many times its best


@dataclass(frozen=True)
class RangeTest:
    rates: list[float]
    losses: list[float]  # smoothed
    suggestion: float

    def curve(self) -> list[list[float]]:
        """``[rate, smoothed loss]`` per step, rounded: what the report plots."""
        pairs = zip(self.rates, self.losses, strict=True)
        return [[float(f"{rate:.4g}"), float(f"{loss:.5g}")] for rate, loss in pairs]


class _Sweep(keras.callbacks.Callback):
    """Raise the rate exponentially each batch; record the smoothed batch loss."""

    def __init__(self, steps: int):
        super().__init__()
        self.factor = (END / START) ** (1 / max(1, steps - 1))
        self.rates: list[float] = []
        self.losses: list[float] = []
        self._average, self._best, self._seen, self._mean = 0.0, np.inf, 0, 0.0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        rate = START * self.factor**batch
        self.model.optimizer.learning_rate.assign(rate)
        self.rates.append(rate)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # Keras reports the running mean of the epoch: the batch's own loss is the step.
        mean = float((logs or {})["loss"])
        loss = (batch + 1) * mean - batch * self._mean
        self._mean = mean
        self._seen += 1
        self._average = SMOOTHING * self._average + (1 - SMOOTHING) * loss
        smoothed = self._average / (1 - SMOOTHING**self._seen)
        self.losses.append(smoothed)
        self._best = min(self._best, smoothed)
        if not np.isfinite(smoothed) or smoothed > DIVERGED * self._best:
            self.model.stop_training = True


def range_test(model: keras.Model, data: Any, regime: Regime, steps: int = STEPS) -> RangeTest:
    """Run the test on ``model`` with ``data`` (training batches, repeated as needed);
    the model is left as it was."""
    saved = model.get_weights()
    loss, metric = loss_and_metric(Regime(label_smoothing=regime.label_smoothing))
    model.compile(optimizer=keras.optimizers.Adam(START), loss=loss, metrics=[metric])
    sweep = _Sweep(steps)
    with contextlib.redirect_stdout(io.StringIO()):
        model.fit(data.repeat(), steps_per_epoch=steps, epochs=1, callbacks=[sweep], verbose=0)
    model.set_weights(saved)
    rates, losses = sweep.rates[: len(sweep.losses)], sweep.losses
    return RangeTest(rates, losses, valley(rates, losses))


def valley(rates: list[float], losses: list[float]) -> float:
    """fastai's rule: within the longest run of falling loss, the rate two thirds of
    the way along it (or, with no fall at all, a tenth of the rate at the minimum)."""
    n = len(losses)
    if n < 3:
        return rates[0] * 10 if rates else 1e-3
    longest = [1] * n  # the longest decreasing sequence ending at each point
    end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[i] > longest[end]:
            end = i
    start = end - longest[end] + 1
    if longest[end] < 3:
        return rates[int(np.argmin(losses))] / 10
    third = (end - start) / 3
    return float(rates[start + int(third) + int(third / 2)])


def report(name: str, test: RangeTest) -> None:
    print(
        f"Learning-rate range test ({name}): {len(test.rates)} steps, suggested "
        f"{test.suggestion:.2g} (fastai's valley rule)",
        file=sys.stderr,
        flush=True,
    )
