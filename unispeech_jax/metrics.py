"""Task metrics: error rates (PER/WER/CER), BLEU and chrF, mel-cepstral distortion, EER (of
cosine verification trials) and accuracy, and signal metrics for enhancement (SI-SDR,
wide-band PESQ, STOI).

Text metrics are corpus-level (totals over all utterances, not a mean of per-utterance rates).
Waveforms are float [S] at 16 kHz; log-mels are the SpeechT5 target of `data.features.log_mel`
(float [F, 80], log10 of the magnitude mel spectrogram).
"""

from __future__ import annotations

from collections.abc import Sequence

import jiwer
import librosa
import numpy as np
import pesq as pesq_lib
import pystoi
import sacrebleu
from sklearn.metrics import roc_curve

from unispeech_jax.data import features

# ============================================================================ text


def error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus-level token error rate: (substitutions + deletions + insertions) / ref tokens.

    Tokens are whitespace-separated, so the same function gives WER on words and PER on
    space-separated phone strings (and CER through `cer`).

    Empty references are allowed: every hypothesis token of an empty reference counts as an
    insertion, and the denominator is floored at one token. Hence all-empty references give
    0.0 for all-empty hypotheses and the number of inserted tokens otherwise; empty input
    lists give 0.0.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    errors, ref_tokens = 0, 0
    pairs = []
    for ref, hyp in zip(refs, hyps):
        if ref.split():
            pairs.append((ref, hyp))
        else:  # jiwer < 4 refuses empty references; the count is trivial anyway.
            errors += len(hyp.split())
    if pairs:
        out = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs])
        errors += out.substitutions + out.deletions + out.insertions
        ref_tokens += out.substitutions + out.deletions + out.hits
    return errors / max(ref_tokens, 1)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate of texts (words split on whitespace, no other normalisation)."""
    return error_rate(refs, hyps)


def _characters(text: str) -> str:
    """'ab c' -> 'a b ▁ c': one token per character, a word boundary as '▁' (runs of
    whitespace count once, none at the ends)."""
    return " ▁ ".join(" ".join(word) for word in text.split())


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate of texts. Word boundaries count as characters (a missed
    space is an error, as in jiwer's CER); leading, trailing and repeated whitespace do not."""
    return error_rate([_characters(r) for r in refs], [_characters(h) for h in hyps])


def ids_to_string(ids, id_to_symbol, ignore=("|",), skip_ids=(0,)) -> str:
    """Space-joined symbols of ``ids``, leaving out ``skip_ids`` and ``ignore`` symbols.

    ``id_to_symbol`` is anything indexable by id (list, dict, PhoneVocab symbols).
    """
    symbols = (id_to_symbol[int(i)] for i in ids if int(i) not in skip_ids)
    return " ".join(s for s in symbols if s not in ignore)


def per_from_ids(ref_ids, hyp_ids, id_to_symbol, ignore=("|",), skip_ids=(0,)) -> float:
    """Phone error rate from id sequences (lists of lists), word boundaries ``|`` removed.

    ``skip_ids`` defaults to 0, the blank/padding id of the phone vocabulary, so padded
    reference rows can be passed as they are.
    """
    refs = [ids_to_string(r, id_to_symbol, ignore, skip_ids) for r in ref_ids]
    hyps = [ids_to_string(h, id_to_symbol, ignore, skip_ids) for h in hyp_ids]
    return error_rate(refs, hyps)


def bleu(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus BLEU (0-100) of detokenised texts, one reference each: sacrebleu's defaults
    (13a tokenisation, 4-grams, exponential brevity penalty, no smoothing)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score)


