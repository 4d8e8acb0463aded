"""The SpeechT5 module (all pre/post-nets around one encoder–decoder, the cross-modal
quantizer and the masked-prediction head) and the family interface that builds and
initialises it: build, init_variables, vocab_size, dummy_batch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from unispeech_jax.data import batching, sources
from unispeech_jax.data import text as text_lib
from unispeech_jax.errors import ConfigError
from unispeech_jax.models import dropout, layers
from unispeech_jax.models.quantizer import GumbelVectorQuantizer
from unispeech_jax.models.speecht5.args import ModelArgs
from unispeech_jax.models.speecht5.encoder_decoder import Decoder, Encoder
from unispeech_jax.models.speecht5.positions import (
    ScaledPositionalEncoding,
    fairseq_sinusoidal,
    padded_position_ids,
)
from unispeech_jax.models.speecht5.postnets import SpeechDecoderPostnet
from unispeech_jax.models.speecht5.prenets import SpeechDecoderPrenet, SpeechEncoderPrenet

# Params with a row per text id (train.pretrained_fresh): loaded from a pre-trained run only
# when its ids stand for the same SentencePiece pieces (not an st target of the same size).
VOCAB_PARAMS = ("embed_tokens/", "ctc_proj/")


class SpeechT5(nn.Module):
    """All SpeechT5 pre/post-nets around one encoder–decoder.

    Param tree: embed_tokens (shared text embedding), speech_encoder_prenet,
    text_encoder_prenet, encoder, decoder, speech_decoder_prenet, speech_decoder_postnet,
    quantizer, final_proj, label_embeddings; ctc_proj with ctc_loss_weight > 0,
    speaker_table with num_speakers > 0 (tts, vc, se), sid_embed and sid_proj with task 'sid'. 'batch_stats': speech_decoder_postnet.
    """

    args: ModelArgs
    vocab_size: int

    def setup(self):
        a, dt = self.args, self.args.compute_dtype
        self.embed_tokens = nn.Embed(
            self.vocab_size,
            a.hidden_size,
            dtype=dt,
            embedding_init=layers._part(nn.initializers.normal(0.02), ("vocab", "embed")),
        )
        self.speech_encoder_prenet = SpeechEncoderPrenet(a)
        self.text_encoder_prenet = ScaledPositionalEncoding(a.positional_dropout)
        self.encoder = Encoder(a)
        self.decoder = Decoder(a)
        self.text_decoder_dropout = dropout.Dropout(a.positional_dropout)
        self.speech_decoder_prenet = SpeechDecoderPrenet(a)
        self.speech_decoder_postnet = SpeechDecoderPostnet(a)
        self.quantizer = GumbelVectorQuantizer(
            a.num_codevector_groups, a.num_codevectors_per_group, a.hidden_size, dt
        )
        self.final_proj = layers._dense(a.final_dim, ("embed", None), dt, "final_proj")
        if a.ctc_loss_weight > 0:
            self.ctc_proj = layers._dense(self.vocab_size, ("embed", "vocab"), dt, "ctc_proj")
        if a.task == "sid":  # pooled encoder output -> speaker embedding -> speaker logits
            self.sid_embed = layers._dense(
                a.speaker_embedding_dim, ("embed", "speaker"), dt, "sid_embed"
            )
            self.sid_proj = layers._dense(max(a.num_speakers, 1), ("speaker", None), dt, "sid_proj")
        elif a.num_speakers > 0:
            self.speaker_table = self.param(
                "speaker_table",
                layers._part(nn.initializers.normal(1.0), (None, "speaker")),
                (a.num_speakers, a.speaker_embedding_dim),
            )
        self.label_embeddings = self.param(
            "label_embeddings",
            layers._part(nn.initializers.uniform(1.0), ("vocab", None)),
            (a.num_clusters, a.final_dim),
        )

    # -- encoders ------------------------------------------------------------------------------

    def encode_speech(self, audio, audio_mask, mask_time=None, train: bool = False):
        """audio [B,S], audio_mask bool [B,S], mask_time bool [B,T] or None → dict
        hidden [B,T,D], valid bool [B,T], extract_features [B,T,C]."""
        out = self.speech_encoder_prenet(audio, audio_mask, mask_time, deterministic=not train)
        out["hidden"] = self.encoder(out["hidden"], out["valid"], deterministic=not train)
        return out

    def encode_text(self, tokens, token_mask, train: bool = False):
        """tokens int [B,T], token_mask bool [B,T] → dict hidden [B,T,D], valid bool [B,T]."""
        x = self.text_encoder_prenet(self.embed_tokens(tokens), deterministic=not train)
        return {
            "hidden": self.encoder(x, token_mask, deterministic=not train),
            "valid": token_mask,
        }

    # -- pre-training heads --------------------------------------------------------------------

    def cross_modal_quantize(self, hidden, valid, temperature=2.0, train: bool = False):
        """Encoder output [B,T,D] → dict hidden [B,T,D] (training: ~vq_replace_prob of the valid
        positions replaced by their codewords, rng 'vq'; eval: unchanged), perplexity (scalar,
        over valid positions), code_ids int [B,T,G], replaced bool [B,T]."""
        q, perplexity, code_ids = self.quantizer(hidden, valid, temperature, train)
        if train and self.args.vq_replace_prob > 0:
            replaced = (
                jax.random.bernoulli(self.make_rng("vq"), self.args.vq_replace_prob, valid.shape)
                & valid
            )
        else:
            replaced = jnp.zeros_like(valid)
        hidden = jnp.where(replaced[..., None], q.astype(hidden.dtype), hidden)
        return {
            "hidden": hidden,
            "perplexity": perplexity,
            "code_ids": code_ids,
            "replaced": replaced,
        }

    def cluster_logits(self, hidden):
        """HuBERT-style masked-prediction logits: cosine(final_proj(h), e_c) / logit_temp,
        hidden [B,T,D] → float32 [B,T,num_clusters]."""
        proj = self.final_proj(hidden).astype(jnp.float32)
        proj = proj / jnp.maximum(jnp.linalg.norm(proj, axis=-1, keepdims=True), 1e-8)
        emb = self.label_embeddings / jnp.maximum(
            jnp.linalg.norm(self.label_embeddings, axis=-1, keepdims=True), 1e-8
        )
        return jnp.einsum("btf,cf->btc", proj, emb) / self.args.logit_temp

    # -- fine-tuning heads ---------------------------------------------------------------------

    def ctc_logits(self, hidden):
        """CTC head over the text ids (ctc_loss_weight > 0): encoder output [B,T,D] → float32
        [B,T,V] unnormalised; blank = ctc_blank_id."""
        return self.ctc_proj(hidden).astype(jnp.float32)

    def utterance_embedding(self, hidden, valid):
        """SID's speaker embedding of each utterance: the mean of its valid encoder frames
        (hidden [B,T,D], valid bool [B,T]) through the `sid_embed` projection → float32 [B,E]."""
        weights = valid.astype(jnp.float32)[..., None]
        pooled = jnp.sum(hidden.astype(jnp.float32) * weights, 1)
        pooled = pooled / jnp.maximum(jnp.sum(weights, 1), 1.0)
        return self.sid_embed(pooled.astype(hidden.dtype)).astype(jnp.float32)

    def speaker_logits(self, embedding):
        """SID's class scores of utterance embeddings [B,E] → float32 [B,num_speakers]."""
        return self.sid_proj(embedding.astype(self.args.compute_dtype)).astype(jnp.float32)

    def speaker_vectors(self, speaker):
        """Rows of the speaker table (num_speakers > 0) for int speaker [B]; -1 (a voice
        outside the training split) gets the mean row → float32 [B,E]."""
        rows = jnp.take(self.speaker_table, jnp.maximum(speaker, 0), axis=0)
        mean = jnp.mean(self.speaker_table, axis=0)
        return jnp.where((speaker >= 0)[:, None], rows, mean[None])

    # -- decoders ------------------------------------------------------------------------------

    def decode_text(self, tokens, enc, enc_valid, dec_valid=None, cache=None, train: bool = False):
        """Text decoder: tokens int [B,L] (teacher forcing, or the next L steps with a cache),
        enc [B,T,D], enc_valid bool [B,T], dec_valid bool [B,L] (default: tokens != pad)
        → (logits float [B,L,V], cache)."""
        a = self.args
        if dec_valid is None:
            dec_valid = tokens != a.pad_token_id
        offset = 0 if cache is None else cache["index"]
        scale = math.sqrt(a.hidden_size) if a.scale_embedding else 1.0
        x = self.embed_tokens(tokens) * scale
        positions = padded_position_ids(dec_valid, a.pad_token_id, offset)
        x = x + fairseq_sinusoidal(positions, a.hidden_size, a.pad_token_id).astype(x.dtype)
        x = self.text_decoder_dropout(x, deterministic=not train)
        hidden, cache = self.decoder(x, dec_valid, enc, enc_valid, cache, deterministic=not train)
        return self.embed_tokens.attend(hidden), cache

    def decode_speech(
        self,
        mel,
        speaker,
        enc,
        enc_valid,
        dec_valid=None,
        cache=None,
        train: bool = False,
        prenet_dropout: bool = False,
    ):
        """Speech decoder up to the frame projections: mel inputs [B,L,M] (shifted targets, or
        the next L inputs with a cache), speaker [B,E] or None, enc [B,T,D], enc_valid bool
        [B,T], dec_valid bool [B,L] (default all) → (dict mel_before [B,L·r,M], stop_logits
        [B,L·r], hidden [B,L,D]; cache). Apply `postnet` to the whole mel_before afterwards."""
        if dec_valid is None:
            dec_valid = jnp.ones(mel.shape[:2], bool)
        offset = 0 if cache is None else cache["index"]
        x = self.speech_decoder_prenet(
            mel, speaker, offset, prenet_dropout, deterministic=not train
        )
        hidden, cache = self.decoder(x, dec_valid, enc, enc_valid, cache, deterministic=not train)
        mel_before, stop = self.speech_decoder_postnet.frames(hidden)
        return {"mel_before": mel_before, "stop_logits": stop, "hidden": hidden}, cache

    def postnet(self, mel_before, train: bool = False, frame_valid=None):
        """Conv post-net residual: [B,N,M] → [B,N,M] (train needs mutable 'batch_stats');
        frame_valid bool [B,N] or None: each row as if alone (see SpeechDecoderPostnet)."""
        return self.speech_decoder_postnet.postnet(
            mel_before, deterministic=not train, frame_valid=frame_valid
        )

    def decode_mel(self, mel, speaker, enc, enc_valid, dec_valid, train: bool = False):
        """Teacher-forced speech decoder and post-net, as trained (the pre-net's Tacotron dropout
        is on exactly when training): mel [B,L,M] shifted targets, speaker [B,E] or None, enc
        [B,T,D], enc_valid bool [B,T], dec_valid bool [B,L] → dict mel_before, mel_after
        [B,L·r,M], stop_logits [B,L·r], hidden [B,L,D]."""
        out, _ = self.decode_speech(
            mel, speaker, enc, enc_valid, dec_valid, train=train, prenet_dropout=train
        )
        return {**out, "mel_after": self.postnet(out["mel_before"], train=train)}

    def __call__(self, audio, audio_mask, tokens, mel, speaker):
        """Eval-mode forward touching every parameter (used by `init`)."""
        speech = self.encode_speech(audio, audio_mask)
        text = self.encode_text(tokens, jnp.ones(tokens.shape, bool))
        vq = self.cross_modal_quantize(text["hidden"], text["valid"])
        logits, _ = self.decode_text(tokens, speech["hidden"], speech["valid"])
        extra = (
            {"ctc_logits": self.ctc_logits(speech["hidden"])} if self.args.ctc_loss_weight else {}
        )
        if self.args.task == "sid":
            embedding = self.utterance_embedding(speech["hidden"], speech["valid"])
            extra["speaker_logits"] = self.speaker_logits(embedding)
        elif self.args.num_speakers > 0:
            speaker = self.speaker_vectors(jnp.zeros(speaker.shape[:1], jnp.int32))
        out, _ = self.decode_speech(mel, speaker, vq["hidden"], text["valid"])
        return {
            **extra,
            "logits": logits,
            "mel_after": self.postnet(out["mel_before"]),
            "cluster_logits": self.cluster_logits(speech["hidden"]),
            **out,
        }


