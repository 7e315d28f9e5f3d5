"""Meeting connectors, chosen by the scheme of the join URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from pipeline.bot.connectors.base import Connector, JoinRejected, MixedSink, ParticipantSink
from pipeline.errors import InvalidInput

__all__ = ["Connector", "JoinRejected", "MixedSink", "ParticipantSink", "connector_for"]


def connector_for(url: str) -> Connector:
    """The connector for a join URL; :class:`InvalidInput` names what is wrong with it."""
    from pipeline.bot.connectors.janus import AudioBridgeConnector, JanusConnector

    schemes: dict[str, type[Connector]] = {
        c.scheme: c for c in (JanusConnector, AudioBridgeConnector)
    }
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in schemes:
        known = ", ".join(f"{s}://" for s in sorted(schemes))
        raise InvalidInput(f"unsupported meeting URL: it must start with {known}")
    return schemes[scheme].from_url(url)  # type: ignore[attr-defined,no-any-return]
