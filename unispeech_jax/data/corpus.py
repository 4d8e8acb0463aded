"""A real speech corpus made locally with eSpeak NG, because no data set can be downloaded.

    python -m unispeech_jax.data.corpus --out DIR [--hours H] [--languages en-us,es,de]
        [--noise-snr DB[,DB...]] [--reverb] [--parallel K] [--seed S] [--workers W]
        [--text-file F | --translations F]

Text comes from `faker` word lists (real words of the language, random syntax) or from a
user file; eSpeak NG (the library shipped by the `espeakng-loader` wheel, driven in-process
through ctypes) speaks it in many voices and gives its IPA phones. The layout written to
DIR is the "Corpus on disk" contract of docs/ARCHITECTURE.md.

Options for the fine-tuning tasks: `--noise-snr` writes noisy copies (one SNR per utterance,
drawn from the list) with `.clean` and `.snr` lists (speech enhancement); `--parallel K`
speaks every sentence in K different voices of its split (voice conversion pairs);
`--translations F` speaks the source side of `source<TAB>translation` lines and writes the
translation as `.tgt` (speech translation; data/sword.py makes such a file from two Bibles).

How the work is cut up, and why the output is byte-identical for the same arguments:
- Every split (train/valid/test) is a sequence of *shards* of `SHARD_SIZE` utterances. A
  shard's content depends only on (seed, split, shard index), never on the worker count.
- libespeak-ng keeps global state that leaks from one utterance into the next (filters,
  echo buffers), so every shard runs in a fresh process ('spawn', one task per child) and
  the library's random generator is reseeded before every utterance.
- A split keeps the shortest prefix of its shard sequence (cut inside the last shard) that
  reaches its duration target and minimum utterance count; audio of shards computed
  beyond that is deleted. Which extra shards ran depends on timing, what is kept does not.
- Held-out splits: valid and test use voice families never heard in training, and every
  sentence belongs to one split only, chosen by a hash of its text.

The parts: data/voices.py (who speaks), data/sentences.py (what is said), data/espeak.py
(the synthesiser and its phones), data/shards.py (one shard, in a worker process); this file
runs the shards, writes the manifests, label files and vocabularies, and caches corpora.

Main entry points: `generate(out, ...)` writes a corpus into a directory;
`ensure_corpus(...)` returns a cached corpus under $UNISPEECH_JAX_CACHE, making it first.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import io
import json
import multiprocessing
import os
import pathlib
import resource
import sys
import time
from collections import Counter

import numpy as np
import sentencepiece as spm
from tqdm import tqdm

from unispeech_jax import errors
from unispeech_jax.data import shards
from unispeech_jax.data.audio import SAMPLE_RATE
from unispeech_jax.data.cache import build_atomically, cache_dir
from unispeech_jax.data.espeak import data_path, espeak_languages
from unispeech_jax.data.sentences import (
    FAKER_LOCALES,
    SPLIT_FRACTION,
    read_text_file,
    read_translations,
)
from unispeech_jax.data.shards import SHARD_SIZE
from unispeech_jax.data.voices import SPLITS, VOICE_FAMILIES, missing_variants, speakers_for_split

FORMAT_VERSION = 1
MIN_EVAL_UTTERANCES = 32  # valid and test get at least this many, however small --hours
MIN_TRAIN_UTTERANCES = 16


def _check_languages(languages: list[str], text_file) -> None:
    missing = missing_variants(set(os.listdir(os.path.join(data_path(), "voices", "!v"))))
    if missing:
        raise RuntimeError(f"this espeak-ng-data lacks voice variants {missing}")
    known = espeak_languages()
    for lang in languages:
        if lang not in known:
            raise ValueError(
                f"unknown language {lang!r}: eSpeak NG has no voice of that "
                f"name (examples: en-us, es, de, fr)"
            )
        if text_file is None and lang not in FAKER_LOCALES:
            raise ValueError(
                f"no word list for language {lang!r}: faker knows "
                f"{', '.join(sorted(FAKER_LOCALES))}; give --text-file"
            )


class _SplitPlan:
    """Keeps the shortest prefix of a split's shards reaching its targets."""

    def __init__(self, split: str, hours: float):
        self.split = split
        self.target_s = hours * 3600 * SPLIT_FRACTION[split]
        self.min_utts = MIN_TRAIN_UTTERANCES if split == "train" else MIN_EVAL_UTTERANCES
        self.kept, self.seconds, self.done = [], 0.0, False
        self.next_submit = self.next_consume = 0
        self.results: dict[int, dict] = {}
        self.drop: list[dict] = []
        self.skipped = Counter()

    def consume(self, progress) -> None:
        while not self.done and self.next_consume in self.results:
            result = self.results.pop(self.next_consume)
            self.next_consume += 1
            self.skipped.update(result["skipped"])
            for rec in result["records"]:
                if self.done:
                    self.drop.append(rec)
                    continue
                self.kept.append(rec)
                seconds = rec["num_samples"] / SAMPLE_RATE
                self.seconds += seconds
                progress.total = max(progress.total, progress.n + seconds)  # estimate was low
                progress.update(seconds)
                self.done = self.seconds >= self.target_s and len(self.kept) >= self.min_utts

    def wants_more(self, in_flight: int, mean_utt_s: float) -> bool:
        need_s = self.target_s - self.seconds - in_flight * SHARD_SIZE * mean_utt_s
        need_n = self.min_utts - len(self.kept) - in_flight * SHARD_SIZE
        return not self.done and (need_s > 0 or need_n > 0)


