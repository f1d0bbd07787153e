"""`python -m wler_jax.predict --workdir=DIR --stream -`: tag a live stream from a pipe.

    sox -d -t wav - | python -m wler_jax.predict --workdir=DIR --stream -
    arecord -f S16_LE -r 16000 -c 1 -t raw | python -m wler_jax.predict --workdir=DIR \\
        --stream - --stream_format=s16le --stream_rate=16000

Standard output gets one JSON object per line, flushed as soon as it is known
(`stream.stream_records`): each segment once its receptive field has arrived, each event once
("onset", then "event" when it has ended), and {"type": "end", ...}. Exit code 0; a stream that
cannot be read ends in one line on stderr and exit code 2.
"""
from __future__ import annotations

import json
import sys
from typing import Optional, Sequence

from wler_jax import compile_cache, errors
from wler_jax.audio import AudioError
from wler_jax.predict import load_model
from wler_jax.serving import stream, stream_input


def run(workdir: str, source: str, inputs: Sequence[str], *, threshold: Optional[float],
        raw: tuple, compile_cache_dir: Optional[str]) -> int:
    """Tag `source` ('-': standard input) and print its records; `raw` is (encoding or None,
    rate, channels) for a stream without a WAV header."""
    if inputs:
        errors.fail(f"--stream tags one stream; remove the file arguments ({inputs[0]} ...)")
    encoding, rate, channels = raw
    if rate < 1 or channels < 1:
        errors.fail("--stream_rate and --stream_channels must be positive")
    compile_cache.configure(compile_cache.default_cache_dir() if compile_cache_dir is None
                            else compile_cache_dir)
    model = load_model(workdir)
    raw_format = None if encoding is None else stream_input.StreamFormat(encoding, rate, channels)
    f = sys.stdin.buffer if source == "-" else _open(source)
    try:
        fmt, blocks = stream_input.read_blocks(f, raw_format)
        tagger = stream.StreamTagger(model.spec, model.params, sample_rate=fmt.sample_rate)
        for record in stream.stream_records(tagger, blocks, model.class_names,
                                            model.decision_thresholds(threshold)):
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
    except AudioError as e:
        errors.fail(str(e))
    finally:
        if f is not sys.stdin.buffer:
            f.close()
    return 0


def _open(path: str):
    try:
        return open(path, "rb")
    except OSError as e:
        errors.fail(f"cannot open --stream {path}: {e.strerror}")
