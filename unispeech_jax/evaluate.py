r"""Evaluation of a trained workdir: mean losses, greedy-CTC phone error rate (PER; for
families with a CTC head, i.e. a `predict_fn`) and the task scores of scoring.py (SpeechT5
fine-tuning runs: asr WER/CER, tts and vc MCD and the ASR round trip, se MCD, STOI and the
ASR's CER/WER on the output and the noisy input, st BLEU/chrF, sid accuracy and EER).

    python -m unispeech_jax.evaluate --workdir runs/tiny --split test [--step N] [--data DIR]
    python -m unispeech_jax.evaluate --workdir runs/st5_asr [--beam 10 --ctc-weight 0.3]
    python -m unispeech_jax.evaluate --workdir runs/st5_tts --asr-workdir runs/st5_asr
    python -m unispeech_jax.evaluate --workdir runs/st5_vc --split train:heldout --asr-workdir A
    python -m unispeech_jax.evaluate --workdir runs/st5_sid --split train:heldout

prints the metrics and writes them to `<workdir>/eval_<split>.json` (`--step N`:
`eval_<split>_step<N>.json`; `--data DIR`: `eval_<split>_<DIR's name>[_step<N>].json`). The
config is the one the run saved (`<workdir>/config.json`), the parameters those of its
newest checkpoint (or of step N); `--data DIR` reads the split from the manifest folder DIR
instead of the run's data. Labels are always read through the vocabulary the workdir keeps
(data/workdir_vocab.py). Training calls the same `Evaluator` periodically on the
validation split. Loss metrics a split does not define are left out (sid on the test
split's unseen voices: no training speaker, so no loss, sid/ce nor sid/accuracy; eer is its
score).
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: hostmem may replace the process
    from unispeech_jax import hostmem

    hostmem.reexec_with_huge_pages()

import json
import logging
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app, flags
from absl import logging as absl_logging
from jax.experimental import multihost_utils

from unispeech_jax import checkpoint as checkpoint_lib
from unispeech_jax import config as config_lib
from unispeech_jax import decoding, inference, models, platforms, scoring, sharding
from unispeech_jax import metrics as metrics_lib
from unispeech_jax.data import pipeline, sources, workdir_vocab
from unispeech_jax.data import text as text_lib


class Evaluator:
    """Compiled eval functions for one model; `run` returns a dict of metrics for a split."""

    def __init__(self, config, family, module, mesh, logical_rules):
        self.config, self.mesh, self.rules = config, mesh, logical_rules
        # A fixed key: the eval masks (and so the eval contrastive loss) are the same every time.
        key = jax.random.key(config.seed + 1)
        self._loss = jax.jit(
            lambda p, s, b: models.loss_fn(family, module, p, s, b, key, jnp.int32(0), False)[1][0]
        )
        self._predict = None
        if hasattr(family, "predict_fn"):
            self.symbols = sources.vocab(config.data).symbols
            self.letters = config.data.labels == "ltr"  # labels spell words: WER too
            self._predict = jax.jit(lambda p, b: _greedy_ids(*family.predict_fn(module, p, b)))

    def run(self, params, split: str, max_batches: int = 0, model_state=None) -> dict[str, float]:
        """Weighted mean of every loss metric over `split` (and PER with a CTC head); each
        batch weighs its real rows, or the rows its loss counts (models.COUNTED_ROWS), and a
        split with none of those has no loss metrics.
        model_state: the family's non-trainable variables (SpeechT5: 'batch_stats')."""
        model_state = model_state or {}
        sums: dict[str, float] = {}
        total_weight = 0.0
        refs: list[str] = []
        hyps: list[str] = []
        batches = pipeline.make_eval_iter(
            self.config,
            split,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            for i, local in enumerate(batches):
                if max_batches and i >= max_batches:
                    break
                batch = sharding.global_batch(local, self.mesh)
                values = jax.device_get(self._loss(params, model_state, batch))
                weight = values.pop(models.COUNTED_ROWS, None)
                if weight is None:
                    weight = multihost_utils.process_allgather(batch["weight"], tiled=True).sum()
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * float(weight)
                total_weight += float(weight)
                if self._predict is None:
                    continue
                ids, lengths = self._predict(params, batch)
                got = multihost_utils.process_allgather(
                    {
                        "ids": ids,
                        "lengths": lengths,
                        "phones": batch["phones"],
                        "phones_mask": batch["phones_mask"],
                        "weight": batch["weight"],
                    },
                    tiled=True,
                )
                r, h = self._transcripts(got)
                refs += r
                hyps += h
        out = {k: v / total_weight for k, v in sums.items()} if total_weight > 0 else {}
        if sums and not out:  # e.g. sid on unseen voices: no class of the head to score
            logging.getLogger("unispeech_jax").info(
                "%s: no row the loss counts; its metrics (%s) are not applicable",
                split,
                ", ".join(sorted(sums)),
            )
        if refs:
            out["per"] = metrics_lib.error_rate(*(_units(lines) for lines in (refs, hyps)))
            out["examples"] = float(len(refs))
            if self.letters:
                words = [[text_lib.letter_words(line) for line in x] for x in (refs, hyps)]
                out["wer"] = metrics_lib.wer(*words)
        return out

    def _transcripts(self, got) -> tuple[list[str], list[str]]:
        """Label strings (word boundaries `|` kept) of the real examples of a batch."""
        refs, hyps = [], []
        for b in range(got["ids"].shape[0]):
            if got["weight"][b] <= 0 or not got["phones_mask"][b].any():
                continue
            ref = got["phones"][b][got["phones_mask"][b]]
            hyp = decoding.collapse_ctc(got["ids"][b][: got["lengths"][b]])
            refs.append(metrics_lib.ids_to_string(ref, self.symbols, ignore=()))
            hyps.append(metrics_lib.ids_to_string(hyp, self.symbols, ignore=()))
        return refs, hyps


def _units(lines: list[str]) -> list[str]:
    """Label strings without the word boundaries `|`: what PER counts."""
    return [" ".join(u for u in line.split() if u != "|") for line in lines]


def _greedy_ids(logits, valid):
    """Per-frame argmax on device (host only collapses): ([B,T] int32, [B] lengths)."""
    return jnp.argmax(logits, -1).astype(jnp.int32), valid.sum(-1).astype(jnp.int32)


def evaluate_workdir(
    workdir: str | pathlib.Path,
    split: str,
    max_batches: int = 0,
    step: int | None = None,
    data_dir: str | pathlib.Path | None = None,
    options: scoring.Options | None = None,
) -> dict[str, float]:
    """Loads a run's config and newest (or given) checkpoint and evaluates `split` (of the
    manifest folder `data_dir` if given), with the task scores of `options`' settings; writes
    `result_name(split, step, data_dir)`."""
    workdir = config_lib.writable_workdir(workdir, create=False)  # eval_<split>.json goes there
    config = config_lib.load_saved(workdir)
    if data_dir is not None:
        if not pathlib.Path(data_dir).is_dir():
            raise config_lib.ConfigError(f"--data {data_dir}: not a directory")
        config.data.source, config.data.manifest_dir = "manifest", str(data_dir)
        # The folder's own vocabulary files, checked against the ones the workdir keeps.
        config.data.vocab_path = config.data.sp_model = config.data.target_sp_model = ""
    config = workdir_vocab.pin(config, workdir, keep=False)
    family = models.get(config.model.name)
    module = family.build(config.model, family.vocab_size(config))
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.rules(config.mesh)
    with checkpoint_lib.Checkpoints(workdir, create=False) as ckpt:
        restored, state, _ = ckpt.restore_chosen(step)  # None: the newest that restores cleanly
    params, model_state = checkpoint_lib.variables(
        state, models.abstract_variables(family, module, config.data)
    )
    evaluator = Evaluator(config, family, module, mesh, rules)
    result = evaluator.run(params, split, max_batches=max_batches, model_state=model_state)
    result.update(
        scoring.score(
            workdir, config, params, model_state, restored, split, options or scoring.Options()
        )
    )
    result["step"] = float(restored)
    if jax.process_index() == 0:
        (workdir / result_name(split, step, data_dir)).write_text(
            json.dumps(result, indent=2, sort_keys=True)
        )
    return result


def result_name(split: str, step: int | None, data_dir=None) -> str:
    """eval_<split>[_<data folder name>][_step<N>].json: the default evaluation (the run's
    data, its newest checkpoint) keeps eval_<split>.json to itself."""
    data = f"_{pathlib.Path(data_dir).resolve().name}" if data_dir is not None else ""
    return f"eval_{split}{data}{f'_step{step}' if step is not None else ''}.json"


def _define_flags():
    """Command-line flags; defined only when this module is the program (train.py imports it)."""
    return (
        flags.DEFINE_string("workdir", None, "A training workdir."),
        flags.DEFINE_string(
            "split",
            "test",
            "Data split to evaluate (train/valid/test; train:heldout with data.heldout_fraction).",
        ),
        flags.DEFINE_integer(
            "max_batches", 0, "Stop after this many batches (0: all); task scores: 8x utterances."
        ),
        flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest)."),
        flags.DEFINE_string("data", None, "A manifest folder to score instead of the run's data."),
        flags.DEFINE_integer("beam", 1, "ASR/ST scores: beam width (1: greedy)."),
        flags.DEFINE_float("ctc-weight", 0.0, "ASR/ST scores: joint CTC/attention CTC weight."),
        flags.DEFINE_float("length-alpha", 0.0, "ASR/ST scores: hypothesis score / length^alpha."),
        flags.DEFINE_string(
            "asr-workdir", None, "TTS/VC/SE scores: an ASR workdir transcribing the output."
        ),
        flags.DEFINE_string("vocoder", None, "TTS/VC/SE audio: HiFi-GAN weights (Griffin-Lim)."),
    )


