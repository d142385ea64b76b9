"""Headless Chromium driven over the DevTools protocol, with wsproto (which mitmproxy brings): a page
that stays open while a test acts, read and photographed as it changes (what `--dump-dom` cannot
do: it reads a page once)."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.support.proxy import free_port
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Request, TextMessage

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROKEN_WORDS = """(() => {
  const broken = [];
  for (const cell of document.querySelectorAll(%s)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.data.matchAll(/[^\\s-]*-+|[^\\s-]+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const tops = new Set(Array.from(range.getClientRects()).filter((r) => r.width > 0).map((r) => Math.round(r.top)));
        if (tops.size > 1) broken.push(word[0] + " (in " + JSON.stringify(cell.textContent.slice(0, 80)) + ")");
      }
    }
  }
  return broken;
})()"""


def chromium() -> str:
    """Chromium's executable (Debian's `chromium`); the test skipped where there is none."""
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    return browser


class Browser:
    """One headless Chromium with one page; `close` stops it."""

    def __init__(self, executable: str, profile: Path, width: int = 1400, height: int = 900) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--remote-debugging-port={self.port}", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        target = self._page_target()
        path = target["webSocketDebuggerUrl"].split(f":{self.port}", 1)[1]
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=f"127.0.0.1:{self.port}", target=path)))
        self.next_id = 0
        self.pending: list[Any] = []
        self._events(lambda e: isinstance(e, AcceptConnection))

    def _page_target(self) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as answer:
                    pages = [t for t in json.loads(answer.read()) if t.get("type") == "page"]
                if pages:
                    return pages[0]
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("Chromium's DevTools did not answer within 30 s")

    def _events(self, done: Any) -> Any:
        text = ""
        while True:
            for event in self.pending:
                if done(event):
                    self.pending.remove(event)
                    return event
            data = self.sock.recv(1 << 20)
            if not data:
                raise AssertionError("Chromium closed the DevTools connection")
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    text += event.data
                    if event.message_finished:
                        self.pending.append(json.loads(text))
                        text = ""
                elif isinstance(event, (AcceptConnection, CloseConnection)):
                    self.pending.append(event)
                elif isinstance(event, Message):
                    pass

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        number = self.next_id
        self.sock.sendall(self.ws.send(TextMessage(json.dumps({"id": number, "method": method, "params": params}))))
        answer = self._events(lambda e: isinstance(e, dict) and e.get("id") == number)
        assert "error" not in answer, answer
        return answer["result"]

    def go(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self._events(lambda e: isinstance(e, dict) and e.get("method") == "Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """The expression's value once it is truthy (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"{expression} stayed false for {timeout} s")

    def resize(self, width: int, height: int) -> None:
        """The page laid out again in a window `width` by `height` pixels."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def screenshot(self, path: Path, whole: bool = False) -> None:
        """The window as shown; `whole`: the whole page, below the window too, at the window's width."""
        params: dict[str, Any] = {"format": "png"}
        if whole:
            width, height = self.evaluate(
                "[document.documentElement.clientWidth, document.documentElement.scrollHeight]"
            )
            params |= {
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            }
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))

    def broken_words(self, cells: str = "#main th, #main td") -> list[str]:
        """Each word of the cells `cells` shown on more than one line, with the text of its cell. A
        word: what lies between two spaces, a text node's ends (a `<wbr>` between two nodes allows a
        break) or after a hyphen, where a browser breaks a line of itself; its rectangles on the page
        (a Range over it), on more than one line, say it was broken inside."""
        return self.evaluate(BROKEN_WORDS % json.dumps(cells))

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)