def build(model_cfg, vocab_size: int) -> SpeechT5:
    """The SpeechT5 module for `config.model` and a text vocabulary of `vocab_size` ids."""
    return SpeechT5(ModelArgs.from_config(model_cfg), int(vocab_size))


def init_variables(
    module: SpeechT5, rng, batch: Mapping[str, Any] | None = None, unbox: bool = False
) -> dict:
    """{'params', 'batch_stats'} of `module` (float32), logically partitioned unless `unbox`.

    Variable shapes do not depend on the example input, so the forward pass runs on abstract
    inputs (`lazy_init`: only the initialisers are computed, which compiles far faster than
    jitting the whole `init`). `batch` is accepted for the family interface; only its audio
    length, if it has audio, is used. Works under jit / eval_shape.
    """
    a = module.args
    samples = int(batch["audio"].shape[1]) if batch and "audio" in batch else 16000
    spec = jax.ShapeDtypeStruct
    variables = module.lazy_init(
        rng,
        spec((1, samples), jnp.float32),
        spec((1, samples), jnp.bool_),
        spec((1, 4), jnp.int32),
        spec((1, 3, a.num_mel_bins), jnp.float32),
        spec((1, a.speaker_embedding_dim), jnp.float32),
    )
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    return nn.meta.unbox(variables) if unbox else variables


