"""What the experiment drivers share: an arm is one training run of a config file in its own
workdir, skipped when that workdir already holds its final checkpoint (so a rerun, or a run
cut short, picks up where it stopped: train.py resumes an arm's own checkpoints); its scores
are `evaluate`'s `eval_<split>.json`, computed once; the results as a markdown table and a
matplotlib plot of the evaluation curves the runs logged.

    config = arms.load_config("tiny.py", ["total_steps=10", ...])
    ran = arms.train_arm(config, workdir)          # False: already done, skipped
    result = arms.scores(workdir, "test")          # dict of evaluate's metrics
    arms.plot(panels, path)                        # PNG of (step, value) curves per arm
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import pathlib
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from unispeech_jax import checkpoint as checkpoint_lib
from unispeech_jax import config as config_lib
from unispeech_jax import errors, evaluate, platforms, scoring
from unispeech_jax import train as train_lib
from unispeech_jax.data import pipeline

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
log = logging.getLogger("unispeech_jax")


def load_config(name: str, overrides: Sequence[str], extra: Sequence[str] = ()):
    """configs/<name> with `key=value` overrides (config.apply_overrides' syntax), then the
    user's `extra` ones."""
    config = config_lib.load_file(CONFIGS / name)
    return config_lib.apply_overrides(config, [*overrides, *extra])


def steps_overrides(name: str, steps: int) -> list[str]:
    """configs/<name> run for `steps` updates: total_steps, and its frozen and warm-up updates
    (optim.freeze_steps, optim.warmup_steps) scaled to keep their shares of the steps: the
    recipe, shortened (TTS's unscaled warm-up of 167 would fill over half of 300 updates;
    tri-stage schedules, ASR's and CTC's, ignore warmup_steps: their phases are shares)."""
    c = load_config(name, [])
    frozen, warmup = (
        round(n * steps / c.total_steps) for n in (c.optim.freeze_steps, c.optim.warmup_steps)
    )
    return [f"total_steps={steps}", f"optim.freeze_steps={frozen}", f"optim.warmup_steps={warmup}"]


def is_done(workdir: pathlib.Path, total_steps: int) -> bool:
    """Whether `workdir` holds the checkpoint of its last step (orbax renames a step's folder
    into place when it is complete)."""
    return (pathlib.Path(workdir) / "checkpoints" / str(total_steps)).is_dir()


class Stopped(Exception):
    """A run was stopped by a signal (its checkpoint saved): the driver must not go on to
    fine-tune from, or score, an unfinished run."""

    def __init__(self, workdir: pathlib.Path, result: dict):
        super().__init__(
            f"{workdir}: stopped by {result['stopped']} at step {result['step']}; running the "
            "same command again resumes it"
        )
        self.signal = result["stopped"]


def train_arm(config, workdir: pathlib.Path) -> bool:
    """Trains `config` in `workdir` unless it is done; True if it trained. Raises Stopped
    when a signal stopped the training."""
    if is_done(workdir, config.total_steps):
        log.info("%s: done (step %d), skipped", workdir, config.total_steps)
        return False
    log.info("%s: training to step %d", workdir, config.total_steps)
    result = train_lib.train(config, workdir)
    if result["stopped"]:
        raise Stopped(workdir, result)
    return True


def scores(
    workdir: pathlib.Path, split: str = "test", options: scoring.Options | None = None
) -> dict[str, float]:
    """`evaluate`'s metrics of the newest checkpoint of `workdir` on `split`, read from its
    eval_<split>.json when an earlier call wrote it."""
    path = pathlib.Path(workdir) / evaluate.result_name(split, None)
    if path.is_file():
        return json.loads(path.read_text())
    return evaluate.evaluate_workdir(workdir, split, options=options)


def curve(workdir: pathlib.Path, split: str, metric: str) -> list[tuple[int, float]]:
    """(step, value) of `metric` in the `split` rows of a workdir's metrics.jsonl."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    return [(r["step"], r[metric]) for r in rows if r["split"] == split and metric in r]


def mean_curve(curves: Sequence[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """The mean over seeds at the steps every curve has."""
    steps = sorted(set.intersection(*(set(dict(c)) for c in curves))) if curves else []
    return [(s, float(np.mean([dict(c)[s] for c in curves]))) for s in steps]


def summary(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    """'mean' for one value, 'mean (min-max, n seeds)' for several; values times `scale`."""
    v = np.asarray(values, float) * scale
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ({v.min():.{digits}f}-{v.max():.{digits}f}, {len(v)} seeds)"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows]) + "\n"


def plot(
    panels: Sequence[tuple[str, Mapping[str, list[tuple[int, float]]]]],
    path: pathlib.Path,
    xlabel: str = "fine-tuning step",
) -> None:
    """One subplot per (y label, {arm: [(step, value)]}) panel, written as a PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (ylabel, curves) in zip(axes[0], panels):
        for arm, points in curves.items():
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=arm)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def scale_of(scales, args: argparse.Namespace):
    """scales[args.scale] (a dataclass) with the fields the command line gives (not None)."""
    scale = scales[args.scale]
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(scale)}
    return dataclasses.replace(scale, **{k: v for k, v in given.items() if v is not None})


