"""Decoding of model outputs: CTC best path (`ctc`), greedy and beam search over a step
function (`beam`) with joint CTC/attention scores (`ctc_prefix`), autoregressive mel
generation (`speech`), and the SpeechT5 adapters a user calls (`speecht5.recognize`,
`speecht5.synthesize`)."""

from unispeech_jax.decoding import beam, ctc, ctc_prefix, speech, speecht5
from unispeech_jax.decoding.ctc import collapse_ctc, ctc_greedy

__all__ = ["beam", "collapse_ctc", "ctc", "ctc_greedy", "ctc_prefix", "speech", "speecht5"]
