"""The browser suite's fixtures (issue 20): a JupyterLab server on a temporary copy of the notebooks, and a headless
Chromium (Debian's `chromium`, not a Playwright download) driven through Playwright over the DevTools protocol.

Run it with `make browser` (or `pytest tests/browser -k 03`); screenshots and redraw times go to
tests/browser/artifacts/ (git-ignored). `pytest tests` without naming tests/browser skips it: it executes every
notebook a second time. The server and the browser are started in their own process groups and ended by PID in the
fixtures' finalisers, with the kernels the server started.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from harness import ARTIFACTS, HERE, INSTALL, LOG, NOTEBOOKS, START_TIMEOUT_S, TIMES, VIEWPORT, alone, find_chromium


def pytest_collection_modifyitems(config, items):
    """Skip the suite unless the command line names tests/browser (or a file in it): `pytest tests` stays fast."""
    base = Path(config.invocation_params.dir)
    named = any(HERE == p or HERE in p.parents
                for p in ((base / a.split("::")[0]).resolve() for a in config.args))
    if named:
        return
    skip = pytest.mark.skip(reason="the browser suite runs on its own: `make browser` or `pytest tests/browser`")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


_STARTED = time.time()


def pytest_terminal_summary(terminalreporter, config):
    """This run's browser times (LOG), when the suite ran: under pytest-xdist its workers' prints are not shown."""
    if not LOG.exists() or LOG.stat().st_mtime < _STARTED or getattr(config, "workerinput", None) is not None:
        return
    terminalreporter.section("browser suite: Restart Kernel and Run All, and every control's redraw")
    for line in LOG.read_text().splitlines():
        if line.strip():
            terminalreporter.write_line(line)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    import psutil
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _end(pid: int, others: list[int] = (), grace_s: float = 15.0) -> None:
    """SIGTERM the process group of `pid` (it leads one) and the PIDs in `others`; SIGKILL what is left."""
    import psutil

    def signal_all(sig):
        for kill, target in [(os.killpg, pid)] + [(os.kill, p) for p in others]:
            try:
                kill(target, sig)
            except (ProcessLookupError, PermissionError):
                pass
    signal_all(signal.SIGTERM)
    procs = []
    for p in [pid, *others]:
        try:
            procs.append(psutil.Process(p))
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    if alive:
        signal_all(signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)


def _lab_dirs(root: Path) -> dict:
    """A private Jupyter config: every cell rendered (no windowing, so every widget is in the page) and no
    news prompt; the user's own settings and workspaces are not read or written."""
    config, settings, workspaces = root / "config", root / "settings", root / "workspaces"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    notebook = settings / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True)
    (notebook / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    workspaces.mkdir()
    return {"JUPYTER_CONFIG_DIR": str(config), "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(workspaces)}


def _up(url: str) -> bool:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as r:  # no proxy
            return r.status == 200
    except OSError:
        return False


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def chromium():
    """The Chromium binary, or a skip that says how to install it. While the suite runs, SIGTERM and SIGHUP
    interrupt pytest like Ctrl-C, so that the finalisers below still end the server, its kernels and the browser."""
    path = find_chromium()
    if path is None:
        pytest.skip(f"no Chromium found: {INSTALL}; then run `make browser`")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is missing: `make install` (the test extra has it)")
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield path
    for s, handler in previous.items():
        signal.signal(s, handler)


@pytest.fixture(scope="session")
def lab(tmp_path_factory, chromium):
    """A running `jupyter lab` (the .venv's) in a temporary copy of the notebooks: yields (base URL, token, folder).
    The kernels import diffnb from the editable install and find data/ beside the package, so the copy holds
    the .ipynb files only (without the jupytext sources and pairing, so nothing is written back to notebooks/)."""
    root = tmp_path_factory.mktemp("lab")
    folder = root / "notebooks"
    folder.mkdir()
    for path in NOTEBOOKS:
        shutil.copy2(path, folder / path.name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "DIFFNB_PROGRESS")}
    env.update(_lab_dirs(root), HF_HUB_OFFLINE="1")     # progress bars show, as for a student
    token = secrets.token_hex(16)
    jupyter = Path(sys.executable).with_name("jupyter")
    log_path = root / "jupyter.log"
    for attempt in range(5):                            # a port taken between choosing and binding: try another
        port = _free_port()
        cmd = [str(jupyter), "lab", "--no-browser", f"--port={port}", "--port-retries=0", "--ip=127.0.0.1",
               f"--IdentityProvider.token={token}", "--expose-app-in-browser", f"--ServerApp.root_dir={folder}",
               *(["--allow-root"] if os.geteuid() == 0 else [])]
        log = open(log_path, "w")
        server = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while server.poll() is None and time.monotonic() < deadline and not _up(
                f"http://127.0.0.1:{port}/api/status?token={token}"):
            time.sleep(0.5)
        log.close()
        text = log_path.read_text(errors="replace")
        if server.poll() is None and _up(f"http://127.0.0.1:{port}/api/status?token={token}"):
            break
        if server.poll() is None:
            _end(server.pid, _descendants(server.pid))
            pytest.fail(f"jupyter lab did not come up within {START_TIMEOUT_S} s; its log:\n{text}", pytrace=False)
        if "already in use" not in text and "Address already" not in text:
            pytest.fail(f"jupyter lab exited with {server.returncode}; its log:\n{text}", pytrace=False)
    else:
        pytest.fail(f"no free port after 5 tries; the last log:\n{text}", pytrace=False)
    base = f"http://127.0.0.1:{port}"
    try:
        yield base, token, folder
    finally:
        kernels = _descendants(server.pid)              # kernels lead their own sessions: end them by PID too
        _end(server.pid, kernels)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy2(log_path, ARTIFACTS / "jupyter.log")


@pytest.fixture(scope="session")
def browser(chromium, tmp_path_factory):
    """Headless Chromium in its own process group, connected to over CDP (so its PID is ours to end)."""
    from playwright.sync_api import sync_playwright
    profile = tmp_path_factory.mktemp("chromium-profile")
    cmd = [chromium, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={profile}",
           "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-breakpad",
           "--disable-crash-reporter", "--no-proxy-server", "--disable-dev-shm-usage",
           "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
           f"--window-size={VIEWPORT['width']},{VIEWPORT['height']}",
           *(["--no-sandbox"] if os.geteuid() == 0 else []), "about:blank"]
    log_path = profile.parent / "chromium.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pw = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        if not (port_file.exists() and port_file.read_text().strip()):
            pytest.fail(f"Chromium did not start within {START_TIMEOUT_S} s ({' '.join(cmd)}); its log:\n"
                        f"{log_path.read_text(errors='replace')}", pytrace=False)
        port = int(port_file.read_text().split()[0])
        pw = sync_playwright().start()
        yield pw.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
    finally:
        if pw is not None:
            pw.stop()
        _end(proc.pid, _descendants(proc.pid), grace_s=5)


@pytest.fixture(scope="session")
def times():
    """Collects the run-all and redraw times; merged into TIMES at the end (earlier notebooks' entries kept)."""
    ARTIFACTS.mkdir(exist_ok=True)
    LOG.write_text(f"# {'alone' if alone() else 'beside other tests (slower than on a quiet machine)'}\n")
    measured: dict = {}
    yield measured
    if not measured:
        return
    old = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    notebooks = {**old.get("notebooks", {}), **measured}
    TIMES.write_text(json.dumps({
        "about": "browser-measured times (tests/browser): Restart Kernel and Run All Cells, and each control's "
                 "redraw from the key press to the new image, in seconds",
        "notebooks": dict(sorted(notebooks.items()))}, indent=2) + "\n")
