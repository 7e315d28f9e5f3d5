"""A Redis Cluster of six real ``redis-server`` processes on loopback ports: three primaries,
each with one replica, for the cluster tests and ``bench/scale.py --store cluster``.

``redis-cli --cluster create`` spreads the 16384 slots over the primaries and gives each a
replica. :attr:`Cluster.url` is the ``redis+cluster://`` URL sealscribe takes.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from tests.harness.processes import wait_until
from tests.harness.redis import RedisServer, ask_each

__all__ = ["NODES", "Cluster", "redis_cluster"]

NODES = 6
#: how long a node may be silent before the others call it down (and fail over)
NODE_TIMEOUT_MS = 2000
#: a node talks to the others on its port plus this
BUS_OFFSET = 10000


def _ports() -> tuple[int, int]:
    """Where a node's port may lie: below the kernel's ephemeral range with its bus port
    too where there is room (else a port checked free could be any client connection's by
    the time the node binds it), else anywhere its bus port fits."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    if low - BUS_OFFSET - 1 >= 11000:
        return 10000, low - BUS_OFFSET - 1
    return 20000, 65535 - BUS_OFFSET


def _port() -> int:
    """A free port whose cluster bus port (10000 above it) is free too."""
    first, last = _ports()
    for _ in range(100):
        port = random.randint(first, last)
        try:
            for p in (port, port + BUS_OFFSET):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class Cluster:
    """The six processes, started by :func:`redis_cluster`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.nodes = [self._node(f"node{i}") for i in range(NODES)]

    def _node(self, name: str) -> RedisServer:
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        ]  # fmt: skip
        return RedisServer(
            self.workdir / name, _port(), args=args, skip_hint=" (for Redis Cluster)"
        )

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:3])
        return f"redis+cluster://{hosts}"

    def client(self) -> redis.RedisCluster:
        """A plain cluster client (the tests' own, to look at what is stored)."""
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port)

    def _ok(self) -> bool:
        def agrees(client: redis.Redis) -> bool:
            info: Any = client.cluster("INFO")
            return info.get("cluster_state") == "ok" and int(info["cluster_known_nodes"]) >= NODES

        return ask_each((node.port for node in self.nodes), agrees)

    def start(self) -> None:
        for i in range(NODES):
            for attempt in range(1, 4):
                try:
                    self.nodes[i].start(20)
                    break
                except RuntimeError:
                    # taken between the check and the bind (a client's or another test's):
                    # the node on other ports, in a directory of its own
                    if attempt == 3 or "Address already in use" not in self.nodes[i].tail():
                        raise
                    self.nodes[i] = self._node(f"node{i}.{attempt}")
        argv = ["redis-cli", "--cluster", "create"]
        argv += [f"127.0.0.1:{node.port}" for node in self.nodes]
        argv += ["--cluster-replicas", "1", "--cluster-yes"]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
        wait_until(self._ok, 30, "every node of the cluster to agree it is ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def redis_cluster(workdir: Path) -> Iterator[Cluster]:
    """A cluster started for the block (every slot served, every node agreed); every process
    stopped afterwards."""
    cluster = Cluster(workdir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def main() -> None:
    """``python -m tests.harness.cluster DIR``: start a cluster under DIR, write its URL to
    DIR/url, and keep it up until SIGTERM or SIGINT (for CI's cluster stage and by hand)."""
    import signal
    import sys

    workdir = Path(sys.argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with redis_cluster(workdir) as cluster:
        (workdir / "url").write_text(cluster.url + "\n")
        stop.wait()


if __name__ == "__main__":
    main()
