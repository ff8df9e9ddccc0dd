"""The web playground in a real headless Chromium: load the page, send a prompt, watch the streamed
text arrive, and save a screenshot (in the test's tmp dir; set SLM_PLAYGROUND_SCREENSHOT=path to keep one).

Needs Debian's chromium (`apt-get install -y chromium`); without it this test FAILS, it never skips.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.serve.cdp import Chromium, find_chromium
from tests.serve.conftest import API_KEY

# Records every change of the element's text, so the test can tell a stream from one final update.
WATCH = """(() => {
  window.__states = [];
  const box = document.getElementById(%s);
  new MutationObserver(() => window.__states.push(box.innerText)).observe(
      box, {childList: true, subtree: true, characterData: true});
  return true;
})()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = find_chromium()
    if executable is None:
        pytest.fail("chromium is not installed, so the playground cannot be tested in a browser: "
                    "install it with `apt-get install -y chromium` (Debian) or set SLM_CHROMIUM=/path/to/chrome")
    chromium = Chromium.launch(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


def _set(page, element_id: str, value) -> None:
    page.evaluate(f"(() => {{ const e = document.getElementById({json.dumps(element_id)}); "
                  f"e.value = {json.dumps(value)}; e.dispatchEvent(new Event('change')); "
                  f"e.dispatchEvent(new Event('input')); return true; }})()")


def test_playground_streams_chat_and_completion(browser, server, client, tiny_run, tmp_path):
    page = browser.page()
    try:
        page.call("Page.enable")
        page.call("Page.navigate", url=server.url + "/")
        page.wait_for("document.readyState === 'complete' && !!document.getElementById('send')")
        assert page.evaluate("document.title") == "slmkit playground"
        _set(page, "api-key", API_KEY)  # this server wants a key; the page sends it as a Bearer token
        page.wait_for(f"document.getElementById('model-name').textContent.startsWith({json.dumps(tiny_run.name)})")

        # chat, streamed, seeded: the page must show exactly what the API returns for the same request
        for element_id, value in (("temperature", "0.9"), ("top_p", "0.95"), ("max_tokens", "48"), ("seed", "42"),
                                  ("prompt", "Tell me a story about a dog.")):
            _set(page, element_id, value)
        page.evaluate(WATCH % json.dumps("messages"))
        page.evaluate("document.getElementById('send').click(), true")
        page.wait_for("document.getElementById('status').textContent.startsWith('done')", timeout=60)
        shown = page.evaluate("document.querySelector('.msg.assistant .text').textContent")
        states = page.evaluate("window.__states")
        expected = client.chat.completions.create(
            model=tiny_run.name, messages=[{"role": "user", "content": "Tell me a story about a dog."}],
            max_tokens=48, temperature=0.9, top_p=0.95, seed=42).choices[0].message.content
        assert shown == expected
        assert len(set(states)) > 5, "the reply should appear piece by piece (streamed), not all at once"
        assert page.evaluate("document.querySelector('.msg.user .text').textContent") == "Tell me a story about a dog."
        shot = page.screenshot(tmp_path / "playground-chat.png")
        assert shot.stat().st_size > 5000
        keep = os.environ.get("SLM_PLAYGROUND_SCREENSHOT")
        if keep:
            shutil.copy(shot, Path(keep))

        # completion mode: the prompt stays, the continuation streams in after it
        page.evaluate("document.getElementById('tab-completion').click(), true")
        _set(page, "prompt", "Once upon a time")
        page.evaluate(WATCH % json.dumps("output"))
        page.evaluate("document.getElementById('send').click(), true")
        page.wait_for("document.getElementById('status').textContent.startsWith('done')", timeout=60)
        output = page.evaluate("document.getElementById('output').textContent")
        generated = page.evaluate("document.querySelector('#output .generated').textContent")
        assert output == "Once upon a time" + generated and generated
        assert len(set(page.evaluate("window.__states"))) > 5
        page.screenshot(tmp_path / "playground-completion.png")

        # an error from the server is shown, not swallowed
        _set(page, "max_tokens", "100000")
        page.evaluate("document.getElementById('send').click(), true")
        page.wait_for("document.getElementById('status').textContent.startsWith('error')", timeout=30)
        assert "max_tokens" in page.evaluate("document.getElementById('status').textContent")
    finally:
        page.close()
