"""Shared test fixtures. Real reference data lives in ../shared/data beside the repository."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data; a missing file is a test failure, never a skip."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"reference data missing: {path} (tests need ../shared/data beside the repo)")
    return path


@pytest.fixture(scope="session")
def tinystories_train() -> Path:
    return shared_path("tinystories", "tinystories_train_head_2MiB.txt")


@pytest.fixture(scope="session")
def tinystories_valid() -> Path:
    return shared_path("tinystories", "tinystories_validation_head_hf.txt")
