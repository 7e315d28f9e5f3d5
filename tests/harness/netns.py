"""A throw-away network namespace for tests that need real, non-loopback addresses.

Janus's ICE library (libnice) never gathers loopback candidates, so Janus tests run on a veth
pair whose two ends both live inside a namespace the test creates: nothing the test sends can
leave the machine. :func:`network_namespace` creates and always deletes it;
:meth:`NetNs.entered` moves the calling thread into it with ``setns(2)``, so that sockets
opened, threads started and subprocesses spawned meanwhile (an asyncio loop and its default
executor, aiortc, a Janus process) all live in the namespace, without ``ip netns exec``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["NetNs", "network_namespace", "require_netns"]

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns failed: {os.strerror(err)}")


def require_netns() -> None:
    """Skip (with the reason) where namespaces cannot be made: not root, or no ``ip``."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is missing")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _delete(name: str) -> None:
    """Kill what still runs in namespace ``name`` (a Janus a test forgot), then delete it."""
    pids = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10, check=False
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    # Deleting the namespace also deletes the veth pair living in it.
    subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True, timeout=10)


def _reap_stale(prefix: str) -> None:
    """Delete namespaces left by test runs that were killed before they could clean up."""
    listing = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    for line in listing.splitlines():
        match = re.match(rf"({re.escape(prefix)}-(\d+)-[0-9a-f]+)\b", line)
        if match and not Path(f"/proc/{match.group(2)}").exists():
            _delete(match.group(1))


@dataclass(frozen=True)
class NetNs:
    """A namespace with ``lo`` up and a veth pair, both ends inside.

    ``host_addr`` on ``host_iface`` is meant for the server (Janus), ``peer_addr`` on
    ``peer_iface`` for the clients (bot, publishers); both are reachable from inside only.
    """

    name: str
    host_iface: str
    host_addr: str
    peer_iface: str
    peer_addr: str

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the body of the ``with`` in this namespace (the calling thread only).

        Threads that already exist stay where they are, so start the asyncio loop inside
        (``asyncio.run`` creates a fresh default executor). The original namespace is restored
        on exit, also when the body raises.
        """
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(original)
        finally:
            os.close(original)

    @contextlib.contextmanager
    def reached(self) -> Iterator[None]:
        """Point this process's ICE at ``peer_addr`` and its egress policy at exactly
        ``host_addr`` (the namespace's server) for the body of the ``with``; what was there
        before is put back afterwards, so a test nested in a module's stack leaves it
        pointing where it did."""
        from pipeline import egress
        from pipeline.capture.ice import configure_ice, ice_hosts
        from pipeline.egress import EgressPolicy

        hosts, policy = ",".join(ice_hosts()), egress.configured()
        configure_ice(self.peer_addr)
        egress.configure(EgressPolicy.parse(self.host_addr))
        try:
            yield
        finally:
            egress.configure(policy)
            configure_ice(hosts)


@contextlib.contextmanager
def network_namespace(prefix: str = "sstest") -> Iterator[NetNs]:
    """Create a uniquely named namespace with a /30 veth pair in 10.213.0.0/16; delete it
    afterwards, whatever happened."""
    require_netns()
    _reap_stale(prefix)
    name = f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
    third, block = secrets.randbelow(256), secrets.randbelow(64) * 4
    ns = NetNs(
        name=name,
        host_iface="ssveth0",
        host_addr=f"10.213.{third}.{block + 1}",
        peer_iface="ssveth1",
        peer_addr=f"10.213.{third}.{block + 2}",
    )
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "add", ns.host_iface, "type", "veth", "peer", "name", ns.peer_iface)
        _ip("-n", name, "addr", "add", f"{ns.host_addr}/30", "dev", ns.host_iface)
        _ip("-n", name, "addr", "add", f"{ns.peer_addr}/30", "dev", ns.peer_iface)
        for iface in ("lo", ns.host_iface, ns.peer_iface):
            _ip("-n", name, "link", "set", iface, "up")
        # libnice (Janus) sends out of its veth end (bound to the device), so the packet
        # crosses the pair to a local address; the kernel drops such packets, and the ARP
        # requests before them, as martians unless accept_local is on.
        for conf in ("all", "default", ns.host_iface, ns.peer_iface):
            _ip("netns", "exec", name, "sysctl", "-qw", f"net.ipv4.conf.{conf}.accept_local=1")
        yield ns
    finally:
        _delete(name)
