"""The Redis connection, and the boundary where redis-py errors become ours.

``SEALSCRIBE_REDIS_URL`` is a plain Redis (``redis://``, ``rediss://``, ``unix://``) or a
primary watched by Redis Sentinel::

    redis+sentinel://[[USER]:PASSWORD@]SENTINEL:PORT[,SENTINEL:PORT...]/SERVICE[/DB]

where SERVICE is the name the sentinels monitor (``sentinel monitor SERVICE ...``) and the
password is the primary's (and its replicas'; sentinels here take none). Every client made
here asks the sentinels where the primary is when it connects, and again after a connection
fails or the server it reached has become a replica: after a failover, the store, capture's
policy listener and the caption followers all follow the new primary.

Or a Redis Cluster, named by some of its nodes (the client learns the rest)::

    redis+cluster://[[USER]:PASSWORD@]NODE:PORT[,NODE:PORT...]

Every key of one meeting (tenant, webhook endpoint) carries it as a hash tag
(:mod:`pipeline.store.schema`), so each transaction and script runs in one slot. A cluster
has no database numbers and kombu no transport for it: the broker is then RabbitMQ
(``SEALSCRIBE_BROKER_URL``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast
from urllib.parse import SplitResult, quote, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.cluster import ClusterNode
from redis.sentinel import Sentinel

from pipeline import faults
from pipeline.errors import InvalidInput, StoreUnavailable

__all__ = [
    "CLUSTER_SCHEME",
    "SENTINEL_SCHEME",
    "ClusterUrl",
    "Durable",
    "Redis",
    "SentinelUrl",
    "as_bytes",
    "as_str",
    "async_client",
    "async_pool",
    "close_async",
    "connect",
    "connect_async",
    "is_cluster",
    "redis_errors",
]

log = logging.getLogger(__name__)

Redis = redis.Redis
P = ParamSpec("P")
R = TypeVar("R")

SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEME = "redis+cluster://"
#: every client: fail fast when Redis is down, notice a dead connection within 30 s
_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": 30}


def _split(url: str, scheme: str, what: str) -> SplitResult:
    if not url.startswith(scheme):
        raise InvalidInput(f"{what} starts with {scheme}")
    try:
        return urlsplit(url)
    except ValueError:  # its text may hold the password: say what, not where
        raise InvalidInput(
            f"{what} could not be parsed: percent-encode the password's special characters"
        ) from None


@dataclass(frozen=True)
class SentinelUrl:
    """A ``redis+sentinel://`` URL, parsed."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        parts = _split(url, SENTINEL_SCHEME, "a Sentinel URL")
        username, password, sentinels = _hosts(parts.netloc, "a Sentinel URL", "sentinels")
        path = [p for p in parts.path.split("/") if p]
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise InvalidInput(
                "a Sentinel URL ends with /SERVICE or /SERVICE/DB (the name the sentinels "
                "monitor, then the database number)"
            )
        return cls(
            tuple(sentinels),
            unquote(path[0]),
            int(path[1]) if len(path) == 2 else 0,
            username,
            password,
        )

    def credentials(self) -> dict[str, Any]:
        return {"db": self.db, "username": self.username, "password": self.password}

    def userinfo(self) -> str:
        """``USER:PASSWORD@`` as a URL writes them (percent-encoded), or nothing."""
        if self.username is None and self.password is None:
            return ""
        user, password = quote(self.username or "", safe=""), quote(self.password or "", safe="")
        return f"{user}:{password}@"


def _hosts(
    netloc: str, what: str, hosts_are: str
) -> tuple[str | None, str | None, tuple[tuple[str, int], ...]]:
    """(user, password, ((host, port), ...)) of a URL's ``[USER:PASSWORD@]H:P[,H:P...]``."""
    credentials, _, hosts = netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    found = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidInput(f"{what} lists its {hosts_are} as HOST:PORT, comma separated")
        found.append((host.strip("[]"), int(port)))
    return unquote(username) or None, unquote(password) or None, tuple(found)


