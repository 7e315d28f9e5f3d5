"""The janus:// join URL: what parses, what is refused, and that refusals never leak secrets."""

from __future__ import annotations

import traceback

import pytest

from pipeline.bot.connectors import connector_for
from pipeline.bot.connectors.janus import (
    AudioBridgeConnector,
    JanusAddress,
    JanusConnector,
    parse_janus_url,
)
from pipeline.errors import InvalidInput

PIN = "s3cr3t-pin-9876"
SECRET = "api-secret-5432"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("janus://janus.example:8088/1234", JanusAddress("janus.example", 8088, 1234)),
        ("janus://10.0.0.5:7088/1", JanusAddress("10.0.0.5", 7088, 1)),
        ("janus://Janus.Example/42", JanusAddress("janus.example", 8088, 42)),
        ("janus://[::1]:8088/1234", JanusAddress("::1", 8088, 1234)),
        ("janus://[2001:DB8::1]/5", JanusAddress("2001:db8::1", 8088, 5)),
        (f"janus://h:1/5678?pin={PIN}", JanusAddress("h", 1, 5678, pin=PIN)),
        (
            f"janus://h:65535/5678?secret={SECRET}&pin={PIN}",
            JanusAddress("h", 65535, 5678, pin=PIN, secret=SECRET),
        ),
        ("janus://h:8088/7?pin=a%26b%3Dc%20d", JanusAddress("h", 8088, 7, pin="a&b=c d")),
        ("janus://h:8088/9223372036854775807", JanusAddress("h", 8088, 2**63 - 1)),
        (
            f"janus://h:8088/1234?textroom=99&pin={PIN}",
            JanusAddress("h", 8088, 1234, pin=PIN, textroom=99),
        ),
        (
            "janus-audiobridge://h:8088/2468",
            JanusAddress("h", 8088, 2468, scheme="janus-audiobridge"),
        ),
        (
            f"Janus-AudioBridge://h/2468?audio_active_packets=10&pin={PIN}&textroom=3",
            JanusAddress(
                "h", 8088, 2468, pin=PIN, textroom=3, scheme="janus-audiobridge", active_packets=10
            ),
        ),
    ],
)
def test_good_urls(url: str, expected: JanusAddress) -> None:
    assert parse_janus_url(url) == expected


def test_address_parts() -> None:
    address = parse_janus_url(f"janus://[::1]:8089/77?pin={PIN}&secret={SECRET}")
    assert address.api_url == "http://[::1]:8089/janus"
    assert address.describe() == "janus://[::1]:8089/77"
    assert PIN not in repr(address) and SECRET not in repr(address)


