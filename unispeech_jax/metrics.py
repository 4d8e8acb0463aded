"""Recognition metrics: token error rates (PER on phone strings, WER on words)."""

from __future__ import annotations

from collections.abc import Sequence

import jiwer


def error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus-level token error rate: (substitutions + deletions + insertions) / ref tokens.

    Tokens are whitespace-separated, so the same function gives WER on words and PER on
    space-separated phone strings (and CER on space-separated characters).

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
