"""SpeechT5 hyper-parameters: `ModelArgs`, the typed copy of `config.model`, and the tasks
`loss_fn` trains."""

from __future__ import annotations

import dataclasses

from unispeech_jax.models import layers, transformer
from unispeech_jax.models.family import FamilyArgs

TASKS = ("pretrain", "asr", "tts", "st", "sid", "vc", "se")
# every logical axis name of the params and activations (family.ModelFamily)
LOGICAL_AXES = layers.ACTIVATION_AXES + (
    "layers",
    "embed",
    "mlp",
    "heads",
    "head_dim",
    "relpos",
    "vocab",
    "codes",
    "conv_in",
    "conv_out",
    "conv_kernel",
    "mel",
    "prenet",
    "speaker",
)


@dataclasses.dataclass(frozen=True)
class ModelArgs(FamilyArgs):
    """Hashable, typed copy of `config.model`; defaults are the SpeechT5 base model.

    Field names follow `transformers.SpeechT5Config` where both have the field.
    """

    name: str = "speecht5"
    # speech-encoder pre-net
    conv_dim: tuple = (512,) * 7
    conv_kernel: tuple = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    # or 'log_mel' (layers.LogMelFeatureEncoder, with num_mel_bins bins; no HF counterpart)
    feature_encoder: str = "conv"
    feat_extract_norm: str = "group"
    feature_grad_mult: float = 1.0
    feat_proj_dropout: float = 0.0
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    max_speech_positions: int = 4000
    # text pre-nets; the decoder starts from </s> (fairseq / HF), so this must be the text
    # model's </s> id (`vocab_size` checks it). pad_token_id only numbers positions (padding
    # gets position id pad_token_id, real steps count on from it): validity comes from masks.
    pad_token_id: int = 1
    decoder_start_token_id: int = 2
    max_text_positions: int = 450
    scale_embedding: bool = False
    # shared encoder-decoder
    hidden_size: int = 768
    encoder_layers: int = 12
    encoder_attention_heads: int = 12
    encoder_ffn_dim: int = 3072
    encoder_layerdrop: float = 0.1
    encoder_max_relative_position: int = 160
    decoder_layers: int = 6
    decoder_attention_heads: int = 12
    decoder_ffn_dim: int = 3072
    decoder_layerdrop: float = 0.1
    layer_norm_eps: float = 1e-5
    positional_dropout: float = 0.1
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    # speech-decoder pre-/post-net
    num_mel_bins: int = 80
    reduction_factor: int = 2
    speech_decoder_prenet_layers: int = 2
    speech_decoder_prenet_units: int = 256
    speech_decoder_prenet_dropout: float = 0.5
    speaker_embedding_dim: int = 512
    speech_decoder_postnet_layers: int = 5
    speech_decoder_postnet_units: int = 256
    speech_decoder_postnet_kernel: int = 5
    speech_decoder_postnet_dropout: float = 0.5
    # pre-training heads
    num_codevector_groups: int = 2
    num_codevectors_per_group: int = 100
    gumbel_temperature: tuple = (2.0, 0.5, 0.999995)
    vq_replace_prob: float = 0.1
    num_clusters: int = 500
    final_dim: int = 256
    logit_temp: float = 0.1
    # pre-training objective (`loss_fn`): span masking of the speech encoder input (SPEC §3:
    # p 0.8, spans of 10), diversity weight γ, stop-token BCE positive weight
    mask_time_prob: float = 0.8
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    diversity_loss_weight: float = 0.1
    stop_pos_weight: float = 5.0
    # What `loss_fn` trains: 'pretrain' (the joint objective above) or a fine-tuning task with
    # Hugging Face's loss: 'asr' (speech → text, SpeechT5ForSpeechToText) or 'tts' (text → speech,
    # SpeechT5ForTextToSpeech). HF's ASR cross-entropy has no label smoothing. 'st' is asr's
    # objective on the target language's text ids; 'sid' classifies the utterance's speaker
    # from the mean of its encoder frames (tasks/st.py, tasks/sid.py); 'vc' / 'se' (speech →
    # speech, SpeechT5ForSpeechToSpeech) train TTS's loss (tasks/speech_to_speech.py).
    task: str = "pretrain"
    label_smoothing: float = 0.0
    # ASR: + ctc_loss_weight x CTC on the encoder output through a `ctc_proj` head over the
    # text ids (0: no head, HF's loss; SpeechT5's recipe: 0.5). Its blank is ctc_blank_id, the
    # SentencePiece <s> (never a transcript token; fairseq SpeechT5's blank; checked when
    # training starts).
    ctc_loss_weight: float = 0.0
    ctc_blank_id: int = 1
    # TTS speaker input: a learned table of num_speakers embeddings (speaker_embedding_dim
    # wide) read by the batch's `speaker` index, the mean row for -1 (a voice outside the
    # training split). 0: no table (the batch's `speaker_embedding` x-vectors if it has them,
    # else no speaker input); -1: one row per training speaker of config.data (none with
    # data.speaker_embeddings), fixed when training starts (`resolve_config`). SID: the
    # classes of its head (no table), -1 likewise the training speakers.
    num_speakers: int = 0
    # TTS guided attention loss on the decoder's cross-attention (HF names and defaults)
    use_guided_attention_loss: bool = True
    guided_attention_loss_num_heads: int = 2
    guided_attention_loss_sigma: float = 0.4
    guided_attention_loss_scale: float = 10.0
    dtype: str = "float32"
    # one nn.scan over the encoder's and over the decoder's layers (params, sown attention
    # probabilities and the decoding cache gain a leading layer axis under `layers`;
    # otherwise `layers_0` …), and what each layer's backward pass recomputes (transformer.REMAT)
    scan_layers: bool = True
    remat: str = "none"

    def validate(self):
        layers.check_shared_fields(self)
        transformer.check_remat(self.remat)
        d = self.hidden_size
        if d % self.encoder_attention_heads or d % self.decoder_attention_heads:
            raise ValueError("hidden_size must be divisible by the encoder and decoder head counts")
        if d % self.num_conv_pos_embedding_groups or d % self.num_codevector_groups:
            raise ValueError(
                "hidden_size must be divisible by num_conv_pos_embedding_groups and num_codevector_groups"
            )
        if self.task not in TASKS:
            raise ValueError(f"model.task {self.task!r} is not one of {TASKS}")
        if self.ctc_loss_weight < 0 or self.num_speakers < -1:
            raise ValueError(
                f"model.ctc_loss_weight={self.ctc_loss_weight} must be >= 0 and "
                f"model.num_speakers={self.num_speakers} >= -1"
            )


default_config = ModelArgs.default_config