def check_config(config) -> None:
    """Config-time checks of a run config with this family: its `config.model` keys
    (`ModelArgs.validate`) and how they combine with `config.data`. ValueError naming the key."""
    ModelArgs.from_config(config.model)
    if int(config.data.km_clusters) > int(config.model.num_clusters):
        raise ValueError(
            f"data.km_clusters={config.data.km_clusters} k-means ids do not fit "
            f"model.num_clusters={config.model.num_clusters} masked-prediction classes"
        )


def vocab_size(config) -> int:
    """Text ids of `config.data`'s SentencePiece model (task st: the target language's), with the mask and pad ids past its
    vocabulary (data/text.py). Raises ConfigError unless model.decoder_start_token_id is the
    model's </s>, the token the text decoder starts from, and (with a CTC head)
    model.ctc_blank_id its <s>, a token no transcript holds."""
    m = config.model
    path = sources.task_sentencepiece_model(config.data, m.get("task", "pretrain"))
    sp = text_lib.load_sp(path)
    if sp.eos_id() != m.decoder_start_token_id:
        raise ConfigError(
            f"model.decoder_start_token_id={m.decoder_start_token_id} is not the "
            f"</s> id ({sp.eos_id()}) of {path}"
        )
    if m.get("ctc_loss_weight", 0) > 0 and (sp.bos_id() < 0 or sp.bos_id() != m.ctc_blank_id):
        raise ConfigError(
            f"model.ctc_blank_id={m.ctc_blank_id} is not the <s> id ({sp.bos_id()}) of {path}"
        )
    return text_lib.text_vocab_size(sp)


