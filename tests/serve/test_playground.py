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
  window.__events = 0;
  window.__reads = 0;
  const box = document.getElementById(%s);
  new MutationObserver(() => window.__states.push(box.innerText)).observe(
      box, {childList: true, subtree: true, characterData: true});
  return true;
})()"""

# Wraps the page's fetch so that a streamed (text/event-stream) response reaches the page one SSE event
# per read, with a task boundary between events. Decoding is fast enough that several events often share
# one network read, so counting screen updates alone would measure the network, not the page; this way
# the page gets every event separately and must render each before the next (window.__states), while
# window.__events counts the events the server sent and window.__reads the network reads they came in.
SPLIT_SSE = """(() => {
  const realFetch = window.fetch;
  window.fetch = async (...args) => {
    const response = await realFetch(...args);
    if (!(response.headers.get('content-type') || '').includes('text/event-stream')) return response;
    const reader = response.body.getReader();
    const encoder = new TextEncoder(), decoder = new TextDecoder();
    let buffer = '';
    const body = new ReadableStream({
      async pull(controller) {
        for (;;) {
          const cut = buffer.indexOf('\\n\\n');
          if (cut >= 0) {
            const block = buffer.slice(0, cut + 2);
            buffer = buffer.slice(cut + 2);
            if (block.startsWith('data:') && !block.includes('[DONE]')) window.__events++;
            await new Promise((resolve) => setTimeout(resolve, 0));
            controller.enqueue(encoder.encode(block));
            return;
          }
          const { value, done } = await reader.read();
          if (done) {
            if (buffer) controller.enqueue(encoder.encode(buffer));
            controller.close();
            return;
          }
          window.__reads++;
          buffer += decoder.decode(value, { stream: true });
        }
      },
    });
    return new Response(body, { status: response.status, statusText: response.statusText,
                                headers: response.headers });
  };
  return true;
})()"""


def _assert_streamed(page) -> None:
    """The text grew piece by piece: the server sent many SSE events, and the page showed several distinct
    partial texts, each a prefix of the final one, before it."""
    states = page.evaluate("window.__states")
    assert states, "the watched element never changed"
    final = states[-1]
    events, reads = page.evaluate("window.__events"), page.evaluate("window.__reads")
    assert events > 5, f"the server sent {events} SSE events; a streamed reply comes in many"
    assert reads >= 1
    partial = {s for s in states if s != final}
    assert len(partial) > 5, f"the page showed {len(partial)} partial texts for {events} events: not streamed"
    assert all(final.startswith(s) for s in partial), "each partial text should be a prefix of the reply"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = find_chromium()
    if executable is None:
        pytest.fail("chromium is not installed, so the playground cannot be tested in a browser: "
                    "install it with `apt-get install -y chromium` (Debian) or set SLM_CHROMIUM=/path/to/chrome")
    chromium = Chromium.launch(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()




def test_playground_streams_chat_and_completion(browser, server, client, tiny_run, tmp_path):
    page = browser.page()
    try:
        page.call("Page.enable")
        page.call("Page.navigate", url=server.url + "/")
        page.wait_for("document.readyState === 'complete' && !!document.getElementById('send')")
        assert page.evaluate("document.title") == "slmkit playground"
        page.evaluate(SPLIT_SSE)
        page.set_value("api-key", API_KEY)  # this server wants a key; the page sends it as a Bearer token
        page.wait_for(f"document.getElementById('model-name').textContent.startsWith({json.dumps(tiny_run.name)})")

        # chat, streamed, seeded: the page must show exactly what the API returns for the same request
        for element_id, value in (("temperature", "0.9"), ("top_p", "0.95"), ("max_tokens", "48"), ("seed", "42"),
                                  ("prompt", "Tell me a story about a dog.")):
            page.set_value(element_id, value)
        page.evaluate(WATCH % json.dumps("messages"))
        page.evaluate("document.getElementById('send').click(), true")
        page.wait_for("document.getElementById('status').textContent.startsWith('done')", timeout=60)
        shown = page.evaluate("document.querySelector('.msg.assistant .text').textContent")
        expected = client.chat.completions.create(
            model=tiny_run.name, messages=[{"role": "user", "content": "Tell me a story about a dog."}],
            max_tokens=48, temperature=0.9, top_p=0.95, seed=42).choices[0].message.content
        assert shown == expected
        _assert_streamed(page)
        assert page.evaluate("document.querySelector('.msg.user .text').textContent") == "Tell me a story about a dog."
        shot = page.screenshot(tmp_path / "playground-chat.png")
        assert shot.stat().st_size > 5000
        keep = os.environ.get("SLM_PLAYGROUND_SCREENSHOT")
        if keep:
            shutil.copy(shot, Path(keep))

        # completion mode: the prompt stays, the continuation streams in after it
        page.evaluate("document.getElementById('tab-completion').click(), true")
        page.set_value("prompt", "Once upon a time")
        page.evaluate(WATCH % json.dumps("output"))
        page.evaluate("document.getElementById('send').click(), true")
        page.wait_for("document.getElementById('status').textContent.startsWith('done')", timeout=60)
        output = page.evaluate("document.getElementById('output').textContent")
        generated = page.evaluate("document.querySelector('#output .generated').textContent")
        assert output == "Once upon a time" + generated and generated
        _assert_streamed(page)
        page.screenshot(tmp_path / "playground-completion.png")

        # an error from the server is shown, not swallowed
        page.set_value("max_tokens", "100000")
        page.evaluate("document.getElementById('send').click(), true")
        page.wait_for("document.getElementById('status').textContent.startsWith('error')", timeout=30)
        assert "max_tokens" in page.evaluate("document.getElementById('status').textContent")
    finally:
        page.close()
