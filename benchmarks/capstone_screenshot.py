"""A screenshot of the web playground chatting with a capstone run's served model (ROOT/deploy), for the README.

    python benchmarks/capstone_screenshot.py ROOT OUT.png

Starts the deploy directory's server as serve-local.sh does (127.0.0.1, an API key), drives headless Chromium
through the playground (the test suite's DevTools client), sends one chat prompt greedily, waits for the streamed
reply and captures the page.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from slmkit.pipeline.serving_check import free_port, start_local_server, stop_server, wait_ready  # noqa: E402
from tests.serve.cdp import Chromium, find_chromium  # noqa: E402

PROMPT = "Write a story about a cat named Max who finds a key."




def screenshot(root: Path, out: Path, prompt: str = PROMPT) -> str:
    """Capture the playground's answer to `prompt`; returns the reply shown."""
    executable = find_chromium()
    if executable is None:
        sys.exit("the screenshot needs Chromium (make browser)")
    deploy, port, key = root / "deploy", free_port(), secrets.token_hex(8)
    with tempfile.TemporaryDirectory() as scratch, open(Path(scratch) / "server.log", "wb") as log:
        server = start_local_server(deploy, port, key, log)
        browser = None
        try:
            wait_ready(deploy, port, server)
            browser = Chromium.launch(executable, Path(scratch) / "profile")
            page = browser.page()
            page.call("Page.enable")
            page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
            page.wait_for("document.readyState === 'complete' && !!document.getElementById('send')")
            page.set_value("api-key", key)
            page.wait_for("document.getElementById('model-name').textContent.length > 0")
            for element_id, value in (("temperature", "0"), ("max_tokens", "160"), ("prompt", prompt)):
                page.set_value(element_id, value)
            page.evaluate("document.getElementById('send').click(), true")
            page.wait_for("document.getElementById('status').textContent.startsWith('done')", timeout=120)
            reply = page.evaluate("document.querySelector('.msg.assistant .text').textContent")
            page.evaluate("document.getElementById('messages').scrollTop = 0, true")  # the question and the reply
            page.screenshot(out)
            page.close()
        finally:
            if browser is not None:
                browser.close()
            stop_server(server)
    return reply


if __name__ == "__main__":
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
