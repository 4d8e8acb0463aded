"""What a training run shows and keeps of its progress: the console's progress bar (log
lines are written above it, never glued onto it), TensorBoard, metrics.jsonl, and the
closing line. Process 0 only.

The bar's rate and ETA leave out the steps that compiled the train step (one per new batch
shape) and the evaluations: counted in, the first step's compile made the ETA after step 1
tens of hours. MFU is quoted against one per-device ceiling named in the log at start-up;
a value above 1 (a ceiling measured under load) is marked `!` and explained once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pathlib
import sys
import time

import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("unispeech_jax")

# Train metrics on the bar, with their units where the name alone would mislead: `ctc` is
# the CTC loss summed over an utterance's labels (nats per labelled utterance), while the
# pre-training `loss` is per masked frame.
SHOWN = {
    "loss": "loss",
    "ctc": "ctc/utt",
    "contrastive": "contrastive",
    "code_perplexity": "code_perplexity",
    "speech/mlm": "speech/mlm",
    "speech/l1": "speech/l1",
    "text/mle": "text/mle",
    "asr/ce": "asr/ce",
    "tts/l1": "tts/l1",
    "audio_s_per_s": "audio_s_per_s",
    "mfu": "mfu",
}
# Eval metrics named in the closing line, when present.
SUMMARY = ("per", "wer", "cer", "bleu", "accuracy", "loss")


def postfix(metrics: dict[str, float]) -> dict[str, str]:
    """The bar's `name=value` pairs of `metrics`; an MFU above 1 is marked `!`."""
    shown = {SHOWN[k]: f"{metrics[k]:.3g}" for k in SHOWN if k in metrics}
    if metrics.get("mfu", 0.0) > 1.0:
        shown["mfu"] += "!"
    return shown


class MetricLog:
    """Console progress bar, TensorBoard and a metrics.jsonl file; process 0 only.

    peak_flops: the per-device FLOP/s that `mfu` is relative to; `measured`: whether it was
    measured at start-up (perf.matmul_ceiling) rather than given (peak_flops_per_device).
    """

    def __init__(
        self,
        workdir: pathlib.Path,
        total_steps: int,
        start_step: int,
        start_time: float,
        active: bool,
        peak_flops: float,
        measured: bool,
    ):
        self.start, self.active = start_time, active
        self.peak_flops, self.measured = peak_flops, measured
        self.warned_mfu = False
        if not self.active:
            return
        import tensorflow as tf  # TensorBoard writer; tf is already a dependency for tf.data.

        log.info(
            "mfu: model FLOPs / (devices x %.3g FLOP/s, %s)",
            peak_flops,
            "the float32 matmul ceiling measured at start-up"
            if measured
            else "config.peak_flops_per_device",
        )
        self.writer = tf.summary.create_file_writer(str(workdir / "tensorboard"))
        self.tf = tf
        trim_metrics(workdir / "metrics.jsonl", start_step)
        self.jsonl = open(workdir / "metrics.jsonl", "a")
        self.bar = tqdm.tqdm(
            total=total_steps,
            initial=start_step,
            dynamic_ncols=True,
            desc="train",
            file=sys.stdout,
            mininterval=1.0,
        )
        # Log records go through the bar's writer: each on its own line above the bar.
        self.redirect = contextlib.ExitStack()
        self.redirect.enter_context(logging_redirect_tqdm())

    def write(self, step: int, metrics: dict[str, float], prefix: str = "train"):
        if not self.active:
            return
        with self.writer.as_default():
            for k, v in metrics.items():
                self.tf.summary.scalar(f"{prefix}/{k}", v, step=step)
        self.writer.flush()
        # wall_min: minutes since this process entered train(), set-up and compiles included.
        wall_min = (time.perf_counter() - self.start) / 60.0
        record = {"step": step, "split": prefix, "wall_min": round(wall_min, 3), **metrics}
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        if prefix == "train":
            self.bar.set_postfix(postfix(metrics), refresh=False)
            if metrics.get("mfu", 0.0) > 1.0 and not self.warned_mfu:
                self.warned_mfu = True
                log.warning(
                    "mfu %.2f > 1 (marked !): the ceiling of %.3g FLOP/s per device %s; "
                    "set peak_flops_per_device to the hardware's",
                    metrics["mfu"],
                    self.peak_flops,
                    "was measured at start-up under other load, so it is low"
                    if self.measured
                    else "(config.peak_flops_per_device) is below what the run reaches",
                )
        else:
            self.bar.write(
                f"step {step} {prefix}: "
                + " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
            )

    def advance(self, compiled: bool = False):
        """One step done; `compiled`: it built the train step, so its time is left out."""
        if not self.active:
            return
        if compiled:
            self.leave_out_elapsed()
        self.bar.update(1)
        if compiled:
            self.bar.last_print_n = self.bar.n

    def leave_out_elapsed(self):
        """Leaves the time since the bar last moved (a compile, an evaluation) out of its rate
        and ETA."""
        if self.active:
            self.bar.unpause()
            self.bar.last_print_n = self.bar.n

    def close(self):
        if self.active:
            self.redirect.close()
            self.bar.close()
            self.jsonl.close()
            self.writer.close()


def trim_metrics(path: pathlib.Path, step: int):
    """Keeps the complete records of steps <= `step` in a metrics.jsonl.

    A run killed mid-write leaves a cut last line, and the steps after its last checkpoint
    are trained (and logged) again by the resumed run; both would corrupt the log.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if line.endswith("\n") and record["step"] <= step:
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


def closing_line(
    workdir: pathlib.Path,
    result: dict,
    start_step: int,
    total_steps: int,
    eval_split: str,
    minutes: float,
) -> str:
    """The run's last line: where it stopped and why, what was saved where, the last eval.

    result: `train.train`'s {'step', 'saved', 'stopped', 'eval', ...}.
    """
    step = result["step"]
    if step == start_step:
        return f"nothing to train: {workdir} is at step {step} of {total_steps}"
    if result["stopped"]:
        how = f"stopped by {result['stopped']}"
    else:
        how = "finished" if step == total_steps else "stopped as asked (--stop_at)"
    parts = [f"{how} at step {step} of {total_steps} after {minutes:.1f} min"]
    if result["saved"] is not None:
        parts.append(f"checkpoint step {result['saved']} in {workdir / 'checkpoints'}")
    if step < total_steps:
        parts.append("the same command resumes")
    shown = [f"{k}={result['eval'][k]:.4g}" for k in SUMMARY if k in result["eval"]]
    if shown:
        parts.append(f"last eval ({eval_split}, step {result['eval_step']}): {' '.join(shown)}")
    parts.append(f"metrics in {workdir / 'metrics.jsonl'} and {workdir / 'tensorboard'}")
    return "; ".join(parts)
