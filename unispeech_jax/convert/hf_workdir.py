"""A Hugging Face SpeechT5 directory (`save_pretrained`) ⇄ a training workdir that `evaluate`,
`transcribe`, `synthesize` and `--config.init_from` take.

    import_hf(hf_dir, workdir, config_file)   # config.json, vocab/spm.model, checkpoint step 0
    export_hf(workdir, hf_dir)                # config.json, model.safetensors, spm_char.model

The weights go through `hf_speecht5` (a rename table). The workdir's run config is a
fine-tuning config file (default: the SpeechT5 recipe of the class's task) whose model block
is replaced by the one the HF config describes; HF models have no CTC head and take x-vectors,
so an imported model has model.ctc_loss_weight 0 and model.num_speakers 0. The text ids are
those of the SentencePiece model saved beside the weights (SpeechT5Tokenizer's
`spm_char.model`); HF's extra rows past it (`<ctc_blank>`) are dropped on import.

Every user mistake (missing directory, a model of another family or class, a workdir that has
no HF counterpart) is a ConfigError with one line naming it.
"""

from __future__ import annotations

import json
import logging
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from unispeech_jax import checkpoint as checkpoint_lib
from unispeech_jax import config as config_lib
from unispeech_jax import inference
from unispeech_jax.convert import hf_speecht5
from unispeech_jax.data import sources, workdir_vocab
from unispeech_jax.data import text as text_lib

log = logging.getLogger("unispeech_jax")

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
# The fine-tuning tasks each HF class serves (the first: an import's default) and the
# config file an import starts from when none is given.
TASKS = {
    "SpeechT5ForSpeechToText": ("asr", "st"),
    "SpeechT5ForTextToSpeech": ("tts",),
    "SpeechT5ForSpeechToSpeech": ("vc", "se"),
}
DEFAULT_CONFIGS = {
    "SpeechT5ForSpeechToText": "speecht5_asr_base.py",
    "SpeechT5ForTextToSpeech": "speecht5_tts_base.py",
}
# The config file's model keys an import keeps: those HF lacks that do not shape the weights.
RECIPE_KEYS = (
    "task",
    "label_smoothing",
    "stop_pos_weight",
    "ctc_blank_id",
    "dtype",
    "scan_layers",
    "remat",
)
SP_FILE = "spm_char.model"  # SpeechT5Tokenizer's file name
WEIGHTS = "model.safetensors"


def _transformers():
    try:
        import transformers
    except ImportError:
        raise config_lib.ConfigError(
            "converting Hugging Face directories needs the transformers package "
            "(pip install transformers)"
        ) from None
    return transformers


# ============================================================================ HF -> workdir


def read_hf_config(hf_dir: pathlib.Path):
    """The `transformers.SpeechT5Config` of a save_pretrained directory (ConfigError: no
    such directory, no config.json, a model of another family)."""
    if not hf_dir.is_dir():
        raise config_lib.ConfigError(f"--from-hf {hf_dir} does not exist")
    path = hf_dir / "config.json"
    if not path.is_file():
        raise config_lib.ConfigError(f"{path} not found: is {hf_dir} a save_pretrained directory?")
    try:
        model_type = json.loads(path.read_text()).get("model_type")
    except (ValueError, AttributeError) as e:
        raise config_lib.ConfigError(f"{path}: not a JSON object ({e})") from None
    if model_type != "speecht5":
        raise config_lib.ConfigError(
            f"{hf_dir} holds a {model_type!r} model; convert takes SpeechT5 "
            f"({', '.join(TASKS)}); a HiFi-GAN save is used as is by synthesize --vocoder"
        )
    return _transformers().SpeechT5Config.from_pretrained(str(hf_dir))


