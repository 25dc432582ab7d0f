"""The course in a real browser: JupyterLab on localhost driven by headless Chromium.

Every lesson's live widget (``tools.widget_gallery``: the lesson's own builder on a small
untrained model of the lesson's sizes) is shown in a test notebook and moved the way a reader
moves it: typing into a slider's readout, stepping a selection slider with the keyboard, clicking
a toggle or a button, choosing in a dropdown. Between them they cover every kind of control the
course uses (latent sliders, a classifier direction, attribute toggles, a 2-D pad, a model
selector). After each move the test waits for the widget's own status text of the final value,
then checks the decoded image changed. A lesson then runs end to end in the smoke profile and
its first widget is moved the same way. Screenshots before and after are saved
(``BROWSER_ARTIFACTS`` or a temp folder), and on failure. The decode time after each move, the
kernel's (the widget's own "decoded in") and the round trip the browser sees, is printed and
written to ``widget_timings.json`` there; ``python -m benchmarks.bench_widgets`` measures the same
decodes without a browser.

Needs Debian's ``chromium`` and the ``playwright`` package (``.ci/setup`` installs both). Where they
are missing the tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ipywidgets as W
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/lib/chromium/chromium")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
TOKEN = "vaecourse-browser-test"


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return "Chromium is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    return None


if (why := _missing()) is not None:
    if os.environ.get("CI"):
        raise RuntimeError(f"browser tests need {why}; .ci/setup installs both")
    pytest.skip(why, allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tools.widget_gallery import status_text  # noqa: E402
from vaecourse.widgets import format_value  # noqa: E402

GALLERY_SETUP = """from tools.widget_gallery import course_widgets
gallery = course_widgets()
print(f"{len(gallery)} widgets built")"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_gallery_notebook(folder: Path, n_widgets: int) -> Path:
    """One cell builds the gallery; one cell per widget displays it (so each widget has its own output)."""
    nb = nbformat.v4.new_notebook()
    cells = [GALLERY_SETUP, *(f"gallery[{i}].widget" for i in range(n_widgets))]
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "widgets_test.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def gallery():
    """The same gallery, built in this process: which controls to move, their kinds and the texts to expect."""
    from tools.widget_gallery import course_widgets

    return course_widgets()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("BROWSER_ARTIFACTS") or tempfile.mkdtemp(prefix="vaecourse-browser-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory, gallery):
    """A JupyterLab server on 127.0.0.1 over a temp folder, with dialogs that block automation switched off."""
    work = tmp_path_factory.mktemp("lab")
    home = tmp_path_factory.mktemp("jupyter-home")
    settings = home / "settings"
    # no news dialog; start the kernel without asking; render every cell (a long lesson's widget may be
    # off-screen, and JupyterLab's windowing hides off-screen cells)
    user_settings = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True,
                                                                       "windowingMode": "none"},
    }
    for rel, content in user_settings.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(content))
    _write_gallery_notebook(work, len(gallery))
    for nb in sorted((ROOT / "notebooks").glob("02_*.ipynb"))[:1]:
        shutil.copy(nb, work / nb.name)
    port = _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "CI": "true", "VAECOURSE_PROGRESS": "0",
           # the gallery lives in the repository's tools/, outside the installed package
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # the kernel must be this environment's Python (the one with torch and vaecourse)
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", "python3"],
                   env=env, check=True, capture_output=True)
    log = open(home / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                             f"--IdentityProvider.token={TOKEN}", "--ServerApp.disable_check_xsrf=True",
                             f"--ServerApp.root_dir={work}", *(["--allow-root"] if os.geteuid() == 0 else [])],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited: {(home / 'lab.log').read_text()[-2000:]}") from None
            time.sleep(0.3)
    yield {"url": url, "work": work}
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROME_ARGS, headless=True)
        yield b
        b.close()


