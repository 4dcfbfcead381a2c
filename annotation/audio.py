"""Audio uploads proven by decoding (PyAV): container format, codec, decoded duration.

A clip is accepted only if PyAV opens it as one of the allowed containers, it has an audio stream
and every packet decodes. Its duration is the number of decoded samples over the sample rate (a
browser's MediaRecorder WebM declares no duration in its header, so the header is never trusted).
A file cut short is refused: a decode error part-way; a container that declares a duration
(MP3's Xing/Info header, WebM/Matroska's segment duration written by a muxer that knew it) that is
longer than what decodes; a WAV whose ``data`` chunk declares more bytes than the file holds; an
Ogg stream whose last page is not marked end-of-stream.
"""

from __future__ import annotations

import dataclasses
import os
import struct

#: PyAV's container format names -> the format recorded for a clip
FORMATS = {
    "wav": "wav",
    "mp3": "mp3",
    "ogg": "ogg",
    "matroska,webm": "webm",
    "mov,mp4,m4a,3gp,3g2,mj2": "m4a",
    "flac": "flac",
}
ALLOWED = "wav, mp3, ogg/opus, webm, m4a, flac"
#: declared duration longer than the decoded one by more than this (and 10 %): cut short
TRUNCATION_SLACK_S = 0.5


class AudioError(ValueError):
    """The file is not an acceptable audio clip; the message says why, for the uploader."""


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    format: str  # wav, mp3, ogg, webm, m4a, flac
    codec: str
    sample_rate: int
    channels: int
    duration_s: float  # decoded samples / sample rate


def probe(path: str, max_seconds: float | None = None) -> AudioInfo:
    """Decode the whole file at ``path``; :class:`AudioError` if it is not a complete audio clip.

    ``max_seconds``: stop decoding (and refuse the clip) as soon as more than this has decoded."""
    import av

    size = os.path.getsize(path)
    if size == 0:
        raise AudioError("the file is empty (0 bytes)")
    try:
        container = av.open(path, mode="r")
    except av.error.EOFError:
        raise AudioError("the file ends before its headers do: truncated, or not an audio file") from None
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioError(f"not an audio file this app can decode ({_why(exc)}); allowed: {ALLOWED}") from None
    with container:
        name = container.format.name
        fmt = FORMATS.get(name)
        if fmt is None:
            raise AudioError(f"unsupported container {name!r}; allowed: {ALLOWED}")
        if not container.streams.audio:
            raise AudioError(f"the {fmt} file has no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        if rate <= 0:
            raise AudioError(f"the {fmt} file's audio stream has no sample rate")
        samples = 0
        try:
            for frame in container.decode(stream):
                samples += int(frame.samples)
                if max_seconds is not None and samples / rate > max_seconds:
                    raise AudioError(f"the clip is too long: more than {max_seconds:g} s (the limit)")
        except av.error.FFmpegError as exc:
            if samples:
                raise AudioError(f"the {fmt} file is truncated or corrupt: decoding stopped after {samples / rate:.2f} s ({_why(exc)})") from None
            raise AudioError(f"the {fmt} file does not decode ({_why(exc)})") from None
        if samples == 0:
            raise AudioError(f"the {fmt} file holds no audio samples")
        duration = samples / rate
        declared = container.duration / 1_000_000 if container.duration and fmt in ("mp3", "webm") else None
        if declared is not None and duration < declared * 0.9 and declared - duration > TRUNCATION_SLACK_S:
            raise AudioError(f"the {fmt} file is truncated: its header declares {declared:.2f} s but only {duration:.2f} s decode")
        codec = stream.codec_context.name
        channels = int(stream.codec_context.channels or 0)
    if fmt == "wav":
        _check_wav_length(path, size)
    elif fmt == "ogg":
        _check_ogg_end(path, size)
    return AudioInfo(format=fmt, codec=codec, sample_rate=rate, channels=channels, duration_s=duration)


def _why(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:200]


def _check_wav_length(path: str, size: int) -> None:
    """A RIFF/WAVE file whose ``data`` chunk declares more bytes than are there was cut short."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # RF64 and friends: PyAV decoded it, nothing more to check here
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                break
            cid, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                if length not in (0, 0xFFFFFFFF) and pos + 8 + length > size:
                    have = size - pos - 8
                    raise AudioError(f"the wav file is truncated: its data chunk declares {length} bytes but the file holds {have}")
                return
            pos += 8 + length + (length & 1)


def _check_ogg_end(path: str, size: int) -> None:
    """The last Ogg page of a complete stream has the end-of-stream flag (header type bit 2)."""
    with open(path, "rb") as f:
        f.seek(max(0, size - 65536))
        tail = f.read()
    at = tail.rfind(b"OggS")
    if at < 0 or at + 6 > len(tail):
        raise AudioError("the ogg file is truncated: no complete page at its end")
    if not tail[at + 5] & 0x04:
        raise AudioError("the ogg file is truncated: its last page is not marked end-of-stream")


__all__ = ["ALLOWED", "FORMATS", "AudioError", "AudioInfo", "probe"]
