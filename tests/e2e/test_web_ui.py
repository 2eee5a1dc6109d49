"""The web UI in a real browser: log in, stream a reply, show tool calls, survive a reload.

The server runs as a subprocess (`uvicorn --factory agentguild.server.app:create_app`) on a
temporary SQLite database, its default model pointed at a fake OpenAI-compatible server
that streams its answers word by word with a pause between chunks, so the browser can be
seen rendering a reply while it is still streaming. Headless Chromium is driven with
Playwright; without Chromium (or Playwright) these tests skip, except under `CI=true`,
where they fail.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from agentguild.testing import ErrorReply, FakeLLMServer, Reply, ScriptItem

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = os.environ.get("AGENTGUILD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_PASSWORD = "web-ui-admin-password"
CHUNK_LATENCY_S = 0.12
"""Pause between streamed chunks: long enough for the page to show partial replies."""
STARTUP_TIMEOUT_S = 60.0
TIMEOUT_MS = 15_000


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason)


# ---- the fake model ------------------------------------------------------------------


def _last_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _respond(request: dict[str, Any]) -> ScriptItem:
    """`calculate <expr>` calls the calculator, `fail` fails, a long story takes 15 s to
    stream, anything else is echoed."""
    last = request["messages"][-1]
    text = _last_text(last)
    if last.get("role") == "tool":
        return Reply(f"The result is {text}.", chunk_latency=CHUNK_LATENCY_S)
    if text.startswith("calculate ") and request.get("tools"):
        return Reply.calling("calculator", {"expression": text.removeprefix("calculate ")})
    if text == "tell me a long story":
        return Reply(" ".join(["once"] * 60), chunk_latency=0.25)
    if text == "fail":
        return ErrorReply.bad_request("the fake model refuses this request")
    return Reply(f"You said: {text}. That is all.", chunk_latency=CHUNK_LATENCY_S)


@pytest.fixture(scope="module")
def fake_llm_url() -> Iterator[str]:
    """A fake LLM server on its own thread and event loop (the server process calls it)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-llm", daemon=True)
    thread.start()
    server = FakeLLMServer(responder=_respond, record_requests=False)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(30)
        yield server.base_url
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# ---- the agentguild server -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_env(tmp: Path, llm_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGUILD_")}
    env.update(
        {
            "AGENTGUILD_SECURITY__ADMIN_PASSWORD": ADMIN_PASSWORD,
            "AGENTGUILD_MODELS__FAKE__PROVIDER": "openai",
            "AGENTGUILD_MODELS__FAKE__MODEL": "fake-model",
            "AGENTGUILD_MODELS__FAKE__BASE_URL": llm_url,
            "AGENTGUILD_DEFAULT_MODEL": "fake",
            "AGENTGUILD_DATABASE__URL": f"sqlite+aiosqlite:///{tmp / 'web-ui.db'}",
            "AGENTGUILD_SERVER__DATA_DIR": str(tmp / "data"),
            "AGENTGUILD_SERVER__RATE_LIMIT_PER_MINUTE": "100000",
            "AGENTGUILD_SERVER__RATE_LIMIT_BURST": "100000",
            "AGENTGUILD_SERVER__RATE_LIMIT_PER_HOUR": "1000000",
        }
    )
    return env


