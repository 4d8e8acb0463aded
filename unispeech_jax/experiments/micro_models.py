"""The micro models of the experiments' `--scale micro` and of the tests (tests/micro.py, the
SpeechT5 tests): config overrides only. Kept free of imports so that a config file can use them
without pulling in the trainer (whose absl flags would clash with another tool's)."""

# UniSpeech: a few thousand parameters.
UNISPEECH = (
    "model.feature_encoder=conv",  # the paper's front end: the one the HF parity tests check
    "model.conv_dim=(32,32,32,32,32,32,32)",
    "model.hidden_size=32",
    "model.num_layers=2",
    "model.num_heads=2",
    "model.intermediate_size=64",
    "model.num_conv_pos_embeddings=16",
    "model.num_conv_pos_embedding_groups=4",
    "model.num_codevectors_per_group=16",
    "model.codevector_dim=32",
    "model.proj_codevector_dim=32",
    "model.num_negatives=10",
)


# SpeechT5: a few thousand parameters.
SPEECHT5 = (
    # One 400-sample window, 320 hop: the frames of the k-means labels, with one conv.
    "model.feature_encoder=conv",
    "model.conv_dim=(32,)",
    "model.conv_kernel=(400,)",
    "model.conv_stride=(320,)",
    "model.hidden_size=32",
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "model.encoder_attention_heads=2",
    "model.decoder_attention_heads=2",
    "model.encoder_ffn_dim=64",
    "model.decoder_ffn_dim=64",
    "model.num_conv_pos_embeddings=16",
    "model.num_conv_pos_embedding_groups=4",
    "model.encoder_max_relative_position=16",
    "model.speech_decoder_prenet_units=32",
    "model.speech_decoder_postnet_units=16",
    "model.speech_decoder_postnet_layers=2",
    "model.speaker_embedding_dim=8",
    "model.num_codevectors_per_group=8",
    "model.num_clusters=8",
    "model.final_dim=16",
)
