"""Evaluating a model behind any OpenAI-compatible server (`slm serve`, vLLM, ...), standard library only.

    client = EndpointClient("http://127.0.0.1:8000/v1", "my-model", api_key=None, concurrency=4)
    client.chat([[{"role": "user", "content": "Tell me a story."}]])          # -> ["Once upon a time ..."]
    client.loglikelihood([("The cat sat on the", " mat")])                    # -> [Scored(-2.1, True, 1)]
    client.loglikelihood_rolling(["A whole document ..."]); client.rolling_totals(docs).bits_per_byte
    run_evaluation([ModelToEvaluate("remote", scorer=client)], tasks)        # the same scorer interface

Generation is `/chat/completions` (the same contract as `LocalGenerator.chat`) or `/completions`.
Scoring follows lm-eval's local-completions protocol with the server's own tokenizer, so the client needs
no tokenizer files: texts are tokenized by `POST {root}/tokenize` (root = base_url without its /v1), the
empty-context prefix is the end-of-text id from `GET {root}/tokenizer_info` (vLLM needs
`--enable-tokenizer-info-endpoint`), and token-id prompts are scored in batches by `POST /completions` with
`echo: true, logprobs: 1, max_tokens: 0` (`max_tokens: 1` where a server refuses 0; the generated token is
dropped). The split of a (context, continuation) pair, truncation and the rolling windows are exactly
`LoglikelihoodScorer`'s, so an in-process and a served model score alike (tests compare them).

A server must return one log-prob per prompt token (plus the generated ones): servers that ignore echo
(llama.cpp) return only the generated token's, which lm-eval silently scores as chance; here that is an
`EndpointError`. Connection errors, 429 and 5xx are retried with exponential backoff (honouring
Retry-After); any other 4xx is an `EndpointError` at once, one line with the server's message.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence

from slmkit.data.rolling_windows import rolling_windows
from slmkit.errors import DataError
from slmkit.eval.chat_fitting import cut_conversation, prompt_room
from slmkit.eval.http_json import EndpointError, JsonHttpClient, one_line
from slmkit.eval.likelihood import LikelihoodTotals
from slmkit.eval.loglikelihood import Scored

DEFAULT_MAX_LENGTH = 2048  # lm-eval's default for API models
FIT_TRIES = 4  # cuts of a conversation's start before giving up on fitting it
SCORING_BATCH = 16  # token-id prompts per /completions request
# A scored prompt is the model input plus the last continuation token, and servers keep room for one
# generated token even when scoring (ours with max_tokens 0, vLLM with 1): max_length = context - 2.
PROMPT_ROOM = 2
TOKENIZER_ROUTES = ("the tokenizer routes (/tokenizer_info, /tokenize; vLLM: --enable-tokenizer-info-endpoint), "
                    "which scoring needs")


class EndpointClient(JsonHttpClient):
    """A served model as a generator (`chat`, `complete`) and a scorer (`loglikelihood`,
    `loglikelihood_rolling`, `rolling_totals`: LoglikelihoodScorer's interface). Thread-safe."""

    def __init__(self, base_url: str, model: str | None, api_key: str | None = None, concurrency: int = 4,
                 max_retries: int = 3, timeout: float = 120, max_length: int | None = None,
                 batch_size: int = SCORING_BATCH, prefix_id: int | None = None, retry_backoff: float = 0.5):
        """base_url: the API root, e.g. http://127.0.0.1:8000/v1; model: the id sent as "model" (None: the
        server's default); concurrency: requests in flight at once; max_retries: retries after the first try;
        timeout: seconds per request; max_length: longest scored input in tokens (default 2048, capped by the
        server's context length); prefix_id: the empty-context token (default: the server's end-of-text id);
        retry_backoff: the first wait in seconds, doubled on each retry."""
        super().__init__(api_key, concurrency, max_retries, timeout, retry_backoff)
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")
        self.model = model
        self.batch_size = max(1, batch_size)
        self._requested_max_length, self._requested_prefix_id = max_length, prefix_id
        self._settings_lock, self._probe_lock = threading.Lock(), threading.Lock()
        self._settings: tuple[int, int | None] | None = None  # (max_length, prefix_id), read once
        self._scoring_max_tokens: int | None = None  # 0, or 1 for a server that refuses 0
        self._window: int | None = None  # the server's context length for chat fitting (0: unknown)

    # ------------------------------------------------------------------------------------ generation
    def chat(self, conversations: list[list[dict]], max_new_tokens: int = 128, temperature: float = 0.0,
             seed: int = 0) -> list[str]:
        """One reply (stripped) per conversation of {"role", "content"} messages, in order; a conversation
        too long for the server's window is fitted by chat_fitting's rule (when the server can count tokens)."""
        def reply(messages: list[dict]) -> str:
            messages, max_tokens = self._fit_chat(messages, max_new_tokens)
            body = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "seed": seed}
            message = self._first_choice(self._post(self.base_url + "/chat/completions", body)).get("message")
            return ((message or {}).get("content") or "").strip()

        return self._map(reply, list(conversations))

    def complete(self, prompts: list[str], max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0,
                 stop: list[str] | None = None) -> list[str]:
        """What the model writes after each text prompt (a base model continuing a story), unstripped."""
        def completion(prompt: str) -> str:
            body = {"prompt": prompt, "max_tokens": max_new_tokens, "temperature": temperature, "seed": seed}
            if stop:
                body["stop"] = list(stop)
            return self._first_choice(self._post(self.base_url + "/completions", body)).get("text") or ""

        return self._map(completion, list(prompts))

    def _fit_chat(self, messages: list[dict], max_new_tokens: int) -> tuple[list[dict], int]:
        window = self._chat_window()
        if not window:
            return messages, max_new_tokens  # the server cannot count tokens: send as is
        room = prompt_room(window, max_new_tokens)
        for _ in range(FIT_TRIES):
            count = self._chat_tokens(messages)
            if count is None:
                return messages, max_new_tokens
            if count <= room:
                return messages, min(max_new_tokens, window - count)
            messages = cut_conversation(messages, room / count)
        raise EndpointError(f"a conversation does not fit the server's {window}-token window even after cutting "
                            f"its start {FIT_TRIES} times; shorten it or lower --max-new-tokens")

    def _chat_window(self) -> int:
        """The server's context length for chat fitting; 0 when it has no tokenizer routes to count with."""
        if self._window is None:
            try:
                self._server_settings()
            except EndpointError as e:
                if e.status != 404:
                    raise
                self._window = 0
        return self._window or 0

    def _chat_tokens(self, messages: list[dict]) -> int | None:
        """The rendered conversation's token count by the server's /tokenize (vLLM's messages form)."""
        try:
            out = self._post(self.root + "/tokenize", {"messages": messages, "add_generation_prompt": True})
        except EndpointError as e:
            if e.status in (400, 404, 422):  # a /tokenize that takes text only: no fitting
                self._window = 0
                return None
            raise
        tokens = out.get("tokens")
        return out["count"] if isinstance(out.get("count"), int) else len(tokens) if isinstance(tokens, list) else None

    # ------------------------------------------------------------------------------------ scoring
    @property
    def max_length(self) -> int:
        """Longest scored input in tokens (the model input: context + continuation minus its last token)."""
        return self._server_settings()[0]

    @property
    def prefix_id(self) -> int:
        """The token an empty context (and each rolling document) is conditioned on."""
        prefix = self._server_settings()[1]
        if prefix is None:
            raise EndpointError(f"{self.root}/tokenizer_info names no end-of-text token to condition an empty "
                                "context on; pass prefix_id")
        return prefix

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` by the server's tokenizer (no special tokens added)."""
        if not text:
            return []
        body = {"prompt": text, "add_special_tokens": False}
        try:
            tokens = self._post(self.root + "/tokenize", body).get("tokens")
        except EndpointError as e:
            if e.missing_route:
                raise EndpointError(f"{self.root} does not offer {TOKENIZER_ROUTES}", 404) from None
            raise
        if not isinstance(tokens, list):
            raise EndpointError(f"POST {self.root}/tokenize answered without a 'tokens' list")
        return tokens

    def loglikelihood(self, requests: Iterable[tuple[str, str]]) -> list[Scored]:
        """One `Scored` per (context, continuation) text pair, in order (lm-eval's tokenization rules)."""
        requests = [_move_trailing_spaces(c, x) for c, x in requests]
        texts = [t for c, x in requests for t in ((c + x, c) if c else (x,))]
        ids = self._encode_unique(texts)
        prefix = self.prefix_id if any(not c for c, _ in requests) else None
        return self.score_tokens([split_pair(c, x, ids.__getitem__, prefix) for c, x in requests])

    def loglikelihood_rolling(self, texts: Iterable[str]) -> list[float]:
        """Each text's total log-likelihood over `rolling_windows` of max_length; 0.0 for an empty text."""
        texts = list(texts)
        ids = self._encode_unique(texts)
        return self._document_loglikelihoods([ids[t] for t in texts])

    def rolling_totals(self, texts: Iterable[str]) -> LikelihoodTotals:
        """Word/byte perplexity and bits per byte of `texts` as documents (likelihood.py's definition)."""
        texts = list(texts)
        ids = self._encode_unique(texts)
        encoded = [ids[t] for t in texts]
        totals = LikelihoodTotals()
        for text, tokens, ll in zip(texts, encoded, self._document_loglikelihoods(encoded)):
            if tokens:
                totals += LikelihoodTotals.of_document(text, ll, len(tokens))
        return totals

    def score_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[Scored]:
        """One `Scored` per (context ids, continuation ids) pair, in order, as LoglikelihoodScorer's."""
        requests = [self._truncate(i, list(c), list(x)) for i, (c, x) in enumerate(pairs)]
        batches = [requests[k:k + self.batch_size] for k in range(0, len(requests), self.batch_size)]
        if not batches:
            return []
        first = self._probe_scoring(batches[0])  # learns max_tokens 0 vs 1 before the rest run in parallel
        rest = self._map(lambda batch: self._score_batch(batch, self._scoring_max_tokens), batches[1:])
        return [s for batch in [first, *rest] for s in batch]

    def _document_loglikelihoods(self, encoded: list[list[int]]) -> list[float]:
        windows, owners = [], []
        for d, tokens in enumerate(encoded):
            if tokens:
                for window in rolling_windows(tokens, self.prefix_id, self.max_length):
                    windows.append(window)
                    owners.append(d)
        totals = [0.0] * len(encoded)
        for d, scored in zip(owners, self.score_tokens(windows)):
            totals[d] += scored.logprob
        return totals

    def _encode_unique(self, texts: list[str]) -> dict[str, list[int]]:
        unique = list(dict.fromkeys(texts))  # choices share their context: tokenize it once
        return dict(zip(unique, self._map(self.encode, unique)))

    def _truncate(self, index: int, context: list[int], continuation: list[int]) -> tuple[list[int], list[int]]:
        """LoglikelihoodScorer's rule: keep the context's end so context + continuation fits max_length + 1."""
        if not continuation:
            raise DataError(f"request {index}: the continuation is empty, so there is nothing to score")
        if len(continuation) > self.max_length:
            raise DataError(f"request {index}: the continuation has {len(continuation)} tokens, more than the "
                            f"{self.max_length}-token window; score it with loglikelihood_rolling instead")
        context = context or [self.prefix_id]
        return context[-(self.max_length + 1 - len(continuation)):], continuation

    def _probe_scoring(self, batch: list[tuple[list[int], list[int]]]) -> list[Scored]:
        with self._probe_lock:
            if self._scoring_max_tokens is not None:
                return self._score_batch(batch, self._scoring_max_tokens)
            try:
                scored = self._score_batch(batch, 0)
                self._scoring_max_tokens = 0
            except EndpointError as e:
                if e.status not in (400, 422):
                    raise
                scored = self._score_batch(batch, 1)  # OpenAI and vLLM want at least one new token
                self._scoring_max_tokens = 1
            return scored

    def _score_batch(self, batch: list[tuple[list[int], list[int]]], max_tokens: int) -> list[Scored]:
        prompts = [c + x for c, x in batch]
        body = {"prompt": prompts, "max_tokens": max_tokens, "echo": True, "logprobs": 1, "temperature": 0.0}
        url = self.base_url + "/completions"
        choices = sorted(self._post(url, body).get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(prompts):
            raise EndpointError(f"POST {url} returned {len(choices)} choices for {len(prompts)} prompts")
        return [_scored_choice(choice, len(c), len(c) + len(x), max_tokens, url)
                for (c, x), choice in zip(batch, choices)]

    def _server_settings(self) -> tuple[int, int | None]:
        """(max_length, prefix_id) from /tokenizer_info (or /v1/models for the context length), read once."""
        with self._settings_lock:
            if self._settings is None:
                info = self._get(self.root + "/tokenizer_info", TOKENIZER_ROUTES)
                context = _context_length(info) or self._context_from_models()
                self._window = context or 0
                max_length = self._requested_max_length or DEFAULT_MAX_LENGTH
                if context:
                    max_length = min(max_length, context - PROMPT_ROOM)
                if max_length < 1:
                    raise EndpointError(f"the server's context of {context} tokens leaves no room to score")
                self._settings = (max_length, self._requested_prefix_id if self._requested_prefix_id is not None
                                  else self._eos_id(info))
            return self._settings

    def _context_from_models(self) -> int | None:
        try:
            cards = self._get(self.base_url + "/models", "/models").get("data") or []
        except EndpointError as e:
            if e.status != 404:
                raise
            return None  # no model list: keep max_length as given (the server refuses what does not fit)
        card = next((c for c in cards if c.get("id") == self.model), cards[0] if len(cards) == 1 else {})
        return _context_length(card)

    def _eos_id(self, info: dict) -> int | None:
        if isinstance(info.get("eos_token_id"), int):
            return info["eos_token_id"]
        ids = self.encode(info["eos_token"]) if isinstance(info.get("eos_token"), str) else []
        return ids[0] if len(ids) == 1 else None  # a server reporting only the token's text (lm-eval's remote)

    # ------------------------------------------------------------------------------------ HTTP
    def _post(self, url: str, body: dict) -> dict:
        return self._request("POST", url, {"model": self.model, **body} if self.model is not None else body)

    def _get(self, url: str, what: str) -> dict:
        if self.model is not None:
            url += "?" + urllib.parse.urlencode({"model": self.model})
        try:
            return self._request("GET", url, None)
        except EndpointError as e:
            if e.missing_route:
                raise EndpointError(f"{self.root} does not offer {what}", 404) from None
            raise

    def _first_choice(self, out: dict) -> dict:
        choices = out.get("choices")
        if not choices or not isinstance(choices[0], dict):
            raise EndpointError(f"{self.base_url} answered without choices: {one_line(json.dumps(out))}")
        return choices[0]


def split_pair(context: str, continuation: str, encode: Callable[[str], list[int]],
               prefix_id: int | None) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as `LoglikelihoodScorer.encode_pair` makes them (lm-eval's causal
    split), after `_move_trailing_spaces`: context + continuation encoded whole, split at the context's own
    length; an empty context is the prefix token."""
    if context == "":
        ids = encode(continuation)
        return ([prefix_id], ids) if not ids or ids[0] != prefix_id else (ids[:1], ids[1:])
    whole = encode(context + continuation)
    n_context = len(encode(context))
    return whole[:n_context], whole[n_context:]


def _move_trailing_spaces(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's rule: the context's trailing whitespace belongs to the continuation."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        return context[:-spaces], context[-spaces:] + continuation
    return context, continuation


def _scored_choice(choice: dict, n_context: int, n_prompt: int, max_tokens: int, url: str) -> Scored:
    """Sum the continuation's log-probs (prompt positions n_context..n_prompt) from one echoed choice."""
    logprobs = choice.get("logprobs") or {}
    values, tops = logprobs.get("token_logprobs"), logprobs.get("top_logprobs")
    got = len(values) if isinstance(values, list) else 0
    if not n_prompt <= got <= n_prompt + max_tokens:
        raise EndpointError(
            f"POST {url} returned {got} token log-probs for a prompt of {n_prompt} tokens (expected "
            f"{n_prompt + max_tokens}): the server does not score echoed prompts, so every score would be "
            "meaningless (llama.cpp-style servers ignore echo)")
    if not isinstance(tops, list) or len(tops) != got:
        raise EndpointError(f"POST {url} returned no top_logprobs for each token (asked logprobs: 1)")
    picked = values[n_context:n_prompt]
    if any(not isinstance(v, (int, float)) for v in picked):
        raise EndpointError(f"POST {url} returned a null log-prob for a continuation token")
    greedy = all(isinstance(top, dict) and v >= max((t for t in top.values() if t is not None), default=v + 1)
                 for v, top in zip(picked, tops[n_context:n_prompt]))  # no top entries: not known greedy
    return Scored(float(sum(picked)), greedy, n_prompt - n_context)


def _context_length(info: dict) -> int | None:
    for key in ("model_max_length", "max_model_len", "context_length"):  # ours, vLLM's, our /v1/models card
        if isinstance(info.get(key), int) and info[key] > 0:
            return info[key]
    return None
