"""WhisperLive beside sealscribe in ``bench.latency --whisperlive``.

The server runs from bench/.venv-whisperlive (``bench/setup-whisperlive``; WhisperLive is no
dependency of the project) through ``bench/whisperlive_server.py``: faster-whisper backend,
one shared model loaded from the same CTranslate2 directory our worker uses, on 127.0.0.1.
The client here speaks its WebSocket protocol (as ``whisper_live/client.py`` does, with that
client's defaults): a JSON handshake, ``SERVER_READY``, then float32 16 kHz audio frames; the
server answers with its last ``send_last_n_segments`` completed segments plus the segment in
progress (``completed: false``), times in seconds of the client's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LiveUtterance", "measure", "server", "venv_python"]

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-whisperlive"
END_OF_AUDIO = b"END_OF_AUDIO"


@dataclass
class LiveUtterance:
    participant: str
    start_s: float  # speech start within the participant's stream
    end_s: float
    sent_end: float = 0.0  # wall clock: last speech sample due (as for ours)
    partial_at: float | None = None  # first text overlapping it, completed or not
    final_at: float | None = None  # the last completed segment matched to it


@dataclass
class _Client:
    name: str
    utts: list[LiveUtterance]
    seen: set[tuple[str, str, str]] = field(default_factory=set)
    finals: list[tuple[float, str]] = field(default_factory=list)  # (start, text), for WER
    last_end: float = 0.0  # end of the last completed segment kept
    pending: bool = False  # its last message held text not yet completed


def venv_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.is_file():
        raise SystemExit(
            f"WhisperLive is not installed for the benchmark ({VENV} is missing): "
            "run bench/setup-whisperlive first"
        )
    return python


@contextlib.contextmanager
def server(model_dir: Path, log_path: Path, threads: int, max_clients: int) -> Iterator[int]:
    """WhisperLive's server on a free loopback port for the block; yields the port."""
    from pipeline.net import free_port

    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                str(venv_python()),
                str(BENCH / "whisperlive_server.py"),
                "--port",
                str(port),
                "--model",
                str(model_dir),
                "--threads",
                str(threads),
                "--max-clients",
                str(max_clients),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"WhisperLive's server did not start; see {log_path}"
                    ) from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _overlap(u: LiveUtterance, c0: float, c1: float) -> float:
    return min(u.end_s, c1) - max(u.start_s, c0)


def _handshake(name: str, model_dir: Path) -> dict[str, Any]:
    """whisper_live.client.Client's handshake, with that client's defaults."""
    return {
        "uid": name,
        "language": "en",
        "task": "transcribe",
        "model": str(model_dir),
        "use_vad": True,
        "send_last_n_segments": 10,
        "no_speech_thresh": 0.45,
        "clip_audio": False,
        "same_output_threshold": 10,
        "enable_translation": False,
        "word_timestamps": False,
        "initial_prompt": None,
        "vad_parameters": None,
    }


def _on_segments(client: _Client, segments: list[dict[str, Any]], now: float) -> None:
    client.pending = False
    for seg in segments:
        text = str(seg.get("text", "")).strip()
        if not text:
            continue
        c0, c1 = float(seg["start"]), float(seg["end"])
        best = max(client.utts, key=lambda u: _overlap(u, c0, c1))
        if best.partial_at is None and _overlap(best, c0, c1) > 0:
            best.partial_at = now
        if not seg.get("completed", False):
            client.pending = True
            continue
        key = (str(seg["start"]), str(seg["end"]), text)
        if key in client.seen:  # the server resends its last completed segments
            continue
        client.seen.add(key)
        # whisper_live.client keeps a completed segment only if it starts where the last
        # kept one ended or later; so does this
        if client.finals and c0 < client.last_end:
            continue
        client.finals.append((c0, text))
        client.last_end = c1
        best.final_at = now  # as for ours: the last caption of an utterance wins


async def measure(
    port: int,
    model_dir: Path,
    streams: list[tuple[str, bytes]],
    utts: list[LiveUtterance],
    chunk_ms: int,
    tail_s: float,
    timeout_s: float,
) -> dict[str, list[tuple[float, str]]]:
    """Stream each (name, s16 PCM) in real time over its own WebSocket; fill in the
    utterances' partial and final times. Returns each participant's completed segments."""
    import aiohttp

    clients = {
        name: _Client(name, [u for u in utts if u.participant == name]) for name, _ in streams
    }
    per_chunk = 16000 * chunk_ms // 1000
    ended = {name: asyncio.Event() for name, _ in streams}
    stop = asyncio.Event()
    changed = asyncio.Event()

    async def receive(ws: aiohttp.ClientWebSocketResponse, client: _Client) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data.get("status") in ("WAIT", "ERROR"):
                raise RuntimeError(f"WhisperLive refused {client.name}: {data['status']}")
            if "segments" in data:
                _on_segments(client, data["segments"], time.time())
                changed.set()

    async def send(
        ws: aiohttp.ClientWebSocketResponse, pcm: bytes, t0: float, ended: asyncio.Event
    ) -> None:
        samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
        end = len(samples) + int(tail_s * 16000)
        k = 0
        while not stop.is_set():
            # as our publisher does: a chunk leaves when its first sample is due
            wait = t0 + k * chunk_ms / 1000 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            piece = samples[k * per_chunk : (k + 1) * per_chunk]
            if piece.size < per_chunk:  # after the program: silence, as our track sends
                piece = np.concatenate([piece, np.zeros(per_chunk - piece.size, np.float32)])
            await ws.send_bytes(piece.tobytes())
            k += 1
            if k * per_chunk >= end:
                ended.set()
        await ws.send_bytes(END_OF_AUDIO)

    async with aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as stack:
        sockets: dict[str, aiohttp.ClientWebSocketResponse] = {}
        for name, _ in streams:
            ws = await stack.enter_async_context(
                http.ws_connect(f"ws://127.0.0.1:{port}", max_msg_size=0, heartbeat=None)
            )
            await ws.send_str(json.dumps(_handshake(name, model_dir)))
            while True:  # the first connection waits for the model to load
                msg = await ws.receive(timeout=120)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"WhisperLive closed {name}'s connection at the start")
                data = json.loads(msg.data)
                if data.get("message") == "SERVER_READY":
                    break
                if data.get("status") in ("WAIT", "ERROR"):
                    raise RuntimeError(f"WhisperLive refused {name}: {data['status']}")
            sockets[name] = ws
        receivers = [asyncio.create_task(receive(sockets[n], c)) for n, c in clients.items()]
        t0 = time.monotonic() + 0.2
        origin = time.time() + (t0 - time.monotonic())
        for u in utts:
            u.sent_end = origin + u.end_s
        senders = [
            asyncio.create_task(send(sockets[name], pcm, t0, ended[name])) for name, pcm in streams
        ]

        def done() -> bool:
            return all(u.final_at for u in utts) and not any(c.pending for c in clients.values())

        for event in ended.values():
            await event.wait()
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            if any(r.done() for r in receivers):
                break
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 1)
        stop.set()
        await asyncio.gather(*senders, return_exceptions=True)
        for r in receivers:
            if r.done() and r.exception() is not None:
                raise r.exception()  # type: ignore[misc]
            r.cancel()
    return {c.name: sorted(c.finals) for c in clients.values()}
