"""The reference side: Hugging Face PyTorch models and their training / inference steps.

Each `make_step` returns a closure that runs one complete step (masks and distractors drawn
as HF's own examples do, forward, loss, backward, gradient clipping, AdamW; or inference: a
no-grad forward, or SpeechT5 greedy `generate`) and returns when the work is done (torch CPU
ops are synchronous). The optimizer matches ours
(`config.defaults().optim`: AdamW b1 0.9, b2 0.98, eps 1e-6, weight decay 0.01, clip 10).
"""

from __future__ import annotations

import numpy as np
import torch
import transformers
from cases import GREEDY_STEPS, SIZES, Case
from transformers.models.wav2vec2 import modeling_wav2vec2

CLIP = 10.0


_CONFIGS = {
    "wav2vec2": "Wav2Vec2Config",
    "unispeech": "UniSpeechConfig",
    "speecht5": "SpeechT5Config",
}


def hf_config(case: Case, size: str):
    """The HF config of `case` at `size` (eager attention, as our parity tests use)."""
    cls = getattr(transformers, _CONFIGS[case.family])
    return cls(**SIZES[size][case.size_kind], **dict(case.hf_config), attn_implementation="eager")


def build(case: Case, size: str, seed: int = 0):
    """The HF model of `case`, initialised from `seed` (both sides call this, so they share weights)."""
    torch.manual_seed(seed)
    return getattr(transformers, case.hf_class)(hf_config(case, size))


def optimizer(model):
    params = [p for p in model.parameters() if p.requires_grad]
    return params, torch.optim.AdamW(
        params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01
    )


def _frames(model, samples: int) -> int:
    return int(model._get_feat_extract_output_lengths(samples))


def _masks(model, batch_size: int, frames: int, negatives_from: str):
    """(mask_time_indices bool [B,T], sampled_negative_indices long [B,T,K]) as HF draws them;
    distractors from the masked frames ('masked', wav2vec 2.0) or all frames ('all')."""
    cfg = model.config
    mask = modeling_wav2vec2._compute_mask_indices(
        (batch_size, frames), cfg.mask_time_prob, cfg.mask_time_length, min_masks=2
    )
    pool = mask if negatives_from == "masked" else np.ones_like(mask)
    negatives = modeling_wav2vec2._sample_negative_indices(
        (batch_size, frames), cfg.num_negatives, pool
    )
    return torch.from_numpy(mask), torch.from_numpy(negatives).long()


def _contrastive(model, pred, targets, mask, negatives):
    """Summed InfoNCE over masked frames, exactly Wav2Vec2ForPreTraining's steps 3-6.

    pred, targets [B,T,P]; mask bool [B,T]; negatives [B,T,K] flat (B·T) indices."""
    b, t, p = targets.shape
    neg = targets.reshape(-1, p)[negatives.reshape(-1)].view(b, t, -1, p).permute(2, 0, 1, 3)
    logits = transformers.Wav2Vec2ForPreTraining.compute_contrastive_logits(
        targets[None], neg, pred, model.config.contrastive_logits_temperature
    )
    same = (targets == neg).all(-1)
    if same.any():
        logits[1:][same] = float("-inf")
    logits = logits.transpose(0, 2).reshape(-1, logits.size(0))
    target = ((1 - mask.long()) * -100).transpose(0, 1).flatten()
    return torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum")


def _unispeech_loss(model, audio, attention, mask, negatives, phones):
    """UniSpeech multitask loss on UniSpeechForPreTraining (whose forward computes no loss):
    its forward's own steps, plus contrastive + diversity (wav2vec 2.0's) and mixed CTC,
    combined as ours: [(1-α)(L_c + w_d L_d N) + α CTC] / N, N = masked frames."""
    cfg = model.config
    out = model.unispeech(audio, attention_mask=attention, mask_time_indices=mask)
    hidden = out.last_hidden_state
    quantized, perplexity = model.quantizer(model.dropout_features(out.extract_features))
    quantized = model.project_hid(model.project_q(quantized))
    replace = torch.bernoulli(torch.full(hidden.shape[:2], cfg.replace_prob)).bool()[..., None]
    ctc_in = torch.where(replace, quantized, hidden)
    log_probs = torch.log_softmax(model.ctc_proj(model.dropout(ctc_in)).float(), -1)

    masked = mask.sum()
    codes = cfg.num_codevectors_per_group * cfg.num_codevector_groups
    diversity = (codes - perplexity) / codes * masked
    contrastive = _contrastive(model, hidden, quantized, mask, negatives)
    frames = torch.full((hidden.shape[0],), hidden.shape[1], dtype=torch.long)
    labels = torch.full((hidden.shape[0],), phones.shape[1], dtype=torch.long)
    ctc = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1),
        phones,
        frames,
        labels,
        blank=0,
        reduction="sum",
        zero_infinity=True,
    )
    alpha = 0.5
    return (
        (1 - alpha) * (contrastive + cfg.diversity_loss_weight * diversity) + alpha * ctc
    ) / masked


def _inference(case: Case, model, t: dict):
    """No-grad inference of `case` on torch tensors `t` → a no-argument callable. SpeechT5
    generates exactly GREEDY_STEPS tokens greedily (its end token is suppressed until then)."""
    model.eval()
    if case.family == "speecht5":
        run = lambda: model.generate(
            t["audio"],
            attention_mask=t["audio_mask"],
            num_beams=1,
            do_sample=False,
            max_new_tokens=GREEDY_STEPS,
            min_new_tokens=GREEDY_STEPS,
        )
    else:
        run = lambda: model(t["audio"], attention_mask=t["audio_mask"]).logits

    def infer():
        with torch.inference_mode():
            run()

    return infer


def _speecht5_loss(case: Case, model, t: dict):
    """HF's own loss given labels: ASR cross-entropy, or TTS L1 + stop BCE + guided attention."""
    if case.objective == "asr":
        return model(t["audio"], attention_mask=t["audio_mask"], labels=t["text"]).loss
    return model(
        t["text"],
        attention_mask=t["text_mask"],
        labels=t["mel"],
        speaker_embeddings=t["speaker_embedding"],
    ).loss


def make_step(case: Case, model, batch: dict):
    """One step of `case` on `batch` (our numpy layout) → a no-argument callable."""
    t = {k: torch.from_numpy(v) for k, v in batch.items()}
    t.update({k: v.long() for k, v in t.items() if k.endswith("mask") or k in ("text", "phones")})
    if not case.train:
        return _inference(case, model, t)

    model.train()
    if case.frozen:
        model.freeze_feature_encoder()
    params, opt = optimizer(model)

    def loss_fn():
        if case.family == "speecht5":
            return _speecht5_loss(case, model, t)
        audio, attention, phones = t["audio"], t["audio_mask"], t["phones"]
        b, frames = audio.shape[0], _frames(model, audio.shape[1])
        if case.hf_class == "Wav2Vec2ForPreTraining":
            mask, negatives = _masks(model, b, frames, "masked")
            return model(
                audio,
                attention_mask=attention,
                mask_time_indices=mask,
                sampled_negative_indices=negatives,
            ).loss
        if case.hf_class == "UniSpeechForPreTraining":
            mask, negatives = _masks(model, b, frames, "all")
            return _unispeech_loss(model, audio, attention, mask, negatives, phones)
        return model(audio, attention_mask=attention, labels=phones).loss

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()

    return train_step