def chrf(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus chrF (0-100) of detokenised texts, one reference each: sacrebleu's defaults
    (character 6-grams, beta 2, no word n-grams)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    return float(sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score)


# ============================================================================ speakers


def cosine_trials(embeddings, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Speaker verification trials of every pair of utterances: embeddings float [N,E] and
    their speaker names [N] → (cosine scores float [P], labels int [P]: 1 same speaker),
    P = N(N-1)/2."""
    x = np.asarray(embeddings, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    i, j = np.triu_indices(len(x), k=1)
    names = np.asarray(names)
    return np.sum(x[i] * x[j], axis=1), (names[i] == names[j]).astype(np.int64)


def accuracy(labels, predictions) -> float:
    """Fraction of int [N] `predictions` equal to `labels` (speaker identification); 0.0 if N=0."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} but predictions {predictions.shape}")
    return float(np.mean(labels == predictions)) if labels.size else 0.0


def equal_error_rate(scores, labels) -> float:
    """EER of verification trials: float [N] scores (higher = same speaker), labels [N] (1 =
    same speaker, 0 = different; both kinds needed) -> the rate at which false acceptances
    equal false rejections, linearly interpolated between the two ROC points that bracket it.
    """
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("EER needs both target (1) and non-target (0) trials")
    fpr, tpr, _ = roc_curve(labels, np.asarray(scores, np.float64))
    gap = (1.0 - tpr) - fpr  # false rejections - false acceptances: 1 at first, falls to -1
    i = int(np.flatnonzero(gap <= 0)[0])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


# ============================================================================ mel cepstra

# Mel-cepstral distortion. The packages on PyPI do not fit: `pymcd` needs pyworld and pysptk
# (C extensions built from source) and resamples everything to 22.05 kHz; `mel-cepstral-distance`
# reads WAV paths, aligns with the approximate `fastdtw`, and reports Kubichek's distance in
# bels without the dB constant below, so its numbers are not those papers report. Hence our own
# definition on our log-mel, with librosa's DCT and exact DTW:
#
#   c_d = (1/M) sum_m ln(mel_m) cos(pi d (m + 1/2) / M),  d = 1..D,  M = 80 mel bins
#       (the cepstrum of the natural-log magnitude mel spectrum: ln mel_m ~ c_0 + 2 sum_d c_d
#       cos(...); c_0, the log energy, is left out, so MCD ignores the gain),
#   MCD = mean over the DTW path of (10 / ln 10) sqrt(2 sum_{d=1..D} (c_d - c'_d)^2)   [dB],
#
# with D = 24 and the path the minimum-cost alignment of the two cepstra sequences under the
# Euclidean distance (librosa.sequence.dtw, steps (1,1), (1,0), (0,1)).
MCD_COEFFS = 24
_DB = 10.0 / np.log(10.0)


def mel_cepstra(x, n_coeffs: int = MCD_COEFFS) -> np.ndarray:
    """Mel cepstra c_1..c_D (see above) of a waveform float [S] or a log-mel float [F, 80]
    -> float64 [F, D]."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = features.log_mel(x)
    if x.ndim != 2:
        raise ValueError(f"expected a waveform [S] or a log-mel [F, M], got shape {x.shape}")
    ln_mel = np.log(10.0) * x.astype(np.float64)
    # norm=None: sum_m 2 ln_mel_m cos(...), hence the 1 / (2M) of the definition.
    c = librosa.feature.mfcc(S=ln_mel.T, n_mfcc=n_coeffs + 1, dct_type=2, norm=None).T
    return c[:, 1:] / (2 * x.shape[1])


def cepstral_distortion(ref: np.ndarray, hyp: np.ndarray) -> float:
    """MCD in dB (see above) of two cepstra sequences float [F1, D] and [F2, D], DTW-aligned."""
    if ref.shape[1:] != hyp.shape[1:] or ref.ndim != 2 or not len(ref) or not len(hyp):
        raise ValueError(f"cepstra must be non-empty [F, D] alike, got {ref.shape}, {hyp.shape}")
    _, path = librosa.sequence.dtw(X=ref.T, Y=hyp.T, metric="euclidean")
    diff = ref[path[:, 0]] - hyp[path[:, 1]]
    return float(_DB * np.mean(np.sqrt(2.0 * np.sum(diff * diff, axis=-1))))


def mel_cepstral_distortion(ref, hyp, n_coeffs: int = MCD_COEFFS) -> float:
    """MCD in dB (see above) between two waveforms float [S1], [S2] at 16 kHz or two log-mels
    float [F1, 80], [F2, 80] (e.g. a TTS output against its target, no vocoder needed)."""
    return cepstral_distortion(mel_cepstra(ref, n_coeffs), mel_cepstra(hyp, n_coeffs))


# ============================================================================ signals


def si_sdr(reference, estimate) -> np.ndarray | float:
    """Scale-invariant signal-to-distortion ratio in dB of float [..., S] signals (Le Roux et
    al. 2019): both made zero-mean, target = the projection of `estimate` on `reference`,
    SI-SDR = 10 log10(|target|^2 / |estimate - target|^2). A float for 1-D inputs.

    Our own few lines: the maintained implementations (torchmetrics, asteroid) need torch.
    Exact scaled copies give a large finite value, not inf.
    """
    ref = np.asarray(reference, np.float64)
    est = np.asarray(estimate, np.float64)
    if ref.shape != est.shape:
        raise ValueError(f"reference {ref.shape} but estimate {est.shape}")
    ref = ref - ref.mean(-1, keepdims=True)
    est = est - est.mean(-1, keepdims=True)
    tiny = np.finfo(np.float64).tiny
    alpha = np.sum(est * ref, -1, keepdims=True) / np.maximum(
        np.sum(ref * ref, -1, keepdims=True), tiny
    )
    target = alpha * ref
    noise = est - target
    ratio = np.sum(target * target, -1) / np.maximum(np.sum(noise * noise, -1), tiny)
    out = 10.0 * np.log10(np.maximum(ratio, tiny))
    return float(out) if out.ndim == 0 else out


def pesq_wb(reference, degraded, sample_rate: int = features.SAMPLE_RATE) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO about 1.0-4.64) of float [S] waveforms at
    16 kHz, through the `pesq` package. Raises pesq's NoUtterancesError on silence."""
    if sample_rate != 16000:
        raise ValueError(f"wide-band PESQ is defined at 16 kHz, not {sample_rate} Hz")
    return float(pesq_lib.pesq(sample_rate, np.asarray(reference), np.asarray(degraded), "wb"))


def stoi(reference, degraded, sample_rate: int = features.SAMPLE_RATE, extended=False) -> float:
    """Short-time objective intelligibility (Taal et al. 2011; `extended`: ESTOI) of float [S]
    waveforms, through `pystoi` (which resamples to 10 kHz and drops silent frames)."""
    return float(pystoi.stoi(np.asarray(reference), np.asarray(degraded), sample_rate, extended))
