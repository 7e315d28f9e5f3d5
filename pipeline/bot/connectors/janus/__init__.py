"""Janus connectors: join a room over Janus's HTTP API and take its audio.

Trust model: the Janus server sees every participant's media in the clear (it is an SFU or,
for AudioBridge, a mixer), so these suit a platform that runs its own Janus. Join URLs:
``janus://HOST[:PORT]/ROOM[?pin=PIN&secret=API_SECRET]`` for a VideoRoom (a track per
participant) and ``janus-audiobridge://...`` for an AudioBridge room (one mixed track and
talking events); neither the pin nor the secret ever appears in a message, a log line or
``describe()``.

- :mod:`.address`: the join URL parser (pure: no aiohttp, no aiortc);
- :mod:`.session`: one Janus session over HTTP (requests, long poll, keepalive, errors);
- :mod:`.room`: what both connectors share (the join's lifetime, display name, chat, errors);
- :mod:`.videoroom`: the VideoRoom connector (one subscription per publisher);
- :mod:`.audiobridge`: the AudioBridge connector (the mix, the participants, talking events);
- :mod:`.textroom`: the room's chat (a TextRoom over a data channel).

The URL parser is imported here at once; the session and the connector only when first used,
so that importing :mod:`.address` (or this package) for URL validation loads neither aiohttp
nor aiortc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.bot.connectors.janus.address import JanusAddress, parse_janus_url

if TYPE_CHECKING:
    from pipeline.bot.connectors.janus.audiobridge import AudioBridgeConnector
    from pipeline.bot.connectors.janus.session import (
        VIDEOROOM,
        JanusError,
        JanusSession,
        JanusUnavailable,
    )
    from pipeline.bot.connectors.janus.videoroom import JanusConnector

__all__ = [
    "VIDEOROOM",
    "AudioBridgeConnector",
    "JanusAddress",
    "JanusConnector",
    "JanusError",
    "JanusSession",
    "JanusUnavailable",
    "parse_janus_url",
]

_LAZY = {
    "VIDEOROOM": "session",
    "JanusError": "session",
    "JanusSession": "session",
    "JanusUnavailable": "session",
    "JanusConnector": "videoroom",
    "AudioBridgeConnector": "audiobridge",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
