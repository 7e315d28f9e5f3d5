"""The HTTP API (FastAPI, served by ``sealscribe serve``): thin routes over
:mod:`pipeline.services`, bearer-token tenants, RFC 9457 problem details, WHIP ingest.

- :mod:`.app`: the application factory, error mapping and body limits.
- :mod:`.auth`: who is calling (a tenant, by its token).
- :mod:`.meetings`: meetings, the transcription switch, consent, the bot.
- :mod:`.whip`: WHIP ingest (RFC 9725).
"""
