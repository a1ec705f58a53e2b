"""`svdx report`: the static HTML page over a tiny explain run, a tiny export and a tiny GAN run.
Every image and audio file it links exists (and the WAVs decode), the settings table has one row
per setting with the selected ones marked, missing parts are reported, and a headless Chromium
loads every image and every audio element from file://."""

import json
import shutil
import subprocess
import sys
import wave
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tf_svdx import config as config_lib
from tf_svdx.errors import ConfigError
from tf_svdx.report.html import write_report

REPO = Path(__file__).parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SMALL = ["explain.learning_rates=0.1,0.01", "explain.lambdas=0.01", "explain.iterations=2,5",
         "explain.seeds=3", "explain.chunk_rows=12", "explain.reference_n=6",
         "explain.reference_hop=25", "explain.show=2",
         "export.models=svd_detector,svd_generator"]


class Page(HTMLParser):
    """The parts of index.html the tests look at."""

    def __init__(self):
        super().__init__()
        self.images, self.audio, self.links, self.rows, self.ids = [], [], [], [], set()
        self._table = None
        self._audio = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.images.append(a.get("src"))
        elif tag == "audio":
            self._audio = []
            self.audio.append(self._audio)
        elif tag == "source" and self._audio is not None:
            self._audio.append((a.get("src"), a.get("type")))
        elif tag == "a":
            self.links.append(a.get("href"))
        elif tag == "table":
            self._table = a.get("id")
        elif tag == "tr" and self._table == "settings-table" and "data-name" in a:
            self.rows.append(a)

    def handle_endtag(self, tag):
        if tag == "audio":
            self._audio = None
        elif tag == "table":
            self._table = None


def parse(index: Path) -> Page:
    page = Page()
    page.feed(index.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def inputs(tiny_detector_run, tiny_gan_run, tiny_prepared, tmp_path_factory):
    """A tiny explain run, an evaluated detector (a copy of the session's run), an export of two
    models and the config that made them."""
    from tf_svdx.data.pipeline import Prepared
    from tf_svdx.evaluation import TrainedDetector, evaluate
    from tf_svdx.explain.job import explain
    from tf_svdx.export import export
    from tf_svdx.io import write_json
    tmp = tmp_path_factory.mktemp("report_inputs")
    detector = tmp / "detector"
    shutil.copytree(tiny_detector_run, detector)
    write_json(detector / "evaluation.json",
               evaluate(TrainedDetector.load(detector), Prepared(tiny_prepared)))
    cfg = config_lib.load(None, SMALL + [f"explain.detector={detector}",
                                         f"explain.generator={tiny_gan_run}",
                                         f"explain.prepared={tiny_prepared}",
                                         f"explain.out={tmp / 'explain'}",
                                         f"export.out={tmp / 'saved_models'}"])
    explain(cfg, progress=False)
    export(cfg, progress=False)
    return cfg


@pytest.fixture(scope="module")
def report(inputs, tmp_path_factory) -> Path:
    ex = inputs.explain
    return write_report(tmp_path_factory.mktemp("report") / "report", detector_run=ex.detector,
                        explain_out=ex.out, saved_models=inputs.export.out,
                        gan_run=ex.generator, config=inputs)


def test_report_links_exist_and_table_is_complete(inputs, report):
    results = json.loads((Path(inputs.explain.out) / "results.json").read_text())
    root = report.parent
    assert report.name == "index.html" and (root / "assets").is_dir()
    page = parse(report)
    # every image is a relative link to a non-trivial PNG inside the report folder
    assert len(page.images) >= 2 + 6 + 2 + 1 + 1  # heat maps, explanations, trajectories, ...
    for src in page.images:
        assert src and not src.startswith(("/", "file:", "http")), src
        path = root / src
        assert path.is_file() and path.stat().st_size > 1000, src
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
        assert path.resolve().is_relative_to(root.resolve())
    # every audio element has a WAV source that exists and decodes
    n_wavs = sum(len(results[role][d]["wav"]) for role in ("selected", "median", "worst")
                 for d in ("maximise", "minimise"))
    assert len(page.audio) == n_wavs == 12
    for sources in page.audio:
        assert sources, "an <audio> without <source>"
        src, kind = sources[0]
        assert kind == "audio/wav" and not src.startswith("/")
        with wave.open(str(root / src), "rb") as w:
            assert w.getframerate() == 22050 and w.getnchannels() == 1
            assert w.getnframes() > 20000
    assert all(href.startswith("#") for href in page.links if href)
    # one row per setting, the selected ones (and only they) marked
    assert len(page.rows) == len(results["settings"]) == 8
    assert {r["data-name"] for r in page.rows} == {s["name"] for s in results["settings"]}
    marked = {r["data-name"] for r in page.rows if "selected" in r.get("class", "").split()}
    assert marked == {results["selected"][d]["name"] for d in ("maximise", "minimise")}
    # detector metrics, fingerprints, exports with their signatures, the GAN's curves
    text = report.read_text(encoding="utf-8")
    evaluation = json.loads((Path(inputs.explain.detector) / "evaluation.json").read_text())
    assert f"{100 * evaluation['test']['error']:.2f} %" in text and "AUROC" in text
    assert "not-evaluated" not in page.ids and "not-exported" not in page.ids
    assert results["config_fingerprint"] in text and results["data_fingerprint"] in text
    assert "svd_detector" in text and "svd_generator" in text
    for name in ("serving_default", "features", "predict_waveform", "auralise", "log_mel",
                 "frame_probability", "float32", "[N, 80, 115, 1]"):
        assert name in text, name
    assert "models-config" in page.ids and str(Path(inputs.export.out) / "models.config") in text
    assert (root / "assets" / "gan-curves.png").is_file()
    assert (root / "assets" / "distribution.png").is_file()
    assert not list(root.parent.glob(".*.tmp"))  # the temporary folder was renamed into place


def test_report_missing_parts_and_rewrite(inputs, tmp_path):
    """No evaluation, no export, no GAN, no activations.npz: said so, not an error. A second
    report replaces the first; a folder that is not a report is never replaced."""
    explain_out = tmp_path / "explain"
    shutil.copytree(inputs.explain.out, explain_out,
                    ignore=shutil.ignore_patterns("chunks", "tb", "reference"))
    (explain_out / "explanations" / "activations.npz").unlink()
    out = tmp_path / "report"
    for _ in range(2):
        index = write_report(out, detector_run=tmp_path / "no-such-run", explain_out=explain_out,
                             saved_models=tmp_path / "no-exports")
        page = parse(index)
        assert {"not-evaluated", "not-exported"} <= page.ids
        assert len(page.rows) == 8 and len(page.audio) == 12
        for src in page.images:
            assert (out / src).is_file()
        assert "Not available" in index.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explain", "report"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not a report folder"):
        write_report(tmp_path / "other", detector_run=tmp_path, explain_out=explain_out)
    assert (tmp_path / "other" / "precious.txt").read_text() == "keep"
    with pytest.raises(ConfigError, match="results.json"):
        write_report(tmp_path / "r2", detector_run=tmp_path, explain_out=tmp_path / "nothing")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed (the "
                    "Makefile's system-deps installs Debian's chromium)")
