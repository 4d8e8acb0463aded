"""UniSpeech (and plain wav2vec 2.0) model family: model, objectives, batch shapes, FLOPs.

Family interface (docs/ARCHITECTURE.md "Models"):

    build(model_cfg, vocab_size) -> UniSpeech module
    dummy_batch(data_cfg) -> batch of the largest bucket (sizes from data.batching.batch_size_for)
    loss_fn(module, params, batch, rng, step, train) -> (loss, metrics)
    predict_fn(module, params, batch) -> (ctc_logits [B,T,V], frame_valid [B,T])
    flops_per_batch(model_cfg, batch_shapes) -> float   (fwd + bwd = 3 × forward)

Architecture (wav2vec 2.0 + UniSpeech heads):

    audio [B,S] → conv feature encoder → LayerNorm = extract_features z [B,T,C]
      → Dense(D) → dropout → (masked frames ← learned mask embedding) → Transformer → c [B,T,D]
    quantizer(dropout(z)) → q [B,T,codevector_dim]

Objective 'pretrain' (UniSpeech multitask, official microsoft/UniSpeech fairseq code):
  * contrastive InfoNCE at masked frames: cosine(pred_t, target_t) against K distractors,
    divided by `contrastive_temperature`; distractors equal to the positive get -inf.
  * diversity (G·V − perplexity)/(G·V), perplexity of the soft code distribution over the
    masked frames of the batch.
  * phonetic CTC over the vocabulary with **mixed CTC**: per frame, with prob `replace_prob`,
    the CTC head sees the quantized vector of a second (independent Gumbel) quantizer pass,
    projected to the model dim, instead of c. Then dropout(final_dropout) and `ctc_proj`.
  * the two projection layouts of the official code (`mixed_ctc_projection`):
      'transpose' (official recipes, `--transpose`; HF UniSpeechForPreTraining layout):
          pred = c;  target = final_proj(project_q(q));  CTC quantized input = the same map
          (project_q: codevector_dim→proj_codevector_dim, final_proj: proj_codevector_dim→D,
          HF calls final_proj `project_hid`). The contrastive task is solved in model space.
      'standard' (wav2vec 2.0 layout; HF Wav2Vec2ForPreTraining):
          pred = final_proj(c) (D→proj);  target = project_q(q);  CTC quantized input =
          q2h_proj(q) (codevector_dim→D), a separate layer.
  * distractors: from all valid frames of the utterance (`negatives_from_everywhere`, official
    recipe) or only from masked frames (wav2vec 2.0). Positives and distractors come from the
    same quantizer pass (fairseq draws the everywhere-distractors from the second pass; with
    argmax codes the two are equal, with Gumbel sampling only the noise differs).
  * per-example mixing, with ℓ_i = labelled, w_i = weight, N_i masked frames of example i:
        loss = [ Σ_i w_i α ℓ_i CTC_i + Σ_i w_i (1 − α ℓ_i) (CE_i + w_d · L_d · N_i) ] / Σ_i w_i N_i
    i.e. labelled examples α·L_ctc + (1−α)(L_c + w_d·L_d), unlabelled L_c + w_d·L_d. This is
    the official normalisation (criterion `wav2vec_mtl`): CTC summed over utterances, InfoNCE
    summed over masked frames, diversity times the masked-frame count, and the whole loss
    divided by the number of masked frames (fairseq's sample_size).
  * mixed-CTC warm-up (`replace_warmup_steps`, not in the official code, 0 = off): the
    replacement probability ramps linearly from 0 to r. Why: before CTC leaves its all-blank
    plateau the quantized codes carry no phonetic information, and replacing half of the CTC
    input by them keeps CTC on the plateau; a plateaued CTC then makes the context constant,
    which leaves the contrastive task at chance and (with a small diversity weight) lets the
    codebook collapse. Measured on one tiny-config batch: CTC left the plateau after ~100
    steps with r = 0 and not within 150 steps with r = 0.5.
  * not implemented: fairseq's conv-feature L2 penalty (`features_pen`), whose weight is 0
    in the official UniSpeech recipes (`--loss-weights '[0.1, 0]'`).
  * eval (train=False) still masks (deterministically from `rng`) so the contrastive loss is
    defined; dropout and layerdrop are off and the quantizer takes the argmax.

Objective 'ctc' (fine-tuning, UniSpeechForCTC / fairseq wav2vec_ctc):
  encoder (time masking with mask_time_*, channel masking with mask_channel_*, train only)
  → dropout(final_dropout) → lm_head. Loss = Σ_i w_i ℓ_i CTC_i / Σ_i w_i ℓ_i (sentence
  average, the official fine-tuning recipe's --sentence-avg). `freeze_feature_encoder` stops
  the gradient into the conv stack. Freezing everything below the head for the first updates
  (fairseq freeze_finetune_updates) is the optimizer's job: `optim.freeze_steps/freeze_regex`.

Padding: the model always masks padded frames (attention keys, pos-conv input, losses). HF's
feature extractor returns an attention mask only for feat_extract_norm='layer' checkpoints;
for 'group' checkpoints HF pipelines run the zero-padded audio without mask. Pass an all-True
`audio_mask` to reproduce that. In 'group' mode the first GroupNorm normalises over all
frames, padding included (as HF/fairseq), so padding changes valid frames slightly; in
'layer' mode valid frames are exactly independent of padding.

Model config keys (`config.model`):
  name                         'unispeech' (family selector)
  objective                    'pretrain' (UniSpeech multitask) or 'ctc' (fine-tuning)
  conv_dim, conv_kernel, conv_stride   conv feature encoder channels / kernels / strides
  conv_bias                    bias in the conv layers
  feature_encoder              'conv' (wav2vec 2.0's waveform conv stack, the paper's) or 'log_mel'
                               (log-mel of the same 25 ms / 20 ms frames, normalised per utterance,
                               then one 3-wide conv to conv_dim[-1]; layers.LogMelFeatureEncoder:
                               a fraction of the conv stack's cost on CPU, no HF counterpart)
  num_mel_bins                 mel bins of the 'log_mel' front end
  feat_extract_norm            'group' (GroupNorm on conv 0) or 'layer' (LayerNorm after every conv)
  feature_grad_mult            gradient scale into the conv stack (0 freezes it)
  freeze_feature_encoder       stop all gradient into the conv stack (overrides feature_grad_mult)
  hidden_size, num_layers, num_heads, intermediate_size   Transformer sizes
  layer_norm_first             pre-LN blocks + final LN (large) instead of post-LN (base)
  layer_norm_eps               LayerNorm epsilon (feature projection and Transformer)
  num_conv_pos_embeddings      positional conv kernel size
  num_conv_pos_embedding_groups  positional conv groups
  hidden_dropout               dropout on residual branches and after the input LN
  attention_dropout            dropout on attention probabilities
  activation_dropout           dropout after the FFN activation
  feat_proj_dropout            dropout after the feature projection (fairseq dropout_input)
  feat_quantizer_dropout       dropout on the quantizer input (fairseq dropout_features)
  final_dropout                dropout before the CTC head
  layerdrop                    probability of skipping a Transformer block in training
  mask_time_prob, mask_time_length, mask_time_min_masks   span masking of frames
  mask_channel_prob, mask_channel_length, mask_channel_min_masks   channel masking (0 = off)
  num_codevector_groups (G), num_codevectors_per_group (V), codevector_dim   quantizer
  proj_codevector_dim          contrastive projection size (fairseq final_dim)
  gumbel_temperature           (start, min, decay): max(start·decay^step, min)
  num_negatives                K distractors per masked frame
  negatives_from_everywhere    draw distractors from all valid frames (True) or masked only
  contrastive_temperature      κ, cosine logits are divided by it
  diversity_loss_weight        w_d
  ctc_weight                   α (0 = contrastive only, e.g. continued pre-training)
  replace_prob                 mixed-CTC replacement probability r
  replace_warmup_steps         ramp r linearly from 0 over this many steps (0 = constant r,
                               the official recipe; see 'mixed-CTC warm-up' above)
  mixed_ctc_projection         'transpose' (official recipe, HF UniSpeech) or 'standard' (wav2vec2)
  dtype                        compute dtype ('float32', 'bfloat16'); params stay float32
  scan_layers                  nn.scan over Transformer layers (leading 'layers' param axis)
  remat                        per Transformer layer: 'none', 'per_layer' (recompute the block
                               in the backward pass) or 'dots_saveable' (keep its matmul
                               outputs) (transformer.REMAT)
  pos_conv_impl                positional conv: 'auto' (on CPU, where XLA's kernel gradient of
                               this conv is slow, 'taps' or 'fft' by width; 'conv' elsewhere),
                               'conv', 'fft' or 'taps' (layers.PositionalConvEmbedding)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from unispeech_jax import losses
from unispeech_jax.data import batching, sources
from unispeech_jax.models import dropout, layers, masking, transformer
from unispeech_jax.models.family import FamilyArgs
from unispeech_jax.models.quantizer import GumbelVectorQuantizer, gumbel_temperature


@dataclasses.dataclass(frozen=True)
class ModelArgs(FamilyArgs):
    """Hashable, typed copy of `config.model` (defaults = UniSpeech/wav2vec2 base)."""

    name: str = "unispeech"
    objective: str = "pretrain"
    conv_dim: tuple = (512,) * 7
    conv_kernel: tuple = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    feature_encoder: str = "conv"
    num_mel_bins: int = 80
    feat_extract_norm: str = "group"
    feature_grad_mult: float = 0.1
    freeze_feature_encoder: bool = False
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    layer_norm_first: bool = False
    layer_norm_eps: float = 1e-5
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    feat_proj_dropout: float = 0.1
    feat_quantizer_dropout: float = 0.0
    final_dropout: float = 0.1
    layerdrop: float = 0.05
    mask_time_prob: float = 0.5
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_channel_prob: float = 0.0
    mask_channel_length: int = 10
    mask_channel_min_masks: int = 0
    num_codevector_groups: int = 2
    num_codevectors_per_group: int = 320
    codevector_dim: int = 256
    proj_codevector_dim: int = 256
    gumbel_temperature: tuple = (2.0, 0.1, 0.999995)
    num_negatives: int = 100
    negatives_from_everywhere: bool = True
    contrastive_temperature: float = 0.1
    diversity_loss_weight: float = 0.1
    ctc_weight: float = 0.5
    replace_prob: float = 0.5
    replace_warmup_steps: int = 0
    mixed_ctc_projection: str = "transpose"
    dtype: str = "float32"
    scan_layers: bool = True
    remat: str = "none"
    pos_conv_impl: str = "auto"

    def validate(self):
        if self.objective not in ("pretrain", "ctc"):
            raise ValueError(f"model.objective must be 'pretrain' or 'ctc', got {self.objective!r}")
        layers.check_shared_fields(self)
        if self.mixed_ctc_projection not in ("transpose", "standard"):
            raise ValueError(
                "model.mixed_ctc_projection must be 'transpose' or 'standard', "
                f"got {self.mixed_ctc_projection!r}"
            )
        if (
            self.hidden_size % self.num_heads
            or self.hidden_size % self.num_conv_pos_embedding_groups
        ):
            raise ValueError(
                "hidden_size must be divisible by num_heads and num_conv_pos_embedding_groups"
            )
        if self.pos_conv_impl not in ("auto", "conv", "fft", "taps"):
            raise ValueError(
                f"model.pos_conv_impl must be 'auto', 'conv', 'fft' or 'taps', "
                f"got {self.pos_conv_impl!r}"
            )
        transformer.check_remat(self.remat)
        if self.codevector_dim % self.num_codevector_groups:
            raise ValueError("codevector_dim must be divisible by num_codevector_groups")

    @property
    def conv_grad_mult(self) -> float:
        return 0.0 if self.freeze_feature_encoder else float(self.feature_grad_mult)


default_config = ModelArgs.default_config


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


class UniSpeech(nn.Module):
    """UniSpeech / wav2vec 2.0 with a pre-training head ('pretrain') or a CTC head ('ctc').

    Param tree (HF names): feature_extractor, feature_projection, masked_spec_embed, encoder,
    and for 'pretrain' quantizer, project_q, final_proj, [q2h_proj], ctc_proj; for 'ctc' lm_head.
    """

    args: ModelArgs
    vocab_size: int

    def setup(self):
        a = self.args
        dt = a.compute_dtype
        self.feature_extractor = layers.make_feature_encoder(a, a.conv_grad_mult, dt, None)
        self.feature_projection = layers.FeatureProjection(
            a.hidden_size, a.layer_norm_eps, a.feat_proj_dropout, dt
        )
        self.masked_spec_embed = self.param(
            "masked_spec_embed",
            nn.with_logical_partitioning(nn.initializers.uniform(1.0), ("embed",)),
            (a.hidden_size,),
        )
        self.encoder = transformer.TransformerEncoder(a)
        self.final_dropout = dropout.Dropout(a.final_dropout)
        if a.objective == "pretrain":
            self.feature_dropout = dropout.Dropout(a.feat_quantizer_dropout)
            self.quantizer = GumbelVectorQuantizer(
                a.num_codevector_groups,
                a.num_codevectors_per_group,
                a.codevector_dim,
                dt,
            )
            self.project_q = _dense(a.proj_codevector_dim, (None, "embed"), dt)
            if a.mixed_ctc_projection == "transpose":
                self.final_proj = _dense(a.hidden_size, (None, "embed"), dt)
            else:
                self.final_proj = _dense(a.proj_codevector_dim, ("embed", None), dt)
                self.q2h_proj = _dense(a.hidden_size, (None, "embed"), dt)
            self.ctc_proj = _dense(self.vocab_size, ("embed", "vocab"), dt)
        else:
            self.lm_head = _dense(self.vocab_size, ("embed", "vocab"), dt)

    # -- encoder -------------------------------------------------------------------------------

    def encode(self, audio, audio_mask, mask_time=None, mask_channel=None, train: bool = False):
        """audio float [B,S], audio_mask bool [B,S] → dict of
        hidden [B,T,D] (Transformer output), extract_features [B,T,C] (normed conv features),
        frame_valid bool [B,T].

        mask_time: bool [B,T] frames replaced by the mask embedding; mask_channel: bool [B,D]
        model-dim channels zeroed on every frame (fine-tuning SpecAugment).
        """
        a = self.args
        frame_valid = layers.frame_validity(audio_mask, a.conv_kernel, a.conv_stride)
        conv = layers.run_feature_encoder(self.feature_extractor, audio, frame_valid)
        hidden, extract_features = self.feature_projection(conv, deterministic=not train)
        if mask_time is not None:
            hidden = jnp.where(
                mask_time[..., None], self.masked_spec_embed.astype(hidden.dtype), hidden
            )
        if mask_channel is not None:
            hidden = jnp.where(mask_channel[:, None, :], 0, hidden)
        hidden = self.encoder(hidden, frame_valid, deterministic=not train)
        return {"hidden": hidden, "extract_features": extract_features, "frame_valid": frame_valid}

    # -- heads ---------------------------------------------------------------------------------

    def _quantized_to_model_space(self, q):
        if self.args.mixed_ctc_projection == "transpose":
            return self.final_proj(self.project_q(q))
        return self.q2h_proj(q)

    def pretrain(
        self,
        audio,
        audio_mask,
        mask_time,
        temperature=2.0,
        train: bool = False,
        with_ctc: bool = True,
        mix_ctc: bool = True,
        perplexity_frames=None,
        replace_prob=None,
    ):
        """UniSpeech pre-training forward.

        Returns dict: pred [B,T,P] and targets [B,T,P] (contrastive pair; P = D for
        'transpose', proj_codevector_dim for 'standard'), perplexity (quantizer's, over
        `perplexity_frames`, default masked valid frames), code_ids [B,T,G], ctc_logits [B,T,V]
        (if with_ctc; mixed CTC when mix_ctc, rng stream 'mixed'), frame_valid, hidden.
        replace_prob: mixed-CTC probability (scalar, may be traced); default `args.replace_prob`.
        """
        a = self.args
        out = self.encode(audio, audio_mask, mask_time=mask_time, train=train)
        hidden, valid = out["hidden"], out["frame_valid"]
        z = self.feature_dropout(out["extract_features"], deterministic=not train)
        if perplexity_frames is None:
            perplexity_frames = valid if mask_time is None else (valid & mask_time)
        q, perplexity, code_ids = self.quantizer(z, perplexity_frames, temperature, train)
        if a.mixed_ctc_projection == "transpose":
            pred, targets = hidden, self.final_proj(self.project_q(q))
        else:
            pred, targets = self.final_proj(hidden), self.project_q(q)
        result = {
            "pred": pred,
            "targets": targets,
            "perplexity": perplexity,
            "code_ids": code_ids,
            "frame_valid": valid,
            "hidden": hidden,
        }
        if with_ctc:
            ctc_in = hidden
            if replace_prob is None:
                replace_prob = a.replace_prob
            if mix_ctc and a.replace_prob > 0:
                # A second, independently sampled quantizer pass feeds the mixed CTC input.
                q2 = self.quantizer(z, valid, temperature, train)[0] if train else q
                ctc_in = losses.mix_ctc_inputs(
                    self.make_rng("mixed"), hidden, self._quantized_to_model_space(q2), replace_prob
                )
            ctc_in = self.final_dropout(ctc_in, deterministic=not train)
            result["ctc_logits"] = self.ctc_proj(ctc_in)
        return result

    def ctc(self, audio, audio_mask, mask_time=None, mask_channel=None, train: bool = False):
        """CTC head on the encoder: (logits [B,T,V] float, frame_valid [B,T]).

        For a 'pretrain' model this is `ctc_proj` on the context without mixing.
        """
        out = self.encode(
            audio, audio_mask, mask_time=mask_time, mask_channel=mask_channel, train=train
        )
        hidden = out["hidden"]
        hidden = self.final_dropout(hidden, deterministic=not train)
        head = self.lm_head if self.args.objective == "ctc" else self.ctc_proj
        return head(hidden), out["frame_valid"]

    def __call__(self, audio, audio_mask, train: bool = False):
        """Eval-mode forward touching every parameter (used by `init`)."""
        if self.args.objective == "pretrain":
            out = self.pretrain(audio, audio_mask, None, train=train, mix_ctc=False)
            if self.args.mixed_ctc_projection == "standard":  # create q2h_proj
                out["q_hidden"] = self.q2h_proj(
                    jnp.zeros(out["code_ids"].shape[:2] + (self.args.codevector_dim,))
                )
            return out
        logits, valid = self.ctc(audio, audio_mask, train=train)
        return {"ctc_logits": logits, "frame_valid": valid}


def _dense(features, axes, dtype):
    return nn.Dense(
        features,
        dtype=dtype,
        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[-1],)),
    )


# --------------------------------------------------------------------------------------------
# Family interface
# --------------------------------------------------------------------------------------------

# Fine-tuning from a pre-training run (train.merge_pretrained): the CTC head starts from the
# pre-trained phonetic CTC head when the two label dictionaries list the same phones in the
# same order; otherwise both heads (a row per phone id) start fresh (train.pretrained_fresh).
PRETRAINED_ALIASES = (("lm_head/", "ctc_proj/"),)
VOCAB_PARAMS = ("lm_head/", "ctc_proj/")
LOGICAL_AXES = layers.ACTIVATION_AXES + (
    "layers",
    "embed",
    "mlp",
    "heads",
    "vocab",
    "codes",
    "conv_in",
    "conv_out",
    "conv_kernel",
)


def check_config(config) -> None:
    """Config-time checks of a run config with this family: its `config.model` keys
    (`ModelArgs.validate`) and how they combine with `config.data`. ValueError naming the key."""
    args = ModelArgs.from_config(config.model)
    if args.objective != "ctc":
        return
    if float(config.data.labelled_fraction) < 1 and not config.data.labelled_only:
        raise ValueError(
            f"model.objective=ctc with data.labelled_fraction={config.data.labelled_fraction}: "
            "the unlabelled utterances would each cost a step's share and carry no loss; set "
            "data.labelled_only=True (with data.crop=False)"
        )
    if tuple(config.data.unlabelled_manifests):
        raise ValueError(
            "model.objective=ctc with data.unlabelled_manifests: their utterances carry no "
            "CTC loss and would only cost steps; they are for pre-training"
        )


def build(model_cfg, vocab_size: int) -> UniSpeech:
    """The UniSpeech module for `config.model` and a label vocabulary of `vocab_size` ids."""
    return UniSpeech(ModelArgs.from_config(model_cfg), int(vocab_size))


def vocab_size(config) -> int:
    """Output classes of the CTC heads: the size of `config.data`'s phone vocabulary."""
    return len(sources.vocab(config.data))


