"""Bad input: the `DataError` of strict mode, the skip / filter reasons and their counters.

Every input problem is either a counted skip (default) or, with `data.strict=True`, a
`DataError` naming the file, the line and the problem. Never a silent wrong example.
Checked when a split is loaded (data/manifest.py: cheap, whole split, same counts on every
host): malformed manifest lines, audio files that do not exist, `num_samples` == 0, label
files whose line count differs from the manifest (the alignment is unknown, so ALL rows of the
split are skipped), empty or non-UTF-8 transcripts, phones not in the vocabulary. Checked when
the audio is decoded (data/audio.py, host-local counts): unreadable or truncated files, a
sample rate other than `sample_rate`, more than one channel, a frame count that disagrees with
the manifest, non-finite samples. A row that fails at decode time stays in its batch (shapes
and host agreement depend on it) as a weight-0 copy of a good row of the same batch (data/
decode.py). Each reason is logged once, with the first file, then only counted (`it.stats`).
Length filters are not errors, they are counted as "filtered": shorter than `min_sample_len`,
longer than `max_sample_len` when `crop=False`, more than `max_label_len` phones. A row the
length filters drop is never decoded, so its file's header (no samples read) is checked
against the manifest's claim when the split is loaded: a row that lies about its length is a
`length_mismatch` skip there too, never "filtered". With
`crop=True` a labelled utterance longer than `max_sample_len` is trained as UNLABELLED (its
transcript does not match a crop); counted as "labelled_cropped".
"""

from __future__ import annotations

import collections
import logging
import threading

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad input data (strict mode) or an unusable data configuration; the message names the
    file and line, or the `data.` key."""


# Reasons an example is skipped (bad data) or filtered (fine data outside the configured range).
SKIP_REASONS = (
    "bad_manifest_line",
    "missing_audio",
    "empty_audio",
    "label_count_mismatch",
    "empty_transcript",
    "non_utf8_transcript",
    "unknown_phone",
    "unreadable",
    "truncated",
    "wrong_sample_rate",
    "multi_channel",
    "length_mismatch",
    "non_finite",
    "bad_km_labels",
    "km_length_mismatch",
    "empty_speaker",
    "bad_xvector",
)
FILTER_REASONS = ("too_short", "too_long", "label_too_long")


class PipelineStats:
    """Counters of one iterator; `as_dict()` is what train.py logs.

    Split-level counts (from loading the manifest) cover the whole split and are the same on
    every host; decode-level counts cover the examples this host decoded.
    """

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.skipped: collections.Counter = collections.Counter()
        self.filtered: collections.Counter = collections.Counter()
        self.cropped = 0  # examples cropped to max_sample_len when decoded
        self.labelled_cropped = 0  # labelled utterances trained as unlabelled (crop)
        self.dropped_remainder = 0  # examples left out of an epoch's last partial batch
        self.examples = 0  # real (weight 1) examples yielded
        self.batches = 0
        self.audio_samples = 0  # real samples yielded
        self.padded_samples = 0  # total samples yielded (real + padding)
        self._first: dict[str, str] = {}
        self._lock = threading.Lock()

    def problem(self, reason: str, where: str, detail: str = "", *, filtered=False) -> None:
        """Records one skipped/filtered example; raises DataError for a skip in strict mode."""
        message = f"{where}: {reason}" + (f" ({detail})" if detail else "")
        if self.strict and not filtered:
            raise DataError(message)
        with self._lock:
            counter = self.filtered if filtered else self.skipped
            counter[reason] += 1
            first = reason not in self._first
            if first:
                self._first[reason] = where
        if first:
            logger.warning(
                "%s example: %s; further ones are only counted",
                "filtering" if filtered else "skipping",
                message,
            )

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.audio_samples / self.padded_samples if self.padded_samples else 0.0

    def __call__(self) -> dict[str, float]:
        """`it.stats()` == `it.stats.as_dict()`."""
        return self.as_dict()

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {f"skipped/{k}": v for k, v in sorted(self.skipped.items())}
        out.update({f"filtered/{k}": v for k, v in sorted(self.filtered.items())})
        out.update(
            skipped=sum(self.skipped.values()),
            filtered=sum(self.filtered.values()),
            cropped=self.cropped,
            labelled_cropped=self.labelled_cropped,
            dropped_remainder=self.dropped_remainder,
            examples=self.examples,
            batches=self.batches,
            padding_fraction=self.padding_fraction,
        )
        return out


# ============================================================================ data dir, vocab
