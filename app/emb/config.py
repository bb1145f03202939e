"""Training configuration: default.toml ← a config file ← `section.key=value` overrides.

default.toml lists every key; a file or override naming another key, or a value of another type,
is bad input (exit 2) before anything is written.
"""

import tomllib
from pathlib import Path

from app.errors import BadInput

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT = CONFIG_DIR / "default.toml"


def _load_toml(path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise BadInput(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"config file {path} is not valid TOML: {exc}") from None


def _parse_value(text: str):
    """TOML literal if it parses (1, 0.5, true, "x"), else the bare string (deeplabv3_resnet50)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _merge(base: dict, update: dict, where: str) -> None:
    for key, given in update.items():
        name, value = f"{where}{key}", given
        if key not in base:
            raise BadInput(f"unknown config key '{name}'")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise BadInput(f"config key '{name}' is a section, not a value")
            _merge(base[key], value, f"{name}.")
            continue
        expected = type(base[key])
        if expected is float and type(value) is int:
            value = float(value)
        if type(value) is not expected:
            raise BadInput(f"config key '{name}' must be {expected.__name__}, got {value!r}")
        base[key] = value


def parse_override(text: str) -> dict:
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise BadInput(f"override '{text}' is not section.key=value")
    return {parts[0]: {parts[1]: _parse_value(raw.strip())}}


def load_config(path=None, overrides=()) -> dict:
    config = _load_toml(DEFAULT)
    if path is not None:
        _merge(config, _load_toml(path), "")
    for text in overrides:
        _merge(config, parse_override(text), "")
    _check(config)
    return config


def _check(config: dict) -> None:
    from app.emb.loss import WEIGHTINGS
    from app.emb.model import MODELS, NORMS

    data, train, run = config["data"], config["train"], config["run"]
    if not data["shards"]:
        raise BadInput("data.shards is required (the directory written by `prepare`)")
    if not run["dir"]:
        raise BadInput("run.dir is required (checkpoints and metrics.jsonl go there)")
    if config["model"]["name"] not in MODELS:
        raise BadInput(f"model.name must be one of {', '.join(sorted(MODELS))}; got {config['model']['name']!r}")
    if config["model"]["norm"] not in NORMS:
        raise BadInput(f"model.norm must be one of {', '.join(NORMS)}; got {config['model']['norm']!r}")
    if train["class_weights"] not in WEIGHTINGS:
        raise BadInput(f"train.class_weights must be one of {', '.join(WEIGHTINGS)}; got {train['class_weights']!r}")
    if train["optimizer"] not in ("sgd", "adamw"):
        raise BadInput(f"train.optimizer must be sgd or adamw, got {train['optimizer']!r}")
    for section, key in (("train", "steps"), ("train", "batch_size"), ("train", "ckpt_every"),
                         ("train", "keep_ckpts"), ("train", "log_every"), ("train", "eval_every"),
                         ("train", "eval_batch_size"), ("data", "block_chips"), ("data", "prefetch"),
                         ("data", "read_threads")):
        if config[section][key] < 1:
            raise BadInput(f"{section}.{key} must be >= 1, got {config[section][key]}")
    if train["lr"] <= 0 or train["warmup_steps"] < 0 or train["weight_decay"] < 0:
        raise BadInput("train.lr must be > 0, train.warmup_steps and train.weight_decay >= 0")


def check_world(config: dict, world: int) -> int:
    """The per-rank batch; bad input when the global batch does not split into whole blocks per rank."""
    batch, block = config["train"]["batch_size"], config["data"]["block_chips"]
    if batch % world or (batch // world) % block:
        raise BadInput(f"train.batch_size {batch} must split over {world} ranks into whole blocks of "
                       f"data.block_chips={block}")
    return batch // world
