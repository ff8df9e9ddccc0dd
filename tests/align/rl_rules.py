"""A reward function for the RL tests, named in their configs as python:tests.align.rl_rules:low_ids."""


def low_ids(rollout) -> float:
    """Dense and learnable by a random tiny model: completions of low token ids score higher (vocabulary ~600)."""
    ids = rollout.token_ids or [600]
    return 1.0 - sum(ids) / len(ids) / 600
