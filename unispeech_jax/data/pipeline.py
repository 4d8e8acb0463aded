"""Input pipeline: manifests / eSpeak corpus / TFDS -> bucketed, host-sharded numpy batches.

What train.py calls:

    it = make_train_iter(config.data, seed=s, process_index=i, process_count=n,
                         start_position=saved_position)     # infinite
    batch = next(it); it.position (JSON-able, save it with the checkpoint); it.stats
    for batch in make_eval_iter(config.data, "valid", process_index=i, process_count=n): ...

Batches follow docs/ARCHITECTURE.md ("Batches"): host-local numpy dicts with `audio`,
`audio_mask`, `phones`, `phones_mask`, `labelled`, `weight`. `audio` is padded to the batch's
bucket length, `phones` always to `max_label_len`, so shapes take a few static values.

The parts, one file each in data/: `data_config` (the `config.data` keys, defaults, checks),
`sources` (the data folder of a source, the vocabularies), `manifest` (reading a split and its
label files), `audio` (reading one utterance), `batching` (bucketing, epoch plans, crops, the
rows of each host), `decode` (the tf.data decode/prefetch stage), `tfds_source` (streaming
TFDS), `text_batches` and `mixing` (SpeechT5's text batches and the speech/text mix), `stats`
(bad input: skip reasons, counters, `DataError`), `kmeans` (frame labels).

Every input problem is a counted skip or, with `strict=True`, a `DataError` naming the file,
the line and the problem (data/stats.py). `labelled_only=True` (CTC fine-tuning on the
`labelled_fraction` subset) trains on the labelled rows alone; it needs `crop=False`, so no
labelled utterance turns unlabelled.

transcript does not match a crop); counted as "labelled_cropped". `labelled_only=True` (CTC
fine-tuning on the `labelled_fraction` subset) trains on the labelled rows alone; it needs
`crop=False`, so no labelled utterance turns unlabelled.

Unlabelled data from elsewhere (manifest / eSpeak sources): `data.unlabelled_manifests` lists
more manifests (paths to `.tsv` files, same format, no label files read) whose utterances join
the training split with `labelled` 0 — UniSpeech's labelled + unlabelled pre-training, e.g.
transcribed speech of one domain and untranscribed speech of the target domain. Their rows go
through the same checks (counted under the same reasons, decode problems name their own
manifest and line); not with `labelled_only`, the SpeechT5 keys, or a TFDS source.

Training batches can be augmented (`data.augment_speed`, `augment_tilt_db`, `augment_bumps_db`;
data/augment.py): each utterance as read (after its crop, before normalisation and before the
SpeechT5 mel target is computed) is resampled and equalised by draws keyed on (seed, epoch,
utterance), so resuming repeats them. A slowed-down utterance is capped at its batch row.

Evaluation never crops or drops: utterances longer than the largest bucket go to extra
buckets that are multiples of it, and the last batch is completed with weight-0 copies so that
every host yields the same number of batches and every utterance is seen exactly once.

SpeechT5 (manifest / eSpeak sources). Speech batches can carry more keys (docs/ARCHITECTURE.md):
`data.km_labels='km'` adds the frame labels `km` [B, T] + `km_mask` from <split>.km (written by
`python -m unispeech_jax.tools.kmeans_labels`; in `data.km_dir` if set), one id per 20 ms conv
frame; a row whose label count is not `conv_frames(num_samples)` is skipped at load time
("km_length_mismatch"), and crops then start on a multiple of the 320-sample hop so that the
crop's labels are a slice of the utterance's. `data.log_mel=True` adds the SpeechT5 log-mel
target `mel` [B, F, 80] + `mel_mask` (data/features.py, computed by the decoding function from
each utterance's own samples, before normalisation). `data.speakers=True` adds `speaker` [B],
the index of the <split>.spk name among the sorted names of the train split (-1 if the speaker
is not a training speaker, as for held-out voices). Text batches come from `make_text_iter`
(with `infill=True`: BART-noised `text_source`); `mix` interleaves the two kinds.
For joint pre-training, `data.km_clusters=k` (with `km_dir` '') makes MFCC k-means labels on
first use, cached in <data dir>/km<k>, and `data.text_ratio=r` makes `make_train_iter` yield
text-infilling batches (of `data.text_file`, default <data dir>/<train_split>.wrd, tokenised
by `sources.sentencepiece_model`) for a fraction r of the steps, resumable from its position.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from unispeech_jax.data import sources
from unispeech_jax.data.batching import (
    BatchIterator,
    batch_size_for,
    epoch_plan,
    local_rows,
    parse_position,
    plan_batches,
)
from unispeech_jax.data.data_config import DataConfig, augment_of, resolve
from unispeech_jax.data.decode import planned_iterator
from unispeech_jax.data.manifest import load_split
from unispeech_jax.data.mixing import MixedIterator, mix
from unispeech_jax.data.stats import DataError, PipelineStats
from unispeech_jax.data.text_batches import make_text_iter
from unispeech_jax.data.tfds_source import tfds_iterator

logger = logging.getLogger(__name__)


def make_train_iter(
    data_cfg, *, seed: int, process_index: int = 0, process_count: int = 1, start_position=0
) -> BatchIterator:
    """Infinite iterator of host-local training batches (epochs reshuffled by seed+epoch).

    `start_position`: 0 or an earlier `iterator.position`; the new iterator continues with
    exactly the batch the old one would have yielded next. With `data.text_ratio` > 0 the
    batches are SpeechT5's mix of speech and text-infilling batches (`_speech_and_text_iter`).
    """
    cfg = resolve(data_cfg)
    if cfg.text_ratio > 0:
        return _speech_and_text_iter(
            cfg,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            start_position=start_position,
        )
    stats = PipelineStats(cfg.strict)
    start = parse_position(start_position)
    if cfg.source == "tfds":
        return tfds_iterator(
            cfg,
            cfg.train_split,
            train=True,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            start=start,
            stats=stats,
        )
    data_dir = sources.resolve_data_dir(cfg)
    sources.ensure_km_labels(cfg, data_dir)
    use_labels = bool(cfg.labels) and cfg.labelled_fraction > 0
    split = load_split(
        data_dir,
        cfg.train_split,
        cfg,
        vocabulary=sources.vocab(cfg) if use_labels else None,
        with_labels=use_labels,
        labelled_fraction=cfg.labelled_fraction,
        labelled_only=cfg.labelled_only,
        seed=seed,
        stats=stats,
    )
    for path in cfg.unlabelled_manifests:
        path = Path(path)
        if path.suffix != ".tsv":
            raise DataError(f"data.unlabelled_manifests: {path} is not a .tsv manifest")
        split = split.appended(
            load_split(
                path.parent,
                path.stem,
                cfg,
                vocabulary=None,
                with_labels=False,
                seed=seed,
                stats=stats,
            )
        )
    if cfg.unlabelled_manifests:
        logger.info(
            "training split: %d utterances, %d of them labelled (%d manifests)",
            len(split),
            int(split.labelled.sum()),
            1 + len(cfg.unlabelled_manifests),
        )
    size = lambda bl: batch_size_for(cfg, bl)
    if not len(split):
        raise DataError(f"{split.manifest}: no usable examples ({stats.as_dict()})")
    local_rows(size(cfg.bucket_boundaries[0]), process_index, process_count)

    lengths = np.minimum(split.lengths, cfg.max_sample_len) if cfg.crop else split.lengths

    def plans(epoch):
        batches, dropped = epoch_plan(
            lengths, cfg.bucket_boundaries, size, seed=seed, epoch=epoch, shuffle=cfg.shuffle
        )
        if not batches:
            raise DataError(
                f"{split.manifest}: {len(split)} usable examples do not fill one "
                f"global batch of {size(cfg.max_sample_len)}"
            )
        stats.dropped_remainder += dropped
        return batches

    # The position remembers which data it indexes: resuming on changed data is possible
    # (the run continues) but no longer reproduces the uninterrupted run, so say so.
    fingerprint = f"{zlib.crc32(split.lengths.tobytes()) ^ zlib.crc32(str(seed).encode()):08x}"
    saved = start_position.get("data") if isinstance(start_position, Mapping) else None
    if saved not in (None, fingerprint):
        logger.warning(
            "%s changed since the position %s was saved: the resumed run does not "
            "repeat the uninterrupted one",
            split.manifest,
            start_position,
        )
    batches = planned_iterator(
        split,
        cfg,
        plans,
        seed=seed,
        crop=cfg.crop,
        process_index=process_index,
        process_count=process_count,
        start=start,
        stats=stats,
        one_pass=False,
        augment=augment_of(cfg),
    )
    batches = ((b, dict(pos, data=fingerprint)) for b, pos in batches)
    return BatchIterator(
        batches, {"epoch": start[0], "batch": start[1], "data": fingerprint}, stats
    )


def make_eval_iter(
    data_cfg, split: str, *, process_index: int = 0, process_count: int = 1
) -> BatchIterator:
    """One deterministic pass over `split`: no crop, no length filter, every usable utterance
    exactly once across hosts; padding rows have weight 0."""
    cfg = resolve(data_cfg)
    stats = PipelineStats(cfg.strict)
    if cfg.source == "tfds":
        return tfds_iterator(
            cfg,
            split,
            train=False,
            seed=0,
            process_index=process_index,
            process_count=process_count,
            start=(0, 0),
            stats=stats,
        )
    data_dir = sources.resolve_data_dir(cfg)
    sources.ensure_km_labels(cfg, data_dir)
    use_labels = bool(cfg.labels)
    s = load_split(
        data_dir,
        split,
        cfg,
        vocabulary=sources.vocab(cfg) if use_labels else None,
        with_labels=use_labels,
        labelled_fraction=1.0,
        crop=False,
        filter_short=False,
        stats=stats,
    )
    if not len(s):
        raise DataError(f"{s.manifest}: no usable examples ({stats.as_dict()})")
    plan, _ = plan_batches(
        s.lengths,
        np.arange(len(s), dtype=np.int64),
        cfg.bucket_boundaries,
        lambda bl: batch_size_for(cfg, bl),
        pad_last=True,
    )
    for p in plan:
        local_rows(len(p.index), process_index, process_count)
    batches = planned_iterator(
        s,
        cfg,
        lambda epoch: plan,
        seed=0,
        crop=False,
        process_index=process_index,
        process_count=process_count,
        start=(0, 0),
        stats=stats,
        one_pass=True,
    )
    return BatchIterator(batches, {"epoch": 0, "batch": 0}, stats, num_batches=len(plan))


# ============================================================================ TFDS (streaming)


def make_mixed_train_iter(
    data_cfgs: Sequence,
    weights: Sequence[float],
    *,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    start_position=None,
) -> MixedIterator:
    """`mix` over `make_train_iter` of several data configs, resumable from one position."""
    children = (start_position or {}).get("children") or [0] * len(data_cfgs)
    its = [
        make_train_iter(
            c,
            seed=seed + 1000 * k,
            process_index=process_index,
            process_count=process_count,
            start_position=p,
        )
        for k, (c, p) in enumerate(zip(data_cfgs, children))
    ]
    return mix(its, weights, seed, start_position)


def _speech_and_text_iter(
    cfg: DataConfig, *, seed: int, process_index: int, process_count: int, start_position
) -> MixedIterator:
    """SpeechT5 joint pre-training input: the speech batches of `cfg` and text-infilling batches
    of `data.text_file` (default the train split's .wrd), a fraction `data.text_ratio` of them
    text. Resumes from the position of an earlier one (its "children" are the sources')."""
    resume = isinstance(start_position, Mapping) and "children" in start_position
    children = start_position["children"] if resume else [0, 0]
    speech = make_train_iter(
        dataclasses.replace(cfg, text_ratio=0.0),
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        start_position=children[0],
    )
    text_file = cfg.text_file or sources.resolve_data_dir(cfg) / f"{cfg.train_split}.wrd"
    text = make_text_iter(
        text_file,
        sources.sentencepiece_model(cfg),
        seed=seed + 1000,
        process_index=process_index,
        process_count=process_count,
        start_position=children[1],
        bucket_boundaries=cfg.text_bucket_boundaries,
        max_tokens_per_batch=cfg.max_tokens_per_batch,
        batch_multiple=cfg.batch_multiple,
        strict=cfg.strict,
        infill=True,
    )
    return mix(
        [speech, text],
        [1.0 - cfg.text_ratio, cfg.text_ratio],
        seed,
        start_position if resume else None,
        names=("speech", "text"),
    )


# ============================================================================ text only