def init_params(
    module: UniSpeech, rng, batch: Mapping[str, Any] | None = None, unbox: bool = False
):
    """float32 params of `module`, logically partitioned (flax boxes) unless `unbox`.

    batch: an example batch (only its first example's shape is used; param shapes do not
    depend on it); default one second of 16 kHz audio. Works under jit / eval_shape
    (train.py's sharded init).
    """
    if batch is None:
        audio = jnp.zeros((1, 16000), jnp.float32)
        audio_mask = jnp.ones((1, 16000), bool)
    else:
        audio = jnp.zeros((1, batch["audio"].shape[1]), jnp.float32)
        audio_mask = jnp.ones((1, batch["audio"].shape[1]), bool)
    params = jax.jit(module.init)({"params": rng}, audio, audio_mask)["params"]
    return nn.meta.unbox(params) if unbox else params


def init_variables(
    module: UniSpeech, rng, batch: Mapping[str, Any] | None = None, unbox: bool = False
) -> dict:
    """{'params': `init_params`} (the family interface; UniSpeech has no other collections)."""
    return {"params": init_params(module, rng, batch, unbox)}


def dummy_batch(data_cfg) -> dict:
    """A zero batch with the shapes of the largest bucket (init / eval_shape / compile)."""
    samples = int(tuple(data_cfg.bucket_boundaries)[-1])
    batch = batching.batch_size_for(data_cfg, samples)
    labels = int(data_cfg.max_label_len)
    return {
        "audio": np.zeros((batch, samples), np.float32),
        "audio_mask": np.ones((batch, samples), bool),
        "phones": np.zeros((batch, labels), np.int32),
        "phones_mask": np.zeros((batch, labels), bool),
        "labelled": np.zeros((batch,), np.float32),
        "weight": np.ones((batch,), np.float32),
    }


