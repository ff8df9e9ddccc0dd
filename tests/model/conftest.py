"""Fixtures for the model tests."""

import pytest

from slmkit.model import ModelConfig

from .tiny import FAMILY_CONFIGS, tiny_config


@pytest.fixture(params=list(FAMILY_CONFIGS))
def family_config(request) -> ModelConfig:
    return tiny_config(**FAMILY_CONFIGS[request.param])