def test_connector_for_and_describe_drop_secrets() -> None:
    connector = connector_for(f"janus://10.1.2.3:8088/5678?pin={PIN}&secret={SECRET}")
    assert isinstance(connector, JanusConnector)
    assert connector.describe() == "janus://10.1.2.3:8088/5678"
    assert connector.display_name == "sealscribe"
    mixed = connector_for(f"janus-audiobridge://10.1.2.3/5678?pin={PIN}&audio_active_packets=25")
    assert isinstance(mixed, AudioBridgeConnector)
    assert mixed.describe() == "janus-audiobridge://10.1.2.3:8088/5678"
    assert mixed.window_ms == 500


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:8088/1234", "it must start with janus://"),
        ("janus:/h/1234", "it must start with janus://"),
        ("janus://:8088/1234", "the host is missing"),
        ("janus:///1234", "the host is missing"),
        ("janus://h:0/1234", "the port must be a number from 1 to 65535"),
        ("janus://h:65536/1234", "the port must be a number from 1 to 65535"),
        ("janus://h:88a/1234", "the port must be a number from 1 to 65535"),
        ("janus://h:/1234", "the port after ':' is empty"),
        ("janus://h_x:8088/1234", "the host is not a valid host name or IPv4 address"),
        ("janus://-h:8088/1234", "the host is not a valid host name or IPv4 address"),
        ("janus://[zz::1]:8088/1234", "the host in brackets is not an IPv6 address"),
        ("janus://[10.0.0.1]:8088/1234", "the host in brackets is not an IPv6 address"),
        ("janus://h:8088", "the room is missing"),
        ("janus://h:8088/", "the room is missing"),
        ("janus://h:8088/abc", "the room must be a positive integer"),
        ("janus://h:8088/0", "the room must be a positive integer"),
        ("janus://h:8088/-5", "the room must be a positive integer"),
        ("janus://h:8088/0123", "the room must be a positive integer"),
        ("janus://h:8088/9223372036854775808", "the room must be a positive integer"),
        ("janus://h:8088/12/34", "the path must be exactly one room number"),
        ("janus://h:8088/1234/", "the path must be exactly one room number"),
        ("janus://h:8088/1234?", "the query after '?' is empty"),
        (
            "janus://h:8088/1234?room=5",
            "unknown query parameter (the known ones are: pin, secret, textroom)",
        ),
        ("janus://h:8088/1234?textroom=0", "the textroom must be a positive integer"),
        ("janus://h:8088/1234?textroom=abc", "the textroom must be a positive integer"),
        ("janus://h:8088/1234?pin", "every query parameter must be name=value"),
        ("janus://h:8088/1234?pin=", "the query parameter 'pin' is empty"),
        ("janus://h:8088/1234?pin=1&pin=2", "the query parameter 'pin' is given twice"),
        ("janus://h:8088/1234?pin=1&", "every query parameter must be name=value"),
        ("janus://h:8088/1234?pin=1%ZZ", "a query parameter is not validly percent-encoded"),
        ("janus://h:8088/1234?pin=%ff", "a query parameter is not validly percent-encoded"),
        ("janus://h:8088/1234#x", "it must not contain a fragment"),
        ("janus://::1:8088/1234", "an IPv6 host must be written in brackets"),
        ("janus://h:8088/1234 ", "it contains whitespace or control characters"),
        ("janus://h:8088/12\n34", "it contains whitespace or control characters"),
        ("janus://user:pw@h:8088/1234", "it must not contain user information"),
        ("janus-videoroom://h:8088/1234", "it must start with janus:// or janus-audiobridge://"),
        (
            "janus://h:8088/1234?audio_active_packets=10",
            "unknown query parameter (the known ones are: pin, secret, textroom)",
        ),
        (
            "janus-audiobridge://h/1?audio_active_packets=0",
            "audio_active_packets must be a number from 1 to 1000",
        ),
        (
            "janus-audiobridge://h/1?audio_active_packets=1001",
            "audio_active_packets must be a number from 1 to 1000",
        ),
        (
            "janus-audiobridge://h/1?audio_active_packets=ten",
            "audio_active_packets must be a number from 1 to 1000",
        ),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_janus_url(url)
    assert str(info.value).startswith("invalid Janus URL: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"janus://h:8088/abc?pin={PIN}&secret={SECRET}",
        f"janus://h:99999/1?pin={PIN}&secret={SECRET}",
        f"janus://h:8088/1?pin={PIN}&secret={SECRET}&extra=1",
        f"janus://h:8088/1?pin={PIN}&pin={PIN}",
        f"janus://h:8088/1?secret={SECRET}&secret={SECRET}",
        f"janus://h:8088/1?pin={PIN}%ZZ&secret={SECRET}",
        f"janus://h:8088/1?pin={PIN}%ff&secret={SECRET}",
        f"janus://h:8088/1?pin={PIN}#{SECRET}",
        f"janus://{PIN}:{SECRET}@h:8088/1",
        f"janus://h:8088/{PIN}",
        f"janus://h:8088/1?{SECRET}",
        f"janus://h:8088/1?{SECRET}={PIN}",
        f"janus://[{SECRET}]:8088/1?pin={PIN}",
        f"janus://{SECRET}:8088/1?pin={PIN} ",
    ],
)
def test_errors_never_contain_the_pin_or_secret(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_janus_url(url)
    # The whole chain as a log would print it: no chained parser error may echo the URL.
    text = "".join(traceback.format_exception(info.value)) + repr(info.value)
    for secret in (PIN, SECRET, "s3cr3t", "5432", "9876"):
        assert secret not in text


def test_unsupported_scheme_through_connector_for() -> None:
    with pytest.raises(InvalidInput, match="must start with janus://"):
        connector_for(f"whep://h/1?pin={PIN}")