def _split_rngs(rng):
    dropout, gumbel, mask, mixed = jax.random.split(rng, 4)
    return {"dropout": dropout, "gumbel": gumbel, "mask": mask, "mixed": mixed}


def loss_fn(
    module: UniSpeech,
    params,
    batch: Mapping[str, Any],
    rng,
    step,
    train: bool,
    model_state: dict | None = None,
):
    """The module's objective on one batch → (scalar loss, (dict of scalar metrics,
    model_state)); UniSpeech has no non-trainable variables, model_state comes back as {}.

    `rng` is split into 'dropout', 'gumbel', 'mask' (span mask, distractors, channel mask)
    and 'mixed' (mixed-CTC replacement); `step` (int, may be traced) sets the Gumbel
    temperature. Normalisations are in the module docstring.

    Metrics, 'pretrain': loss; contrastive (InfoNCE per masked frame); diversity; ctc (mean
    CTC NLL per labelled utterance); code_perplexity (hard argmax codes) and prob_perplexity
    (soft, what the diversity loss uses) over masked frames; temperature; replace_prob
    (mixed-CTC probability this step); accuracy (masked
    frames whose positive beats every distractor); masked_fraction (of valid frames);
    labelled_fraction. 'ctc': loss, ctc, masked_fraction.
    """
    part = _ctc_loss_fn if module.args.objective == "ctc" else _pretrain_loss_fn
    loss, metrics = part(module, params, batch, rng, step, train)
    return loss, (metrics, {})