@dataclass(frozen=True)
class ClusterUrl:
    """A ``redis+cluster://`` URL, parsed."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> ClusterUrl:
        parts = _split(url, CLUSTER_SCHEME, "a Cluster URL")
        if parts.path.strip("/") or parts.query:
            raise InvalidInput(
                "a Cluster URL names nodes only (a cluster has no database numbers): "
                "redis+cluster://HOST:PORT[,HOST:PORT...]"
            )
        username, password, nodes = _hosts(parts.netloc, "a Cluster URL", "nodes")
        return cls(nodes, username, password)

    def options(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password}


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME)


def _sentinels(where: SentinelUrl, sentinel_class: Any) -> Any:
    """The sentinels of ``where`` as a ``sentinel_class`` (redis-py's sync or asyncio
    one), asked with the same timeouts as the primary."""
    return sentinel_class(list(where.sentinels), sentinel_kwargs=dict(_OPTIONS))


def connect(url: str) -> redis.Redis:
    """A client for ``url`` that returns bytes and fails fast when Redis is down; on a
    Sentinel URL, one that follows the primary through failovers; on a Cluster URL, a
    cluster client (typed as ``Redis``: it answers the same commands, one slot at a time)."""
    if is_cluster(url):
        nodes = ClusterUrl.parse(url)
        cluster = redis.RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in nodes.nodes],  # type: ignore[no-untyped-call]
            health_check_interval=30,
            **nodes.options(),
            **_OPTIONS,
        )
        return cast(redis.Redis, cluster)
    if not url.startswith(SENTINEL_SCHEME):
        return redis.Redis.from_url(url, health_check_interval=30, **_OPTIONS)
    where = SentinelUrl.parse(url)
    sentinel = _sentinels(where, Sentinel)
    if faults.on("store-pins-primary"):  # the primary named now, never asked again
        host, port = sentinel.discover_master(where.service)
        return redis.Redis(host=host, port=port, **where.credentials(), **_OPTIONS)
    client = sentinel.master_for(
        where.service, health_check_interval=30, **where.credentials(), **_OPTIONS
    )
    return cast(redis.Redis, client)


def connect_async(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client for ``url`` (``options`` as redis-py takes them); on a Sentinel
    URL, one that follows the primary; on a Cluster URL, a cluster client."""
    if is_cluster(url):
        nodes = ClusterUrl.parse(url)
        cluster = aioredis.RedisCluster(
            startup_nodes=[AsyncClusterNode(h, p) for h, p in nodes.nodes],
            **nodes.options(),
            **options,
        )
        return cast(aioredis.Redis, cluster)
    if not url.startswith(SENTINEL_SCHEME):
        return aioredis.Redis.from_url(url, **options)
    where = SentinelUrl.parse(url)
    sentinel = _sentinels(where, AsyncSentinel)
    client = sentinel.master_for(where.service, **where.credentials(), **options)
    client._sealscribe_sentinels = sentinel.sentinels  # closed by close_async
    return cast(aioredis.Redis, client)


async def close_async(client: aioredis.Redis) -> None:
    """Close a client of :func:`connect_async`, and on a Sentinel URL its connections to
    the sentinels too."""
    await client.aclose()
    for sentinel in getattr(client, "_sealscribe_sentinels", ()):
        await sentinel.aclose()


class _BlockingSentinelPool(AsyncSentinelPool, aioredis.BlockingConnectionPool):
    """A Sentinel pool that, when all its connections are out, waits for one (as
    ``BlockingConnectionPool`` does) instead of failing."""


def async_pool(url: str, max_connections: int, timeout: float) -> aioredis.ConnectionPool:
    """An asyncio pool of at most ``max_connections`` that waits up to ``timeout`` seconds
    for a free connection; on a Sentinel URL, its connections follow the primary."""
    if not url.startswith(SENTINEL_SCHEME):
        return aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, socket_connect_timeout=5
        )
    where = SentinelUrl.parse(url)
    pool_class: Any = _BlockingSentinelPool
    return cast(
        aioredis.ConnectionPool,
        pool_class(
            where.service,
            _sentinels(where, AsyncSentinel),
            is_master=True,
            max_connections=max_connections,
            timeout=timeout,
            socket_connect_timeout=5,
            **where.credentials(),
        ),
    )


#: a cluster client's connections per node (it has no pool that waits for a free one)
CLUSTER_CONNECTIONS = 256