def resolve_config(config) -> None:
    """Fixes what the data decides before a run builds its model: model.num_speakers=-1 becomes
    the number of training speakers (sources.num_speakers; the tts, vc and se table rows, sid's classes),
    or 0 when data.speaker_embeddings gives tts x-vectors instead. ConfigError if a fixed table
    or head has fewer rows than the data has speakers, or sid has none."""
    m = config.model
    if m.get("task") == "sid" and m.num_speakers == 0:
        raise ConfigError("model.num_speakers=0: task sid needs its classes (-1: the data's)")
    if m.get("task") not in ("tts", "vc", "se", "sid") or m.num_speakers == 0:
        return
    if m.num_speakers == -1 and config.data.speaker_embeddings:
        m.num_speakers = 0
        return
    speakers = sources.num_speakers(config.data)
    if m.num_speakers == -1:
        m.num_speakers = speakers
    elif m.num_speakers < speakers:
        raise ConfigError(
            f"model.num_speakers={m.num_speakers}: the training split has {speakers} speakers"
        )


def dummy_batch(data_cfg) -> dict:
    """Zero audio of the largest speech bucket (init only reads the audio length)."""
    samples = int(tuple(data_cfg.bucket_boundaries)[-1])
    batch = batching.batch_size_for(data_cfg, samples)
    return {
        "audio": np.zeros((batch, samples), np.float32),
        "audio_mask": np.ones((batch, samples), bool),
    }
