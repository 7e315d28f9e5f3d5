"""Webhook signing, backoff and URL checks, without Redis or a network: signatures are
verified with the ``standardwebhooks`` package as a receiver would; URLs are IP literals,
so checking them resolves nothing."""

from __future__ import annotations

import base64
import json
import time

import pytest
from prometheus_client import CollectorRegistry
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from pipeline.egress import EgressPolicy
from pipeline.errors import InvalidInput
from pipeline.metrics import WebhookQueueCollector
from pipeline.services.webhook_delivery import backoff, sign
from pipeline.services.webhooks import REFUSED, check_url

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
BODY = json.dumps({"type": "key.rotated", "data": {"tenant_id": "t_0123456789abcdef"}})


def _headers(signature: str, at: int, msg_id: str = "msg_1") -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def test_signature_verifies_with_standardwebhooks() -> None:
    now = int(time.time())
    signature = sign([SECRET], "msg_1", now, BODY)
    assert signature.startswith("v1,")
    assert Webhook(SECRET).verify(BODY, _headers(signature, now)) == json.loads(BODY)


def test_a_signature_fails_for_another_body_id_time_or_secret() -> None:
    now = int(time.time())
    signature = sign([SECRET], "msg_1", now, BODY)
    for body, headers, secret in (
        (BODY.replace("rotated", "revoked"), _headers(signature, now), SECRET),
        (BODY, _headers(signature, now, "msg_2"), SECRET),
        (BODY, _headers(signature, now - 1), SECRET),
        (BODY, _headers(signature, now), OTHER),
    ):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body, headers)


def test_during_a_rotation_either_secret_verifies() -> None:
    now = int(time.time())
    signature = sign([OTHER, SECRET], "msg_1", now, BODY)
    assert len(signature.split(" ")) == 2
    for secret in (SECRET, OTHER):
        Webhook(secret).verify(BODY, _headers(signature, now))


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, 10, 3600) for n in range(1, 12)] == [
        10,
        20,
        40,
        80,
        160,
        320,
        640,
        1280,
        2560,
        3600,
        3600,
    ]
    assert backoff(10**6, 10, 3600) == 3600


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:192.168.0.1]/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
    ],
)
def test_forbidden_addresses_are_refused_with_one_reason(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_url(url, EgressPolicy.parse("public"))
    assert str(info.value) == REFUSED


def test_the_operator_can_allow_an_address() -> None:
    url = "http://127.0.0.1:8080/hook"
    assert check_url(url, EgressPolicy.parse("public,127.0.0.1")) == url
    assert check_url("https://8.8.8.8/hook", EgressPolicy.parse("public"))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://8.8.8.8/", "https://"),
        ("8.8.8.8/hook", "https://"),
        ("http:///hook", "no host"),
        ("http://user:pw@8.8.8.8/", "user name or password"),
        ("http://8.8.8.8/#x", "fragment"),
        ("http://8.8.8.8:99999/", "malformed"),
        ("http://8.8.8.8/" + "a" * 2000, "2000 characters"),
        ("", "2000 characters"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, why: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_url(url, EgressPolicy.parse("public"))
    assert why in str(info.value)


def test_queue_age_is_a_gauge() -> None:
    registry = CollectorRegistry()
    registry.register(WebhookQueueCollector(lambda: 12.5))
    assert registry.get_sample_value("sealscribe_webhook_queue_age_seconds") == 12.5


def test_delivery_metrics_carry_fixed_labels_only() -> None:
    from prometheus_client import REGISTRY

    from workers.metrics import count_webhook

    def value(event: str, outcome: str) -> float:
        got = REGISTRY.get_sample_value(
            "sealscribe_webhook_deliveries_total", {"event": event, "outcome": outcome}
        )
        return got or 0.0

    before = value("other", "other"), value("key.rotated", "delivered")
    count_webhook("m_0123456789abcdef", frozenset({"key.rotated"}), "teapot", 3.0)
    count_webhook("key.rotated", frozenset({"key.rotated"}), "delivered", 0.5)
    assert value("other", "other") == before[0] + 1
    assert value("key.rotated", "delivered") == before[1] + 1
