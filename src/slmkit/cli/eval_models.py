"""What `slm eval` evaluates and who judges: model directories, OpenAI-compatible endpoints, the judge."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from slmkit.errors import SlmError


def load_models(args, dtype) -> list:
    """One ModelToEvaluate per MODEL argument (NAME=PATH names it; repeated names get a prime)."""
    from slmkit.eval.evaluation_run import ModelToEvaluate
    from slmkit.finetune.loading import load_for_use

    models, names = [], set()
    for spec in args.models:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).name or spec, spec
        name = _unique(name, names)
        model, tokenizer, _ = load_for_use(path, base=args.base, device=args.device, dtype=dtype)
        if tokenizer is None:
            raise SlmError(f"{path} has no tokenizer.json; evaluation tasks are text and need one")
        models.append(ModelToEvaluate(name, model, tokenizer, str(path)))
    return models


def endpoint_models(args, taken: set[str] | None = None) -> list:
    """One ModelToEvaluate per --endpoint, scoring and generating through the server; named by --model."""
    from slmkit.eval.endpoint import EndpointClient
    from slmkit.eval.evaluation_run import ModelToEvaluate

    if len(args.model) > len(args.endpoint):
        raise SlmError(f"{len(args.model)} --model names for {len(args.endpoint)} --endpoint URLs; give one "
                       "--model per --endpoint, in the same order")
    names = set(taken or ())
    api_key = args.api_key or os.environ.get("SLM_API_KEY") or None
    models = []
    for k, url in enumerate(args.endpoint):
        _check_url(url, "--endpoint")
        model_id = args.model[k] if k < len(args.model) else None
        client = EndpointClient(url, model_id, api_key=api_key, concurrency=args.concurrency,
                                max_length=args.max_length, batch_size=args.batch_size)
        name = _unique(model_id or urllib.parse.urlsplit(url).netloc, names)
        models.append(ModelToEvaluate(name, path=url, scorer=client, generator=client))
    return models


def judge_from(args):
    """The judge: an EndpointClient for a URL, a LocalGenerator for a model directory."""
    if args.judge.startswith(("http://", "https://")):
        from slmkit.eval.endpoint import EndpointClient

        _check_url(args.judge, "--judge")
        api_key = args.judge_api_key or os.environ.get("SLM_JUDGE_API_KEY") or None
        return EndpointClient(args.judge, args.judge_model, api_key=api_key, concurrency=args.concurrency)
    import torch

    from slmkit.eval.generation import LocalGenerator
    from slmkit.finetune.loading import load_for_use

    model, tokenizer, eos_ids = load_for_use(args.judge, device=args.device,
                                             dtype={"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype])
    if tokenizer is None:
        raise SlmError(f"the judge {args.judge} has no tokenizer.json")
    return LocalGenerator(model, tokenizer, eos_ids)


def _check_url(url: str, flag: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SlmError(f"{flag} {url!r} is not an http(s) URL; write e.g. http://127.0.0.1:8000/v1")


def _unique(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "'"
    taken.add(name)
    return name
