"""Start WhisperLive's server (faster-whisper backend) for ``bench.latency --whisperlive``.

Runs under bench/.venv-whisperlive's interpreter (``bench/setup-whisperlive``), never under
sealscribe's: WhisperLive is no dependency of the project. The wheel ships no command line
(``run_server.py`` lives only in its repository), so this does what that script does with the
arguments the benchmark needs: one shared model (``single_model``, run_server.py's default for a
custom model path), loaded from the directory given, on 127.0.0.1.

torch: ``whisper_live.server``, ``whisper_live.backend.faster_whisper_backend`` and
``whisper_live.vad`` import it at module level, but on the faster-whisper CPU path the only
call is ``torch.cuda.is_available()`` (vad.py's torch code is the TensorRT backend's voice
detector). Rather than installing torch, a stand-in module answers that call with False and
raises on any other use, so an unexpected use fails loudly instead of silently changing what
is measured.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import logging
import os
import sys
import types
from typing import Any, NoReturn


def _torch_stand_in() -> types.ModuleType:
    def missing(name: str) -> NoReturn:
        raise AttributeError(
            f"torch.{name} is not available: the benchmark runs WhisperLive "
            "without torch (see bench/whisperlive_server.py)"
        )

    cuda = types.ModuleType("torch.cuda")
    cuda.is_available = lambda: False  # type: ignore[attr-defined]
    cuda.__getattr__ = lambda name: missing(f"cuda.{name}")  # type: ignore[method-assign]
    torch = types.ModuleType("torch")
    torch.__spec__ = importlib.machinery.ModuleSpec("torch", None)
    torch.cuda = cuda  # type: ignore[attr-defined]
    torch.__getattr__ = missing  # type: ignore[method-assign]
    return torch


def _import_server() -> Any:
    if importlib.util.find_spec("torch") is None:
        sys.modules["torch"] = _torch_stand_in()
    from whisper_live.backend import (  # type: ignore[import-not-found]  # noqa: F401
        faster_whisper_backend,
    )
    from whisper_live.server import TranscriptionServer  # type: ignore[import-not-found]

    return TranscriptionServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="import the server path and exit")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--model", help="CTranslate2 model directory")
    parser.add_argument("--max-clients", type=int, default=32)
    parser.add_argument(
        "--threads", type=int, default=0, help="OMP_NUM_THREADS for CTranslate2 (0: leave as is)"
    )
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    server_cls = _import_server()
    if args.check:
        from whisper_live import __version__  # type: ignore[import-not-found]

        print(f"whisper_live {__version__}: faster-whisper server path imports")
        return
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    server_cls().run(
        "127.0.0.1",
        port=args.port,
        backend="faster_whisper",
        faster_whisper_custom_model_path=args.model,
        single_model=True,
        max_clients=args.max_clients,
        max_connection_time=3600,
    )


if __name__ == "__main__":
    main()