def open_notebook(browser, lab, name: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # a workspace of its own, reset: JupyterLab would otherwise reopen the previous page's notebooks too
    workspace = Path(name).stem.replace("_", "-")
    page.goto(f"{lab['url']}/lab/workspaces/{workspace}/tree/{name}?reset&token={TOKEN}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook", timeout=60_000)
    # the kernel must have started and be idle (the status bar says so) before anything runs
    expect(page.get_by_text(re.compile(r"\(ipykernel\) \| Idle"))).to_be_visible(timeout=90_000)
    return page


def run_all_cells(page, artifacts: Path | None = None) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    item = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
    if artifacts is not None:
        page.screenshot(path=str(artifacts / "menu.png"))
    item.click()


def status_of(widget):
    return widget.locator(".vaecourse-status")


def set_slider(widget, label: str, value: float) -> None:
    """Type a value into a slider's readout, as a reader can, and press Enter."""
    slider = widget.locator(".widget-slider", has=widget.page.locator(".widget-label", has_text=label)).first
    readout = slider.locator(".widget-readout")
    readout.click()
    readout.press("Control+a")
    readout.type(f"{value}")
    readout.press("Enter")


def step_selection_slider(widget, label: str, steps: int) -> None:
    """Move a selection slider by ``steps`` options with the arrow keys (its readout shows a label, not a number)."""
    slider = widget.locator(".widget-slider", has=widget.page.locator(".widget-label", has_text=label)).first
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    for _ in range(abs(steps)):
        handle.press("ArrowRight" if steps > 0 else "ArrowLeft")


def move_in_browser(scope, control, move) -> None:
    """Make a gallery move by hand in the page: ``control`` is the ipywidgets control it moves."""
    label = control.description
    if move.button is not None:
        scope.get_by_role("button", name=move.button).click()
    elif isinstance(control, W.SelectionSlider):
        options = list(control._options_values)
        step_selection_slider(scope, label, options.index(move.value) - options.index(control.value))
    elif isinstance(control, (W.FloatSlider, W.IntSlider)):
        set_slider(scope, label, move.value)
    elif isinstance(control, W.ToggleButtons):
        text = format_value(control, move.value)
        scope.locator(".widget-toggle-buttons", has=scope.page.locator(".widget-label", has_text=label)) \
            .get_by_role("button", name=text, exact=True).click()
    elif isinstance(control, W.Dropdown):
        scope.locator(".widget-dropdown", has=scope.page.locator(".widget-label", has_text=label)) \
            .locator("select").select_option(label=format_value(control, move.value))
    elif isinstance(control, W.Checkbox):
        box = scope.get_by_label(label)
        box.check() if move.value else box.uncheck()
    else:
        raise NotImplementedError(f"the browser test cannot yet move a {type(control).__name__}; add it here")


def image_src(widget) -> str:
    return widget.locator("img").first.get_attribute("src") or ""


def timed_move(widget, move, expected_text: str, timings: list[float]) -> None:
    before = image_src(widget)
    t0 = time.perf_counter()
    move()
    expect(status_of(widget)).to_contain_text(expected_text, timeout=15_000)
    timings.append(1000 * (time.perf_counter() - t0))
    assert image_src(widget) != before, "the status changed but the image did not"


def kernel_ms(widget) -> float:
    return float(re.search(r"decoded in ([0-9.]+) ms", status_of(widget).inner_text()).group(1))


def test_every_lesson_widget_in_the_browser(browser, lab, artifacts, gallery):
    page = open_notebook(browser, lab, "widgets_test.ipynb")
    try:
        run_all_cells(page, artifacts)
        cells = page.locator(".jp-CodeCell")
        outputs = [cells.nth(i + 1) for i in range(len(gallery))]
        for out in outputs:
            expect(status_of(out)).to_be_visible(timeout=120_000)
        page.screenshot(path=str(artifacts / "widgets_before.png"), full_page=True)
        rows = []
        for i, (item, out) in enumerate(zip(gallery, outputs)):
            out.scroll_into_view_if_needed()
            out.screenshot(path=str(artifacts / f"widget{i:02d}_{item.lesson}_before.png"))
            for move in item.moves:
                control = item.live.controls[move.control]
                round_trip: list[float] = []
                timed_move(out, lambda o=out, c=control, m=move: move_in_browser(o, c, m), status_text(item, move),
                           round_trip)
                rows.append({"lesson": item.lesson, "widget": item.name, "move": status_text(item, move),
                             "kind": "button" if move.button else type(control).__name__,
                             "kernel_ms": kernel_ms(out), "round_trip_ms": round_trip[0]})
                control.value = move.value  # the in-process copy follows, so the next move's start is known
            out.screenshot(path=str(artifacts / f"widget{i:02d}_{item.lesson}_after.png"))
        # a reader dragging a slider sends several values quickly: the widget must end on the last one
        item, out, name = next((item, out, m.control) for item, out in zip(gallery, outputs) for m in item.moves
                               if m.button is None and type(item.live.controls[m.control]) is W.FloatSlider)
        for v in (0.5, 1.0, 1.5):
            set_slider(out, item.live.controls[name].description, v)
        expect(status_of(out)).to_contain_text(f"{name} = +1.50", timeout=15_000)
        page.screenshot(path=str(artifacts / "widgets_after.png"), full_page=True)
        (artifacts / "widget_timings.json").write_text(json.dumps(rows, indent=1))
        print(f"\n{'lesson':<18}{'widget':<38}{'move':<28}{'kernel ms':>10}{'round trip ms':>15}")
        for r in rows:
            print(f"{r['lesson']:<18}{r['widget']:<38}{r['move']:<28}{r['kernel_ms']:>10.1f}{r['round_trip_ms']:>15.0f}")
        kinds = {r["kind"] for r in rows}
        # every kind of control the course uses was moved by hand at least once
        assert {"FloatSlider", "IntSlider", "SelectionSlider", "ToggleButtons", "Dropdown", "button"} <= kinds, kinds
    except Exception:
        page.screenshot(path=str(artifacts / "widgets_failure.png"), full_page=True)
        print(f"screenshots before, after and at the failure: {artifacts}")
        raise
    finally:
        page.close()


def test_a_lesson_end_to_end_in_the_browser(browser, lab, artifacts):
    lessons = sorted(lab["work"].glob("02_*.ipynb"))
    if not lessons:
        pytest.fail("notebook 02 is missing from notebooks/")
    page = open_notebook(browser, lab, lessons[0].name)
    try:
        run_all_cells(page)
        widget = page.locator(".widget-vbox", has=page.locator(".vaecourse-status")).first
        expect(widget).to_be_attached(timeout=240_000)
        expect(page.locator(".jp-Notebook")).to_contain_text("checks passed", timeout=240_000)
        widget.scroll_into_view_if_needed()
        expect(widget).to_be_visible()
        page.screenshot(path=str(artifacts / "lesson_before.png"))
        label = widget.locator(".widget-slider .widget-label").first.inner_text()
        name = status_of(widget).inner_text().split(" = ")[0].strip()
        timings: list[float] = []
        timed_move(widget, lambda: set_slider(widget, label, 1.25), f"{name} = +1.25", timings)
        page.screenshot(path=str(artifacts / "lesson_after.png"))
        print(f"lesson {lessons[0].stem}: moved {label} to 1.25; kernel decode {kernel_ms(widget):.1f} ms, "
              f"round trip {timings[0]:.0f} ms")
    except Exception:
        page.screenshot(path=str(artifacts / "lesson_failure.png"))
        print(f"screenshots before, after and at the failure: {artifacts}")
        raise
    finally:
        page.close()
