"""The browser tier: Debian's Chromium driven by Playwright (PyPI) through the web pages, with
axe-core (npm) injected into every page and a screenshot of each under out/browser/.

Skipped, with the reason, when Chromium is not at /usr/bin/chromium (`make test` installs it
with apt-get when it runs as root), when Playwright is not installed, or when axe-core is not in
tests/browser/node_modules (`make test` runs `npm install` there when npm is present)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
OUT = Path(__file__).resolve().parents[2] / "out" / "browser"
#: what fails a page: axe's two worst impact levels
BLOCKING = ("serious", "critical")
MAX_PAGE_BYTES = 200 * 1024


def _why_not() -> str | None:
    if not CHROMIUM.exists():
        how = ("`apt-get install -y chromium` (make test does it when run as root)" if os.geteuid() == 0
               else "ask an administrator to `apt-get install chromium`; make test installs it only when run as root")
        return f"browser tier skipped: Chromium is not installed at {CHROMIUM}: {how}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tier skipped: Playwright is not installed (pip install -e '.[test]')"
    if not AXE.exists() and shutil.which("npm"):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(HERE)], check=False,
                       capture_output=True, timeout=300)
    if not AXE.exists():
        return f"browser tier skipped: axe-core is not installed ({AXE}); run `npm install --prefix {HERE}`"
    return None


_SKIPPED: list[str] = []


def pytest_collection_modifyitems(config, items):
    mine = [item for item in items if item.path.is_relative_to(HERE)]
    reason = _why_not() if mine else None
    if reason:
        _SKIPPED.append(reason)
        for item in mine:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter):
    # said at the end of every run, not only with -rs: a skipped tier must not pass unnoticed
    for reason in _SKIPPED:
        terminalreporter.write_line(reason, yellow=True)


@pytest.fixture(scope="package")
def chromium():
    """One Chromium for the browser tier, stopped when the tier ends: Playwright's sync API keeps
    an asyncio loop running in the main thread while it lives, and the handler tier after it
    then could not run the email sender there ("Cannot run the event loop while another loop is
    running")."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield browser
        browser.close()


class Pages:
    """Screenshots, the axe check and the size bound for every page a test opens."""

    def __init__(self, test_name: str):
        self.dir = OUT / test_name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.axe = AXE.read_text()
        self.checked: list[str] = []

    def check(self, page, name: str) -> None:
        page.wait_for_load_state("load")
        html = page.content()
        assert len(html.encode()) < MAX_PAGE_BYTES, f"{name}: page is {len(html.encode())} bytes"
        page.screenshot(path=str(self.dir / f"{len(self.checked) + 1:02d}-{name}.png"), full_page=True)
        tag = page.add_script_tag(content=self.axe)  # the context bypasses our CSP for this alone
        violations = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']}))
            .violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                   nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))""")
        tag.evaluate("element => element.remove()")  # the page is measured again without it
        bad = [v for v in violations if v["impact"] in BLOCKING]
        assert not bad, f"{name}: accessibility violations {bad}"
        self.checked.append(name)


@pytest.fixture
def pages(request):
    return Pages(request.node.name)
