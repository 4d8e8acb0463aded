"""Input pipeline: manifests / eSpeak corpus / TFDS -> bucketed, host-sharded numpy batches.

What train.py calls:

    it = make_train_iter(config, seed=s, process_index=i, process_count=n,
                         start_position=saved_position)     # infinite
    batch = next(it); it.position (JSON-able, save it with the checkpoint); it.stats
    for batch in make_eval_iter(config, "valid", process_index=i, process_count=n): ...

`config` is the run config (or only its data block). Batches follow docs/ARCHITECTURE.md
("Batches"): host-local numpy dicts with `audio`, `audio_mask`, `phones`, `phones_mask`,
`labelled`, `weight`. `audio` is padded to the batch's bucket length, `phones` always to
`max_label_len`, so shapes take a few static values. A SpeechT5 run config whose
`model.task` is a fine-tuning task gets that task's batches instead ("Task batches":
data/tasks.py, task_split.py, task_batches.py); `task_split`, `speaker_utterances` and
`dummy_task_batch` tell evaluators and model builders about them.

The parts, one file each in data/: `data_config` (the `config.data` keys, defaults, checks),
`sources` (the data folder of a source, the vocabularies), `manifest` (reading a split and its
label files), `audio` (reading one utterance), `batching` (bucketing, epoch plans, crops, the
rows of each host), `decode` (the tf.data decode/prefetch stage), `tfds_source` (streaming
TFDS), `text_batches` and `mixing` (SpeechT5's text batches and the speech/text mix), `stats`
(bad input: skip reasons, counters, `DataError`), `kmeans` (frame labels).

Every input problem is a counted skip or, with `strict=True`, a `DataError` naming the file,
the line and the problem (data/stats.py). With `crop=True` a labelled utterance longer than
`max_sample_len` is trained as unlabelled (its transcript does not match a crop); counted as
"labelled_cropped". `labelled_only=True` (CTC fine-tuning on the `labelled_fraction` subset)
trains on the labelled rows alone; it needs `crop=False`, so no labelled utterance turns
unlabelled.

Unlabelled data from elsewhere (manifest / eSpeak sources): `data.unlabelled_manifests` lists
more manifests (paths to `.tsv` files, same format, no label files read) whose utterances join
the training split with `labelled` 0 — UniSpeech's labelled + unlabelled pre-training, e.g.
transcribed speech of one domain and untranscribed speech of the target domain. Their rows go
through the same checks (counted under the same reasons, decode problems name their own
manifest and line); not with `labelled_only`, the SpeechT5 keys, or a TFDS source.

Training batches can be augmented (`data.augment_speed`, `augment_tilt_db`, `augment_bumps_db`,
`augment_reverb_prob`, `augment_noise_prob` and their folders; data/augment.py): each
utterance as read (after its crop, before normalisation and before the SpeechT5 mel target is
computed) is resampled, equalised, reverberated and mixed with noise by draws keyed on (seed,
epoch, utterance), so resuming repeats them. A slowed-down utterance is capped at its batch
row. Babble noise is made of a fixed reservoir of training utterances picked by the seed
(decode.with_babble); a TFDS stream has none and uses brown noise in its place.

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

from unispeech_jax.data import sources, task_batches, tasks
from unispeech_jax.data import text as text_lib
from unispeech_jax.data.batching import (
    BatchIterator,
    batch_rule,
    batch_size_for,
    epoch_plan,
    local_rows,
    parse_position,
    plan_batches,
)
from unispeech_jax.data.data_config import DataConfig, augment_of, resolve
from unispeech_jax.data.decode import (
    SpeechDecoder,
    planned_iterator,
    speech_batch_shapes,
    with_babble,
)
from unispeech_jax.data.manifest import load_split
from unispeech_jax.data.mixing import MixedIterator, mix
from unispeech_jax.data.stats import DataError, PipelineStats
from unispeech_jax.data.task_batches import TaskDecoder, planning_lengths
from unispeech_jax.data.task_split import TaskSplit, load_task_split
from unispeech_jax.data.text_batches import make_text_iter, text_batch_shapes
from unispeech_jax.data.tfds_source import tfds_iterator

logger = logging.getLogger(__name__)


def make_train_iter(
    config, *, seed: int, process_index: int = 0, process_count: int = 1, start_position=0
) -> BatchIterator:
    """Infinite iterator of host-local training batches (epochs reshuffled by seed+epoch).

    `config`: a run config (its `data` block, and `model` for a SpeechT5 fine-tuning task:
    then the task's batches, `_task_train_iter`) or just a data block (speech batches).
    `start_position`: 0 or an earlier `iterator.position`; the new iterator continues with
    exactly the batch the old one would have yielded next. With `data.text_ratio` > 0 the
    batches are SpeechT5's mix of speech and text-infilling batches (`_speech_and_text_iter`).
    """
    data_cfg, task = tasks.split_config(config)
    cfg = resolve(data_cfg, task and task.name)
    if task is not None:
        return _task_train_iter(
            cfg,
            task,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            start_position=start_position,
        )
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
        augment_of(cfg).folders()  # a bad noise/RIR folder: one line now, not in a reader
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
    if not len(split):
        raise DataError(f"{split.manifest}: no usable examples ({stats.as_dict()})")
    lengths = np.minimum(split.lengths, cfg.max_sample_len) if cfg.crop else split.lengths
    augment = with_babble(augment_of(cfg), split.paths, split.lengths, cfg, seed)
    return planned_train_iter(
        SpeechDecoder(split, cfg, seed, cfg.crop, augment),
        cfg,
        split.manifest,
        lengths,
        fingerprint_of=split.lengths,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        start_position=start_position,
        stats=stats,
    )


def train_batch_shapes(config) -> list[dict[str, tuple]]:
    """Every GLOBAL batch shape `make_train_iter(config)` can yield, without reading data:
    one {key: (shape, dtype)} per length bucket (a fine-tuning task's paired buckets, or the
    speech buckets and, with `data.text_ratio` > 0, SpeechT5's text buckets too). What the
    train step is compiled for, once each (unispeech_jax.aot compiles them ahead of time)."""
    data_cfg, task = tasks.split_config(config)
    cfg = resolve(data_cfg, task and task.name)
    if task is not None:
        spec = task_batches.outputs(task, _embedding_width(cfg, task), with_utterance=False)
        return [
            task_batches.batch_shapes(spec, cfg, task, batch_size_for(cfg, b), b)
            for b in cfg.bucket_boundaries
        ]
    shapes = [speech_batch_shapes(cfg, batch_size_for(cfg, b), b) for b in cfg.bucket_boundaries]
    if cfg.text_ratio > 0:
        shapes += [
            text_batch_shapes(batch_rule(cfg.max_tokens_per_batch, cfg.batch_multiple, w), w, True)
            for w in cfg.text_bucket_boundaries
        ]
    return shapes


def planned_train_iter(
    decoder,
    cfg: DataConfig,
    manifest: Path,
    lengths: np.ndarray,
    *,
    fingerprint_of: np.ndarray,
    seed: int,
    process_index: int,
    process_count: int,
    start_position,
    stats: PipelineStats,
) -> BatchIterator:
    """Infinite training batches of `decoder`'s examples, planned by their int64 [n] `lengths`
    (samples; data/batching.py), resumable from `start_position`. `fingerprint_of` (the
    examples' lengths as loaded) tells a resumed run whether the data changed."""
    size = lambda bl: batch_size_for(cfg, bl)
    local_rows(size(cfg.bucket_boundaries[0]), process_index, process_count)

    def plans(epoch):
        batches, dropped = epoch_plan(
            lengths, cfg.bucket_boundaries, size, seed=seed, epoch=epoch, shuffle=cfg.shuffle
        )
        if not batches:
            raise DataError(
                f"{manifest}: {len(lengths)} usable examples do not fill one "
                f"global batch of {size(cfg.max_sample_len)}"
            )
        stats.dropped_remainder += dropped
        return batches

    # The position remembers which data it indexes: resuming on changed data is possible
    # (the run continues) but no longer reproduces the uninterrupted run, so say so.
    fingerprint = f"{zlib.crc32(fingerprint_of.tobytes()) ^ zlib.crc32(str(seed).encode()):08x}"
    saved = start_position.get("data") if isinstance(start_position, Mapping) else None
    if saved not in (None, fingerprint):
        logger.warning(
            "%s changed since the position %s was saved: the resumed run does not "
            "repeat the uninterrupted one",
            manifest,
            start_position,
        )
    start = parse_position(start_position)
    batches = planned_iterator(
        decoder,
        cfg,
        plans,
        process_index=process_index,
        process_count=process_count,
        start=start,
        stats=stats,
        one_pass=False,
    )
    batches = ((b, dict(pos, data=fingerprint)) for b, pos in batches)
    return BatchIterator(
        batches, {"epoch": start[0], "batch": start[1], "data": fingerprint}, stats
    )


def make_eval_iter(
    config, split: str, *, process_index: int = 0, process_count: int = 1
) -> BatchIterator:
    """One deterministic pass over `split`: no crop, no length filter, every usable utterance
    exactly once across hosts; padding rows have weight 0. `config` as for `make_train_iter`;
    task batches add `utterance`, the example's index in `task_split(config, split)`."""
    data_cfg, task = tasks.split_config(config)
    cfg = resolve(data_cfg, task and task.name)
    stats = PipelineStats(cfg.strict)
    if task is not None:
        s, sp = _load_task_split(cfg, task, split, train=False, stats=stats)
        return planned_eval_iter(
            TaskDecoder(s, cfg, task, sp, 0, None, with_utterance=True),
            cfg,
            planning_lengths(cfg, s),
            process_index=process_index,
            process_count=process_count,
            stats=stats,
        )
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
    return planned_eval_iter(
        SpeechDecoder(s, cfg, 0, False, None),
        cfg,
        s.lengths,
        process_index=process_index,
        process_count=process_count,
        stats=stats,
    )


def planned_eval_iter(
    decoder,
    cfg: DataConfig,
    lengths: np.ndarray,
    *,
    process_index: int,
    process_count: int,
    stats: PipelineStats,
) -> BatchIterator:
    """One pass over `decoder`'s examples in order, planned by their int64 [n] `lengths`
    (samples), the last batch completed with weight-0 copies."""
    plan, _ = plan_batches(
        lengths,
        np.arange(len(lengths), dtype=np.int64),
        cfg.bucket_boundaries,
        lambda bl: batch_size_for(cfg, bl),
        pad_last=True,
    )
    for p in plan:
        local_rows(len(p.index), process_index, process_count)
    batches = planned_iterator(
        decoder,
        cfg,
        lambda epoch: plan,
        process_index=process_index,
        process_count=process_count,
        start=(0, 0),
        stats=stats,
        one_pass=True,
    )
    return BatchIterator(batches, {"epoch": 0, "batch": 0}, stats, num_batches=len(plan))


def _task_train_iter(
    cfg: DataConfig,
    task: tasks.TaskSpec,
    *,
    seed: int,
    process_index: int,
    process_count: int,
    start_position,
) -> BatchIterator:
    """Training batches of a fine-tuning task (docs/ARCHITECTURE.md, "Task batches")."""
    stats = PipelineStats(cfg.strict)
    s, sp = _load_task_split(cfg, task, cfg.train_split, train=True, stats=stats)
    lengths = planning_lengths(cfg, s)
    augment = with_babble(augment_of(cfg), s.audio_paths, s.audio_lengths, cfg, seed)
    return planned_train_iter(
        TaskDecoder(s, cfg, task, sp, seed, augment, with_utterance=False),
        cfg,
        s.manifest,
        lengths,
        fingerprint_of=lengths,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        start_position=start_position,
        stats=stats,
    )


def _load_task_split(
    cfg: DataConfig, task: tasks.TaskSpec, split: str, *, train: bool, stats: PipelineStats
) -> tuple[TaskSplit, object]:
    """(the task's examples of `split`, the SentencePiece processor of its text or None)."""
    sp = None
    if task.name in tasks.TEXT:
        sp = text_lib.load_sp(sources.task_sentencepiece_model(cfg, task.name))
    data_dir = sources.resolve_data_dir(cfg)
    s = load_task_split(data_dir, split, cfg, task, sp, train=train, stats=stats)
    if not len(s):
        raise DataError(f"{s.manifest}: no usable {task.name} examples ({stats.as_dict()})")
    return s, sp


def task_split(config, split: str) -> TaskSplit:
    """The examples `make_eval_iter(config, split)` yields, in its `utterance` numbering: their
    audio and target paths, reference texts and (target) speaker names, for the metrics."""
    data_cfg, task = tasks.split_config(config)
    if task is None:
        raise DataError("task_split: the config has no SpeechT5 fine-tuning model.task")
    cfg = resolve(data_cfg, task.name)
    return _load_task_split(cfg, task, split, train=False, stats=PipelineStats(cfg.strict))[0]


def speaker_utterances(config, split: str) -> list[tuple[int, str]]:
    """(utterance, speaker name) of every example of `split`: the trials of speaker
    verification are pairs of them (the test split's speakers are not training speakers, so
    their `speaker` index is -1 and only the names tell them apart)."""
    return list(enumerate(task_split(config, split).speaker_names))


def dummy_task_batch(config) -> dict[str, np.ndarray]:
    """A padding batch of the run config's task in its largest training bucket (global
    batch): the keys, dtypes and shapes to initialise a model with."""
    data_cfg, task = tasks.split_config(config)
    if task is None:
        raise DataError("dummy_task_batch: the config has no SpeechT5 fine-tuning model.task")
    cfg = resolve(data_cfg, task.name)
    return task_batches.dummy_batch(cfg, task, _embedding_width(cfg, task))


def _embedding_width(cfg: DataConfig, task: tasks.TaskSpec) -> int:
    """Width of the task batches' `speaker_embedding` (0: the batches have none)."""
    return task.speaker_embedding_dim if cfg.speaker_embeddings and task.name in tasks.MEL else 0


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