def main(overrides):
    platforms.skip_absent_accelerators()
    _WORKDIR, _SPLIT, _MAX_BATCHES, _STEP, _DATA, _BEAM, _CTC, _ALPHA, _ASR, _VOCODER = _FLAGS
    # force: app.run has already put absl's handler on the root logger (see train.py).
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax narrates every file it writes
    if overrides:  # the run's config.json is the config
        logging.error("evaluate takes no --config.KEY=VALUE overrides: %s", overrides)
        sys.exit(2)
    try:
        options = scoring.Options(
            inference.Decoding(_BEAM.value, _CTC.value, _ALPHA.value),
            _ASR.value,
            _VOCODER.value,
            limit=_MAX_BATCHES.value * scoring.Options.batch_size,
        )
        result = evaluate_workdir(
            _WORKDIR.value, _SPLIT.value, _MAX_BATCHES.value, _STEP.value, _DATA.value, options
        )
    except (
        config_lib.ConfigError,
        checkpoint_lib.CheckpointError,
        pipeline.DataError,
        inference.InputError,
    ) as e:
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(2)
    for k, v in sorted(result.items()):
        print(f"{k:>20s} {v:.4f}")
    if "per" in result:
        print(f"PER on {_SPLIT.value}: {100 * result['per']:.2f} %")


if __name__ == "__main__":
    _FLAGS = _define_flags()
    app.run(main, flags_parser=lambda argv: config_lib.parse_command_line(argv, ("workdir",)))
