"""An OpenAI-compatible server with continuous batching, streaming, limits, auth and a web playground.

    slm serve runs/demo --port 8000 --api-key secret

    from slmkit.serve.service import ServeConfig, Service
    from slmkit.serve.server import serve
    serve(ServeConfig(model="runs/demo", port=8000))

Modules: protocol (request/response shapes), errors (OpenAI error JSON), service (model, prompts,
limits), scheduler (the continuous-batching loop), app (routes), middleware (body limit, metrics),
metrics (Prometheus text), chat (chat template), server (uvicorn, graceful shutdown), static/ (playground),
logprobs (log-probs in OpenAI's shapes), json_mode (JSON mode's token mask), tokenizer_routes (/tokenize etc.).
"""
