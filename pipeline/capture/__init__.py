"""Capture: the one path from PCM to sealed, stored, queued segments, for every source.

::

    track.py  a live participant (room.py: the Janus bot, WHIP ingest) ─┐
    file.py   a recorded file (decode, segment, pack)                   ├─> sealer.py -> sink.py
                                       policy.py decides, session.py runs them together ─┘

- :mod:`.policy`: the meeting's switch, opt-outs and revocation, pushed within one second.
- :mod:`.sealer`: the policy check at the edge and the data key; seals each utterance.
- :mod:`.sink`: the bounded backlog of sealed segments, stored and queued by a writer task.
- :mod:`.session`: one meeting's policy, sealer and sink, started and stopped together.
- :mod:`.track`: one participant's WebRTC track -> 16 kHz mono -> utterances -> sealer.
- :mod:`.receive`: aiortc's audio receivers decode in the event loop, as mono (no thread
  hand-over per 20 ms frame).
- :mod:`.room`: a meeting's participants and their tracks (the bot's and WHIP's way in).
- :mod:`.whip`: WHIP ingest (RFC 9725), one session per publishing participant.
- :mod:`.ice`: keeps ICE on the addresses the deployment allows (and off public STUN).
- :mod:`.file`: a recorded file through the same sealer and sink (it waits, never drops).

Importing this package imports none of them: files do not pay for aiortc.
"""

__all__: list[str] = []
