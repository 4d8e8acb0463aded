"""Interleaving batch iterators in a fixed ratio (SpeechT5's speech + text pre-training, or
several speech data sets), resumable from one position."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class MixedIterator:
    """Interleaves batches of several iterators in a fixed ratio (smooth weighted round robin:
    over any window the counts differ from the ratio by less than one batch per source).
    `names` label the sources in `stats()` (default "0", "1", ...)."""

    def __init__(
        self,
        iterators: Sequence,
        weights: Sequence[float],
        seed: int,
        start_position=None,
        names: Sequence[str] | None = None,
    ):
        if len(iterators) != len(weights) or not iterators:
            raise ValueError("mix: need one weight per iterator")
        self._names = [str(i) for i in range(len(iterators))] if names is None else list(names)
        w = np.asarray(weights, np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"mix: bad weights {weights}")
        self._iterators = list(iterators)
        self._weights = w / w.sum()
        if start_position:
            self._step = int(start_position["step"])
            self._credits = np.asarray(start_position["credits"], np.float64)
        else:  # the seed only breaks ties between equal weights
            self._step = 0
            self._credits = np.random.default_rng([seed, 0x313]).uniform(0, 1e-6, len(w))
        self.last_source = -1

    def __iter__(self):
        return self

    def __next__(self):
        credits = self._credits + self._weights
        j = int(np.argmax(credits))
        credits[j] -= 1.0
        batch = next(self._iterators[j])
        self._credits, self._step, self.last_source = credits, self._step + 1, j
        return batch

    @property
    def position(self) -> dict:
        """{"step", "credits", "children": [child positions]}; resume the children from
        "children" and pass the whole dict as `mix(..., start_position=)`."""
        return {
            "step": self._step,
            "credits": [float(c) for c in self._credits],
            "children": [getattr(it, "position", None) for it in self._iterators],
        }

    def close(self) -> None:
        """Closes every source that can be closed (see BatchIterator.close)."""
        for it in self._iterators:
            if hasattr(it, "close"):
                it.close()

    def stats(self) -> dict[str, float]:
        """The counters of every source that has them, as "<name>/<counter>"."""
        return {
            f"{name}/{k}": v
            for name, it in zip(self._names, self._iterators)
            if getattr(it, "stats", None) is not None
            for k, v in it.stats().items()
        }


def mix(
    iterators: Sequence,
    weights: Sequence[float],
    seed: int = 0,
    start_position=None,
    names: Sequence[str] | None = None,
) -> MixedIterator:
    """Deterministic interleaving of batch iterators by `weights` (see MixedIterator)."""
    return MixedIterator(iterators, weights, seed, start_position, names)
