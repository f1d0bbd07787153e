"""`python -m wler_jax.serve`: predict's record over HTTP, refusals with one-line messages, no
compilation after warm-up whatever the lengths, and the page in a real headless Chromium."""
import concurrent.futures
import contextlib
import glob
import io
import json
import os
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from wler_jax import predict  # noqa: E402
from wler_jax.geometry import SAMPLE_RATE  # noqa: E402
from wler_jax.serve import app as app_lib  # noqa: E402
from wler_jax.serve import uploads  # noqa: E402
from conftest import tones_and_noise  # noqa: E402
from test_predict import _python, make_workdir  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
MAX_SECONDS = 12.0  # the test server's limits: small, so the warm-up compiles few programs
MAX_BYTES = 2 << 20
CHUNK_FRAMES = 256  # three ladder rungs (128, 192, 256): the warm-up's programs stay few


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("serve_workdir"), seed=7)


@contextlib.contextmanager
def serving(web):
    """The app's URL on a free loopback port (uvicorn in a thread) while inside."""
    srv = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(workdir):
    """The app around one warmed-up scorer, served on the loopback address."""
    scorer = uploads.UploadScorer(predict.load_model(workdir),
                                  uploads.Limits(MAX_BYTES, MAX_SECONDS), threshold=0.5,
                                  chunk_frames=CHUNK_FRAMES)
    scorer.warm_up()
    with serving(app_lib.create_app(scorer, workers=2, max_pending=8)) as url:
        yield {"url": url, "scorer": scorer}
    scorer.compiles.close()


def wav_bytes(seconds: float, sr: int = SAMPLE_RATE, seed: int = 0, channels: int = 1,
              subtype: str = "PCM_16") -> bytes:
    x = tones_and_noise(round(seconds * SAMPLE_RATE), seed=seed)
    if sr != SAMPLE_RATE:
        x = x[::SAMPLE_RATE // sr][:int(seconds * sr)]
    if channels > 1:
        x = np.stack([x] * channels, 1)
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def post(url: str, body: bytes, content_type="audio/wav", name="rec.wav", headers=None):
    """(status, JSON body) of POST /api/predict."""
    req = urllib.request.Request(f"{url}/api/predict?name={name}", data=body, method="POST",
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def test_serve_imports_no_training_config_or_data_code():
    """The whole server, its entry point included, loads without the training loop, the config
    module or the dataset builders (as tests/test_predict.py checks for the other serving code)."""
    script = ("import sys\n"
              "from wler_jax.serve import __main__, app, page, uploads\n"
              "bad = sorted(m for m in sys.modules if m.split('.')[:2] in\n"
              "             (['wler_jax', 'training'], ['wler_jax', 'configs'], ['wler_jax', 'data']))\n"
              "print('OK' if not bad else bad)")
    out = _python(script)
    assert out.stdout.strip() == "OK", out.stdout + out.stderr[-3000:]


def test_json_endpoint_returns_predicts_record(server, workdir, tmp_path):
    """The endpoint's document is what `python -m wler_jax.predict` writes for the same file
    (a stereo 22.05 kHz file: down-mix and resampling included)."""
    data = wav_bytes(4.3, sr=22050, seed=2, channels=2)
    path = tmp_path / "two channels.wav"
    path.write_bytes(data)
    status, doc = post(server["url"], data, name="two%20channels.wav")
    assert status == 200, doc
    out = tmp_path / "p.json"
    assert predict.cli(["predict", f"--workdir={workdir}", f"--output={out}", "--threshold=0.5",
                        f"--chunk_frames={CHUNK_FRAMES}", "--compile_cache_dir=",
                        "--noprogress", str(path)]) == 0
    expected = json.loads(out.read_text())
    (got,), (want,) = doc["results"], expected["results"]
    assert got.pop("file") == "two channels.wav" and want.pop("file") == str(path)
    assert got == want and doc["failed"] == []
    assert {k: doc[k] for k in ("workdir", "class_names", "threshold")} == \
        {k: expected[k] for k in ("workdir", "class_names", "threshold")}
    assert len(got["segment_scores"]) == 8 and got["duration"] == pytest.approx(4.3, abs=1e-3)


def test_concurrent_requests_of_any_length_compile_nothing_after_warmup(server):
    """Lengths from under one segment to the limit, across chunk boundaries and ladder rungs,
    sent at once: all scored, and not one program compiled (or loaded) after the warm-up."""
    scorer = server["scorer"]
    before = get(server["url"] + "/api/status")
    assert before["compiles_at_warmup"] > 0 and before["compiles_since_warmup"] == 0
    seconds = [0.2, 1.49, 2.23, 2.98, 5.1, 7.77, MAX_SECONDS]
    bodies = [wav_bytes(s, seed=i) for i, s in enumerate(seconds)]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: post(server["url"], b), bodies))
    for (status, doc), s in zip(answers, seconds):
        assert status == 200, doc
        assert doc["results"][0]["duration"] == pytest.approx(s, abs=1e-4)
    after = get(server["url"] + "/api/status")
    assert after["requests"] == before["requests"] + len(seconds)
    assert after["compiles_since_warmup"] == 0, scorer.compiles.names[scorer.compiles_at_warmup:]
    # the counter does count: a length past the warm-up's shapes compiles
    n = scorer.compiles.count
    predict.predict_waveform(scorer.model, np.zeros(3 * CHUNK_FRAMES * 512), chunk_frames=512)
    assert scorer.compiles.count > n


