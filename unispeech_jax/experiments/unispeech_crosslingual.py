r"""UniSpeech's cross-lingual claim in miniature: labelled high-resource speech (en-us) plus
untranscribed target-language speech, then a few minutes of target labels, against CTC on
the target alone, CTC transfer and contrastive-only pre-training; target phone error rate.

    python -m unispeech_jax.experiments.unispeech_crosslingual --workdir W [--scale full|micro]
        [--target de] [--seeds 0,1,2] [--arms ctc_target,...] [--grid] [--pretrain-steps N]
        [--finetune-steps N] [--source-hours H] [--target-hours H] [--labelled-minutes M]
        [--set KEY=VALUE ...]

Data (data/corpus.py, generated on first use and cached): en-us, `--source-hours` of it, all
labelled; the target language (es, de or pl), `--target-hours` of it, whose training split is
untranscribed but for `--labelled-minutes` (the `data.labelled_fraction` subset, drawn by the
seed). Every arm is scored on the target's test split, spoken by voice families no training
split hears (data/voices.py).

Arms: a pre-training run (or none), then CTC fine-tuning on the target's labelled minutes
(configs/finetune_ctc.py). The fine-tune's output layer is its own when the target has phones
en-us lacks (init_from loads the CTC head only when the two dictionaries list the same
phones: a new head over the target's phones, the paper's recipe), the pre-trained one
otherwise.
  ctc_target    no pre-training: CTC from scratch on the target labels ("CTC from scratch" =
                configs/finetune_ctc.py without frozen updates, at configs/tiny.py's lr)
  ctc_transfer  CTC from scratch on en-us, then fine-tune
  contrastive   configs/tiny.py at alpha = 0 (contrastive + diversity only, XLSR-style) on
                en-us + target audio, then fine-tune
  unispeech     configs/tiny.py at alpha = 0.5, r = 0.5 (model.ctc_weight, model.replace_prob)
                on en-us labelled + target untranscribed, then fine-tune
  --grid adds alpha in {0, 0.5, 1} x r in {0, 0.5, 1} pre-trained the same way (alpha = 0
  computes no CTC, so its three r are one run: the contrastive arm).
`--arms` runs a subset of the four (--grid runs contrastive and unispeech, its cells, too).
`--set KEY=VALUE` overrides every run's config (after the scale's).

Writes W/results.md (test PER per arm: mean, range over seeds and each seed; the grid; the
phones the target shares with en-us) and W/results.png (valid PER during fine-tuning, mean
over seeds). Workdirs: W/pretrain/<name>/seed<S>, W/finetune/<arm>/seed<S>; a rerun skips
every run whose final checkpoint exists and resumes the others.
Results: docs/results/unispeech_crosslingual.md.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: hostmem may replace the process
    from unispeech_jax import hostmem

    hostmem.reexec_with_huge_pages()

import argparse
import dataclasses
import json
import pathlib
from collections.abc import Sequence

from unispeech_jax.data import sources, workdir_vocab
from unispeech_jax.experiments import arms as arms_lib
from unispeech_jax.experiments import micro_models

TARGETS = ("es", "de", "pl")
WORD_BOUNDARY = "|"


@dataclasses.dataclass(frozen=True)
class Scale:
    """Corpus sizes, steps and config overrides of one experiment size."""

    source_hours: float
    target_hours: float
    labelled_minutes: float
    pretrain_steps: int
    finetune_steps: int
    eval_every: int
    overrides: tuple[str, ...] = ()


# micro: that model on the smallest corpora, for the tests (whole utterances of up to 4 s, one
# bucket: each run compiles one train step and one eval step, the most of its time).
_MICRO = (
    "data.max_sample_len=64000",
    "data.bucket_boundaries=(64000,)",
    "data.max_samples_per_batch=128000",
    "data.batch_multiple=2",
    "optim.warmup_steps=1",
    "peak_flops_per_device=1e10",
    *micro_models.UNISPEECH,
)
SCALES = {
    # The cached 2 h en-us corpus of configs/tiny.py; 1.2 h of target = 1.08 h of training split.
    "full": Scale(2.0, 1.2, 10.0, 1500, 500, 50),
    "micro": Scale(0.02, 0.02, 0.5, 4, 4, 2, _MICRO),
}


@dataclasses.dataclass(frozen=True)
class Arm:
    """pretrain: 'none', 'ctc' (CTC on en-us) or 'unispeech' (at ctc_weight alpha and
    replace_prob r, on en-us + target audio)."""

    name: str
    pretrain: str
    alpha: float = 0.0
    r: float = 0.0

    @property
    def pretrain_name(self) -> str:
        if self.pretrain != "unispeech":
            return "ctc_en"
        return f"unispeech_a{self.alpha:g}" + (f"_r{self.r:g}" if self.alpha > 0 else "")


MAIN_ARMS = (
    Arm("ctc_target", "none"),
    Arm("ctc_transfer", "ctc"),
    Arm("contrastive", "unispeech", 0.0, 0.0),
    Arm("unispeech", "unispeech", 0.5, 0.5),
)
GRID_VALUES = (0.0, 0.5, 1.0)


def chosen_arms(names: Sequence[str], grid: bool) -> list[Arm]:
    """The main arms named, then with `grid` the alpha x r pre-trainings (the main arms that
    are grid cells included, named or not)."""
    chosen = [a for a in MAIN_ARMS if a.name in names or (grid and a.pretrain == "unispeech")]
    return chosen + (grid_arms() if grid else [])


def grid_arms() -> list[Arm]:
    """The alpha x r pre-trainings the main arms do not already run."""
    main = {a.pretrain_name for a in MAIN_ARMS}
    grid = {}
    for alpha in GRID_VALUES:
        for r in GRID_VALUES:
            arm = Arm(f"a{alpha:g}_r{r:g}", "unispeech", alpha, r)
            if arm.pretrain_name not in main:
                grid.setdefault(arm.pretrain_name, arm)
    return list(grid.values())


def labelled_fraction(corpus_dir: pathlib.Path, minutes: float) -> float:
    """The fraction of the corpus's training split that is `minutes` of speech (at most 1)."""
    seconds = json.loads((corpus_dir / "corpus.json").read_text())["splits"]["train"]["seconds"]
    return min(1.0, 60.0 * minutes / seconds)


