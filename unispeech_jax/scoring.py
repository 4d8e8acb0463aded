"""Task scores of a SpeechT5 fine-tuning workdir on a split, one scorer per `model.task`
(`SCORERS`); `evaluate` adds them to the mean losses (`score`, {} for other runs).

  asr  wer, cer: the transcripts (greedy, beam or joint CTC/attention decoding, `Options.
       decoding`) against the split's `.wrd` lines (metrics.py, jiwer); utterances_per_s.
  tts  mcd: mel-cepstral distortion in dB, DTW-aligned, of each generated log-mel against the
       log-mel of the utterance's own recording (metrics.py), mean over utterances;
       length_ratio: generated / reference frames; with `Options.asr_workdir`, the round trip:
       roundtrip_cer / roundtrip_wer of that ASR model transcribing the vocoded speech
       (Griffin-Lim, or HiFi-GAN with `Options.vocoder`) against the input text.

  vc   mcd, length_ratio: as tts, each converted log-mel against the target speaker's own
       rendering of the sentence; source_mcd: the source recording's (no conversion);
       roundtrip_cer / roundtrip_wer as tts.
  se   mcd, length_ratio against the clean recording, noisy_mcd: the noisy input's; stoi
       (pystoi) of the vocoded output cut to the clean length, noisy_stoi: the input's; with
       `Options.asr_workdir`: enhanced_cer / enhanced_wer and noisy_cer / noisy_wer of that ASR
       model on the vocoded output and on the noisy input, against the `.wrd` lines (the
       paper's measure).
  st   bleu, chrf: the translations (decoded as asr's transcripts) against the split's `.tgt`
       lines, corpus-level, by sacrebleu (metrics.py); utterances_per_s.
  sid  accuracy: the head's most likely speaker against the true one, over the utterances of
       training speakers (the split `train:heldout`; valid and test voices are unseen);
       eer: equal error rate of verification trials, every pair of the split's utterances
       scored by the cosine of their speaker embeddings (`trials` of them; test: unseen
       voices, the usual verification setting).

Utterances are those of `pipeline.task_split(config, split)`; a row whose audio cannot be read
is skipped and counted (`skipped`).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from unispeech_jax import inference, waveform
from unispeech_jax import metrics as metrics_lib
from unispeech_jax.data import audio as audio_lib
from unispeech_jax.data import features, pipeline


@dataclasses.dataclass(frozen=True)
class Options:
    """decoding: ASR search (also of the round trip's ASR model); asr_workdir: an ASR workdir
    for the TTS / VC round trip and SE's transcripts; vocoder: HiFi-GAN weights directory (None: Griffin-Lim);
    batch_size: utterances decoded together; limit: score the first `limit` utterances only
    (0: all)."""

    decoding: inference.Decoding = inference.Decoding()
    asr_workdir: str | None = None
    vocoder: str | None = None
    batch_size: int = 8
    limit: int = 0


def score(workdir, config, params, model_state, step: int, split: str, options: Options) -> dict:
    """The task scores of a (vocabulary-pinned) run config and its variables on `split`; {}
    when its task has no scorer."""
    task = str(config.model.get("task", "")) if config.model.name == "speecht5" else ""
    if task not in SCORERS:
        return {}
    trained = inference.assemble(workdir, config, params, model_state, step)
    return SCORERS[task](trained, split, options)


def _examples(trained, split: str, limit: int):
    """(task split, indices of its first `limit` examples or all)."""
    s = pipeline.task_split(trained.config, split)
    return s, range(min(len(s), limit) if limit else len(s))


def _read(path, length) -> np.ndarray | None:
    x, reason, _ = audio_lib.read_audio(path, int(length))
    return None if reason else x


def _speech_inputs(s, examples) -> tuple[list[int], list[np.ndarray]]:
    """(the examples whose audio reads, their waveforms)."""
    chosen, waves = [], []
    for i in examples:
        x = _read(s.audio_paths[i], s.audio_lengths[i])
        if x is not None:
            chosen.append(i)
            waves.append(x)
    return chosen, waves


def _decoded(trained, split: str, options: Options) -> tuple[list[str], list[str], dict]:
    """(reference lines, decoded texts, {utterances, utterances_per_s, skipped}) of the
    split's speech → text examples (asr transcripts, st translations)."""
    s, examples = _examples(trained, split, options.limit)
    chosen, waves = _speech_inputs(s, examples)
    start = time.perf_counter()
    hyps = inference.transcribe(trained, waves, options.batch_size, options.decoding)
    seconds = time.perf_counter() - start
    counts = {
        "utterances": float(len(chosen)),
        "utterances_per_s": len(chosen) / max(seconds, 1e-9),
        "skipped": float(len(examples) - len(chosen)),
    }
    return [s.texts[i] for i in chosen], hyps, counts


def score_asr(trained, split: str, options: Options) -> dict:
    refs, hyps, counts = _decoded(trained, split, options)
    return {"wer": metrics_lib.wer(refs, hyps), "cer": metrics_lib.cer(refs, hyps), **counts}


def score_st(trained, split: str, options: Options) -> dict:
    refs, hyps, counts = _decoded(trained, split, options)
    return {"bleu": metrics_lib.bleu(refs, hyps), "chrf": metrics_lib.chrf(refs, hyps), **counts}


def score_sid(trained, split: str, options: Options) -> dict:
    s, examples = _examples(trained, split, options.limit)
    chosen, waves = _speech_inputs(s, examples)
    embeddings, logits = inference.embed_speakers(trained, waves, options.batch_size)
    out = {"utterances": float(len(chosen)), "skipped": float(len(examples) - len(chosen))}
    known = s.speaker[chosen] >= 0  # training speakers: the classes of the head
    if known.any():
        predicted = np.argmax(logits[known], axis=1)
        out["accuracy"] = metrics_lib.accuracy(s.speaker[chosen][known], predicted)
    scores, labels = metrics_lib.cosine_trials(embeddings, [s.speaker_names[i] for i in chosen])
    if 0 < labels.sum() < len(labels):  # both same- and different-speaker trials
        out["eer"] = metrics_lib.equal_error_rate(scores, labels)
        out["trials"] = float(len(labels))
    return out


def _references(s, examples) -> tuple[list[int], list[np.ndarray]]:
    """(the examples whose target audio reads, the log-mels of their targets)."""
    chosen, references = [], []
    for i in examples:
        x = _read(s.mel_paths[i], s.mel_lengths[i])
        if x is not None:
            chosen.append(i)
            references.append(features.log_mel(x))
    return chosen, references


def _speakers(trained, s, rows) -> dict:
    """The speaker keywords of `inference.synthesize_tokens` / `convert` for examples `rows`:
    the target speakers' table rows or x-vectors, as the model was trained."""
    table = trained.module.args.num_speakers > 0
    return {
        "speakers": s.speaker[rows] if table else None,
        "xvectors": s.xvectors[rows] if s.xvectors is not None else None,
    }


def _mel_scores(references, mels) -> dict:
    """mcd (DTW) and length_ratio of generated log-mels against their references."""
    return {
        "mcd": float(
            np.mean([metrics_lib.mel_cepstral_distortion(r, m) for r, m in zip(references, mels)])
        ),
        "length_ratio": float(np.mean([len(m) / len(r) for r, m in zip(references, mels)])),
        "utterances": float(len(mels)),
    }


def _transcripts(options: Options, waves_by_name: dict, refs) -> dict:
    """{<name>_cer, <name>_wer} of the ASR workdir `options.asr_workdir` transcribing each
    list of waveforms in `waves_by_name` against `refs`; {} without one."""
    if not options.asr_workdir:
        return {}
    asr = inference.load(options.asr_workdir, task="asr")
    out = {}
    for name, waves in waves_by_name.items():
        hyps = inference.transcribe(asr, waves, options.batch_size, options.decoding)
        out[f"{name}_cer"] = metrics_lib.cer(refs, hyps)
        out[f"{name}_wer"] = metrics_lib.wer(refs, hyps)
    return out


def _vocode(options: Options, mels) -> list[np.ndarray]:
    vocoder = waveform.load_hifigan(options.vocoder) if options.vocoder else None
    return waveform.mels_to_audio(mels, vocoder)


def score_tts(trained, split: str, options: Options) -> dict:
    s, examples = _examples(trained, split, options.limit)
    chosen, references = _references(s, examples)
    mels = []
    for start in range(0, len(chosen), options.batch_size):
        rows = chosen[start : start + options.batch_size]
        mels += inference.synthesize_tokens(
            trained, [s.tokens[i] for i in rows], **_speakers(trained, s, rows)
        )
    out = {**_mel_scores(references, mels), "skipped": float(len(examples) - len(mels))}
    if options.asr_workdir:
        waves = {"roundtrip": _vocode(options, mels)}
        out.update(_transcripts(options, waves, [s.texts[i] for i in chosen]))
    return out


def _converted(trained, s, examples, options: Options):
    """(examples whose source and target read, their source waveforms, target log-mels and
    the model's output log-mels)."""
    chosen, sources, references = [], [], []
    for i, reference in zip(*_references(s, examples)):
        x = _read(s.audio_paths[i], s.audio_lengths[i])
        if x is not None:
            chosen.append(i)
            sources.append(x)
            references.append(reference)
    mels = []
    for start in range(0, len(chosen), options.batch_size):
        rows = chosen[start : start + options.batch_size]
        waves = sources[start : start + options.batch_size]
        mels += inference.convert(trained, waves, **_speakers(trained, s, rows))
    return chosen, sources, references, mels


def score_vc(trained, split: str, options: Options) -> dict:
    s, examples = _examples(trained, split, options.limit)
    chosen, sources, references, mels = _converted(trained, s, examples, options)
    out = {**_mel_scores(references, mels), "skipped": float(len(examples) - len(mels))}
    # The distance left without conversion: the source speaker's own rendering.
    out["source_mcd"] = _mel_scores(references, [features.log_mel(x) for x in sources])["mcd"]
    if options.asr_workdir:
        waves = {"roundtrip": _vocode(options, mels)}
        out.update(_transcripts(options, waves, [s.texts[i] for i in chosen]))
    return out


def _fit(wave: np.ndarray, samples: int) -> np.ndarray:
    """`wave` cut or zero-padded to `samples` (a vocoded output against its reference)."""
    return np.pad(wave[:samples], (0, max(0, samples - len(wave))))


def score_se(trained, split: str, options: Options) -> dict:
    s, examples = _examples(trained, split, options.limit)
    chosen, noisy, references, mels = _converted(trained, s, examples, options)
    out = {**_mel_scores(references, mels), "skipped": float(len(examples) - len(mels))}
    out["noisy_mcd"] = _mel_scores(references, [features.log_mel(x) for x in noisy])["mcd"]
    clean = [_read(s.mel_paths[i], s.mel_lengths[i]) for i in chosen]
    enhanced = [_fit(w, len(c)) for w, c in zip(_vocode(options, mels), clean)]
    out["stoi"] = float(np.mean([metrics_lib.stoi(c, e) for c, e in zip(clean, enhanced)]))
    out["noisy_stoi"] = float(np.mean([metrics_lib.stoi(c, x) for c, x in zip(clean, noisy)]))
    waves = {"enhanced": enhanced, "noisy": noisy}
    out.update(_transcripts(options, waves, [s.texts[i] for i in chosen]))
    return out


SCORERS = {
    "asr": score_asr,
    "tts": score_tts,
    "st": score_st,
    "sid": score_sid,
    "vc": score_vc,
    "se": score_se,
}
