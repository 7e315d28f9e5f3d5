"""``TransitKeyProvider``: tenant keys that never leave the customer's OpenBao / Vault.

Trust model: the KMS holds each tenant's key; sealscribe only ever sends it data keys to
encrypt (wrap), decrypt (unwrap) or re-encrypt (rewrap) through the Transit engine, so the
operator of sealscribe never holds a tenant key, and the customer can rotate, retire or cut
off access in their KMS at any moment. Suits customers who must keep keys away from us.

Each tenant has one Transit key, ``{prefix}{tenant_id}`` on ``mount`` (AES-256-GCM,
``derived=true``). Every wrap binds the data key's context (tenant, meeting, use) as the
Transit derivation context rather than as associated data, because Transit cannot rewrap
ciphertext that carries associated data. Rotation is Transit rotate; retiring below N sets
``min_decryption_version`` (and trims the older versions away); revocation deletes the key
where its ``deletion_allowed`` says so, and otherwise rotates once and moves decryption
past (and trims) every version that ever wrapped anything. The tenant's audit chain is MACed
with Transit ``hmac`` on the same key (its own HMAC key per version), checked with ``verify``.

Errors are translated at this boundary: an unreachable or overloaded KMS, or a refused
token, is :class:`KeyUnavailable` (retried with backoff, never answered with anything
weaker); a key that no longer exists is :class:`KeyRevoked`; a ciphertext that does not
decrypt under its context is :class:`InvalidSeal`.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from keys.errors import InvalidKeyInput, InvalidSeal, KeyRevoked, KeyUnavailable
from keys.types import DataKey, KeyContext, KeyStatus, Purpose, WrappedKey

__all__ = ["TransitConfig", "TransitKeyProvider"]

T = TypeVar("T")
_VAULT_CT = re.compile(r"^vault:v([1-9][0-9]*):")
#: MACs checked per Transit verify request (OpenBao refuses a JSON body of over ~1,000
#: strings: 256 items of two fields each are already too many)
_BATCH = 200


@dataclass(frozen=True)
class TransitConfig:
    """Where the KMS is and how to log in; read from the environment by
    :meth:`from_env` (``SEALSCRIBE_TRANSIT_*``, falling back to ``VAULT_*``)."""

    url: str
    token: str | None = None
    role_id: str | None = None
    secret_id: str | None = None
    mount: str = "transit"
    key_prefix: str = "sealscribe-"
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    timeout: float = 5.0
    namespace: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TransitConfig:
        def get(name: str) -> str | None:
            return env.get(f"SEALSCRIBE_TRANSIT_{name}") or env.get(f"VAULT_{name}") or None

        url = get("ADDR")
        if not url:
            raise InvalidKeyInput(
                "SEALSCRIBE_KEY_PROVIDER=transit needs SEALSCRIBE_TRANSIT_ADDR "
                "(or VAULT_ADDR), e.g. https://kms.example:8200"
            )
        if not url.startswith(("http://", "https://")):
            raise InvalidKeyInput("SEALSCRIBE_TRANSIT_ADDR must start with http:// or https://")
        token, role_id, secret_id = get("TOKEN"), get("ROLE_ID"), get("SECRET_ID")
        if not token and not (role_id and secret_id):
            raise InvalidKeyInput(
                "Transit needs SEALSCRIBE_TRANSIT_TOKEN, or an AppRole as "
                "SEALSCRIBE_TRANSIT_ROLE_ID and SEALSCRIBE_TRANSIT_SECRET_ID"
            )
        try:
            timeout = float(env.get("SEALSCRIBE_TRANSIT_TIMEOUT") or 5.0)
        except ValueError:
            raise InvalidKeyInput(
                "SEALSCRIBE_TRANSIT_TIMEOUT must be a number of seconds"
            ) from None
        return cls(
            url=url,
            token=token,
            role_id=role_id,
            secret_id=secret_id,
            mount=env.get("SEALSCRIBE_TRANSIT_MOUNT") or "transit",
            key_prefix=env.get("SEALSCRIBE_TRANSIT_KEY_PREFIX", "sealscribe-"),
            ca_cert=get("CACERT"),
            client_cert=get("CLIENT_CERT"),
            client_key=get("CLIENT_KEY"),
            timeout=timeout,
            namespace=get("NAMESPACE"),
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class TransitKeyProvider:
    """Tenant keys in OpenBao / Vault Transit. See the module docstring."""

    name = "transit"

    def __init__(self, config: TransitConfig, client: Any = None) -> None:
        self.config = config
        self._client = client

    # -- connection ----------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import hvac

            cfg = self.config
            verify: bool | str = cfg.ca_cert or True
            cert = (cfg.client_cert, cfg.client_key) if cfg.client_cert and cfg.client_key else None
            client = hvac.Client(
                url=cfg.url,
                token=cfg.token,
                verify=verify,
                cert=cert,
                timeout=cfg.timeout,
                namespace=cfg.namespace,
            )
            if not cfg.token:
                self._call(
                    lambda: client.auth.approle.login(role_id=cfg.role_id, secret_id=cfg.secret_id)
                )
            self._client = client
        return self._client

    def health(self) -> None:
        status: dict[str, Any] = self._call(
            lambda: self.client.sys.read_health_status(method="GET")
        )
        if (
            not isinstance(status, dict)
            or status.get("sealed")
            or not status.get("initialized", True)
        ):
            raise KeyUnavailable(f"the KMS at {self.config.url} is sealed or uninitialised")

    def _key(self, tenant_id: str) -> str:
        return f"{self.config.key_prefix}{tenant_id}"

    def _call(self, fn: Callable[[], T]) -> T:
        """Run one KMS request, translating its errors into ours."""
        import hvac.exceptions as hv
        import requests

        try:
            return fn()
        except (
            requests.ConnectionError,
            requests.Timeout,
            hv.VaultDown,
            hv.InternalServerError,
            hv.BadGateway,
            hv.RateLimitExceeded,
        ) as exc:
            raise KeyUnavailable(
                f"the KMS at {self.config.url} is unreachable or failing ({type(exc).__name__})"
            ) from None
        except hv.Forbidden:
            raise KeyUnavailable(
                "the KMS refused the request (permission denied): check the token's policy"
            ) from None
        except (hv.InvalidRequest, hv.InvalidPath) as exc:
            text = str(exc).lower()
            if "not found" in text or isinstance(exc, hv.InvalidPath):
                raise KeyRevoked("the tenant's key no longer exists in the KMS") from None
            if "disallowed by policy" in text or "too old" in text:
                raise KeyUnavailable("that key version is retired in the KMS") from None
            if (
                "authentication failed" in text
                or "invalid ciphertext" in text
                or "unable to decrypt" in text
            ):
                raise InvalidSeal() from None
            raise KeyUnavailable(f"the KMS rejected the request ({type(exc).__name__})") from None

    def _read(self, tenant_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call(
            lambda: self.client.secrets.transit.read_key(
                name=self._key(tenant_id), mount_point=self.config.mount
            )
        )["data"]
        return data

    @staticmethod
    def _check(tenant_id: str, context: KeyContext) -> str:
        if context.tenant_id != tenant_id:
            raise ValueError("the key context names another tenant")
        return _b64(context.encode())

    # -- KeyProvider -------------------------------------------------------------------

    def create(self, tenant_id: str) -> int:
        self._call(
            lambda: self.client.secrets.transit.create_key(
                name=self._key(tenant_id),
                derived=True,
                key_type="aes256-gcm96",
                mount_point=self.config.mount,
            )
        )
        return int(self._read(tenant_id)["latest_version"])

    def wrap(
        self, tenant_id: str, key: DataKey, context: KeyContext, purpose: Purpose
    ) -> WrappedKey:
        Purpose(purpose)
        ctx = self._check(tenant_id, context)
        reply = self._call(
            lambda: self.client.secrets.transit.encrypt_data(
                name=self._key(tenant_id),
                plaintext=_b64(key.material),
                context=ctx,
                mount_point=self.config.mount,
            )
        )
        return self._wrapped(reply["data"]["ciphertext"])

    def unwrap(
        self, tenant_id: str, wrapped: WrappedKey, context: KeyContext, purpose: Purpose
    ) -> DataKey:
        Purpose(purpose)
        ctx = self._check(tenant_id, context)
        if wrapped.provider != self.name:
            raise KeyUnavailable(f"this data key is wrapped by provider {wrapped.provider!r}")
        reply = self._call(
            lambda: self.client.secrets.transit.decrypt_data(
                name=self._key(tenant_id),
                ciphertext=wrapped.ciphertext.decode(),
                context=ctx,
                mount_point=self.config.mount,
            )
        )
        try:
            return DataKey(base64.b64decode(reply["data"]["plaintext"]))
        except (ValueError, TypeError):
            raise InvalidSeal() from None

    def rewrap(self, tenant_id: str, wrapped: WrappedKey, context: KeyContext) -> WrappedKey:
        ctx = self._check(tenant_id, context)
        reply = self._call(
            lambda: self.client.secrets.transit.rewrap_data(
                name=self._key(tenant_id),
                ciphertext=wrapped.ciphertext.decode(),
                context=ctx,
                mount_point=self.config.mount,
            )
        )
        return self._wrapped(reply["data"]["ciphertext"])

    def _wrapped(self, ciphertext: str) -> WrappedKey:
        m = _VAULT_CT.match(ciphertext)
        if m is None:
            raise KeyUnavailable("the KMS returned a ciphertext of an unknown form")
        return WrappedKey(self.name, int(m.group(1)), ciphertext.encode())

    def rotate(self, tenant_id: str) -> int:
        self._call(
            lambda: self.client.secrets.transit.rotate_key(
                name=self._key(tenant_id), mount_point=self.config.mount
            )
        )
        return int(self._read(tenant_id)["latest_version"])

    def retire_below(self, tenant_id: str, version: int) -> None:
        latest = int(self._read(tenant_id)["latest_version"])
        if not 1 <= version <= latest:
            raise InvalidKeyInput(
                f"can only retire below a version from 1 to the primary ({latest})"
            )
        self._configure(tenant_id, min_decryption_version=version, min_encryption_version=version)
        # Trim destroys the retired versions' material (the key's archive keeps it otherwise).
        self._call(
            lambda: self.client.secrets.transit.trim_key(
                name=self._key(tenant_id), min_version=version, mount_point=self.config.mount
            )
        )

    def _configure(self, tenant_id: str, **params: Any) -> None:
        # hvac refuses min_encryption_version == min_decryption_version, which Transit allows
        # (and trimming needs), so post the key configuration directly.
        url = f"/v1/{self.config.mount}/keys/{self._key(tenant_id)}/config"
        self._call(lambda: self.client.adapter.post(url, json=params))

    def revoke(self, tenant_id: str) -> None:
        transit, name, mount = self.client.secrets.transit, self._key(tenant_id), self.config.mount
        try:
            if self._read(tenant_id).get("deletion_allowed"):  # the customer's choice
                self._call(lambda: transit.delete_key(name=name, mount_point=mount))
                return
        except KeyRevoked:
            return  # already gone
        except KeyUnavailable:
            pass  # not allowed to delete: make every existing version undecryptable instead
        latest = self.rotate(tenant_id)
        self._configure(tenant_id, min_decryption_version=latest, min_encryption_version=latest)
        self._call(lambda: transit.trim_key(name=name, min_version=latest, mount_point=mount))

    # -- audit MACs (keys.audit.Authenticator) -------------------------------------------

    def mac(self, tenant_id: str, data: bytes) -> str:
        """Transit ``hmac`` on the tenant's key (its newest version's HMAC key)."""
        url = f"/v1/{self.config.mount}/hmac/{self._key(tenant_id)}/sha2-256"
        reply = self._call(lambda: self.client.adapter.post(url, json={"input": _b64(data)}))
        tag = str(reply["data"]["hmac"])
        if _VAULT_CT.match(tag) is None:
            raise KeyUnavailable("the KMS returned an HMAC of an unknown form")
        return self.name + tag[len("vault") :]

    def check_macs(self, tenant_id: str, items: Sequence[tuple[bytes, str]]) -> list[bool | None]:
        """Transit ``verify``, a batch per request; None for a MAC under a version the
        KMS no longer has (retired) or made by another provider."""
        out: list[bool | None] = [None] * len(items)
        ours = [
            (i, data, "vault" + mac[len(self.name) :])
            for i, (data, mac) in enumerate(items)
            if mac.startswith(self.name + ":v")
        ]
        url = f"/v1/{self.config.mount}/verify/{self._key(tenant_id)}/sha2-256"
        for at in range(0, len(ours), _BATCH):
            chunk = ours[at : at + _BATCH]
            batch = [{"input": _b64(data), "hmac": mac} for _, data, mac in chunk]
            reply: dict[str, Any] = self._call(
                functools.partial(self.client.adapter.post, url, json={"batch_input": batch})
            )
            for (i, _, _), result in zip(chunk, reply["data"]["batch_results"], strict=True):
                if result.get("error"):
                    text = str(result["error"]).lower()
                    out[i] = None if "version" in text else False
                else:
                    out[i] = bool(result.get("valid"))
        return out

    def status(self, tenant_id: str) -> KeyStatus:
        try:
            data = self._read(tenant_id)
        except KeyRevoked:
            return KeyStatus(
                tenant_id,
                self.name,
                0,
                0,
                (),
                True,
                {"key": self._key(tenant_id), "mount": self.config.mount},
            )
        latest = int(data["latest_version"])
        min_dec = int(data["min_decryption_version"])
        versions = tuple(sorted(int(v) for v in data["keys"] if int(v) >= min_dec))
        return KeyStatus(
            tenant_id,
            self.name,
            latest,
            min_dec,
            versions,
            False,
            {"key": self._key(tenant_id), "mount": self.config.mount},
        )
