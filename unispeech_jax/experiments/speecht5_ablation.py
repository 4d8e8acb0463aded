r"""SpeechT5's ablation in miniature: low-label ASR and TTS fine-tuned from joint pre-training,
from none, from pre-training without the cross-modal quantizer and from speech-only
pre-training (no text steps).

    python -m unispeech_jax.experiments.speecht5_ablation --workdir W [--scale full|micro]
        [--seeds 0,1,2] [--arms joint,none,...] [--pretrain-steps N] [--finetune-steps N]
        [--finetune-fraction F] [--hours H] [--set KEY=VALUE ...]

Pre-training arms (configs/speecht5_tiny.py on the eSpeak corpus of `--hours`):
  joint         the recipe: speech steps + text-infilling steps, both through the quantizer
  none          no pre-training: the fine-tunes start from scratch
  no_quantizer  model.vq_replace_prob=0 and model.diversity_loss_weight=0: no encoder output
                is replaced by its codeword and nothing trains the quantizer, so it has no
                effect on the model (the paper's "w/o joint pre-training")
  speech_only   data.text_ratio=0: speech steps only
Each arm is fine-tuned for ASR (configs/speecht5_asr_tiny.py; test CER/WER, greedy) and TTS
(configs/speecht5_tts_tiny.py; test MCD and the round-trip CER of the joint arm's ASR model
on the Griffin-Lim speech, the same judge for every arm) on `--finetune-fraction` of the
training sentences (`data.heldout_fraction` holds out the rest: low-label fine-tuning).
Frozen and warm-up updates keep each recipe's shares of the steps. `--arms` runs a subset (joint
always: it judges the round trip). `--set KEY=VALUE` overrides every run's config (after the
scale's).

Writes W/results.md (table, mean and range over seeds) and W/results.png (valid ASR
cross-entropy and TTS L1 during fine-tuning, mean over seeds). Workdirs:
W/pretrain/<arm>/seed<S>, W/asr/<arm>/seed<S>, W/tts/<arm>/seed<S>; a rerun skips every run
whose final checkpoint exists and resumes the others.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: hostmem may replace the process
    from unispeech_jax import hostmem

    hostmem.reexec_with_huge_pages()

import argparse
import dataclasses
import pathlib

from unispeech_jax import scoring
from unispeech_jax.experiments import arms as arms_lib
from unispeech_jax.experiments import micro_models


@dataclasses.dataclass(frozen=True)
class Scale:
    """Corpus size, steps, scoring sizes and config overrides of one experiment size."""

    hours: float
    pretrain_steps: int
    finetune_steps: int
    finetune_fraction: float
    eval_every: int
    asr_utterances: int  # test utterances scored (0: all)
    tts_utterances: int
    pretrain: tuple[str, ...] = ()  # overrides of the pre-training runs
    finetune: tuple[str, ...] = ()  # of the fine-tuning runs
    model: tuple[str, ...] = ()  # of both


SCALES = {
    "full": Scale(2.0, 1000, 500, 0.25, 100, 0, 32),
    # micro: the smallest corpus and a model of a few thousand parameters, for the tests.
    "micro": Scale(
        0.02,
        3,
        3,
        0.5,
        3,
        4,
        2,
        pretrain=(
            "data.max_sample_len=32000",
            "data.bucket_boundaries=(32000,)",
            "data.max_samples_per_batch=64000",
            "data.km_clusters=8",
            "data.text_bucket_boundaries=(128,)",
            "data.max_tokens_per_batch=512",
            "data.batch_multiple=2",
        ),
        finetune=(
            "data.max_sample_len=64000",
            "data.bucket_boundaries=(64000,)",
            "data.text_bucket_boundaries=(128,)",
            "data.max_samples_per_batch=128000",
            "data.batch_multiple=2",
        ),
        model=(*micro_models.SPEECHT5, "peak_flops_per_device=1e10"),
    ),
}
# The pre-training arms: overrides of configs/speecht5_tiny.py, None = no pre-training.
ARMS = {
    "joint": (),
    "none": None,
    "no_quantizer": ("model.vq_replace_prob=0.0", "model.diversity_loss_weight=0.0"),
    "speech_only": ("data.text_ratio=0.0",),
}
DESCRIPTION = {
    "joint": "speech + text, cross-modal quantizer",
    "none": "none (from scratch)",
    "no_quantizer": "speech + text, no quantizer",
    "speech_only": "speech only, quantizer",
}
TASK_CONFIGS = {"asr": "speecht5_asr_tiny.py", "tts": "speecht5_tts_tiny.py"}


def pretrain_config(s: Scale, arm: str, seed: int, extra):
    overrides = [f"seed={seed}", f"total_steps={s.pretrain_steps}", f"data.corpus.hours={s.hours}"]
    overrides += [f"eval_every={s.pretrain_steps}", "eval_max_batches=2"]
    overrides += [*s.pretrain, *s.model, *ARMS[arm]]
    return arms_lib.load_config("speecht5_tiny.py", overrides, extra=extra)


def finetune_config(s: Scale, task: str, seed: int, init_from: pathlib.Path | None, extra):
    overrides = [f"seed={seed}", f"data.corpus.hours={s.hours}", f"eval_every={s.eval_every}"]
    overrides += [f"data.heldout_fraction={1.0 - s.finetune_fraction}"]
    overrides += [*s.finetune, *s.model]
    if init_from is not None:
        overrides.append(f"init_from={str(init_from)!r}")
    return arms_lib.load_config(
        TASK_CONFIGS[task],
        arms_lib.steps_overrides(TASK_CONFIGS[task], s.finetune_steps) + overrides,
        extra=extra,
    )


def run(args) -> pathlib.Path:
    """Runs (or reuses) every arm and seed; writes and returns W/results.md."""
    s = arms_lib.scale_of(SCALES, args)
    workdir = pathlib.Path(args.workdir)
    # The teacher-forced test losses beside the decoded scores: a short fine-tune's greedy
    # decoding can sit at chance for every arm while its losses still order them.
    names = ("asr_cer", "asr_wer", "asr_ce", "tts_mcd", "tts_l1", "tts_roundtrip_cer")
    got = {arm: {n: [] for n in names} for arm in args.arms}
    curves = {task: {arm: [] for arm in args.arms} for task in TASK_CONFIGS}
    for seed in args.seeds:
        fine = {}
        for arm in args.arms:  # joint first: its ASR model judges every arm's TTS
            init_from = None
            if ARMS[arm] is not None:
                init_from = workdir / "pretrain" / arm / f"seed{seed}"
                arms_lib.train_arm(pretrain_config(s, arm, seed, args.set), init_from)
            for task in TASK_CONFIGS:
                fine[task, arm] = workdir / task / arm / f"seed{seed}"
                arms_lib.train_arm(
                    finetune_config(s, task, seed, init_from, args.set), fine[task, arm]
                )
                metric = "asr/ce" if task == "asr" else "tts/l1"
                curves[task][arm].append(arms_lib.curve(fine[task, arm], "valid", metric))
            asr = arms_lib.scores(fine["asr", arm], "test", scoring.Options(limit=s.asr_utterances))
            tts = arms_lib.scores(
                fine["tts", arm],
                "test",
                scoring.Options(asr_workdir=str(fine["asr", "joint"]), limit=s.tts_utterances),
            )
            values = (asr["cer"], asr["wer"], asr["asr/ce"])
            values += (tts["mcd"], tts["tts/l1"], tts["roundtrip_cer"])
            for name, value in zip(names, values):
                got[arm][name].append(value)
    results = workdir / "results.md"
    results.write_text(report(args, s, got))
    arms_lib.plot(
        [
            (label, {arm: arms_lib.mean_curve(c) for arm, c in curves[task].items()})
            for task, label in (("asr", "valid ASR cross-entropy"), ("tts", "valid TTS L1"))
        ],
        results.with_suffix(".png"),
    )
    return results


def report(args, s: Scale, got) -> str:
    """results.md: the setting and the table."""
    text = (
        "# SpeechT5 pre-training ablation: low-label ASR and TTS\n\n"
        f"eSpeak corpus {s.hours} h (en-us); {s.pretrain_steps} pre-training steps; "
        f"{s.finetune_steps} fine-tuning steps on {100 * s.finetune_fraction:g} % of the "
        f"training sentences; test: ASR {s.asr_utterances or 'all'} utterances, TTS "
        f"{s.tts_utterances or 'all'}; round trip judged by the joint arm's ASR model; scale "
        f"{args.scale}; seeds {args.seeds}. Mean (range) over seeds. CER/WER: greedy decoding; "
        "CE (nats per character) and L1 (before + after the post-net, per normalised mel bin): "
        "the test split teacher-forced.\n\n"
    )
    rows = [
        [
            arm,
            DESCRIPTION[arm],
            arms_lib.summary(v["asr_cer"], 100),
            arms_lib.summary(v["asr_wer"], 100),
            arms_lib.summary(v["asr_ce"], 1, 3),
            arms_lib.summary(v["tts_mcd"], 1, 2),
            arms_lib.summary(v["tts_l1"], 1, 3),
            arms_lib.summary(v["tts_roundtrip_cer"], 100),
        ]
        for arm, v in got.items()
    ]
    header = ["arm", "pre-training", "ASR CER %", "ASR WER %", "ASR CE"]
    header += ["TTS MCD dB", "TTS L1", "TTS round-trip CER %"]
    return text + arms_lib.markdown_table(header, rows)


def parser() -> argparse.ArgumentParser:
    p = arms_lib.base_parser(
        __spec__.name,
        "SpeechT5 pre-training ablation: arms, table and plot.",
        SCALES,
        list(ARMS),
        {"joint": "its ASR model judges every arm's TTS round trip"},
    )
    p.add_argument("--pretrain-steps", dest="pretrain_steps", type=int)
    p.add_argument("--finetune-steps", dest="finetune_steps", type=int)
    p.add_argument("--finetune-fraction", dest="finetune_fraction", type=float)
    p.add_argument("--hours", type=float)
    return p


if __name__ == "__main__":
    arms_lib.main(parser(), run)
