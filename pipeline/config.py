"""Configuration, read from the environment once at start-up.

==========================  ======================================  ===========================
variable                    meaning                                 default
==========================  ======================================  ===========================
SEALSCRIBE_REDIS_URL        state store (and broker, unless         redis://127.0.0.1:6379/0
                            SEALSCRIBE_BROKER_URL is set): a
                            Redis, or ``redis+sentinel://`` (a
                            primary Sentinel watches; see
                            ``pipeline.store.connection``)
SEALSCRIBE_REDIS_WAIT_REPLICAS replicas a sealed segment, a          0 (none: replication is
                            transcript or a policy change waits     asynchronous)
                            for (Redis WAIT) before it counts as
                            stored (``Durable``, same module)
SEALSCRIBE_REDIS_WAIT_MS    how long it waits for them              1000
SEALSCRIBE_BROKER_URL       where Celery messages wait: a Redis     SEALSCRIBE_REDIS_URL
                            URL, or RabbitMQ (``amqp://``,
                            ``amqps://``: durable quorum queues,
                            publisher confirms; see
                            ``pipeline.queue``)
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
SEALSCRIBE_SHORT_WINDOW_MS  a window up to this long is encoded at  20000
                            its own length plus 1 s, not padded to
                            Whisper's 30 s (0: always pad)
SEALSCRIBE_BATCH            windows a worker transcribes in one     0 (auto: 4 on CPU,
                            model call, across meetings (a window:  8 on CUDA)
                            one participant's waiting segments,
                            up to 28 s)
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
SEALSCRIBE_BOT_ALLOW        where a tenant may point the service:   public
                            Janus servers and remote ICE candidates
                            (``public``, addresses, CIDR blocks,
                            host names, ``mdns``; comma separated;
                            see ``pipeline.egress``)
SEALSCRIBE_CAPTURE_BACKLOG_MB sealed audio a meeting's capture may   32
                            hold in memory while Redis is slow or
                            down; beyond it, segments are dropped
                            and counted
SEALSCRIBE_MAX_SEGMENT_MS   longest live utterance before it is cut 15000
                            (bounds caption latency)
SEALSCRIBE_END_SILENCE_MS   pause that ends a live utterance        500
SEALSCRIBE_INTERIM_MS       new speech between interim captions of  1000
                            an utterance in progress (0: none)
SEALSCRIBE_INTERIM_BEAM     beam width for interim captions         1 (greedy)
SEALSCRIBE_VAD              voice detector of capture: ``silero``   silero
                            (the model faster-whisper ships; keeps
                            noise and music out; needed for
                            crosstalk suppression) or ``energy`` (a
                            threshold over an adaptive noise floor:
                            no model, about half the capture CPU)
SEALSCRIBE_CROSSTALK        ``1``: a track's frames that carry      1 (on)
                            another participant's louder voice are
                            not its speech (dropped in memory)
SEALSCRIBE_WHIP_URL         this API process's own base URL as      (none: WHIP
                            other API processes reach it; an offer  sessions are
                            for a meeting whose WHIP sessions this  captured where
                            process holds is redirected here (307)  they land)
SEALSCRIBE_WHIP_PER_MEETING WHIP sessions one meeting may hold at   50
                            once, across every API process
SEALSCRIBE_WHIP_PER_TENANT  WHIP sessions one tenant may hold at    100
                            once, across every API process
SEALSCRIBE_QUOTA_MEETINGS   meetings one tenant may hold at once    1000
                            (created, not yet deleted or expired;
                            0: no limit)
SEALSCRIBE_QUOTA_BOTS       bots one tenant may have in meetings    10
                            at once, across every bot service
                            (0: no limit)
SEALSCRIBE_QUOTA_PUBLISHERS publishers one bot follows in a room;   50
                            more are ignored and logged (0: no
                            limit)
SEALSCRIBE_QUOTA_RPS        API requests per second per tenant,     50
                            across every API process (bursts of
                            twice that; 0: no limit)
SEALSCRIBE_SHRED_RETRY      seconds between the beat's retries of   60
                            meeting deletes whose key rotation is
                            pending (``worker --beat``)
SEALSCRIBE_METRICS_TOKEN    bearer token ``/metrics`` and the       (none: open)
                            worker and bot metrics ports require
SEALSCRIBE_API_DOCS         ``1``: serve ``/docs`` and ``/redoc``   0 (off)
                            (they load Swagger UI / ReDoc from a
                            public CDN); ``/openapi.json`` always
SEALSCRIBE_CAPTION_SOCKETS_PER_MEETING  caption sockets open on one    20
                            meeting at once, across every API
                            process (more are closed with 4429)
SEALSCRIBE_CAPTION_SOCKETS_PER_TENANT   caption sockets one tenant     100
                            may hold open at once, across every
                            API process
SEALSCRIBE_AUTH_FAILURES    failed authentications a client         20
                            address (IPv6: its /64) may make per
                            minute; then 429 with Retry-After
SEALSCRIBE_CLIENT_ADDRESS_HEADER  the header a reverse proxy puts   (none: the peer's
                            the client's address in (its right-     address)
                            most entry is used); set it only
                            behind a proxy that sets it
SEALSCRIBE_WEBHOOK_GIVE_UP_S seconds of failed deliveries before    86400 (a day)
                            an endpoint is disabled
SEALSCRIBE_WEBHOOK_RETRY_S  first retry delay (doubles each try)    10
SEALSCRIBE_WEBHOOK_MAX_RETRY_S longest delay between two tries      3600
SEALSCRIBE_WEBHOOK_TICK_S   seconds between the beat's sweeps for   5
                            deliveries due
SEALSCRIBE_WEBHOOK_TIMEOUT_S seconds one delivery may take          10
SEALSCRIBE_WEBHOOK_AUDIT_HEAD_S seconds between audit head events   3600
SEALSCRIBE_QUOTA_WEBHOOKS   webhook endpoints one tenant may have   10
SEALSCRIBE_WEBHOOK_KEY      the key that seals webhook secrets      (a file:
                            (32 bytes: base64 or hex); the same on  $SEALSCRIBE_HOME/
                            every API and worker host               webhook.key, made
                                                                    on first use)
==========================  ======================================  ===========================
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from keys.transit import TransitConfig
from pipeline import faults
from pipeline.egress import ALLOW_VAR, EgressPolicy
from pipeline.errors import InvalidInput
from pipeline.store.connection import CLUSTER_SCHEME, SENTINEL_SCHEME, ClusterUrl, SentinelUrl

__all__ = ["KEY_PROVIDERS", "Settings", "WebhookSettings", "get_settings"]

KEY_PROVIDERS = ("local", "transit")
#: what SEALSCRIBE_BROKER_URL may be: a Redis, or RabbitMQ
BROKER_SCHEMES = ("redis://", "rediss://", "redis+sentinel://", "amqp://", "amqps://")
#: what SEALSCRIBE_REDIS_URL may be: a Redis, or a primary Redis Sentinel watches
STORE_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")
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


#: the longest a write may wait for replicas: well inside the client's 30 s socket timeout,
#: which would otherwise call a write that was made a failure
MAX_WAIT_MS = 10_000


def _wait_ms(env: Mapping[str, str], default: int) -> int:
    value = _positive_int(env, "SEALSCRIBE_REDIS_WAIT_MS", default)
    if value > MAX_WAIT_MS:
        raise InvalidInput(f"SEALSCRIBE_REDIS_WAIT_MS must be at most {MAX_WAIT_MS}, got {value}")
    return value


def _vad(env: Mapping[str, str], default: str) -> str:
    value = (env.get("SEALSCRIBE_VAD") or default).strip().lower()
    if value not in ("silero", "energy"):
        raise InvalidInput(f"SEALSCRIBE_VAD must be silero or energy, got {value!r}")
    return value


def _whip_url(env: Mapping[str, str]) -> str:
    """This process's base URL for WHIP redirects: http(s)://host[:port][/prefix]."""
    value = env.get("SEALSCRIBE_WHIP_URL", "").strip().rstrip("/")
    if value and not value.startswith(("http://", "https://")):
        raise InvalidInput(f"SEALSCRIBE_WHIP_URL must start with http:// or https://: {value!r}")
    return value


