"""What the step benchmark measures: model sizes, cases and the shared input batch.

Both sides of a case start from the same Hugging Face config and the same torch-initialised
weights (ours are converted with `convert/hf.py`), and see the same numpy batch. This module
imports neither torch nor JAX, so each worker process loads only what its side needs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SAMPLE_RATE = 16_000

# HF config overrides per size. 'base' is the HF default (wav2vec2/UniSpeech base, 95 M).
SIZES = {
    "tiny": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                 conv_dim=(256,) * 7),
    "base": {},
}

# The benchmark's pre-training setting (issue 6): layerdrop off so both sides run every layer.
PRETRAIN = dict(mask_time_prob=0.65, mask_time_length=10, num_negatives=100, layerdrop=0.0)
FINETUNE = dict(mask_time_prob=0.05, mask_time_length=10, layerdrop=0.0)


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmarked step.

    hf_class: the transformers class of the reference side; family: 'wav2vec2' or
    'unispeech' (HF config class and our converter's layout); objective: our model's
    'pretrain' or 'ctc'; train: a training step (forward + backward + AdamW) or a no-grad
    forward; frozen: conv feature encoder frozen; hf_config: extra HF config values.
    """

    hf_class: str
    family: str
    objective: str
    train: bool = True
    frozen: bool = False
    hf_config: tuple = ()
    description: str = ""


CASES = {
    "w2v2_pretrain": Case("Wav2Vec2ForPreTraining", "wav2vec2", "pretrain", hf_config=tuple(PRETRAIN.items()),
                          description="wav2vec 2.0 pre-training: contrastive + diversity"),
    "unispeech_pretrain": Case("UniSpeechForPreTraining", "unispeech", "pretrain",
                               hf_config=tuple(PRETRAIN.items()),
                               description="UniSpeech pre-training: contrastive + diversity + mixed CTC "
                                           "(HF side: loss added by the benchmark)"),
    "ctc": Case("UniSpeechForCTC", "unispeech", "ctc", hf_config=tuple(FINETUNE.items()),
                description="CTC fine-tuning"),
    "ctc_frozen": Case("UniSpeechForCTC", "unispeech", "ctc", frozen=True, hf_config=tuple(FINETUNE.items()),
                       description="CTC fine-tuning, conv feature encoder frozen"),
    "infer": Case("UniSpeechForCTC", "unispeech", "ctc", train=False, hf_config=tuple(FINETUNE.items()),
                  description="inference forward (CTC logits, no grad)"),
}


def make_batch(batch_size: int, seconds: float, vocab_size: int, labels_per_second: float = 15.0,
               seed: int = 0) -> dict:
    """Numpy batch in our layout (docs/ARCHITECTURE.md): audio float32 [B,S] (unit noise, no
    padding), audio_mask, phones int32 [B,L] in 1..vocab-1 (0 is the CTC blank), phones_mask,
    labelled and weight [B] all 1. L = labels_per_second × seconds (60 for 4 s, a phone rate)."""
    rng = np.random.default_rng(seed)
    samples = int(seconds * SAMPLE_RATE)
    labels = max(1, int(labels_per_second * seconds))
    return {
        "audio": rng.standard_normal((batch_size, samples)).astype(np.float32),
        "audio_mask": np.ones((batch_size, samples), bool),
        "phones": rng.integers(1, vocab_size, (batch_size, labels)).astype(np.int32),
        "phones_mask": np.ones((batch_size, labels), bool),
        "labelled": np.ones((batch_size,), np.float32),
        "weight": np.ones((batch_size,), np.float32),
    }
