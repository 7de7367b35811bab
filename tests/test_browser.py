"""What a person sees: a smoke sweep into a fresh store, `make ui`'s server on it, and the
experiment page, the parent run and one child run loaded in headless Chromium (Debian's
/usr/bin/chromium driven by Playwright; no browser is downloaded).

Screenshots are kept in $DMFRAG_TEST_ARTIFACTS (default <project>/test-artifacts/browser/).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("DMFRAG_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900), pytest.mark.xdist_group("browser")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shots() -> Path:
    d = Path(os.environ.get("DMFRAG_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "browser"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A smoke sweep (conf/sweep/smoke.yaml) recorded in a fresh sqlite store."""
    tmp = tmp_path_factory.mktemp("ui")
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run([sys.executable, "-m", "sweeps", "+sweep=smoke", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
                        f"tracking.artifact_root={tmp / 'art'}", f"sweep.ledger_dir={tmp / 'ledger'}",
                        f"sweep.out_dir={tmp / 'out'}", f"hydra.sweep.dir={tmp / 'multirun'}", "sweep.progress=false",
                        "ray.num_cpus=2"], cwd=tmp, env=env, capture_output=True, text=True, timeout=800)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = c.get_experiment_by_name("dmfrag")
    runs = c.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("dmfrag.role") == "parent"][0]
    children = [r for r in runs if r.data.tags.get("dmfrag.role") == "child"]
    return {"tmp": tmp, "exp": exp.experiment_id, "parent": parent, "children": children, "stdout": p.stdout}


@pytest.fixture(scope="module")
def ui(store):
    """`make ui` on that store: the same command (sweeps/ui.py), a free port."""
    from sweeps.ui import command

    port = _free_port()
    tmp = store["tmp"]
    argv, env = command(f"sqlite:///{tmp / 'mlflow.db'}", (tmp / "art").as_uri(), "127.0.0.1", port)
    log = open(tmp / "ui.log", "w")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp / "ui.log").read_text()[-3000:]
            assert time.monotonic() - t0 < 300, "MLflow UI did not answer within 300 s"
            time.sleep(0.5)
        print(f"MLflow UI answered after {time.monotonic() - t0:.1f} s")
        yield url
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                   args=FLAGS[1:], viewport={"width": 1600, "height": 1000})
        try:
            yield ctx
        finally:
            ctx.close()


ML = "workflowType=machine_learning"  # MLflow 3 opens an experiment on its GenAI overview otherwise


def _open(ctx, url: str, wait_text: str, shot: Path, timeout_s: float = 120):
    page = ctx.new_page()
    page.goto(url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
    try:
        page.get_by_text(wait_text, exact=False).first.wait_for(timeout=timeout_s * 1000)
        close = page.locator("button[data-component-id='mlflow.assistant.chat_panel.close']")
        if close.count():  # the assistant's side panel takes a third of the width
            close.first.click()
    finally:
        page.screenshot(path=str(shot), full_page=True)
    return page


def test_experiment_page_shows_distinct_run_names(browser, store, ui, shots):
    names = sorted(r.info.run_name for r in store["children"])
    assert len(set(names)) == len(names) == 6
    page = _open(browser, f"{ui}/#/experiments/{store['exp']}?{ML}", store["parent"].info.run_name,
                 shots / "experiment.png")
    # the child runs are folded under their parent: unfold them as a person would
    page.locator("button[data-component-id*='runnamecellrenderer']").first.click()
    page.get_by_text(names[0], exact=True).first.wait_for(timeout=60000)
    page.screenshot(path=str(shots / "experiment.png"), full_page=True)
    text = page.inner_text("body")
    for n in names:
        assert n in text, (n, text[:3000])


def test_parent_run_shows_description_table_and_result(browser, store, ui, shots):
    par = store["parent"]
    page = _open(browser, f"{ui}/#/experiments/{store['exp']}/runs/{par.info.run_id}?{ML}", "Result",
                 shots / "parent.png")
    more = page.get_by_text("Show more", exact=True)
    if more.count():
        more.first.click()
    page.get_by_text("python -m sweeps").first.wait_for(timeout=30000)
    page.screenshot(path=str(shots / "parent.png"), full_page=True)
    text = page.inner_text("body")
    assert "fewer level-2 splits than none" in text or "more level-2 splits than none" in text, text[:3000]
    page = _open(browser, f"{ui}/#/experiments/{store['exp']}/runs/{par.info.run_id}/artifacts/sweep_table.html?{ML}",
                 "sweep_table.html", shots / "parent-table.png")
    frame = None
    t0 = time.monotonic()
    while frame is None and time.monotonic() - t0 < 60:
        for f in page.frames:
            try:
                if f.locator("#sweep-table").count():
                    frame = f
            except Exception:
                pass
        time.sleep(0.5)
    page.screenshot(path=str(shots / "parent-table.png"), full_page=True)
    assert frame is not None, "the sweep table's HTML is not shown"
    table = frame.inner_text("#sweep-table")
    for r in store["children"]:
        assert r.info.run_name in table
    assert "direct_map_level2_splits" in table


def test_child_run_shows_headline_metrics(browser, store, ui, shots):
    r = sorted(store["children"], key=lambda r: r.info.run_name)[-1]
    page = _open(browser, f"{ui}/#/experiments/{store['exp']}/runs/{r.info.run_id}?{ML}", r.info.run_name,
                 shots / "child.png")
    page.get_by_text("0_headline/direct_map_level2_splits").first.wait_for(timeout=60000)
    page.screenshot(path=str(shots / "child.png"), full_page=True)
    text = page.inner_text("body")
    for k in ("0_headline/direct_map_level2_splits", "0_headline/DirectMap4k_kB", "0_headline/alloc_fail"):
        assert k in text, (k, text[:3000])
    assert r.info.run_name in text and "config.yaml" not in text  # the config is an artifact, not 300 params
