"""Live stream tagging: segment scores equal the offline pass (any block size, length, rate),
each reported once as soon as it is final, bounded memory, events once, the --stream CLI."""
import io
import json
import struct
import sys

import jax
import numpy as np
import pytest
import soundfile as sf

from wler_jax import audio, predict
from wler_jax.geometry import SAMPLE_RATE, num_segments, segment_times
from wler_jax.serving import localisation, stream, stream_input
from conftest import float_atol, tones_and_noise
from test_predict import CLASSES, make_workdir


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("stream_workdir"), seed=6)


@pytest.fixture(scope="module")
def model(workdir):
    return predict.load_model(workdir)


def offline(model, wav44):
    out = jax.device_get(model.predict_fn(model.params, {"audio": wav44[None],
                                                         "num_samples": np.array([wav44.size])}))
    return out["segments"][0, :num_segments(1 + wav44.size // 512)]


def run_stream(model, x, block, sample_rate=SAMPLE_RATE, max_chunk_frames=256):
    """Push `x` in blocks of `block` samples; checks each pushed segment came as soon as it was
    final. Returns (segments in report order, the tagger)."""
    tagger = stream.StreamTagger(model.spec, model.params, sample_rate=sample_rate,
                                 max_chunk_frames=max_chunk_frames)
    got = []
    for i in range(0, len(x), block):
        before = tagger.num_samples
        new = tagger.push(x[i:i + block])
        for seg in new:  # final, and not final before this block arrived
            assert seg.ready_sample == tagger.num_samples >= stream.ready_samples(seg.index)
        assert stream.ready_samples(tagger.next_segment) > tagger.num_samples, "held back"
        assert not new or stream.ready_samples(new[0].index) > before
        got += new
    got += tagger.close()
    return got, tagger


# Lengths: under 128 frames (one padded segment), off the 32-frame grid, 9 s.
@pytest.mark.parametrize("n", [30_000, 5 * SAMPLE_RATE + 77, 9 * SAMPLE_RATE])
def test_stream_equals_offline_at_every_block_size(model, n):
    x = tones_and_noise(n, seed=n % 11)
    ref = offline(model, x)
    for block in (997, 16_384, n):
        got, tagger = run_stream(model, x, block)
        assert [s.index for s in got] == list(range(len(ref))), block  # each once, in order
        np.testing.assert_allclose(np.stack([s.scores for s in got]), ref,
                                   atol=float_atol(1e-5), err_msg=f"block {block}")
        start, end = segment_times(len(ref))
        np.testing.assert_allclose([s.start for s in got], start)
        np.testing.assert_allclose([s.end for s in got], np.minimum(end, n / SAMPLE_RATE))
        assert tagger.shapes_compiled <= {128, 160, 192, 224, 256}


def test_other_rates_and_channels_equal_the_offline_route(model):
    """48 kHz stereo int16 -> the offline route (soundfile's scaling, down-mix, soxr_hq) gives
    the samples and scores the stream gives, whatever the block sizes."""
    sr, n = 48_000, 4 * 48_000 + 123
    x = tones_and_noise(n, seed=12)
    stereo = np.stack([x, 0.5 * x[::-1]], 1)
    buf = io.BytesIO()
    sf.write(buf, stereo, sr, format="WAV", subtype="PCM_16")
    pcm = sf.read(io.BytesIO(buf.getvalue()), dtype="float32")[0]  # what audio.load decodes
    ref44 = audio.to_mono_44k(pcm, sr)
    for block in (480, 7_777, n):
        resampler = stream.StreamResampler(sr)
        mono = pcm.mean(1, dtype=np.float32)
        got44 = np.concatenate([resampler.push(mono[i:i + block])
                                for i in range(0, n, block)] + [resampler.close()])
        assert got44.shape == ref44.shape
        np.testing.assert_allclose(got44, ref44, atol=1e-6)
    ref = offline(model, ref44)
    for block in (480, 50_000):
        got, _ = run_stream(model, pcm, block, sample_rate=sr)
        np.testing.assert_allclose(np.stack([s.scores for s in got]), ref,
                                   atol=float_atol(1e-5))


def test_memory_is_bounded_whatever_the_length(model):
    """30 s in 0.5 s blocks: the tagger holds at most one largest chunk plus one block."""
    tagger = stream.StreamTagger(model.spec, model.params, max_chunk_frames=256)
    block = SAMPLE_RATE // 2
    x = tones_and_noise(block, seed=13)
    held, count = [], 0
    for _ in range(60):
        count += len(tagger.push(x))
        held.append(tagger.held_samples)
    bound = (256 + 7) * 512 + block
    assert max(held) <= bound  # after 30 s as after 3 s
    assert count + len(tagger.close()) == num_segments(1 + 60 * block // 512)


def test_events_are_reported_once_and_equal_merge_segments():
    """Random segment scores with runs and gaps of every length: the tracker's closed events
    equal merge_segments on the whole recording, each with one onset before it."""
    rng = np.random.default_rng(0)
    names = ["a", "b", "c"]
    for trial in range(20):
        s = int(rng.integers(1, 60))
        probs = (rng.random((s, 3)) < rng.uniform(0.1, 0.6)).astype(np.float32)
        probs = np.where(probs > 0, rng.uniform(0.55, 1, probs.shape), rng.uniform(0, 0.5,
                                                                                  probs.shape))
        duration = (32 * (s + 3) + 17) * 512 / SAMPLE_RATE
        start, end = segment_times(s)
        tracker = stream.EventTracker(names, {"a": 0.5, "b": 0.6, "c": 0.5})
        reports = []
        for k in range(s):
            seg = stream.SegmentScores(k, float(start[k]), float(min(end[k], duration)),
                                       probs[k], 0)
            reports += tracker.update(seg)
        reports += tracker.close(duration)
        events = [r for r in reports if r["type"] == "event"]
        onsets = [r for r in reports if r["type"] == "onset"]
        ref = localisation.merge_segments(probs, names, {"a": 0.5, "b": 0.6, "c": 0.5})
        key = lambda e: (e["label"], round(e["start"], 6))  # noqa: E731
        assert sorted(map(key, events)) == sorted(map(key, ref)) == sorted(map(key, onsets))
        for ev, r in zip(sorted(events, key=key), sorted(ref, key=key)):
            assert ev["end"] == pytest.approx(min(r["end"], duration))
            assert ev["score"] == pytest.approx(r["score"])
        for on in onsets:  # the onset comes before its event's report
            assert reports.index(on) < next(i for i, r in enumerate(reports) if
                                            r["type"] == "event" and key(r) == key(on))


def wav_bytes(x, sr, subtype="PCM_16", channels=1, streaming_size=False):
    buf = io.BytesIO()
    data = x if channels == 1 else np.stack([x] * channels, 1)
    sf.write(buf, data, sr, format="WAV", subtype=subtype)
    raw = bytearray(buf.getvalue())
    if streaming_size:  # what a writer to a pipe leaves: sizes unknown
        raw[4:8] = struct.pack("<I", 0xFFFFFFFF)
        i = raw.index(b"data")
        raw[i + 4:i + 8] = struct.pack("<I", 0xFFFFFFFF)
    return bytes(raw)


class _Pipe(io.BytesIO):
    """A pipe: reads return at most 1000 bytes (a live source delivers in pieces)."""

    def read1(self, n=-1):
        return super().read(min(n, 1000) if n and n > 0 else 1000)


def test_stream_input_reads_what_audio_load_reads(tmp_path):
    x = tones_and_noise(12_345, seed=14)
    for subtype, enc in (("PCM_16", "s16le"), ("PCM_24", "s24le"), ("FLOAT", "f32le"),
                         ("PCM_U8", "u8")):
        data = wav_bytes(x, 22_050, subtype, channels=2, streaming_size=True)
        (tmp_path / "a.wav").write_bytes(wav_bytes(x, 22_050, subtype, channels=2))
        ref = sf.read(tmp_path / "a.wav", dtype="float32")[0]
        fmt, blocks = stream_input.read_blocks(_Pipe(data))
        assert fmt == stream_input.StreamFormat(enc, 22_050, 2)
        np.testing.assert_array_equal(np.concatenate(list(blocks)), ref)
    raw = (x * 32767).astype("<i2").tobytes()
    fmt, blocks = stream_input.read_blocks(
        _Pipe(raw), stream_input.StreamFormat("s16le", 16_000, 1))
    np.testing.assert_array_equal(np.concatenate(list(blocks))[:, 0],
                                  np.frombuffer(raw, "<i2") / np.float32(32768))
    with pytest.raises(audio.AudioError, match="not WAV"):
        stream_input.read_blocks(io.BytesIO(raw))


def test_predict_stream_cli(workdir, model, monkeypatch, capsys):
    """`python -m wler_jax.predict --stream -` with a WAV on stdin: one JSON line per segment
    (the offline scores, as the file CLI writes them), events once, then an end line."""
    n = 6 * SAMPLE_RATE + 5
    x = tones_and_noise(n, seed=15)
    data = wav_bytes(x, SAMPLE_RATE, "FLOAT", streaming_size=True)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(_Pipe(data)))
    code = predict.cli(["predict", f"--workdir={workdir}", "--stream", "-", "--threshold=0.5"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    segs = [r for r in lines if r["type"] == "segment"]
    ref = offline(model, x)
    assert [r["index"] for r in segs] == list(range(len(ref)))
    np.testing.assert_allclose([[r["scores"][c] for c in CLASSES] for r in segs], ref,
                               atol=float_atol(1e-5))
    events = [r for r in lines if r["type"] == "event"]
    want = localisation.merge_segments(ref, CLASSES, 0.5)
    assert sorted((e["label"], e["start"]) for e in events) == sorted(
        (e["label"], round(e["start"], 6)) for e in want)
    assert lines[-1] == {"type": "end", "duration": round(n / SAMPLE_RATE, 6),
                         "segments": len(ref)}
    # Raw PCM at 16 kHz, stereo: the flags say what it is; scores as the offline route's.
    sr = 16_000
    pcm = (np.stack([x[:3 * sr], x[:3 * sr][::-1]], 1) * 20_000).astype("<i2")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(_Pipe(pcm.tobytes())))
    assert predict.cli(["predict", f"--workdir={workdir}", "--stream", "-",
                        "--stream_format=s16le", f"--stream_rate={sr}",
                        "--stream_channels=2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ref = offline(model, audio.to_mono_44k(pcm / np.float32(32768), sr))
    np.testing.assert_allclose([[r["scores"][c] for c in CLASSES] for r in lines
                                if r["type"] == "segment"], ref, atol=float_atol(1e-5))
    # Raw PCM needs its format; garbage is one line, exit code 2.
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(_Pipe(b"\x00\x01" * 5000)))
    with pytest.raises(SystemExit) as exc:
        predict.cli(["predict", f"--workdir={workdir}", "--stream", "-"])
    assert exc.value.code == 2 and "not WAV" in capsys.readouterr().err
