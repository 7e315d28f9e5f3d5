"""A real Janus (the Debian ``janus`` package) inside a test network namespace.

The configuration is generated into a temporary folder: only the VideoRoom, TextRoom and
AudioBridge plugins and the plain HTTP transport are loaded (through folders that link just
those libraries; ``audiobridge=False`` leaves AudioBridge out, as a server without it), no event
handlers, no loggers, no STUN, and ICE gathers only on the namespace's host veth (``-E``) with
its address put in the SDP (``-i``): libnice never gathers loopback, and nothing may be offered
on the machine's real interfaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.harness.netns import NetNs
from tests.harness.processes import Service

__all__ = [
    "AUDIO_PIN_ROOM",
    "AUDIO_ROOM",
    "DEFAULT_AUDIO_ROOMS",
    "DEFAULT_ROOMS",
    "OPEN_ROOM",
    "PIN_ROOM",
    "ROOM_PIN",
    "ROOM_SECRET",
    "JanusServer",
    "Room",
    "janus_server",
    "require_janus",
]

JANUS_BINARY = "/usr/bin/janus"
JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")

OPEN_ROOM = 1234
PIN_ROOM = 5678
ROOM_PIN = "4321"
#: the rooms' admin secret (edit/destroy); tests may create and destroy rooms with it
ROOM_SECRET = "test-room-secret"


@dataclass(frozen=True)
class Room:
    room: int
    description: str
    pin: str | None = None
    publishers: int = 16


DEFAULT_ROOMS: tuple[Room, ...] = (
    Room(OPEN_ROOM, "open test room"),
    Room(PIN_ROOM, "pin test room", pin=ROOM_PIN),
)

AUDIO_ROOM = 2468
AUDIO_PIN_ROOM = 2469
#: the AudioBridge rooms' talking-event window (packets of 20 ms) and level threshold, as
#: docs/mixed-rooms.md recommends
AUDIO_ACTIVE_PACKETS = 10
AUDIO_LEVEL_AVERAGE = 45

DEFAULT_AUDIO_ROOMS: tuple[Room, ...] = (
    Room(AUDIO_ROOM, "mixed test room"),
    Room(AUDIO_PIN_ROOM, "mixed pin test room", pin=ROOM_PIN),
)


def require_janus() -> None:
    """Skip (with the reason) where the janus binary or its plugins are absent."""
    if not Path(JANUS_BINARY).exists():
        pytest.skip(f"{JANUS_BINARY} is missing (Debian package janus)")
    if not (JANUS_LIB / "plugins" / "libjanus_videoroom.so").exists():
        pytest.skip(f"the Janus VideoRoom plugin is missing under {JANUS_LIB}")


def _linked_folder(folder: Path, library: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / library.name
    if not link.exists():
        link.symlink_to(library)
    return folder


class JanusServer(Service):
    """One Janus process in ``ns`` on ``ns.host_addr:port``; :meth:`restart` keeps the port,
    :meth:`kill` kills it at once, as a crash would. ``SEALSCRIBE_TEST_JANUS_ARGS`` adds
    command-line options, e.g. ``-d 7 -D -l`` to debug ICE into ``janus.log``.

    Args:
        ns: the namespace (created by :func:`tests.harness.netns.network_namespace`).
        workdir: a fresh folder for the generated configuration and ``janus.log``.
        port: the HTTP API port (the namespace is private, so a fixed port is free).
        rooms: static VideoRoom rooms (each with a TextRoom of the same id).
        audio_rooms: static AudioBridge rooms (each with a TextRoom of the same id), sending
            talking events.
        audiobridge: whether the AudioBridge plugin is loaded at all.
        api_secret: the Janus API secret every request must carry, or ``None``.
        session_timeout: seconds after which Janus drops an idle session.
    """

    def __init__(
        self,
        ns: NetNs,
        workdir: Path,
        *,
        port: int = 8088,
        rooms: Sequence[Room] = DEFAULT_ROOMS,
        audio_rooms: Sequence[Room] = DEFAULT_AUDIO_ROOMS,
        audiobridge: bool = True,
        api_secret: str | None = None,
        session_timeout: int = 60,
    ) -> None:
        require_janus()
        self.ns = ns
        self.port = port
        self.host = ns.host_addr
        self.api_secret = api_secret
        self.api_url = f"http://{self.host}:{port}/janus"
        self._conf = workdir / "conf"
        self._write_config(workdir, rooms, audio_rooms if audiobridge else (), session_timeout)
        if audiobridge:
            _linked_folder(workdir / "plugins", JANUS_LIB / "plugins" / "libjanus_audiobridge.so")
        # `ip netns exec` rather than the caller's namespace: start/restart work from anywhere.
        argv = [
            "ip",
            "netns",
            "exec",
            ns.name,
            JANUS_BINARY,
            "-C",
            str(self._conf / "janus.jcfg"),
            "-F",
            str(self._conf),
            "-i",
            self.host,
            "-E",
            ns.host_iface,
            "-o",
            *os.environ.get("SEALSCRIBE_TEST_JANUS_ARGS", "").split(),
        ]
        super().__init__(
            "janus",
            argv,
            os.environ,
            workdir / "janus.log",
            ready=lambda _: self._answers(),
            stop_timeout=10.0,
        )

    def _write_config(
        self,
        workdir: Path,
        rooms: Sequence[Room],
        audio_rooms: Sequence[Room],
        session_timeout: int,
    ) -> None:
        self._conf.mkdir(parents=True, exist_ok=True)
        plugins = _linked_folder(
            workdir / "plugins", JANUS_LIB / "plugins" / "libjanus_videoroom.so"
        )
        _linked_folder(plugins, JANUS_LIB / "plugins" / "libjanus_textroom.so")
        transports = _linked_folder(
            workdir / "transports", JANUS_LIB / "transports" / "libjanus_http.so"
        )
        empty = workdir / "empty"
        empty.mkdir(exist_ok=True)
        secret = f'\tapi_secret = "{self.api_secret}"\n' if self.api_secret else ""
        (self._conf / "janus.jcfg").write_text(
            "general: {\n"
            f'\tconfigs_folder = "{self._conf}"\n'
            f'\tplugins_folder = "{plugins}"\n'
            f'\ttransports_folder = "{transports}"\n'
            f'\tevents_folder = "{empty}"\n'
            f'\tloggers_folder = "{empty}"\n'
            "\tdebug_level = 4\n"
            f"\tsession_timeout = {session_timeout}\n"
            f"{secret}"
            "}\n"
            'media: {\n\trtp_port_range = "20000-40000"\n}\n'
            "nat: {\n\tnice_debug = false\n"
            f'\tice_enforce_list = "{self.ns.host_iface}"\n'
            "}\n"
            "plugins: {\n}\ntransports: {\n}\nevents: {\n\tbroadcast = false\n}\n"
        )
        (self._conf / "janus.transport.http.jcfg").write_text(
            'general: {\n\tjson = "compact"\n\tbase_path = "/janus"\n\thttp = true\n'
            f'\tport = {self.port}\n\tip = "{self.host}"\n\thttps = false\n}}\n'
            "admin: {\n\tadmin_http = false\n\tadmin_https = false\n}\n"
        )
        room_blocks = []
        for r in rooms:
            pin = f'\tpin = "{r.pin}"\n' if r.pin else ""
            room_blocks.append(
                f'room-{r.room}: {{\n\tdescription = "{r.description}"\n'
                f'\tsecret = "{ROOM_SECRET}"\n{pin}\tpublishers = {r.publishers}\n'
                '\taudiocodec = "opus"\n\tvideocodec = "vp8"\n\trecord = false\n}\n'
            )
        (self._conf / "janus.plugin.videoroom.jcfg").write_text(
            "general: {\n}\n" + "".join(room_blocks)
        )
        audio_blocks = [
            f'room-{r.room}: {{\n\tdescription = "{r.description}"\n'
            f'\tsecret = "{ROOM_SECRET}"\n'
            + (f'\tpin = "{r.pin}"\n' if r.pin else "")
            + "\tsampling_rate = 16000\n\taudiolevel_ext = true\n\taudiolevel_event = true\n"
            f"\taudio_active_packets = {AUDIO_ACTIVE_PACKETS}\n"
            f"\taudio_level_average = {AUDIO_LEVEL_AVERAGE}\n\trecord = false\n}}\n"
            for r in audio_rooms
        ]
        (self._conf / "janus.plugin.audiobridge.jcfg").write_text(
            "general: {\n}\n" + "".join(audio_blocks)
        )
        # each room has a TextRoom of the same id and pin: the room's chat
        text_blocks = [
            f'room-{r.room}: {{\n\tdescription = "{r.description}"\n'
            f'\tsecret = "{ROOM_SECRET}"\n'
            + (f'\tpin = "{r.pin}"\n' if r.pin else "")
            + "\thistory = 10\n}\n"
            for r in (*rooms, *audio_rooms)
        ]
        (self._conf / "janus.plugin.textroom.jcfg").write_text(
            'general: {\n\tjson = "compact"\n}\n' + "".join(text_blocks)
        )

    def join_url(
        self,
        room: int,
        pin: str | None = None,
        textroom: int | None = None,
        audiobridge: bool = False,
    ) -> str:
        """The ``janus://`` URL the connector takes for ``room`` (and its chat), or with
        ``audiobridge`` the ``janus-audiobridge://`` URL of an AudioBridge room."""
        query = [f"audio_active_packets={AUDIO_ACTIVE_PACKETS}"] if audiobridge else []
        if pin is not None:
            query.append(f"pin={quote(pin, safe='')}")
        if textroom is not None:
            query.append(f"textroom={textroom}")
        if self.api_secret is not None:
            query.append(f"secret={quote(self.api_secret, safe='')}")
        tail = "?" + "&".join(query) if query else ""
        scheme = "janus-audiobridge" if audiobridge else "janus"
        return f"{scheme}://{self.host}:{self.port}/{room}{tail}"

    def _answers(self) -> bool:
        url = f"{self.api_url}/info"
        with self.ns.entered():
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    return bool(json.load(resp).get("janus") == "server_info")
            except (urllib.error.URLError, OSError, ValueError):
                return False

    def restart(self) -> None:
        """Stop, then start again on the same address and port (a Janus restart); every
        session it held is gone."""
        self.stop()
        self.start(20)

    def __enter__(self) -> JanusServer:
        self.start(20)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def janus_server(
    ns: NetNs,
    workdir: Path,
    *,
    port: int = 8088,
    rooms: Sequence[Room] = DEFAULT_ROOMS,
    audiobridge: bool = True,
    api_secret: str | None = None,
    session_timeout: int = 60,
) -> Iterator[JanusServer]:
    """A started :class:`JanusServer` (arguments as its constructor), always stopped."""
    server = JanusServer(
        ns,
        workdir,
        port=port,
        rooms=rooms,
        audiobridge=audiobridge,
        api_secret=api_secret,
        session_timeout=session_timeout,
    )
    try:
        server.start(20)
        yield server
    finally:
        server.stop()