def _batch_parts(a: ModelArgs, batch):
    """audio [B,S], audio_mask bool [B,S], weight [B], labelled [B] and the frames that count:
    valid bool [B,T] (real frames of real, weight > 0, examples)."""
    audio_mask = batch["audio_mask"].astype(bool)
    weight = batch["weight"].astype(jnp.float32)
    labelled = batch["labelled"].astype(jnp.float32)
    valid = layers.frame_validity(audio_mask, a.conv_kernel, a.conv_stride) & (weight > 0)[:, None]
    return batch["audio"], audio_mask, weight, labelled, valid


def _pretrain_loss_fn(module, params, batch, rng, step, train):
    a = module.args
    rngs = _split_rngs(rng)
    mask_rng, neg_rng = jax.random.split(rngs["mask"])
    audio, audio_mask, weight, labelled, valid = _batch_parts(a, batch)

    mask_time = masking.span_mask(
        mask_rng, valid, a.mask_time_prob, a.mask_time_length, a.mask_time_min_masks
    )
    candidates = valid if a.negatives_from_everywhere else mask_time
    negatives = masking.sample_negatives(neg_rng, candidates, a.num_negatives)
    temperature = gumbel_temperature(step, *a.gumbel_temperature)
    with_ctc = a.ctc_weight > 0
    replace_prob = a.replace_prob
    if a.replace_warmup_steps > 0:
        ramp = jnp.minimum(jnp.asarray(step, jnp.float32) / a.replace_warmup_steps, 1.0)
        replace_prob = a.replace_prob * ramp

    out, state = module.apply(
        {"params": params},
        audio,
        audio_mask,
        mask_time,
        temperature,
        train,
        with_ctc,
        replace_prob=replace_prob,
        method=UniSpeech.pretrain,
        rngs={k: rngs[k] for k in ("dropout", "gumbel", "mixed")},
        mutable=["intermediates"],
    )
    # Per-frame InfoNCE, weighted per example (labelled examples carry 1 − α of it).
    logits = losses.contrastive_logits(
        out["pred"], out["targets"], negatives, a.contrastive_temperature
    )
    per_frame = jax.nn.logsumexp(logits, axis=-1) - logits[..., 0]
    per_frame = jnp.where(mask_time, per_frame, 0.0)
    masked_per_example = jnp.sum(mask_time, axis=1).astype(jnp.float32)  # N_i
    contrastive_weight = weight * (1.0 - a.ctc_weight * labelled)  # (1 − α ℓ_i) w_i
    num_masked = jnp.sum(weight * masked_per_example)
    denom = jnp.maximum(num_masked, 1.0)

    num_codes = a.num_codevector_groups * a.num_codevectors_per_group
    diversity = losses.diversity_loss(out["perplexity"], num_codes)
    contrastive_sum = jnp.sum(contrastive_weight * jnp.sum(per_frame, axis=1))
    diversity_sum = (
        a.diversity_loss_weight * diversity * jnp.sum(contrastive_weight * masked_per_example)
    )
    loss = (contrastive_sum + diversity_sum) / denom

    metrics = {}
    if with_ctc:
        ctc = losses.ctc_loss(
            out["ctc_logits"],
            out["frame_valid"],
            batch["phones"],
            batch["phones_mask"].astype(bool),
        )
        ctc_weight_i = weight * labelled
        ctc_sum = jnp.sum(jnp.where(ctc_weight_i > 0, ctc, 0.0) * ctc_weight_i)
        loss = loss + a.ctc_weight * ctc_sum / denom
        metrics["ctc"] = ctc_sum / jnp.maximum(jnp.sum(ctc_weight_i), 1.0)
        metrics["labelled_fraction"] = jnp.sum(ctc_weight_i) / jnp.maximum(jnp.sum(weight), 1.0)

    correct = (logits[..., 0] > jnp.max(logits[..., 1:], axis=-1)) & mask_time
    code_ppl = state["intermediates"]["quantizer"]["code_perplexity"][0]
    prob_ppl = state["intermediates"]["quantizer"]["prob_perplexity"][0]
    metrics.update(
        {
            "loss": loss,
            "contrastive": jnp.sum(weight * jnp.sum(per_frame, axis=1)) / denom,
            "diversity": diversity,
            "code_perplexity": code_ppl,
            "prob_perplexity": prob_ppl,
            "temperature": jnp.asarray(temperature, jnp.float32),
            "replace_prob": jnp.asarray(replace_prob, jnp.float32),
            "accuracy": jnp.sum(weight[:, None] * correct) / denom,
            "masked_fraction": num_masked / jnp.maximum(jnp.sum(valid), 1.0),
        }
    )
    return loss, metrics