def shared_phones(source_dir: pathlib.Path, target_dir: pathlib.Path) -> tuple[list, list]:
    """(the target's phones that en-us has, those it lacks), word boundary left out."""
    source = set(workdir_vocab.symbols(source_dir / "dict.phn.txt"))
    target = [p for p in workdir_vocab.symbols(target_dir / "dict.phn.txt") if p != WORD_BOUNDARY]
    return [p for p in target if p in source], [p for p in target if p not in source]


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything the run configs of one experiment depend on."""

    scale: Scale
    source: tuple[str, ...]  # data.corpus overrides of en-us
    target: tuple[str, ...]  # data.corpus overrides of the target language
    target_train_tsv: str
    fraction: float
    extra: tuple[str, ...]  # --set

    def common(self, seed: int, steps: int) -> list[str]:
        return [f"seed={seed}", f"total_steps={steps}", *self.scale.overrides]


def pretrain_config(plan: Plan, arm: Arm, seed: int):
    """The pre-training run of `arm` (not 'none')."""
    s = plan.scale
    runs = [*plan.common(seed, s.pretrain_steps), f"eval_every={s.pretrain_steps}"]
    runs += ["eval_max_batches=2", *plan.source]
    if arm.pretrain == "ctc":
        return arms_lib.load_config("finetune_ctc.py", runs + _scratch(), extra=plan.extra)
    runs += [
        f"model.ctc_weight={arm.alpha}",
        f"model.replace_prob={arm.r}",
        f"data.unlabelled_manifests=({plan.target_train_tsv!r},)",
    ]
    return arms_lib.load_config("tiny.py", runs, extra=plan.extra)


def finetune_config(plan: Plan, seed: int, init_from: pathlib.Path | None):
    """CTC on the target's labelled minutes, from `init_from` (None: from scratch)."""
    s = plan.scale
    runs = [*plan.common(seed, s.finetune_steps), f"eval_every={s.eval_every}"]
    runs += ["eval_max_batches=0", *plan.target, f"data.labelled_fraction={plan.fraction}"]
    if init_from is None:
        runs += _scratch()
    else:  # finetune_ctc.py's share of head-only updates
        runs += arms_lib.steps_overrides("finetune_ctc.py", s.finetune_steps)
        runs += [f"init_from={str(init_from)!r}"]
    return arms_lib.load_config("finetune_ctc.py", runs, extra=plan.extra)


def _scratch() -> list[str]:
    """finetune_ctc.py as a from-scratch CTC recipe: nothing frozen, configs/tiny.py's lr."""
    tiny = arms_lib.load_config("tiny.py", [])
    return ["optim.freeze_steps=0", f"optim.lr={tiny.optim.lr}"]


def make_plan(args) -> tuple[Plan, pathlib.Path, pathlib.Path]:
    """The plan of the command line, and the en-us and target corpus folders (made now)."""
    s = arms_lib.scale_of(SCALES, args)

    def corpus(hours, lang):
        return (f"data.corpus.hours={hours}", f"data.corpus.languages={lang!r}")

    source, target = corpus(s.source_hours, "en-us"), corpus(s.target_hours, args.target)
    dirs = [
        sources.resolve_data_dir(arms_lib.load_config("tiny.py", c, extra=args.set).data)
        for c in (source, target)
    ]
    plan = Plan(
        s,
        source,
        target,
        str(dirs[1] / "train.tsv"),
        labelled_fraction(dirs[1], s.labelled_minutes),
        tuple(args.set),
    )
    return plan, dirs[0], dirs[1]


