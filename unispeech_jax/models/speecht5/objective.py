"""`loss_fn`: the SpeechT5 objective of `model.task` — joint pre-training (pretrain.py) or a
fine-tuning task (tasks/)."""

from __future__ import annotations

from unispeech_jax.models.speecht5 import pretrain
from unispeech_jax.models.speecht5.model import SpeechT5
from unispeech_jax.models.speecht5.tasks import TASK_LOSSES


def loss_fn(module: SpeechT5, params, batch, rng, step, train: bool, model_state):
    """SpeechT5 objective of `module.args.task` on one batch → (loss, (metrics, model_state)).

    'pretrain', the joint objective; each batch is speech or text (by its keys):
      speech (audio, km, mel): L_mlm (HuBERT cross-entropy over k-means ids at masked frames) +
        L_1 (mel before + after the post-net) + L_bce (stop token) + γ·L_d;
      text (text_source, text): L_mle (decoder reconstructs the text from its infilled
        version) + γ·L_d;
      L_d = the cross-modal quantizer's diversity loss (γ = diversity_loss_weight), on the
      encoder output of either modality. Metric names carry the modality ('speech/…',
      'text/…') and both report their code perplexity.
    'asr' (audio, text): speech-encoder pre-net + encoder + text decoder, teacher-forced
      cross-entropy over the real target tokens of the batch (label_smoothing, 0 as HF) —
      SpeechT5ForSpeechToText's `loss`; training masks time spans (mask_time_*, HF's 0.05);
      with ctc_loss_weight > 0 plus that times the CTC of the encoder's `ctc_proj` head
      (per target token, `asr/ctc`; SpeechT5's recipe).
    'tts' (text, mel, speaker or speaker_embedding): text-encoder pre-net + encoder + speech
      decoder + post-net, L1 (before + after the post-net) + stop BCE (pos_weight 5) + the
      guided attention loss (scale · mean over guided heads and valid (step, token) pairs) —
      SpeechT5ForTextToSpeech's `loss`; the speaker input is the x-vector if the batch has
      one, else the learned speaker table's row (num_speakers > 0).
    'st' (audio, text of the target language): asr's cross-entropy on the target vocabulary
      (`st/…`; tasks/st.py).
    'sid' (audio, speaker): speech-encoder pre-net + encoder, mean over valid frames, the
      `sid_embed` speaker embedding and `sid_proj` logits over model.num_speakers training
      speakers, cross-entropy (`sid/ce`, `sid/accuracy`; tasks/sid.py).
    'vc', 'se' (audio, mel, speaker or speaker_embedding): speech-encoder pre-net + encoder +
      speech decoder + post-net (SpeechT5ForSpeechToSpeech) with TTS's loss (metrics 'vc/…',
      'se/…'); training masks time spans as ASR. vc's mel is the same sentence in the target
      speaker's voice, se's the clean recording of the noisy input.
    Fine-tuning does not use the cross-modal quantizer nor the masked-prediction head (as HF,
    which has neither): the encoder output goes straight to cross-attention. Their parameters
    stay in the tree with zero gradients (AdamW's decoupled weight decay still shrinks their
    kernels), as do the other modality's pre/post-nets.

    `rng` (one key per step) is split into the module's streams and the span mask (pre-training
    eval still masks, deterministically); `step` sets the Gumbel temperature. model_state:
    {'batch_stats'} of the post-net's BatchNorm, updated by training steps that run it.
    """
    task = module.args.task
    part = TASK_LOSSES[task] if task in TASK_LOSSES else pretrain.loss
    return part(module, params, model_state, batch, rng, step, train)