def async_client(url: str, max_connections: int, timeout: float) -> aioredis.Redis:
    """An asyncio client sharing at most ``max_connections`` connections, waiting up to
    ``timeout`` seconds for a free one (:func:`async_pool`); close it with
    :func:`close_async`. On a Cluster URL, a cluster client with up to
    :data:`CLUSTER_CONNECTIONS` per node (redis-py's cluster client fails, rather than
    waits, when they are all out)."""
    if is_cluster(url):
        return connect_async(url, max_connections=CLUSTER_CONNECTIONS, socket_connect_timeout=5)
    return aioredis.Redis.from_pool(async_pool(url, max_connections, timeout))


class Durable:
    """Writes that must outlive the primary: sealed segments and transcripts; the switch,
    opt-outs, consent mode and a tenant's revocation, which decide what capture keeps; audit
    entries (a head the customer saved must still verify); participant keys, rewrapped keys,
    destroyed keys, erasures and deletions (what was erased stays erased).

    Replication is asynchronous: a primary acknowledges a write before its replicas have
    it, and a failover in between loses it. With ``replicas`` > 0 such a write is followed by
    ``WAIT replicas timeout_ms``, which returns once that many replicas have every write of
    the connection. WAIT counts one connection's writes, so these writes go through a client
    of this thread's own (its pool, used by one thread, always hands back the same
    connection). A WAIT that times out short is logged (ids only) and the write stands: it
    is on the primary, and a failover before the replica catches up could still lose it.

    Args:
        r: the store's shared client (used as it is when ``replicas`` is 0).
        url: the store's URL, to make each thread's client from.
        replicas: replicas to wait for (``SEALSCRIBE_REDIS_WAIT_REPLICAS``; 0: none).
        timeout_ms: how long to wait for them (``SEALSCRIBE_REDIS_WAIT_MS``).
    """

    def __init__(
        self, r: redis.Redis, url: str | None = None, replicas: int = 0, timeout_ms: int = 1000
    ) -> None:
        self.r, self.url = r, url
        self.replicas = replicas if url is not None else 0
        self.timeout_ms = timeout_ms
        self._local = threading.local()
        self._checked = 0.0  # when the primary's replicas were last counted
        self._enough = True

    def _connected(self, client: redis.Redis) -> bool:
        """Whether the primary has as many replicas connected as we wait for, asked at most
        once a second. Right after a failover the new primary has none (its old primary is
        gone): waiting would then cost the whole timeout on every write and protect
        nothing, so writes go on unwaited, and that is logged once, until a replica is back."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return self._enough
        self._checked = now
        try:
            connected = int(client.info("replication").get("connected_slaves", 0))
        except redis.ResponseError:  # INFO not allowed to this user (ACL): cannot tell
            return True
        enough = connected >= self.replicas
        if enough != self._enough:
            log.warning(
                "the store's primary has %d replicas connected (%d wanted): sealed writes %s",
                connected,
                self.replicas,
                "wait for them again" if enough else "go on without waiting, unprotected",
            )
        self._enough = enough
        return enough

    def client(self) -> redis.Redis:
        """The client to write through: this thread's own when waiting for replicas."""
        if not self.replicas or self.url is None:
            return self.r
        own: redis.Redis | None = getattr(self._local, "client", None)
        if own is None:
            own = self._local.client = connect(self.url)
        return own

    def confirm(self, client: redis.Redis, what: str) -> None:
        """Wait until the replicas have what ``client`` wrote (nothing when not asked to,
        nor while fewer replicas than that are connected: see :meth:`_connected`)."""
        if not self.replicas or not self._connected(client):
            return
        acked = int(client.wait(self.replicas, self.timeout_ms))
        if acked < self.replicas:
            log.warning(
                "%s reached %d of %d replicas within %d ms: a failover now could lose it",
                what,
                acked,
                self.replicas,
                self.timeout_ms,
            )


#: what a store that cannot answer now raises: a lost connection, a server that became a
#: replica (ReadOnlyError), a cluster that is down, failing over or not yet mapped
_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ReadOnlyError,
    redis.exceptions.ClusterError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterException,
)


def redis_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Translate connection-level redis-py errors into :class:`StoreUnavailable`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        # ReadOnlyError: a server that was the primary and is a replica now
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis is unreachable: {type(exc).__name__}") from None

    return wrapper


def as_bytes(value: object) -> bytes:
    """A reply from our clients (which never decode responses) as bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected Redis reply of type {type(value).__name__}")


def as_str(value: object) -> str:
    return as_bytes(value).decode()
