"""Spoken announcements: what the bot says into a room when it joins and when transcription is
switched on or off, as 16 kHz mono PCM in memory.

The defaults ship as Ogg Opus files in ``pipeline/audio/announcements/`` (rendered ahead of time
from :data:`DEFAULT_TEXTS` with espeak-ng by ``scripts/render-announcements``; see its
NOTICE.md). :func:`render_text` renders a tenant's own text with espeak-ng where it is
installed, and refuses with a clear error where it is not; nothing is written to disk.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

from pipeline.audio.decode import SAMPLE_RATE, decode_bytes
from pipeline.errors import InvalidInput

__all__ = ["DEFAULT_TEXTS", "KINDS", "PACKAGE_DIR", "default_pcm", "render_text"]

PACKAGE_DIR = Path(__file__).resolve().parent / "announcements"

#: what the bot says, by occasion
DEFAULT_TEXTS = {
    "join": "Hello, this is sealscribe. This meeting may be transcribed. "
    "You can opt out at any time.",
    "on": "Transcription is now on.",
    "off": "Transcription is now off.",
}
KINDS = tuple(DEFAULT_TEXTS)
#: espeak-ng's voice, pace and word gap: chosen by ear and by tiny.en, which transcribes every
#: default announcement word for word in this voice (not so at espeak's default pace)
ESPEAK_VOICE = ("-v", "en-us+m3", "-s", "135", "-g", "3")
#: the longest announcement accepted (a tenant's own text or file)
MAX_SECONDS = 30.0


@cache
def default_pcm(kind: str) -> bytes:
    """The packaged announcement for ``kind`` as 16 kHz mono s16 PCM."""
    if kind not in DEFAULT_TEXTS:
        raise InvalidInput(f"the announcement is one of {', '.join(KINDS)}")
    return decode_bytes((PACKAGE_DIR / f"{kind}.ogg").read_bytes(), MAX_SECONDS)


def render_text(text: str) -> bytes:
    """``text`` spoken by espeak-ng (:data:`ESPEAK_VOICE`) as 16 kHz mono s16 PCM, in
    memory only."""
    if not isinstance(text, str) or not text.strip() or len(text) > 500:
        raise InvalidInput("an announcement's text is 1 to 500 characters")
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise InvalidInput(
            "espeak-ng is not installed here, so a text cannot be spoken: give an audio "
            "file instead (or install espeak-ng)"
        )
    wav = subprocess.run(  # noqa: S603 - no shell: the text is one argument
        [espeak, *ESPEAK_VOICE, "--stdout", text],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    pcm = decode_bytes(wav, MAX_SECONDS)
    if len(pcm) < SAMPLE_RATE // 5:
        raise InvalidInput("espeak-ng made no speech of that text")
    return pcm
