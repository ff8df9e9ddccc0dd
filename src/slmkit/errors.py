"""Typed errors that the CLI turns into one-line messages and a non-zero exit.

Library code raises these with a message a user can act on (what is wrong and how to fix it);
only `slmkit.cli` decides how they are shown.
"""


class SlmError(Exception):
    """Base class for every error slmkit reports to a user."""


class ConfigError(SlmError):
    """A config file or override is wrong: unknown key, wrong type, invalid value."""


class DataError(SlmError):
    """Input data is missing, unreadable, corrupt or inconsistent."""


class TokenizerError(SlmError):
    """A tokenizer cannot be trained, loaded or used as asked."""


class CheckpointError(SlmError):
    """A checkpoint or model directory is missing, incomplete or mismatched."""


class OfflineError(SlmError):
    """A download was needed but the network (or the Hugging Face hub) is unreachable."""