def seeds_argument(text: str) -> list[int]:
    """--seeds: comma-separated integers."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of seeds"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seed given")
    return seeds


def names_argument(
    known: Sequence[str], needed: Mapping[str, str] | None = None
) -> Callable[[str], list[str]]:
    """--arms: a comma-separated subset of `known`, kept in `known`'s order, that has every
    arm of `needed` ({arm: why it is needed})."""

    def parse(text: str) -> list[str]:
        names = {n.strip() for n in text.split(",") if n.strip()}
        if unknown := sorted(names - set(known)):
            raise argparse.ArgumentTypeError(
                f"unknown arm {', '.join(unknown)}; known: {', '.join(known)}"
            )
        if not names:
            raise argparse.ArgumentTypeError("no arm given")
        for name, why in (needed or {}).items():
            if name not in names:
                raise argparse.ArgumentTypeError(f"the {name} arm is needed: {why}")
        return [n for n in known if n in names]

    return parse


# Mistakes in what the user gave (config, workdirs, data): one line, not a traceback.
USER_ERRORS = (config_lib.ConfigError, checkpoint_lib.CheckpointError, pipeline.DataError)


def base_parser(
    module: str,
    description: str,
    scales,
    arm_names: Sequence[str],
    needed_arms: Mapping[str, str] | None = None,
) -> argparse.ArgumentParser:
    """The arguments every driver takes: --workdir, --scale (a key of `scales`), --seeds,
    --arms (a subset of `arm_names` with those of `needed_arms`; all by default), --set
    KEY=VALUE (overrides of every run's config); a bad one is one line, exit status 2."""
    p = errors.ArgumentParser(prog=f"python -m {module}", description=description)
    p.add_argument("--workdir", required=True)
    p.add_argument("--scale", choices=sorted(scales), default="full")
    p.add_argument("--seeds", type=seeds_argument, default=[0], help="e.g. 0,1,2")
    p.add_argument(
        "--arms",
        type=names_argument(arm_names, needed_arms),
        default=list(arm_names),
        help=f"a subset of {','.join(arm_names)} (default: all)",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return p


def main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], pathlib.Path]):
    """Parses the command line, runs the experiment and prints where its results are; a
    config, checkpoint or data mistake is one error line and exit status 2; a run stopped by
    SIGTERM/SIGINT (saved) ends the driver with one warning line, status 143/130."""
    args = parser.parse_args()
    platforms.skip_absent_accelerators()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax narrates every file it writes
    try:
        results = run(args)
    except USER_ERRORS as e:
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(2)
    except Stopped as e:  # the shell's status for death by that signal: a chain stops too
        logging.warning("%s", e)
        sys.exit(128 + getattr(signal, e.signal, signal.SIGTERM))
    print(results.read_text())
    print(f"written: {results} and {results.with_suffix('.png')}")
