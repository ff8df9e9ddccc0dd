"""The one config mechanism: YAML + dotted overrides into typed dataclasses, with helpful errors."""

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import yaml

from slmkit.config import apply_overrides, from_dict, load_config, save_config, to_dict
from slmkit.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass
class Model:
    n_layers: int = 2
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    name: Optional[str] = None


@dataclass
class Run:
    model: Model = field(default_factory=Model)
    train: Optim = field(default_factory=Optim)
    compile: bool = False


def test_yaml_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  n_layers: 4\ntrain:\n  lr: 0.01\n")
    cfg = load_config(Run, recipe, ["train.lr=3e-4", "model.norm=layernorm", "compile=true", "train.betas=[0.8,0.9]"])
    assert cfg.model.n_layers == 4
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.model.norm == "layernorm" and cfg.compile is True and cfg.train.betas == [0.8, 0.9]


def test_unknown_key_names_the_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.learning_rat'.*did you mean"):
        load_config(Run, None, ["train.learning_rat=1"])
    with pytest.raises(ConfigError, match=r"'model.n_layer'.*n_layers"):
        from_dict(Run, {"model": {"n_layer": 3}})


def test_wrong_types_and_values_are_one_line_errors():
    with pytest.raises(ConfigError, match="model.n_layers: expected an integer"):
        load_config(Run, None, ["model.n_layers=two"])
    with pytest.raises(ConfigError, match="model.norm: 'batchnorm' is not one of"):
        load_config(Run, None, ["model.norm=batchnorm"])
    with pytest.raises(ConfigError, match="lr must be positive"):
        load_config(Run, None, ["train.lr=-1"])
    with pytest.raises(ConfigError, match="must look like"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match="expected true or false"):
        load_config(Run, None, ["compile=maybe"])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Run, tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Run, bad)


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(Run, None, ["model.n_layers=6", "train.lr=0.5"])
    save_config(cfg, tmp_path / "config.yaml")
    assert not list(tmp_path.glob("*.tmp"))
    again = from_dict(Run, yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert to_dict(again) == to_dict(cfg)