def _wait_until_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail(f"the server did not become healthy in {STARTUP_TIMEOUT_S:g}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server_url(fake_llm_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server, in a subprocess, with a fresh database; its base URL."""
    tmp = tmp_path_factory.mktemp("web-ui-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "server.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "agentguild.server.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=tmp,
            env=_server_env(tmp, fake_llm_url),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_healthy(process, url, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- the browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        _unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install playwright)")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests leave screenshots, for a human to look at."""
    return tmp_path_factory.mktemp("web-ui-screenshots")


@pytest.fixture
def page(
    browser: Browser, server_url: str, screenshots: Path, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A fresh browser context (empty session storage) on the UI; page errors fail.

    The page as the test left it is saved as `end-<test>.png`, to look at when one fails.
    """
    context = browser.new_context(base_url=server_url, viewport={"width": 1200, "height": 760})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto("/")
    try:
        yield opened
        opened.screenshot(path=screenshots / f"end-{request.node.name}.png")
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def log_in(page: Page, password: str = ADMIN_PASSWORD) -> None:
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def send(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


# ---- tests ---------------------------------------------------------------------------


def test_a_wrong_password_is_reported_on_the_login_form(page: Page) -> None:
    from playwright.sync_api import expect

    log_in(page, password="not-the-password")

    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(page.get_by_label("Username")).to_be_visible()


def test_a_reply_streams_into_the_page_and_survives_a_reload(page: Page, screenshots: Path) -> None:
    from playwright.sync_api import expect

    final = "You said: hello browser. That is all."
    log_in(page)
    page.get_by_label("Agent").select_option(label="assistant")

    send(page, "hello browser")
    # One consistent snapshot of the page while the reply is still streaming.
    partial = page.wait_for_function(
        """() => {
            const bubble = document.querySelector('.message.assistant[data-streaming="true"]');
            if (!bubble || Number(bubble.dataset.deltas) < 2) return null;
            return {
                text: bubble.querySelector('.message-text').textContent,
                sendDisabled: document.getElementById('send-button').disabled,
                stopVisible: !document.getElementById('stop-button').hidden,
            };
        }"""
    ).json_value()
    page.screenshot(path=screenshots / "streaming.png")

    assert final.startswith(partial["text"])
    assert len(partial["text"]) < len(final)
    assert partial["sendDisabled"]
    assert partial["stopVisible"]
    reply = page.locator(".message.assistant").last
    expect(reply.locator(".message-text")).to_have_text(final)
    expect(reply).to_have_attribute("data-streaming", "false")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(page.get_by_role("heading", name="hello browser")).to_be_visible()

    page.reload()
    expect(page.locator(".message.assistant .message-text")).to_have_text([final])
    listed = page.get_by_role("navigation", name="Conversations").get_by_role(
        "button", name="hello browser"
    )
    expect(listed).to_have_attribute("aria-current", "page")
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator(".message")).to_have_count(0)
    listed.click()
    expect(page.locator(".message.user .message-text")).to_have_text(["hello browser"])
    expect(page.locator(".message.assistant .message-text")).to_have_text([final])


def test_a_tool_call_shows_as_a_collapsible_block_with_its_result(
    page: Page, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    log_in(page)

    send(page, "calculate 6*7")

    block = page.locator("details.tool")
    expect(block).to_have_attribute("data-status", "done")
    expect(block.locator("summary")).to_contain_text("calculator")
    expect(block).not_to_have_attribute("open", "")
    expect(block.locator(".tool-result")).to_be_hidden()
    block.locator("summary").click()
    expect(block.locator(".tool-arguments")).to_contain_text('"expression": "6*7"')
    expect(block.locator(".tool-result")).to_have_text("42")
    expect(page.locator(".message.assistant .message-text").last).to_have_text("The result is 42.")
    page.screenshot(path=screenshots / "tool-call.png")

    page.reload()
    restored = page.locator("details.tool")
    expect(restored.locator("summary")).to_contain_text("calculator")
    restored.locator("summary").click()
    expect(restored.locator(".tool-result")).to_have_text("42")


def test_a_failed_run_is_shown_and_the_page_stays_usable(page: Page, screenshots: Path) -> None:
    from playwright.sync_api import expect

    log_in(page)

    send(page, "fail")

    expect(page.locator(".note.error")).to_contain_text("The run failed")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    send(page, "still here")
    expect(page.locator(".message.assistant .message-text").last).to_have_text(
        "You said: still here. That is all."
    )
    page.screenshot(path=screenshots / "error.png")
    page.set_viewport_size({"width": 390, "height": 760})
    page.reload()
    expect(page.locator(".message.assistant")).to_have_count(1)
    page.screenshot(path=screenshots / "narrow.png")


def test_a_refused_message_is_marked_not_sent_and_given_back(page: Page) -> None:
    from playwright.sync_api import Route, expect

    # The server's documented 429 answer, stubbed in the browser: a real one needs a
    # tenant with as many active runs as it may have.
    def too_many_runs(route: Route) -> None:
        route.fulfill(
            status=429,
            headers={"Retry-After": "7"},
            json={"error": {"type": "too_many_active_runs", "message": "64 runs are active"}},
        )

    log_in(page)
    page.route("**/api/conversations/*/runs", too_many_runs)

    send(page, "are you busy?")

    expect(page.locator(".note.error")).to_have_text(
        "Not sent. Too many requests: 64 runs are active. Try again in 7 s."
    )
    expect(page.locator(".message.user.failed")).to_have_count(1)
    expect(page.get_by_label("Message", exact=True)).to_have_value("are you busy?")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_stop_ends_the_streaming_reply_and_cancels_the_run(page: Page, server_url: str) -> None:
    from playwright.sync_api import expect

    log_in(page)
    send(page, "tell me a long story")
    reply = page.locator('.message.assistant[data-streaming="true"]')
    expect(reply).to_have_attribute("data-deltas", re.compile(r"[1-9]"))
    run_id = reply.get_attribute("data-run-id")

    page.get_by_role("button", name="Stop").click()

    expect(page.locator(".note", has_text="Stopped.")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    token = page.evaluate("() => sessionStorage.getItem('agentguild.token')")
    assert run_id
    assert _run_status(server_url, run_id, token) == "cancelled"


def _run_status(server_url: str, run_id: str, token: str) -> str:
    """The run's status once it has left `running` (bounded wait)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    with httpx.Client(base_url=server_url, headers={"Authorization": f"Bearer {token}"}) as api:
        while True:
            status: str = api.get(f"/api/runs/{run_id}").raise_for_status().json()["status"]
            if status not in ("queued", "running") or time.monotonic() > deadline:
                return status
            time.sleep(0.05)