def _ctc_loss_fn(module, params, batch, rng, step, train):
    a = module.args
    rngs = _split_rngs(rng)
    time_rng, channel_rng = jax.random.split(rngs["mask"])
    audio, audio_mask, weight, labelled, valid = _batch_parts(a, batch)
    mask_time = mask_channel = None
    if train and a.mask_time_prob > 0:
        mask_time = masking.span_mask(
            time_rng, valid, a.mask_time_prob, a.mask_time_length, a.mask_time_min_masks
        )
    if train and a.mask_channel_prob > 0:
        mask_channel = masking.channel_mask(
            channel_rng,
            audio.shape[0],
            a.hidden_size,
            a.mask_channel_prob,
            a.mask_channel_length,
            a.mask_channel_min_masks,
        )
    logits, frame_valid = module.apply(
        {"params": params},
        audio,
        audio_mask,
        mask_time,
        mask_channel,
        train,
        method=UniSpeech.ctc,
        rngs={"dropout": rngs["dropout"]},
    )
    ctc = losses.ctc_loss(logits, frame_valid, batch["phones"], batch["phones_mask"].astype(bool))
    w = weight * labelled
    sentences = jnp.maximum(jnp.sum(w), 1.0)
    loss = jnp.sum(jnp.where(w > 0, ctc, 0.0) * w) / sentences
    n_frames = jnp.maximum(jnp.sum(valid), 1.0)
    masked = 0.0 if mask_time is None else jnp.sum(mask_time) / n_frames
    metrics = {"loss": loss, "ctc": loss, "masked_fraction": jnp.asarray(masked, jnp.float32)}
    return loss, metrics


