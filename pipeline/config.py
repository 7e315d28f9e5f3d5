"""Configuration, read from the environment once at start-up.

==========================  ======================================  ===========================
variable                    meaning                                 default
==========================  ======================================  ===========================
SEALSCRIBE_REDIS_URL        state store, broker and result backend  redis://127.0.0.1:6379/0
SEALSCRIBE_HOME             keyring, logs, models                   ~/.sealscribe
SEALSCRIBE_KEY_PROVIDER     who holds tenant keys: ``local`` or     local
                            ``transit`` (OpenBao / Vault; see
                            ``keys.transit.TransitConfig`` for
                            SEALSCRIBE_TRANSIT_ADDR, _TOKEN, ...)
SEALSCRIBE_AUDIO_TTL        seconds audio may wait untranscribed    3600
SEALSCRIBE_TRANSCRIPT_TTL   seconds a transcript is kept            2592000 (30 days)
SEALSCRIBE_MODEL            ``tiny.en`` (bundled) or a CTranslate2  tiny.en
                            model directory
SEALSCRIBE_DEVICE           ``cpu``, ``cuda`` or ``auto``           auto
SEALSCRIBE_BEAM_SIZE        beam search width                       5
SEALSCRIBE_BATCH            segments a worker transcribes in one    0 (auto: 4 on CPU,
                            model call, across meetings             8 on CUDA)
SEALSCRIBE_KEY_CACHE_SECONDS how long a worker keeps an unwrapped    60
                            data key (0: unwrap for every segment)
SEALSCRIBE_PURGE_INTERVAL   seconds between retention purges         300
                            (``sealscribe worker --beat``)
SEALSCRIBE_MAX_FILE_SECONDS longest file ``transcribe`` accepts     14400 (4 hours)
SEALSCRIBE_VISIBILITY       seconds before an unacknowledged task   600
                            is redelivered, or a batch lease lapses
                            (the worker died)
SEALSCRIBE_ICE_HOSTS        the only addresses the bot and WHIP     (every interface but
                            offer as ICE host candidates, comma     loopback)
                            separated (127.0.0.1 for one machine)
SEALSCRIBE_STUN             STUN servers for ICE (none by default:  (none)
                            no public server is contacted)
SEALSCRIBE_CAPTURE_BACKLOG_MB sealed audio a meeting's capture may   32
                            hold in memory while Redis is slow or
                            down; beyond it, segments are dropped
                            and counted
SEALSCRIBE_MAX_SEGMENT_MS   longest live utterance before it is cut 15000
                            (bounds caption latency)
SEALSCRIBE_END_SILENCE_MS   pause that ends a live utterance        500
==========================  ======================================  ===========================
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from keys.transit import TransitConfig
from pipeline import faults
from pipeline.errors import InvalidInput

__all__ = ["KEY_PROVIDERS", "Settings", "get_settings"]

KEY_PROVIDERS = ("local", "transit")
DEFAULT_HOME = Path("~/.sealscribe").expanduser()


def _positive_int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise InvalidInput(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    home: Path = DEFAULT_HOME
    key_provider: str = "local"
    audio_ttl: int = 3600
    transcript_ttl: int = 30 * 24 * 3600
    model: str = "tiny.en"
    device: str = "auto"
    beam_size: int = 5
    batch: int = 0
    max_file_seconds: int = 4 * 3600
    visibility_timeout: int = 600
    key_cache_seconds: int = 60
    purge_interval: int = 300
    ice_hosts: str = ""
    capture_backlog_mb: int = 32
    max_segment_ms: int = 15000
    end_silence_ms: int = 500
    transit: TransitConfig | None = None

    @property
    def keyring_dir(self) -> Path:
        return self.home / "keys"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        faults.parse(env)  # SEALSCRIBE_FAULTS without the tests-only consent: refuse to start
        redis_url = env.get("SEALSCRIBE_REDIS_URL") or cls.redis_url
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidInput(
                f"SEALSCRIBE_REDIS_URL must start with redis://, rediss:// or unix://, "
                f"got {redis_url!r}"
            )
        provider = env.get("SEALSCRIBE_KEY_PROVIDER") or cls.key_provider
        if provider not in KEY_PROVIDERS:
            raise InvalidInput(
                f"SEALSCRIBE_KEY_PROVIDER must be one of "
                f"{', '.join(KEY_PROVIDERS)}; got {provider!r}"
            )
        home = Path(env.get("SEALSCRIBE_HOME") or DEFAULT_HOME).expanduser()
        device = env.get("SEALSCRIBE_DEVICE") or cls.device
        if device not in ("auto", "cpu", "cuda"):
            raise InvalidInput(f"SEALSCRIBE_DEVICE must be auto, cpu or cuda; got {device!r}")
        return cls(
            redis_url=redis_url,
            home=home,
            key_provider=provider,
            audio_ttl=_positive_int(env, "SEALSCRIBE_AUDIO_TTL", cls.audio_ttl),
            transcript_ttl=_positive_int(env, "SEALSCRIBE_TRANSCRIPT_TTL", cls.transcript_ttl),
            model=env.get("SEALSCRIBE_MODEL") or cls.model,
            device=device,
            beam_size=_positive_int(env, "SEALSCRIBE_BEAM_SIZE", cls.beam_size),
            batch=_positive_int(env, "SEALSCRIBE_BATCH", cls.batch, minimum=0),
            max_file_seconds=_positive_int(
                env, "SEALSCRIBE_MAX_FILE_SECONDS", cls.max_file_seconds
            ),
            visibility_timeout=_positive_int(env, "SEALSCRIBE_VISIBILITY", cls.visibility_timeout),
            purge_interval=_positive_int(env, "SEALSCRIBE_PURGE_INTERVAL", cls.purge_interval),
            key_cache_seconds=_positive_int(
                env, "SEALSCRIBE_KEY_CACHE_SECONDS", cls.key_cache_seconds, minimum=0
            ),
            ice_hosts=env.get("SEALSCRIBE_ICE_HOSTS", ""),
            capture_backlog_mb=_positive_int(
                env, "SEALSCRIBE_CAPTURE_BACKLOG_MB", cls.capture_backlog_mb
            ),
            max_segment_ms=_positive_int(
                env, "SEALSCRIBE_MAX_SEGMENT_MS", cls.max_segment_ms, minimum=2000
            ),
            end_silence_ms=_positive_int(
                env, "SEALSCRIBE_END_SILENCE_MS", cls.end_silence_ms, minimum=100
            ),
            transit=(
                TransitConfig.from_env(env)
                if provider == "transit" or env.get("SEALSCRIBE_TRANSIT_ADDR")
                else None
            ),
        )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()