def _run_shards(
    out: pathlib.Path,
    hours: float,
    languages: list[str],
    noise_snr,
    reverb,
    parallel: int,
    seed: int,
    workers: int,
    by_split,
    quiet: bool,
):
    """Runs shards in `workers` fresh processes until every split has what it needs.

    Returns ({split: plan}, (seconds of audio eSpeak made, CPU seconds it took)).
    """
    plans = {s: _SplitPlan(s, hours) for s in ("test", "valid", "train")}
    speakers = {s: speakers_for_split(s, seed) for s in SPLITS}
    expected_s = sum(max(p.target_s, 3.0 * p.min_utts) for p in plans.values())
    progress = tqdm(
        total=expected_s,
        desc="speaking",
        disable=quiet,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
        "of audio [{elapsed}<{remaining}]",
    )
    in_flight: dict[cf.Future, str] = {}
    durations = [3.0]  # a prior for the mean utterance length
    empty_in_a_row = Counter()
    espeak_audio_s = espeak_cpu_s = 0.0
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, max_tasks_per_child=1) as pool:
        while True:
            mean_s = float(np.mean(durations))
            for split, plan in plans.items():  # keep ~2 shards per worker queued
                while len(in_flight) < 2 * workers and plan.wants_more(
                    sum(s == split for s in in_flight.values()), mean_s
                ):
                    texts = (
                        None
                        if by_split is None
                        else shards.texts_for_shard(by_split, split, plan.next_submit, seed)
                    )
                    spec = {
                        "split": split,
                        "index": plan.next_submit,
                        "seed": seed,
                        "out": str(out),
                        "languages": languages,
                        "speakers": speakers[split],
                        "noise_snr": noise_snr,
                        "reverb": reverb,
                        "parallel": parallel,
                        "texts": texts,
                    }
                    in_flight[pool.submit(shards.run_shard, spec)] = split
                    plan.next_submit += 1
            if not in_flight:
                break
            finished, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
            for future in finished:
                plan = plans[in_flight.pop(future)]
                result = future.result()
                seconds = [r["num_samples"] / SAMPLE_RATE for r in result["records"]]
                durations += seconds
                espeak_audio_s += sum(seconds)
                espeak_cpu_s += result["synth_cpu"]
                empty_in_a_row[plan.split] = (
                    0 if result["records"] else empty_in_a_row[plan.split] + 1
                )
                if empty_in_a_row[plan.split] >= 4:
                    raise RuntimeError(
                        f"{plan.split}: eSpeak NG gave no usable utterance "
                        f"in {4 * SHARD_SIZE} sentences in a row"
                    )
                if plan.done:
                    plan.drop.extend(result["records"])
                else:
                    plan.results[result["index"]] = result
                    plan.consume(progress)
    progress.close()
    for plan in plans.values():  # audio of shards beyond what each split keeps
        plan.drop.extend(r for res in plan.results.values() for r in res["records"])
        for rec in plan.drop:
            for key in ("path", "noisy_path"):
                if key in rec:
                    (out / rec[key]).unlink(missing_ok=True)
    for folder in sorted(out.glob("*/*/*"), reverse=True):  # speakers left without files
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return {s: plans[s] for s in SPLITS}, (espeak_audio_s, espeak_cpu_s)


