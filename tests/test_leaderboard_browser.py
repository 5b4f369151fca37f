"""The committed leaderboard page in a real headless browser (Debian's chromium, driven over the Chrome
DevTools Protocol): it loads without console errors, shows every collection and measure and its plots, and a
click on a header sorts the table. Skipped when chromium is not installed (.ci/run installs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sharpbench.leaderboard.results import load_results
from sharpbench.leaderboard.sweeps import split

websocket = pytest.importorskip("websocket", reason="websocket-client is a test dependency: pip install -e '.[test]'")

LEADERBOARD = Path(__file__).resolve().parents[1] / "leaderboard"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(BROWSER is None, reason="chromium is not installed (apt-get install -y chromium; "
                                                        ".ci/run does it)")


class DevTools:
    """A minimal Chrome DevTools Protocol client: commands by id, events collected as they arrive."""

    def __init__(self, url: str) -> None:
        self.socket = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self.next_id = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(event.get("method") == method for event in self.events):
            assert time.monotonic() < deadline, f"no {method} within {timeout} s"
            self.events.append(json.loads(self.socket.recv()))

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the element, scrolled into view first as a
        user would (a wide table scrolls sideways)."""
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                            f"e.scrollIntoView({{block: 'center', inline: 'center'}}); "
                            f"const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    process = subprocess.Popen([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--remote-debugging-port=0", "--remote-allow-origins=*",
                                f"--user-data-dir={profile}", "--window-size=1400,1000", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and process.poll() is None, "chromium did not start"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            targets = json.load(response)
        devtools = DevTools(next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page"))
        for domain in ("Runtime", "Log", "Page"):
            devtools.send(f"{domain}.enable")
        devtools.send("Page.navigate", url=(LEADERBOARD / "index.html").as_uri())
        devtools.wait_for("Page.loadEventFired")
        yield devtools
        devtools.socket.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def console_errors(page: DevTools) -> list[dict[str, Any]]:
    """Uncaught exceptions, console.error/assert calls and browser log errors seen so far."""
    page.evaluate("new Promise(resolve => setTimeout(resolve, 200))")  # let late errors arrive
    return [event for event in page.events
            if event.get("method") == "Runtime.exceptionThrown"
            or (event.get("method") == "Runtime.consoleAPICalled" and event["params"]["type"] in ("error", "assert"))
            or (event.get("method") == "Log.entryAdded" and event["params"]["entry"]["level"] == "error")]


def test_the_page_loads_without_console_errors(page: DevTools):
    assert console_errors(page) == []


PAGE_BYTES, LOAD_SECONDS = 2_000_000, 5.0    # what the page may weigh (plots apart) and take to load


def test_the_page_is_light_and_loads_quickly_with_every_result_on_it(page: DevTools):
    """The page carries the tables and loads its plots lazily from their own files: its own size and its load time
    (navigation start to the load event, plots out of view not yet fetched) stay small as results are added."""
    size = (LEADERBOARD / "index.html").stat().st_size
    plots = sum(path.stat().st_size for path in (LEADERBOARD / "plots").glob("*/*.svg"))
    load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000
    print(f"index.html {size / 1e6:.2f} MB, plots {plots / 1e6:.1f} MB in separate files, loaded in {load:.2f} s")
    assert size < PAGE_BYTES and load < LOAD_SECONDS
    assert page.evaluate("document.querySelectorAll('img:not([loading=lazy])').length") == 0
    assert page.evaluate("Array.from(document.querySelectorAll('#contents a')).every("
                         "a => document.querySelector(a.getAttribute('href')) !== null)")


def test_every_collection_and_measure_is_shown_with_its_plots(page: DevTools):
    documents = load_results(LEADERBOARD)
    for collection in {d["collection"] for d in documents}:
        rows = page.evaluate(f"Array.from(document.querySelectorAll('#table-{collection} tbody tr'))"
                             f".map(r => r.dataset.measure)")
        main, _ = split([d for d in documents if d["collection"] == collection])
        expected = {d["variant"] for d in main}
        assert set(rows) == expected and len(rows) == len(expected)
        shown = page.evaluate(f"document.querySelector('#collection-{collection}').innerText")
        assert all(name in shown for name in expected)
        # every plot (its own file, loaded lazily) decoded into a visible image once scrolled into view
        sizes = page.evaluate(
            f"(async () => {{ const images = Array.from(document.querySelectorAll('#collection-{collection} figure "
            f"img')); for (const i of images) {{ i.scrollIntoView(); await i.decode().catch(() => null); }} "
            f"return images.map(i => i.complete ? i.naturalWidth : 0); }})()")
        assert len(sizes) >= len(expected) and all(size > 100 for size in sizes)


def column_values(page: DevTools, collection: str, key: str) -> list[str]:
    index = page.evaluate(f"Array.from(document.querySelectorAll('#table-{collection} th'))"
                          f".findIndex(th => th.dataset.key === '{key}')")
    return page.evaluate(f"Array.from(document.querySelectorAll('#table-{collection} tbody tr'))"
                         f".map(r => r.cells[{index}].dataset.value)")


def test_clicking_a_header_sorts_the_table(page: DevTools):
    collection = load_results(LEADERBOARD)[0]["collection"]
    page.click(f"#table-{collection} th[data-key='measure']")
    names = column_values(page, collection, "measure")
    assert names == sorted(names) and len(names) > 1
    page.click(f"#table-{collection} th[data-key='measure']")
    assert column_values(page, collection, "measure") == sorted(names, reverse=True)
    page.click(f"#table-{collection} th[data-key='seconds']")
    seconds = [float(v) for v in column_values(page, collection, "seconds")]
    assert seconds == sorted(seconds)
    page.click(f"#table-{collection} th[data-key='tau_gap']")
    taus = [v for v in column_values(page, collection, "tau_gap")]
    defined = [float(v) for v in taus if v]
    assert defined == sorted(defined) and taus[:len(defined)] == [v for v in taus if v]  # undefined last
    assert page.evaluate(f"document.querySelector(\"#table-{collection} th[data-key='tau_gap']\")"
                         f".getAttribute('aria-sort')") == "ascending"
    assert console_errors(page) == []