def _interim_ms(env: Mapping[str, str], default: int) -> int:
    """0 (no interim captions) or at least 300 ms between them."""
    value = _positive_int(env, "SEALSCRIBE_INTERIM_MS", default, minimum=0)
    if 0 < value < 300:
        raise InvalidInput(f"SEALSCRIBE_INTERIM_MS must be 0 or at least 300, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise InvalidInput(f"{name} must be 1 or 0, got {raw!r}")


@dataclass(frozen=True)
class WebhookSettings:
    """Webhook delivery: retries, when to give up, timeouts, the beat's sweeps."""

    give_up_s: int = 24 * 3600
    retry_s: int = 10
    max_retry_s: int = 3600
    tick_s: int = 5
    timeout_s: int = 10
    audit_head_s: int = 3600
    quota: int = 10
    key: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookSettings:
        return cls(
            give_up_s=_positive_int(env, "SEALSCRIBE_WEBHOOK_GIVE_UP_S", cls.give_up_s),
            retry_s=_positive_int(env, "SEALSCRIBE_WEBHOOK_RETRY_S", cls.retry_s),
            max_retry_s=_positive_int(env, "SEALSCRIBE_WEBHOOK_MAX_RETRY_S", cls.max_retry_s),
            tick_s=_positive_int(env, "SEALSCRIBE_WEBHOOK_TICK_S", cls.tick_s),
            timeout_s=_positive_int(env, "SEALSCRIBE_WEBHOOK_TIMEOUT_S", cls.timeout_s),
            audit_head_s=_positive_int(env, "SEALSCRIBE_WEBHOOK_AUDIT_HEAD_S", cls.audit_head_s),
            quota=_positive_int(env, "SEALSCRIBE_QUOTA_WEBHOOKS", cls.quota, minimum=0),
            key=env.get("SEALSCRIBE_WEBHOOK_KEY", "").strip(),
        )


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Celery's broker when it is not :attr:`redis_url` (see :attr:`broker`)
    broker_url: str = ""
    #: replicas a sealed or policy write waits for (``pipeline.store.connection.Durable``)
    redis_wait_replicas: int = 0
    redis_wait_ms: int = 1000
    home: Path = DEFAULT_HOME
    key_provider: str = "local"
    audio_ttl: int = 3600
    transcript_ttl: int = 30 * 24 * 3600
    model: str = "tiny.en"
    device: str = "auto"
    beam_size: int = 5
    short_window_ms: int = 20000
    batch: int = 0
    max_file_seconds: int = 4 * 3600
    visibility_timeout: int = 600
    key_cache_seconds: int = 60
    purge_interval: int = 300
    ice_hosts: str = ""
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    capture_backlog_mb: int = 32
    max_segment_ms: int = 15000
    end_silence_ms: int = 500
    interim_ms: int = 1000
    interim_beam: int = 1
    vad: str = "silero"
    crosstalk: bool = True
    whip_url: str = ""
    whip_per_meeting: int = 50
    whip_per_tenant: int = 100
    quota_meetings: int = 1000
    quota_bots: int = 10
    quota_publishers: int = 50
    quota_rps: int = 50
    shred_retry: int = 60
    metrics_token: str = field(default="", repr=False)
    api_docs: bool = False
    caption_sockets_per_meeting: int = 20
    caption_sockets_per_tenant: int = 100
    auth_failures: int = 20
    client_address_header: str = ""
    transit: TransitConfig | None = None
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    @property
    def broker(self) -> str:
        """Where Celery messages wait: ``SEALSCRIBE_BROKER_URL``, else the store's Redis."""
        return self.broker_url or self.redis_url

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
        if not redis_url.startswith(STORE_SCHEMES):
            raise InvalidInput(
                f"SEALSCRIBE_REDIS_URL must start with {', '.join(STORE_SCHEMES)}; "
                f"got a URL starting {redis_url.partition(':')[0]!r}"
            )
        if redis_url.startswith(SENTINEL_SCHEME):
            SentinelUrl.parse(redis_url)  # its errors say what is wrong, never the password
        broker_url = (env.get("SEALSCRIBE_BROKER_URL") or "").strip()
        if broker_url and not broker_url.startswith(BROKER_SCHEMES):
            raise InvalidInput(
                f"SEALSCRIBE_BROKER_URL must start with {', '.join(BROKER_SCHEMES)}; "
                f"got a URL starting {broker_url.partition(':')[0]!r}"
            )
        wait_replicas = _positive_int(
            env, "SEALSCRIBE_REDIS_WAIT_REPLICAS", cls.redis_wait_replicas, minimum=0
        )
        if redis_url.startswith(CLUSTER_SCHEME):
            ClusterUrl.parse(redis_url)  # its errors say what is wrong, never the password
            if not broker_url:
                raise InvalidInput(
                    "a Redis Cluster store needs SEALSCRIBE_BROKER_URL (RabbitMQ: amqp://...): "
                    "Celery has no transport for a cluster"
                )
            if wait_replicas:
                raise InvalidInput(
                    "SEALSCRIBE_REDIS_WAIT_REPLICAS is for a primary with replicas (one Redis "
                    "or Sentinel); on a cluster, set min-replicas-to-write on its primaries"
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
            broker_url=broker_url,
            redis_wait_replicas=wait_replicas,
            redis_wait_ms=_wait_ms(env, cls.redis_wait_ms),
            home=home,
            key_provider=provider,
            audio_ttl=_positive_int(env, "SEALSCRIBE_AUDIO_TTL", cls.audio_ttl),
            transcript_ttl=_positive_int(env, "SEALSCRIBE_TRANSCRIPT_TTL", cls.transcript_ttl),
            model=env.get("SEALSCRIBE_MODEL") or cls.model,
            device=device,
            beam_size=_positive_int(env, "SEALSCRIBE_BEAM_SIZE", cls.beam_size),
            short_window_ms=_positive_int(
                env, "SEALSCRIBE_SHORT_WINDOW_MS", cls.short_window_ms, minimum=0
            ),
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
            egress=EgressPolicy.parse(env.get(ALLOW_VAR)),
            capture_backlog_mb=_positive_int(
                env, "SEALSCRIBE_CAPTURE_BACKLOG_MB", cls.capture_backlog_mb
            ),
            max_segment_ms=_positive_int(
                env, "SEALSCRIBE_MAX_SEGMENT_MS", cls.max_segment_ms, minimum=2000
            ),
            end_silence_ms=_positive_int(
                env, "SEALSCRIBE_END_SILENCE_MS", cls.end_silence_ms, minimum=100
            ),
            interim_ms=_interim_ms(env, cls.interim_ms),
            interim_beam=_positive_int(env, "SEALSCRIBE_INTERIM_BEAM", cls.interim_beam),
            vad=_vad(env, cls.vad),
            crosstalk=env.get("SEALSCRIBE_CROSSTALK", "1").strip() != "0",
            whip_url=_whip_url(env),
            whip_per_meeting=_positive_int(
                env, "SEALSCRIBE_WHIP_PER_MEETING", cls.whip_per_meeting
            ),
            whip_per_tenant=_positive_int(env, "SEALSCRIBE_WHIP_PER_TENANT", cls.whip_per_tenant),
            quota_meetings=_positive_int(
                env, "SEALSCRIBE_QUOTA_MEETINGS", cls.quota_meetings, minimum=0
            ),
            quota_bots=_positive_int(env, "SEALSCRIBE_QUOTA_BOTS", cls.quota_bots, minimum=0),
            quota_publishers=_positive_int(
                env, "SEALSCRIBE_QUOTA_PUBLISHERS", cls.quota_publishers, minimum=0
            ),
            quota_rps=_positive_int(env, "SEALSCRIBE_QUOTA_RPS", cls.quota_rps, minimum=0),
            shred_retry=_positive_int(env, "SEALSCRIBE_SHRED_RETRY", cls.shred_retry),
            metrics_token=env.get("SEALSCRIBE_METRICS_TOKEN", "").strip(),
            api_docs=_flag(env, "SEALSCRIBE_API_DOCS"),
            caption_sockets_per_meeting=_positive_int(
                env, "SEALSCRIBE_CAPTION_SOCKETS_PER_MEETING", cls.caption_sockets_per_meeting
            ),
            caption_sockets_per_tenant=_positive_int(
                env, "SEALSCRIBE_CAPTION_SOCKETS_PER_TENANT", cls.caption_sockets_per_tenant
            ),
            auth_failures=_positive_int(env, "SEALSCRIBE_AUTH_FAILURES", cls.auth_failures),
            client_address_header=env.get("SEALSCRIBE_CLIENT_ADDRESS_HEADER", "").strip().lower(),
            transit=(
                TransitConfig.from_env(env)
                if provider == "transit" or env.get("SEALSCRIBE_TRANSIT_ADDR")
                else None
            ),
            webhooks=WebhookSettings.from_env(env),
        )


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings.from_env()