def read_weights(hf_dir: pathlib.Path) -> dict:
    """{HF key: numpy array} of model.safetensors (or its shards, or pytorch_model.bin)."""
    index = hf_dir / f"{WEIGHTS}.index.json"
    if (hf_dir / WEIGHTS).is_file():
        files = [hf_dir / WEIGHTS]
    elif index.is_file():
        files = sorted({hf_dir / f for f in json.loads(index.read_text())["weight_map"].values()})
    elif (hf_dir / "pytorch_model.bin").is_file():
        import torch

        return torch.load(hf_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise config_lib.ConfigError(f"{hf_dir} has no {WEIGHTS} (nor pytorch_model.bin)")
    state = {}
    for f in files:
        try:
            state.update(safetensors.numpy.load_file(str(f)))
        except (OSError, ValueError) as e:
            raise config_lib.ConfigError(f"{f}: cannot read weights ({e})") from None
    return state


def _hf_class(hf_config, state_dict, hf_dir) -> str:
    """The HF head class: config.architectures, else what the weights' keys say."""
    named = [a for a in (hf_config.architectures or []) if a in TASKS]
    if named:
        return named[0]
    if hf_config.architectures:
        raise config_lib.ConfigError(
            f"{hf_dir} is a {hf_config.architectures[0]}; convert takes {', '.join(TASKS)}"
        )
    try:
        return hf_speecht5.infer_class(state_dict)
    except ValueError as e:
        raise config_lib.ConfigError(f"{hf_dir}: {e}") from None


def run_config(hf_class: str, config_file, overrides=()):
    """The fine-tuning config file (default: DEFAULT_CONFIGS) with `overrides`, unlocked."""
    if config_file is None:
        if hf_class not in DEFAULT_CONFIGS:
            raise config_lib.ConfigError(
                f"{hf_class}: give --config, a fine-tuning config of task {' or '.join(TASKS[hf_class])}"
            )
        config_file = CONFIGS / DEFAULT_CONFIGS[hf_class]
    if not pathlib.Path(config_file).is_file():
        raise config_lib.ConfigError(f"--config {config_file} not found")
    config = config_lib.apply_overrides(config_lib.load_file(config_file), overrides)
    task = config.model.get("task", "")
    if config.model.name != "speecht5" or task not in TASKS[hf_class]:
        raise config_lib.ConfigError(
            f"--config {config_file} trains {config.model.name} model.task {task!r}; "
            f"{hf_class} needs a SpeechT5 task {' or '.join(TASKS[hf_class])}"
        )
    config.unlock()
    return config


def _sentencepiece(path: pathlib.Path):
    if not path.is_file():
        raise config_lib.ConfigError(
            f"{path} not found: save the SpeechT5Tokenizer with the model or give --spm FILE"
        )
    try:
        return text_lib.load_sp(path)
    except (OSError, RuntimeError) as e:
        raise config_lib.ConfigError(f"{path}: not a SentencePiece model ({e})") from None


def _fit_text_rows(variables, rows: int, what: str):
    """variables with the text embedding cut to `rows` (HF counts tokens past the
    SentencePiece model, e.g. <ctc_blank>); ConfigError if it has fewer."""
    params = dict(variables["params"])
    table = params["embed_tokens"]["embedding"]
    if table.shape[0] < rows:
        raise config_lib.ConfigError(
            f"{what}: the model has {table.shape[0]} text ids, its SentencePiece model needs {rows}"
        )
    if table.shape[0] > rows:
        log.info("text ids %d..%d (past the SentencePiece model) dropped", rows, table.shape[0] - 1)
    params["embed_tokens"] = {"embedding": table[:rows]}
    return {**variables, "params": params}


def import_hf(hf_dir, workdir, config_file=None, overrides=(), spm=None) -> pathlib.Path:
    """Writes `workdir` (config.json, vocab/spm.model, checkpoint step 0) from a HF SpeechT5
    save_pretrained directory; returns the workdir. `config_file`: the run config it records
    (its model block becomes HF's); `spm`: the SentencePiece model (default <hf_dir>/spm_char.model)."""
    hf_dir, workdir = pathlib.Path(hf_dir), pathlib.Path(workdir)
    hf_config = read_hf_config(hf_dir)
    state_dict = read_weights(hf_dir)
    hf_class = _hf_class(hf_config, state_dict, hf_dir)
    config = run_config(hf_class, config_file, overrides)
    sp_path = pathlib.Path(spm) if spm else hf_dir / SP_FILE
    sp = _sentencepiece(sp_path)
    if (workdir / "checkpoints").exists():
        raise config_lib.ConfigError(f"--to {workdir} already holds checkpoints")
    try:
        model_cfg, variables = hf_speecht5.from_hf(
            state_dict, hf_config, hf_class, scan_layers=config.model.scan_layers
        )
    except ValueError as e:
        raise config_lib.ConfigError(f"{hf_dir}: {e}") from None
    variables = _fit_text_rows(variables, text_lib.text_vocab_size(sp), str(hf_dir))
    for key in RECIPE_KEYS:
        model_cfg[key] = config.model[key]
    config.model = model_cfg
    config.data.log_mel = False  # HF's conv front end reads the waveform
    config.lock()

    workdir = config_lib.writable_workdir(workdir)
    (workdir / workdir_vocab.VOCAB_DIR).mkdir(exist_ok=True)
    shutil.copyfile(sp_path, workdir / workdir_vocab.VOCAB_DIR / "spm.model")
    (workdir / "config.json").write_text(config_lib.to_json(config))
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": jax.tree.map(jnp.asarray, variables["params"]),
        "model_state": {"batch_stats": jax.tree.map(jnp.asarray, variables["batch_stats"])},
    }
    with checkpoint_lib.Checkpoints(workdir, keep=1, async_save=False) as ckpt:
        ckpt.save(0, state, {})
    return workdir