def run(args) -> pathlib.Path:
    """Runs (or reuses) every arm and seed; writes and returns W/results.md."""
    plan, source_dir, target_dir = make_plan(args)
    workdir = pathlib.Path(args.workdir)
    arms = chosen_arms(args.arms, args.grid)
    per: dict[str, list[float]] = {a.name: [] for a in arms}
    curves: dict[str, list] = {a.name: [] for a in arms}
    for seed in args.seeds:
        for arm in arms:
            init_from = None
            if arm.pretrain != "none":
                init_from = workdir / "pretrain" / arm.pretrain_name / f"seed{seed}"
                arms_lib.train_arm(pretrain_config(plan, arm, seed), init_from)
            finetuned = workdir / "finetune" / arm.name / f"seed{seed}"
            arms_lib.train_arm(finetune_config(plan, seed, init_from), finetuned)
            per[arm.name].append(arms_lib.scores(finetuned, "test")["per"])
            curves[arm.name].append(arms_lib.curve(finetuned, "valid", "per"))
    results = workdir / "results.md"
    results.write_text(report(args, plan, arms, per, shared_phones(source_dir, target_dir)))
    arms_lib.plot(
        [
            (
                f"{args.target} valid PER (%)",
                {
                    name: [(s, 100 * v) for s, v in arms_lib.mean_curve(c)]
                    for name, c in curves.items()
                },
            )
        ],
        results.with_suffix(".png"),
    )
    return results


def report(args, plan: Plan, arms: Sequence[Arm], per, phones) -> str:
    """results.md: the setting, the main table, the grid, the shared phones."""
    shared, own = phones
    s = plan.scale
    text = (
        f"# UniSpeech cross-lingual transfer: en-us -> {args.target}\n\n"
        f"en-us {s.source_hours} h labelled; {args.target} {s.target_hours} h "
        f"({100 * plan.fraction:.1f} % of its training split = {s.labelled_minutes} min "
        f"labelled); {s.pretrain_steps} pre-training + {s.finetune_steps} fine-tuning "
        f"steps; scale {args.scale}; seeds {args.seeds}.\n\n"
        f"{args.target} has {len(shared) + len(own)} phones, {len(shared)} of them en-us "
        f"phones; not in en-us: {' '.join(own) or 'none'}.\n\n"
        f"## {args.target} test PER (%), held-out voice families\n\n"
    )
    rows = [
        [a.name, _describe(a), arms_lib.summary(per[a.name], 100), _each(per[a.name])]
        for a in arms
        if a in MAIN_ARMS
    ]
    text += arms_lib.markdown_table(["arm", "pre-training", "test PER", "per seed"], rows)
    if any(a.name not in {m.name for m in MAIN_ARMS} for a in arms):
        text += "\n## alpha x r grid: test PER (%)\n\n"
        pre = {a.pretrain_name: per[a.name] for a in arms if a.pretrain == "unispeech"}
        grid = [
            [f"alpha {alpha:g}"]
            + [
                arms_lib.summary(pre[Arm("", "unispeech", alpha, r).pretrain_name], 100)
                for r in GRID_VALUES
            ]
            for alpha in GRID_VALUES
        ]
        text += arms_lib.markdown_table([""] + [f"r {r:g}" for r in GRID_VALUES], grid)
        text += "\nalpha 0 computes no CTC, so r changes nothing there (one run).\n"
    return text


def _describe(arm: Arm) -> str:
    if arm.pretrain == "unispeech" and arm.alpha == 0:
        return "contrastive only (alpha 0) on en-us + target audio"
    return {
        "none": "none",
        "ctc": "CTC on en-us",
        "unispeech": f"UniSpeech alpha {arm.alpha:g}, r {arm.r:g}: en-us labelled + target audio",
    }[arm.pretrain]


def _each(values: Sequence[float]) -> str:
    return " ".join(f"{100 * v:.1f}" for v in values)


def parser() -> argparse.ArgumentParser:
    p = arms_lib.base_parser(
        __spec__.name,
        "UniSpeech cross-lingual transfer: arms, table and plot.",
        SCALES,
        [a.name for a in MAIN_ARMS],
    )
    p.add_argument("--target", choices=TARGETS, default="de")
    p.add_argument("--grid", action="store_true", help="add the alpha x r ablation")
    p.add_argument("--pretrain-steps", dest="pretrain_steps", type=int)
    p.add_argument("--finetune-steps", dest="finetune_steps", type=int)
    p.add_argument("--source-hours", dest="source_hours", type=float)
    p.add_argument("--target-hours", dest="target_hours", type=float)
    p.add_argument("--labelled-minutes", dest="labelled_minutes", type=float)
    return p


if __name__ == "__main__":
    arms_lib.main(parser(), run)
