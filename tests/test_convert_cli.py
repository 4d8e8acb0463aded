"""`python -m unispeech_jax.convert` (convert/hf_workdir.py): a random tiny Hugging Face SpeechT5
saved with save_pretrained becomes a workdir whose model gives HF's outputs, and converting
that workdir back gives HF the same weights; wrong inputs are one error line."""

import shutil
import subprocess
import sys

import hf_deps
import micro
import numpy as np
import pytest
import test_parity_speecht5 as parity

from unispeech_jax import config as config_lib
from unispeech_jax import inference
from unispeech_jax.convert import hf_workdir
from unispeech_jax.data import text as text_lib

torch = hf_deps.load("torch")
transformers = hf_deps.load("transformers")

TINY_DATA = ["data.corpus.hours=0.02"]  # the test corpus: loading the workdir builds no other


def _save_hf(cls_name, sp_file, directory, seed):
    """A jittered tiny HF model of `cls_name` with the corpus's text ids, saved with its
    SentencePiece model as a SpeechT5Tokenizer save would; returns the model."""
    config = parity._config()
    config.vocab_size = text_lib.text_vocab_size(text_lib.load_sp(sp_file))
    torch.manual_seed(seed)
    model = parity._jitter(getattr(transformers, cls_name)(config), seed)
    model.save_pretrained(str(directory))
    shutil.copyfile(sp_file, directory / hf_workdir.SP_FILE)
    return model


def _same_weights(model, hf_dir, sp_file):
    back = type(model).from_pretrained(str(hf_dir)).state_dict()
    want = model.state_dict()
    assert back.keys() == want.keys()
    for key, value in want.items():
        np.testing.assert_array_equal(back[key].numpy(), value.numpy(), err_msg=key)
    assert (hf_dir / hf_workdir.SP_FILE).read_bytes() == sp_file.read_bytes()


def _config_file(task):
    return micro.REPO / "configs" / f"speecht5_{task}_tiny.py"


@pytest.fixture(scope="module")
def sp_file(tiny_corpus):
    return tiny_corpus / "spm_char.model"


def test_speech_to_text_round_trip_and_outputs(sp_file, tmp_path):
    model = _save_hf("SpeechT5ForSpeechToText", sp_file, tmp_path / "hf", seed=1)
    workdir = hf_workdir.import_hf(tmp_path / "hf", tmp_path / "w", _config_file("asr"), TINY_DATA)
    trained = inference.load(workdir, task="asr")
    assert trained.step == 0 and trained.module.args.ctc_loss_weight == 0
    audio, mask = parity._audio()
    tokens = np.random.default_rng(1).integers(3, 20, (2, 7)).astype(np.int32)
    with torch.no_grad():
        ref = model(
            parity._t(audio),
            attention_mask=parity._t(mask).long(),
            decoder_input_ids=parity._t(tokens).long(),
        )
    module, variables = trained.module, trained.variables
    enc = module.apply(variables, audio, mask, method=type(module).encode_speech)
    logits, _ = module.apply(
        variables, tokens, enc["hidden"], enc["valid"], method=type(module).decode_text
    )
    parity._close(logits, ref.logits, "workdir text logits")

    hf_workdir.export_hf(workdir, tmp_path / "hf2")
    _same_weights(model, tmp_path / "hf2", sp_file)


def test_text_to_speech_round_trip(sp_file, tmp_path):
    model = _save_hf("SpeechT5ForTextToSpeech", sp_file, tmp_path / "hf", seed=2)
    workdir = hf_workdir.import_hf(tmp_path / "hf", tmp_path / "w", _config_file("tts"), TINY_DATA)
    assert inference.load(workdir, task="tts").module.args.num_speakers == 0
    hf_workdir.export_hf(workdir, tmp_path / "hf2")
    _same_weights(model, tmp_path / "hf2", sp_file)


def test_wrong_inputs_are_config_errors(sp_file, tmp_path):
    with pytest.raises(config_lib.ConfigError, match="does not exist"):
        hf_workdir.import_hf(tmp_path / "nothing", tmp_path / "w")
    transformers.UniSpeechConfig().save_pretrained(str(tmp_path / "uni"))
    with pytest.raises(config_lib.ConfigError, match="holds a 'unispeech' model"):
        hf_workdir.import_hf(tmp_path / "uni", tmp_path / "w")
    _save_hf("SpeechT5ForSpeechToText", sp_file, tmp_path / "hf", seed=3)
    hf_config = transformers.SpeechT5Config.from_pretrained(str(tmp_path / "hf"))
    hf_config.architectures = ["SpeechT5ForTextToSpeech"]
    hf_config.save_pretrained(str(tmp_path / "hf"))
    with pytest.raises(config_lib.ConfigError, match="needs a SpeechT5 task tts"):
        hf_workdir.import_hf(tmp_path / "hf", tmp_path / "w", _config_file("asr"))
    (tmp_path / "uw").mkdir()
    (tmp_path / "uw" / "config.json").write_text(config_lib.to_json(micro.micro_config()))
    with pytest.raises(config_lib.ConfigError, match="holds a 'unispeech' model"):
        hf_workdir.export_hf(tmp_path / "uw", tmp_path / "out")


def test_cli_help_and_one_line_errors(tmp_path, compile_cache):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "unispeech_jax.convert", *map(str, args)],
            env=micro.subprocess_env(compile_cache),
            capture_output=True,
            text=True,
            timeout=300,
        )

    out = run("--helpshort")  # absl's help exits with status 1
    assert "--from-hf" in out.stdout and "--to-hf" in out.stdout, out.stderr[-3000:]
    micro.assert_one_error_line(run("--from-hf", tmp_path / "x", "--to", tmp_path / "w"), "exist")
    micro.assert_one_error_line(run("--from-hf", tmp_path / "x"), "give --from-hf DIR --to W")
