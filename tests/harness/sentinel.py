"""A Redis primary, one replica and three sentinels, all real ``redis-server`` processes on
loopback ports, for the failover tests and ``bench/failover.py``.

The sentinels call the primary down after :data:`DOWN_AFTER_MS` without an answer and need
two of three to agree (the quorum), so a killed primary is replaced by its replica within a
few seconds. :attr:`SentinelGroup.url` is the ``redis+sentinel://`` URL sealscribe takes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from pipeline.net import free_port
from tests.harness.processes import Service, wait_until
from tests.harness.redis import RedisServer, ask_each, require_redis_server

__all__ = ["DOWN_AFTER_MS", "SERVICE", "SentinelGroup", "sentinel_group"]

SERVICE = "sealscribe"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def _answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


class SentinelGroup:
    """The five processes, started by :func:`sentinel_group`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.primary = RedisServer(workdir / "primary")
        self.replica = RedisServer(
            workdir / "replica", args=["--replicaof", "127.0.0.1", str(self.primary.port)]
        )
        self.sentinels = [self._sentinel(workdir / f"sentinel{i}") for i in range(3)]

    def _sentinel(self, workdir: Path) -> Service:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = workdir / "sentinel.conf"  # sentinels rewrite their configuration
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        service = Service(
            "redis-sentinel",
            [require_redis_server(), str(conf), "--sentinel"],
            {},
            workdir / "sentinel.log",
            ready=lambda _: _answers(port),
            stop_timeout=10.0,
        )
        service.port = port  # type: ignore[attr-defined]
        return service

    @property
    def sentinel_ports(self) -> list[int]:
        return [s.port for s in self.sentinels]  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def primary_port(self) -> int | None:
        """The primary's port as the sentinels say it now (None: they cannot say)."""
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2)
            try:
                found: Any = client.sentinel_get_master_addr_by_name(SERVICE)
            except (redis.RedisError, OSError):
                found = None
            finally:
                client.close()
            if found:
                return int(found[1])
        return None

    def start(self) -> None:
        self.primary.start(20)
        self.replica.start(20)
        replica = redis.Redis(port=self.replica.port)
        wait_until(
            lambda: replica.info("replication").get("master_link_status") == "up",
            20,
            "the replica in sync with the primary",
        )
        replica.close()
        for sentinel in self.sentinels:
            sentinel.start(20)
        # every sentinel knows the replica and the two others (they find each other through
        # the primary), so that a failover can be agreed
        wait_until(self._quorum, 30, "three sentinels that know each other and the replica")

    def _quorum(self) -> bool:
        def knows(client: redis.Redis) -> bool:
            master: Any = client.sentinel_master(SERVICE)
            others = int(master.get("num-other-sentinels", 0))
            return others >= 2 and len(client.sentinel_slaves(SERVICE)) >= 1

        return ask_each(self.sentinel_ports, knows)

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> float:
        """Seconds until every sentinel names a primary other than ``old_port``, up and not
        flagged down (what a client asking any of them is then told), and it takes writes."""
        start = time.monotonic()

        def promoted() -> bool:
            ports = set()
            for port in self.sentinel_ports:
                client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2)
                try:
                    master: Any = client.sentinel_master(SERVICE)
                except (redis.RedisError, OSError):
                    return False
                finally:
                    client.close()
                if master.get("is_sdown") or master.get("is_odown"):
                    return False
                ports.add(int(master["port"]))
            if len(ports) != 1 or old_port in ports:
                return False
            primary = redis.Redis(port=ports.pop(), socket_connect_timeout=0.5, socket_timeout=2)
            try:
                return primary.info("replication").get("role") == "master"
            except (redis.RedisError, OSError):
                return False
            finally:
                primary.close()

        wait_until(promoted, timeout, "a failover to the replica", 0.05)
        return time.monotonic() - start

    def stop(self) -> None:
        for service in [*self.sentinels, self.replica, self.primary]:
            service.stop()


@contextlib.contextmanager
def sentinel_group(workdir: Path) -> Iterator[SentinelGroup]:
    """Started for the block (primary, replica in sync, three sentinels agreed); every
    process stopped afterwards."""
    group = SentinelGroup(workdir)
    try:
        group.start()
        yield group
    finally:
        group.stop()