@pytest.mark.parametrize("body, content_type, status, message", [
    (b"hello", "text/plain", 415, ("expected an audio file (Content-Type audio/* or "
                                   "application/octet-stream), got text/plain")),
    (b"\x1aE\xdf\xa3", "audio/webm;codecs=opus", 415, "audio/webm cannot be decoded here"),
    (b"", "audio/wav", 400, "no audio received: the request body is empty"),
    (b"RIFF" + bytes(range(256)) * 4, "audio/wav", 422, ("rec.wav: cannot be decoded as audio "
                                                         "(Error opening 'rec.wav': Format not")),
    ("nan", "audio/wav", 422, "rec.wav: contains non-finite (NaN/inf) samples"),
    ("long", "application/octet-stream", 413, ("rec.wav: the recording is 12.5 s long; this "
                                               "server scores at most 12.0 s (--max_seconds)")),
    ("big", "audio/wav", 413, "the upload is larger than 2 MB (--max_upload_mb)"),
])
def test_refusals_are_4xx_with_one_line(server, body, content_type, status, message):
    if body == "nan":
        x = tones_and_noise(SAMPLE_RATE)
        x[1000] = np.nan
        buf = io.BytesIO()
        sf.write(buf, x, SAMPLE_RATE, format="WAV", subtype="FLOAT")
        body = buf.getvalue()
    elif body == "long":
        body = wav_bytes(12.5, sr=8000)  # 200 kB: refused for its length, not its size
    elif body == "big":
        body = bytes(MAX_BYTES + 1)
    before = get(server["url"] + "/api/status")["requests"]
    temporary = set(glob.glob(os.path.join(tempfile.gettempdir(), "wler_upload_*")))
    got, doc = post(server["url"], body, content_type)
    assert got == status and set(doc) == {"error"}, doc
    assert doc["error"].startswith(message) and "\n" not in doc["error"], doc
    assert "wler_upload_" not in doc["error"]  # the server's temporary file is not shown
    assert get(server["url"] + "/api/status")["requests"] == before
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "wler_upload_*"))) <= temporary


