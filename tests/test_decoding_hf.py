"""`decoding.speecht5.synthesize` against Hugging Face's `generate_speech` on the tiny jittered
model of tests/test_parity_speecht5.py (pre-net dropout off on both sides)."""

import jax
import numpy as np
import pytest
import test_parity_speecht5 as parity

from unispeech_jax.decoding import speecht5 as st5_decoding
from unispeech_jax.models import speecht5


# HF stops these two utterances after 2 and 12 frames at threshold 0.9; at 1.1 after 16 frames
# and at the maximum, 18.
@pytest.mark.parametrize("threshold", [0.9, 1.1])
def test_synthesize_matches_hf_generate_speech(threshold):
    model = parity._hf_model("SpeechT5ForTextToSpeech", seed=2)
    args, variables = parity._ours(model)
    tokens = parity._tokens(9, 6, seed=2)
    mask = tokens != parity.PAD
    _, speaker = parity._speech_inputs(3)
    steps = 9  # HF: maxlen = int(9 tokens · maxlenratio 2.0 / r 2)
    with parity.torch.no_grad():
        want, want_lengths = model.generate_speech(
            parity._t(tokens).long(),
            parity._t(speaker),
            attention_mask=parity._t(mask).long(),
            threshold=threshold,
            maxlenratio=2.0,
            return_output_lengths=True,
        )
    module = speecht5.SpeechT5(args, parity.VOCAB)
    mel, lengths = jax.jit(
        lambda v: st5_decoding.synthesize(
            module,
            v,
            tokens,
            mask,
            speaker,
            rng=jax.random.key(0),
            max_frames=steps * args.reduction_factor,
            threshold=threshold,
            prenet_dropout=False,
        )
    )(variables)
    np.testing.assert_array_equal(lengths, want_lengths)
    assert want_lengths[0] != want_lengths[1]
    width = want.shape[1]
    np.testing.assert_allclose(mel[:, :width], want.numpy(), atol=1e-4)
    assert np.all(np.asarray(mel[:, width:]) == 0)