def test_report_in_headless_chromium(inputs, report, tmp_path):
    from playwright.sync_api import sync_playwright
    results = json.loads((Path(inputs.explain.out) / "results.json").read_text())
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--autoplay-policy="
                                          "no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(report.resolve().as_uri(), wait_until="load")
            images = page.evaluate("""() => [...document.images].map(img => ({
                src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0}))""")
            assert len(images) >= 12 and all(i["ok"] for i in images), images
            audio = page.evaluate("""async () => Promise.all([...document.querySelectorAll('audio')]
                .map(a => new Promise(resolve => {
                    const done = () => resolve({can: a.canPlayType('audio/wav'),
                        state: a.readyState, error: a.error ? a.error.code : null,
                        duration: a.duration});
                    if (a.readyState >= 1) { done(); return; }
                    a.addEventListener('loadedmetadata', done, {once: true});
                    a.addEventListener('error', done, {once: true});
                    a.querySelector('source').addEventListener('error', done, {once: true});
                    setTimeout(done, 10000);
                    a.load();
                })))""")
            assert len(audio) == 12
            for a in audio:
                assert a["can"] in ("maybe", "probably"), a
                assert a["error"] is None and a["state"] >= 1 and a["duration"] > 0.5, a
            rows = page.locator("#settings-table tbody tr").count()
            assert rows == len(results["settings"])
            assert page.locator("#settings-table tr.selected").count() == 2
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 50_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_report(inputs, tmp_path):
    ex = inputs.explain
    explain_out = tmp_path / "run" / "explain"
    shutil.copytree(ex.out, explain_out, ignore=shutil.ignore_patterns("chunks", "tb"))
    cmd = [sys.executable, "-c", "from tf_svdx.cli import run; run()", "report",
           f"--config.explain.out={explain_out}", f"--config.explain.detector={ex.detector}",
           f"--config.explain.generator={ex.generator}",
           f"--config.export.out={inputs.export.out}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    index = tmp_path / "run" / "report" / "index.html"  # the default: <explain.out>/../report
    assert out.stdout.strip().splitlines()[-1] == str(index) and index.is_file()
    assert "svd_detector" in index.read_text(encoding="utf-8")
    bad = subprocess.run(cmd[:4] + [f"--config.explain.out={tmp_path / 'none'}",
                                    f"--config.explain.detector={ex.detector}"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert bad.returncode == 2 and "results.json" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