def test_page_in_headless_chromium(server, tmp_path):
    """Chromium loads the page, uploads a generated WAV, draws the heat map and the events of the
    record, shows refusals' messages, and scores a microphone recording (Chromium's fake
    device); screenshots in tmp_path (and in $WLER_SERVE_SCREENSHOT when set)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (Debian: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    wav = tmp_path / "street.wav"
    wav.write_bytes(wav_bytes(9.0, seed=5))
    status, doc = post(server["url"], wav.read_bytes(), name="street.wav")
    assert status == 200
    record = doc["results"][0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
            viewport={"width": 1000, "height": 900}, permissions=["microphone"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server["url"] + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('4 classes')")
            page.set_input_files("#file", str(wav))
            page.wait_for_selector("#results:not([hidden])", timeout=60_000)
            assert "street.wav: 9.00 s scored" in page.text_content("#status")
            colours = page.evaluate("""() => {
                const c = document.getElementById('heatmap'), d = c.getContext('2d')
                    .getImageData(150, 0, c.width - 150, 4 * 16).data, seen = new Set();
                for (let i = 0; i < d.length; i += 4) seen.add(d[i] << 16 | d[i+1] << 8 | d[i+2]);
                return seen.size; }""")
            assert colours >= 10  # scores drawn, not a blank or one-colour canvas
            assert page.locator("#timeline rect.event").count() == len(record["segments"]) > 0
            tags = [c for c, s in record["scores"].items() if s > 0.5]
            assert page.locator("#tags .tag:not(.none)").count() == len(tags)
            shot = tmp_path / "serve_page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("WLER_SERVE_SCREENSHOT"):
                shutil.copy(shot, os.environ["WLER_SERVE_SCREENSHOT"])

            text = tmp_path / "notes.txt"
            text.write_text("not audio")
            page.set_input_files("#file", str(text))
            page.wait_for_selector("#error:not([hidden])")
            assert page.text_content("#error").startswith(
                "HTTP 415: expected an audio file (Content-Type audio/* or "
                "application/octet-stream), got text/plain;")
            corrupt = tmp_path / "corrupt.wav"
            corrupt.write_bytes(b"RIFF" + bytes(1000))
            page.set_input_files("#file", str(corrupt))
            page.wait_for_function("document.getElementById('error').textContent.includes('422')")
            assert page.text_content("#error").startswith(
                "HTTP 422: corrupt.wav: cannot be decoded as audio (Error opening 'corrupt.wav'")
            assert page.is_hidden("#results")
            big = tmp_path / "big.wav"  # refused by the page before uploading
            big.write_bytes(bytes(MAX_BYTES + 300_000))
            page.set_input_files("#file", str(big))
            page.wait_for_function("document.getElementById('error').textContent.includes('big')")
            assert page.text_content("#error").startswith(
                "big.wav is 2.3 MB; this server accepts at most 2.0 MB (--max_upload_mb)")

            page.click("#record")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('recording 1.')")
            page.click("#stop")
            page.wait_for_function("document.getElementById('status').textContent.startsWith('microphone.wav')",
                                   timeout=60_000)
            assert page.is_hidden("#error") and page.is_visible("#heatmap")
            assert not errors, errors
        finally:
            browser.close()


class _BlockingScorer:
    """Stands in for UploadScorer: each upload waits until `release` is set."""

    limits = uploads.Limits(1000, 5.0)

    def __init__(self):
        self.release, self.entered = threading.Event(), threading.Event()

    def status(self):
        return {}

    def score_file(self, path, name):
        self.entered.set()
        assert self.release.wait(30)
        with open(path, "rb") as f:
            return {"name": name, "bytes": len(f.read())}


def test_event_loop_answers_while_scoring_and_refuses_past_max_pending():
    """An upload being scored (in a worker thread) leaves the server answering: /api/status
    reports it pending, and one more upload than --max_pending is refused with 503 at once."""
    scorer = _BlockingScorer()
    with serving(app_lib.create_app(scorer, workers=1, max_pending=1)) as url, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, url, b"abc", name="a.wav")
        assert scorer.entered.wait(30)
        assert get(url + "/api/status") == {"pending": 1}
        assert post(url, b"def") == (503, {"error": "the server is busy (1 uploads in progress); "
                                                     "try again in a moment"})
        scorer.release.set()
        assert first.result(30) == (200, {"name": "a.wav", "bytes": 3})
        assert get(url + "/api/status") == {"pending": 0}
