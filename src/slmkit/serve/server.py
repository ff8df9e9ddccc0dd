"""Run the app under uvicorn with a graceful shutdown.

On SIGTERM (or Ctrl-C) uvicorn closes its listening socket (no new connections), the scheduler
refuses new requests (503) and /ready turns 503, in-flight responses get `shutdown_timeout` seconds to
finish, then the scheduler stops and the process exits with status 0.
"""

from __future__ import annotations

import signal

import uvicorn

from slmkit.serve.app import create_app
from slmkit.serve.service import ServeConfig, Service


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose exit signal first closes the scheduler to new work."""

    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig, frame) -> None:
        self.service.scheduler.close()
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            # uvicorn re-raises captured signals after its shutdown, so the process would die by SIGTERM
            # (status 143); after a complete graceful drain we exit 0 instead, as service managers expect.
            captured = getattr(self, "_captured_signals", None)
            if captured and captured[-1] == sig:
                captured.pop()


def build_server(config: ServeConfig, service: Service, log_level: str = "info") -> DrainingServer:
    uv_config = uvicorn.Config(create_app(service), host=config.host, port=config.port, log_level=log_level,
                               timeout_graceful_shutdown=config.shutdown_timeout, access_log=False,
                               timeout_keep_alive=5, server_header=False)
    return DrainingServer(uv_config, service)


def serve(config: ServeConfig, service: Service | None = None, ready_message: bool = True) -> None:
    """Load the model (unless `service` is given) and serve until SIGTERM / SIGINT."""
    service = service or Service.load(config)
    server = build_server(config, service)
    if ready_message:
        auth = "API key required" if config.api_key else "no API key"
        adapters = [name for name in service.models if name != service.model_name]
        also = f" with adapters {', '.join(adapters)}" if adapters else ""
        print(f"serving '{service.model_name}'{also} on http://{config.host}:{config.port} "
              f"(batch {config.max_batch}, max_tokens {config.max_tokens}, queue {config.max_queue}, "
              f"context {service.context_len}, {auth}); playground at /", flush=True)
    server.run()
