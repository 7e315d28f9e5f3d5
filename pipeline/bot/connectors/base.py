"""What a meeting connector is: something that joins a meeting and hands over audio tracks.

A connector knows one meeting system's signalling. It does not touch audio, policy, keys or
Redis: it tells its :class:`ParticipantSink` that a participant's audio track arrived or went
(or, in a mixed-audio room, :class:`MixedSink`: the room's one mixed track, who is present
and who is talking), and the bot does the rest. :meth:`Connector.run` returns when the
meeting ends, raises :class:`JoinRejected` when joining can never work (wrong pin, no such
room: retrying is pointless), and raises anything else when the connection was lost (the bot
reconnects with backoff).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from pipeline.errors import SealscribeError

if TYPE_CHECKING:  # aiortc only for the annotation: importing connectors stays cheap
    from aiortc.mediastreams import MediaStreamTrack

__all__ = ["CommandHandler", "Connector", "JoinRejected", "MixedSink", "ParticipantSink"]


class JoinRejected(SealscribeError):
    """The meeting system refused the bot for good; the message says why, without secrets."""


class ParticipantSink(Protocol):
    def joined(self) -> None:
        """The bot is in the meeting (called once per successful join, before any track)."""

    def track_added(self, participant: str, track: MediaStreamTrack) -> object:
        """``participant`` (the display name the meeting reports) is publishing ``track``.
        The return value is ignored."""

    def track_removed(self, participant: str) -> None:
        """``participant`` stopped publishing or left."""


class MixedSink(ParticipantSink, Protocol):
    """What a connector of a mixed-audio room (one track of everyone, and a separate signal
    of who is talking) tells the room, instead of one track per participant."""

    def mix_added(self, track: MediaStreamTrack, window_ms: int) -> object:
        """The room's mixed audio; its speaker signal reports a change up to
        ``2 * window_ms`` late. The return value is ignored."""

    def mix_removed(self) -> None:
        """The mixed audio stopped."""

    def talking(self, participant: str, talking: bool) -> None:
        """The room reports ``participant`` started (or stopped) talking, now."""

    def present(self, participants: list[str]) -> None:
        """Who is in the room now (display names)."""


#: a participant's chat command and its answer: (display name, text) -> reply, or None
CommandHandler = Callable[[str, str], Awaitable[str | None]]


class Connector(abc.ABC):
    #: the URL scheme this connector answers to, e.g. ``janus``
    scheme: str
    #: set by the bot: what answers a participant's chat command (``/optout``, ...)
    on_command: CommandHandler | None = None

    @property
    def has_chat(self) -> bool:
        """Whether this meeting has a chat the bot posts notices to (and hears commands)."""
        return False

    async def notify(self, text: str) -> bool:
        """Post a written notice to the meeting's chat; whether it was posted."""
        return False

    async def speak(self, pcm: bytes) -> bool:
        """Say 16 kHz mono s16 ``pcm`` into the meeting (publish it, then stop publishing);
        whether it was said. Default: the meeting cannot be spoken into."""
        return False

    @abc.abstractmethod
    async def run(self, sink: ParticipantSink) -> None:
        """Join, deliver tracks to ``sink`` until the meeting ends, then return."""

    @abc.abstractmethod
    async def announce(self, transcribing: bool) -> None:
        """Show the meeting whether transcription is on (e.g. the bot's display name)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Leave the meeting and release every peer connection. Safe to call twice."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The meeting's address for state and logs, with any pin or secret removed."""
