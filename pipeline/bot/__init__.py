"""The bot: joins meetings over WebRTC and seals each participant's audio at capture.

- :mod:`.connectors`: how to get into a meeting system (Janus VideoRoom; WHIP ingest is the
  API answering publishers directly). A connector only yields participant audio tracks.
- :mod:`.track`: one participant's track -> 16 kHz mono -> utterances -> policy -> sealed.
- :mod:`.policy`: the meeting's transcription switch and opt-outs, pushed within one second.
- :mod:`.bot`: one meeting's bot: runs a connector with reconnect and backoff, keeps state.
- :mod:`.service`: the ``sealscribe bots`` process that takes join and leave requests.
- :mod:`.ice`: keeps ICE on the addresses the deployment allows (and off public STUN).
"""
