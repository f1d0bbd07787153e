"""Sample blocks from a binary pipe: a WAV stream (header first, any length, as sox, arecord and
ffmpeg write to a pipe) or raw PCM (`python -m wler_jax.predict --stream -`).

Samples are scaled as libsndfile reads them (int PCM / 2^(bits - 1)), so a WAV piped in gives
the samples `audio.load` gives for the same file; channels are kept ([n, channels]) for the
tagger to down-mix. Bad input raises `AudioError` naming the stream.
"""
from __future__ import annotations

import dataclasses
import struct
from typing import BinaryIO, Iterator

import numpy as np

from wler_jax.audio import AudioError

RAW_FORMATS = ("s16le", "s24le", "s32le", "f32le", "f64le", "u8")
_WAVE_PCM, _WAVE_FLOAT, _WAVE_EXTENSIBLE = 1, 3, 0xFFFE
_UNKNOWN_SIZE = 0x7FFF0000  # a data size at least this large is taken as "to the end"
READ_BYTES = 1 << 14  # at most this many bytes per read (~0.19 s of 44.1 kHz mono int16)


@dataclasses.dataclass(frozen=True)
class StreamFormat:
    """What the bytes are: sample `encoding` (one of RAW_FORMATS), rate and channels."""

    encoding: str
    sample_rate: int
    channels: int

    @property
    def frame_bytes(self) -> int:
        width = {"s16le": 2, "s24le": 3, "s32le": 4, "f32le": 4, "f64le": 8, "u8": 1}
        return width[self.encoding] * self.channels


def decode(data: bytes, fmt: StreamFormat) -> np.ndarray:
    """Whole frames of `data` -> float32 [n, channels] (libsndfile's scaling)."""
    enc = fmt.encoding
    if enc == "s24le":
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        x = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8  # sign-extend 24 bits
        x = x.astype(np.float32) / np.float32(1 << 23)
    elif enc == "u8":
        x = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / np.float32(128.0)
    elif enc in ("s16le", "s32le"):
        bits = 16 if enc == "s16le" else 32
        x = np.frombuffer(data, f"<i{bits // 8}").astype(np.float32) / np.float32(2.0 ** (bits - 1))
    else:
        x = np.frombuffer(data, "<f4" if enc == "f32le" else "<f8").astype(np.float32)
    return x.reshape(-1, fmt.channels)


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = b""
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            raise AudioError("<stream>", f"ends inside the WAV header ({what})")
        data += more
    return data


def read_wav_header(f: BinaryIO, head: bytes) -> tuple[StreamFormat, int]:
    """Parse a WAV header whose first 4 bytes (`head`) were read already; leaves `f` at the
    first sample. Returns the format and the data size in bytes (0 when unknown: read to the
    end of the stream)."""
    riff = head + _read_exact(f, 8, "RIFF")
    if riff[:4] not in (b"RIFF", b"RF64") or riff[8:12] != b"WAVE":
        raise AudioError("<stream>", "is not a WAV stream (no RIFF/WAVE header)")
    fmt = None
    while True:
        chunk_id, size = struct.unpack("<4sI", _read_exact(f, 8, "chunk header"))
        if chunk_id == b"data":
            if fmt is None:
                raise AudioError("<stream>", "WAV data before its fmt chunk")
            # Writers to a pipe leave the size unknown: 0, 0xFFFFFFFF, or sox's 0x7FFFF000.
            return fmt, 0 if size == 0 or size >= _UNKNOWN_SIZE else size
        body = _read_exact(f, size + (size & 1), chunk_id.decode("latin-1"))
        if chunk_id == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _WAVE_EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            encoding = {(_WAVE_PCM, 8): "u8", (_WAVE_PCM, 16): "s16le", (_WAVE_PCM, 24): "s24le",
                        (_WAVE_PCM, 32): "s32le", (_WAVE_FLOAT, 32): "f32le",
                        (_WAVE_FLOAT, 64): "f64le"}.get((tag, bits))
            if encoding is None or channels < 1 or rate < 1:
                raise AudioError("<stream>", f"unsupported WAV encoding (format {tag}, {bits} "
                                             f"bits, {channels} channels, {rate} Hz); send "
                                             "PCM 8/16/24/32-bit or float 32/64-bit")
            fmt = StreamFormat(encoding, rate, channels)


def read_blocks(f: BinaryIO, raw: StreamFormat | None = None
                ) -> tuple[StreamFormat, Iterator[np.ndarray]]:
    """The format of the stream `f` and an iterator of its blocks (float32 [n, channels]).

    A stream starting with "RIFF"/"RF64" is read as WAV (its header gives the format); any
    other is raw PCM in the format `raw` (AudioError when `raw` is None). Each block holds
    what one read returned, so a live pipe's samples come out as they arrive.
    """
    head = f.read(4)
    size = 0
    if head[:4] in (b"RIFF", b"RF64") and len(head) == 4:
        fmt, size = read_wav_header(f, head)
        head = b""
    elif raw is None:
        raise AudioError("<stream>", "is not WAV; give the raw PCM format (--stream_format, "
                                     "--stream_rate, --stream_channels)")
    else:
        fmt = raw
    return fmt, _blocks(f, fmt, head, size)


def _blocks(f: BinaryIO, fmt: StreamFormat, pending: bytes, size: int) -> Iterator[np.ndarray]:
    left = size or None  # bytes of data still to read (None: up to the end of the stream)
    read = getattr(f, "read1", f.read)
    while True:
        want = READ_BYTES if left is None else min(READ_BYTES, left - len(pending))
        more = read(want) if want > 0 else b""
        if not more:
            break
        pending += more
        whole = len(pending) // fmt.frame_bytes * fmt.frame_bytes
        if whole:
            yield decode(pending[:whole], fmt)
            if left is not None:
                left -= whole
            pending = pending[whole:]
