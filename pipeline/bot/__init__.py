"""The bot: joins meetings over WebRTC and hands each participant's track to capture
(:mod:`pipeline.capture`, which checks the policy and seals).

- :mod:`.connectors`: how to get into a meeting system (Janus VideoRoom; WHIP ingest is the
  API answering publishers directly, :mod:`pipeline.capture.whip`). A connector only yields
  participant audio tracks.
- :mod:`.bot`: one meeting's bot: runs a connector with reconnect and backoff, keeps state.
- :mod:`.service`: the ``sealscribe bots`` process that takes join and leave requests.
"""