def _phone_dict(lines) -> str:
    counts = Counter(p for line in lines for p in line.split())
    return "".join(f"{p} {c}\n" for p, c in sorted(counts.items(), key=lambda x: (-x[1], x[0])))


def write_sentencepiece(prefix: pathlib.Path, texts: list[str]) -> None:
    """A character SentencePiece model of `texts` as <prefix>.model and <prefix>.vocab, with
    SentencePiece's default ids (0 <unk>, 1 <s>, 2 </s>, no pad; data/text.py adds mask and
    pad ids past the pieces). Deterministic: the same texts give the same bytes."""
    chars = {c for t in texts for c in t if c != " "}
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        model_type="char",
        vocab_size=len(chars) + 4,
        character_coverage=1.0,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = "".join(
        f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.get_piece_size())
    )
    prefix.with_suffix(".vocab").write_text(vocab, encoding="utf-8")
    prefix.with_suffix(".model").write_bytes(model.getvalue())


def _file_sha256(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def snr_argument(noise_snr):
    """`noise_snr` as the generator takes it: None (no noisy copies), one SNR (a float) or a
    list of several (one drawn per utterance); an empty sequence is None, one element its
    number, so that equal corpora get equal cache keys."""
    if noise_snr is None or isinstance(noise_snr, (int, float)):
        return None if noise_snr is None else float(noise_snr)
    snrs = [float(x) for x in noise_snr]
    return None if not snrs else snrs[0] if len(snrs) == 1 else snrs


def _optional_arguments(parallel: int, translations) -> dict:
    """The task options that differ from their defaults (left out otherwise, so that the
    default corpus keeps its cache key and corpus.json bytes)."""
    out = {}
    if parallel != 1:
        out["parallel"] = int(parallel)
    if translations is not None:
        out["translations"] = {
            "name": os.path.basename(str(translations)),
            "sha256": _file_sha256(translations),
        }
    return out


def generate(
    out,
    hours: float = 1.0,
    languages=("en-us",),
    noise_snr=None,
    reverb: bool = False,
    seed: int = 0,
    workers: int | None = None,
    text_file=None,
    root: str | os.PathLike | None = None,
    quiet: bool = False,
    parallel: int = 1,
    translations=None,
) -> dict:
    """Writes a corpus into the directory `out` (created; must be empty if it exists).

    `root` is the directory named on the first line of the manifests (default: `out`,
    absolute); `ensure_corpus` passes the final cache path while writing to a temp dir.
    `noise_snr`: see `snr_argument`; `parallel`: voices per sentence; `translations`: a file
    of `source<TAB>translation` lines, spoken in the (only) language. Returns the corpus.json
    content.
    """
    out = pathlib.Path(out)
    languages = [languages] if isinstance(languages, str) else list(languages)
    languages = [lang.lower() for lang in languages]
    noise_snr = snr_argument(noise_snr)
    if not languages:
        raise ValueError("no language given")
    if hours <= 0:
        raise ValueError(f"hours must be > 0, got {hours}")
    fewest = min(len(speakers_for_split(s, seed)) for s in SPLITS)
    if not 1 <= parallel <= fewest:
        raise ValueError(f"parallel must be in [1, {fewest}] (voices of a split), got {parallel}")
    if translations is not None and (text_file is not None or len(languages) != 1):
        raise ValueError("translations: give one language (the source's) and no text file")
    _check_languages(languages, text_file or translations)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    if translations is not None:
        by_split = read_translations(translations, languages[0])
    else:
        by_split = read_text_file(text_file, languages) if text_file is not None else None
    wall0 = time.perf_counter()
    cpu0 = _cpu_seconds()

    plans, (espeak_audio_s, espeak_cpu_s) = _run_shards(
        out, hours, languages, noise_snr, reverb, parallel, seed, workers, by_split, quiet
    )

    root_line = str(pathlib.Path(root if root is not None else out).absolute()) + "\n"
    noisy = noise_snr is not None or reverb
    for split, plan in plans.items():
        recs = plan.kept
        audio_key = "noisy_path" if noisy else "path"
        files = {
            "tsv": root_line + "".join(f"{r[audio_key]}\t{r['num_samples']}\n" for r in recs),
            "phn": "".join(r["phones"] + "\n" for r in recs),
            "wrd": "".join(r["text"] + "\n" for r in recs),
            "spk": "".join(r["speaker"] + "\n" for r in recs),
            "lang": "".join(r["lang"] + "\n" for r in recs),
        }
        if noisy:
            files["clean"] = "".join(r["path"] + "\n" for r in recs)
        if noise_snr is not None:
            files["snr"] = "".join(f"{r['snr']:g}\n" for r in recs)
        if translations is not None:
            files["tgt"] = "".join(r["translation"] + "\n" for r in recs)
        for ext, content in files.items():
            (out / f"{split}.{ext}").write_text(content, encoding="utf-8")
    all_recs = [r for p in plans.values() for r in p.kept]
    (out / "dict.phn.txt").write_text(_phone_dict(r["phones"] for r in all_recs), "utf-8")
    for lang in languages:
        lines = [r["phones"] for r in all_recs if r["lang"] == lang]
        (out / f"dict.phn.{lang}.txt").write_text(_phone_dict(lines), "utf-8")
    write_sentencepiece(out / "spm_char", [r["text"] for r in plans["train"].kept])

    skipped = Counter()
    for plan in plans.values():
        skipped.update(plan.skipped)
    total_s = sum(p.seconds for p in plans.values())
    speakers = {s: speakers_for_split(s, seed) for s in SPLITS}
    info = {
        "format_version": FORMAT_VERSION,
        "arguments": {
            "hours": hours,
            "languages": languages,
            "noise_snr": noise_snr,
            "reverb": reverb,
            "seed": seed,
            "text_file": None
            if text_file is None
            else {"name": os.path.basename(str(text_file)), "sha256": _file_sha256(text_file)},
            **_optional_arguments(parallel, translations),
        },
        "sample_rate": SAMPLE_RATE,
        "hours": round(total_s / 3600, 6),
        "voices": {s: sorted({v for vs in VOICE_FAMILIES[s].values() for v in vs}) for s in SPLITS},
        "voice_families": VOICE_FAMILIES,
        "speakers": speakers,
        "splits": {
            s: {
                "utterances": len(p.kept),
                "seconds": round(p.seconds, 3),
                "hours": round(p.seconds / 3600, 6),
                "speakers_used": len({r["speaker"] for r in p.kept}),
                "languages": dict(sorted(Counter(r["lang"] for r in p.kept).items())),
            }
            for s, p in plans.items()
        },
        "skipped": {"no_audio": skipped["no_audio"], "no_phones": skipped["no_phones"]},
        "phones": len(_phone_dict(r["phones"] for r in all_recs).splitlines()),
    }
    # Written last: its presence marks a complete corpus.
    (out / "corpus.json").write_text(
        json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )

    wall = time.perf_counter() - wall0
    cpu = _cpu_seconds() - cpu0
    if not quiet:
        n_skip = sum(info["skipped"].values())
        print(
            f"wrote {out}: {total_s / 3600:.3f} h, "
            + ", ".join(f"{s} {info['splits'][s]['utterances']}" for s in SPLITS)
            + f" utterances; skipped {n_skip} sentences {info['skipped']}",
            file=sys.stderr,
        )
        print(
            f"speed: {total_s / max(cpu, 1e-9):.0f} audio s per CPU s "
            f"({total_s:.0f} s audio, {cpu:.1f} CPU s, {wall:.1f} s wall, "
            f"{workers} workers); eSpeak NG alone (text to phones and 22 kHz audio): "
            f"{espeak_audio_s / max(espeak_cpu_s, 1e-9):.0f} audio s per CPU s",
            file=sys.stderr,
        )
    return info


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the shard workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# ---------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------
def corpus_key(
    hours,
    languages,
    noise_snr=None,
    reverb=False,
    seed=0,
    text_file=None,
    parallel=1,
    translations=None,
) -> str:
    """Hash of everything that changes the corpus bytes (not the worker count)."""
    languages = [languages] if isinstance(languages, str) else list(languages)
    languages = [lang.lower() for lang in languages]
    key = {
        "format": FORMAT_VERSION,
        "hours": float(hours),
        "languages": languages,
        "noise_snr": snr_argument(noise_snr),
        "reverb": bool(reverb),
        "seed": int(seed),
        "text": None if text_file is None else _file_sha256(text_file),
        **_optional_arguments(parallel, translations),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def ensure_corpus(
    hours: float = 1.0,
    languages=("en-us",),
    noise_snr=None,
    reverb: bool = False,
    seed: int = 0,
    workers: int | None = None,
    text_file=None,
    parallel: int = 1,
    translations=None,
) -> pathlib.Path:
    """The corpus directory for these arguments, generated on first use.

    Lives in $UNISPEECH_JAX_CACHE/corpus/<hash>. A corpus is written into a temporary
    sibling and renamed into place when complete, so a half-written directory is never
    seen under the final name; a final directory without corpus.json (damaged by hand) is
    set aside and rebuilt. Two processes racing both generate; the first rename wins and
    the loser deletes its copy.
    """
    base = cache_dir() / "corpus"
    key = corpus_key(hours, languages, noise_snr, reverb, seed, text_file, parallel, translations)
    final = base / key
    return build_atomically(
        final,
        "corpus.json",
        lambda tmp: generate(
            tmp,
            hours=hours,
            languages=languages,
            noise_snr=noise_snr,
            reverb=reverb,
            seed=seed,
            workers=workers,
            text_file=text_file,
            root=final,
            parallel=parallel,
            translations=translations,
        ),
    )


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------
def _snr_list(text: str) -> list[float]:
    """--noise-snr: comma-separated numbers."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected SNRs in dB like 5 or 0,5,10: {text!r}"
        ) from None


def main(argv=None) -> None:
    parser = errors.ArgumentParser(
        prog="python -m unispeech_jax.data.corpus",
        description="Generate a local speech corpus with eSpeak NG (see docs/ARCHITECTURE.md).",
    )
    parser.add_argument("--out", required=True, help="output directory (new or empty)")
    parser.add_argument("--hours", type=float, default=1.0, help="total audio, all splits")
    parser.add_argument(
        "--languages", default="en-us", help="comma-separated eSpeak NG voices, e.g. en-us,es,de"
    )
    parser.add_argument(
        "--noise-snr",
        type=_snr_list,
        default=None,
        help="also write noisy copies at this SNR in dB, or at one of several drawn per "
        "utterance (e.g. 0,5,10,15), with .clean and .snr lists",
    )
    parser.add_argument("--reverb", action="store_true", help="also reverberate the copies")
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="speak every sentence in this many voices of its split (voice conversion pairs)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="default: CPU count")
    parser.add_argument(
        "--text-file",
        default=None,
        help="sentences, one per line (optionally 'lang<TAB>sentence'), "
        "instead of faker word lists",
    )
    parser.add_argument(
        "--translations",
        default=None,
        help="'source<TAB>translation' lines: speak the source (one --languages voice), keep "
        "the translation as <split>.tgt",
    )
    args = parser.parse_args(argv)
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    try:
        generate(
            args.out,
            hours=args.hours,
            languages=languages,
            noise_snr=args.noise_snr,
            reverb=args.reverb,
            seed=args.seed,
            workers=args.workers,
            text_file=args.text_file,
            parallel=args.parallel,
            translations=args.translations,
        )
    except (ValueError, FileExistsError, OSError) as err:
        parser.exit(2, f"error: {err}\n")


if __name__ == "__main__":
    main()