def predict_fn(module: UniSpeech, params, batch):
    """Eval-mode CTC logits (no masking, no mixing): (float [B,T,V], bool [B,T])."""
    return module.apply(
        {"params": params}, batch["audio"], batch["audio_mask"].astype(bool), method=UniSpeech.ctc
    )


# --------------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------------


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") else tuple(x)


def forward_flops(model_cfg, batch_shapes) -> float:
    """Matmul/conv FLOPs (2 per multiply-add) of one forward pass of the training objective."""
    a = ModelArgs.from_config(model_cfg)
    batch, samples = _shape(batch_shapes["audio"])
    frames = int(layers.conv_output_lengths(samples, a.conv_kernel, a.conv_stride))
    bt = batch * frames
    c, d = a.conv_dim[-1], a.hidden_size
    flops = layers.feature_encoder_flops(a, batch, samples)
    flops += 2.0 * bt * c * d  # feature projection
    flops += layers.transformer_encoder_flops(
        batch,
        frames,
        d,
        a.intermediate_size,
        a.num_layers,
        a.num_conv_pos_embeddings,
        a.num_conv_pos_embedding_groups,
    )
    vocab = batch_shapes.get("vocab_size", None)
    if a.objective == "ctc":
        if vocab:
            flops += 2.0 * bt * d * vocab
        return flops
    g, v, cd, p = (
        a.num_codevector_groups,
        a.num_codevectors_per_group,
        a.codevector_dim,
        a.proj_codevector_dim,
    )
    quantizer = 2.0 * bt * c * g * v + 2.0 * bt * v * cd  # logits + one-hot codeword lookup
    passes = 2 if (a.ctc_weight > 0 and a.replace_prob > 0) else 1
    flops += passes * quantizer
    if a.mixed_ctc_projection == "transpose":
        to_space = 2.0 * bt * (cd * p + p * d)
        flops += to_space * passes  # targets, and the mixed-CTC input
        space = d
    else:
        flops += 2.0 * bt * (d * p + cd * p) + (2.0 * bt * cd * d if passes == 2 else 0.0)
        space = p
    flops += 2.0 * batch * frames * frames * space  # contrastive Gram matrix (losses.py)
    if a.ctc_weight > 0 and vocab:
        flops += 2.0 * bt * d * vocab
    return flops


def flops_per_batch(model_cfg, batch_shapes, vocab_size: int | None = None) -> float:
    """Analytic FLOPs of one training step (forward + backward ≈ 3 × forward).

    batch_shapes: {'audio': (B, S), ...} (shapes or arrays). `vocab_size` (or a 'vocab_size'
    entry of batch_shapes) adds the CTC head. Elementwise ops (norms, GELU, softmax) are not
    counted.
    """
    if vocab_size is not None:
        batch_shapes = {**batch_shapes, "vocab_size": vocab_size}
    return 3.0 * forward_flops(model_cfg, batch_shapes)


__all__ = [
    "ModelArgs",
    "UniSpeech",
    "build",
    "default_config",
    "init_params",
    "init_variables",
    "check_config",
    "LOGICAL_AXES",
    "dummy_batch",
    "vocab_size",
    "loss_fn",
    "predict_fn",
    "flops_per_batch",
    "forward_flops",
]