# ============================================================================ workdir -> HF


def export_hf(workdir, hf_dir, step=None) -> pathlib.Path:
    """Writes a HF save_pretrained directory (config.json, model.safetensors, spm_char.model)
    of a SpeechT5 fine-tuning workdir; returns it. Parts HF has no place for (the CTC head,
    a learned speaker table) are left out, with a warning."""
    workdir, hf_dir = pathlib.Path(workdir), pathlib.Path(hf_dir)
    saved = workdir / "config.json"
    if saved.is_file():
        name = config_lib.from_json(saved.read_text()).model.name
        if name != "speecht5":
            raise config_lib.ConfigError(
                f"{workdir} holds a {name!r} model; --to-hf converts SpeechT5 fine-tuning "
                "workdirs (UniSpeech weights: unispeech_jax.convert.hf.to_hf)"
            )
    trained = inference.load(workdir, step)
    hf_class = next((c for c, tasks in TASKS.items() if trained.task in tasks), None)
    if hf_class is None:
        raise config_lib.ConfigError(
            f"{workdir}: model.task {trained.task!r} has no Hugging Face class"
        )
    model_cfg = trained.config.model
    try:
        kwargs = hf_speecht5.hf_config_kwargs(model_cfg)
    except ValueError as e:
        raise config_lib.ConfigError(f"{workdir}: {e}") from None
    variables = jax.tree.map(np.asarray, trained.variables)
    rows = variables["params"]["embed_tokens"]["embedding"].shape[0]
    hf_config = _transformers().SpeechT5Config(vocab_size=rows, architectures=[hf_class], **kwargs)
    state = hf_speecht5.to_hf(
        variables, hf_class, masked_spec_embed=model_cfg.mask_time_prob > 0, as_torch=False
    )
    dropped = [k for k in ("ctc_proj", "speaker_table") if k in variables["params"]]
    if dropped:
        log.warning("%s has no place in %s: not exported", " and ".join(dropped), hf_class)
    hf_dir.mkdir(parents=True, exist_ok=True)
    hf_config.save_pretrained(str(hf_dir))
    safetensors.numpy.save_file(state, str(hf_dir / WEIGHTS), metadata={"format": "pt"})
    sp_path = sources.task_sentencepiece_model(trained.config.data, trained.task)
    shutil.copyfile(sp_path, hf_dir / SP_FILE)
    return hf_dir
