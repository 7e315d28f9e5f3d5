"""Property-based fuzzing (hypothesis) of the parsers that take untrusted input.

* the sealed-segment parser (``keys.segment.open``): anything but the untouched blob under
  its own key and context raises :class:`InvalidSeal`, and nothing else;
* the Janus join-URL parser: a connector whose ``describe()`` hides pin and secret, or an
  :class:`InvalidInput` whose message contains neither;
* WHIP SDP handling (``check_offer`` and the full ``WhipIngest.offer`` with a fake room, no
  Redis): success or :class:`InvalidInput`, whose message never repeats the offer;
* the small payload and id parsers in ``pipeline.models`` and ``parse_cursor``.

Every test is derandomized and bounded by ``max_examples`` (the whole file runs in well under
30 s on 2 cores). The bugs the fuzzing found are fixed; their reproducers stay at the end as
regression tests.

The atheris harness for the segment parser is ``bench/fuzz_segment.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, cast

import pytest
from aiortc import RTCPeerConnection
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keys import segment
from keys.errors import InvalidSeal
from keys.segment import HEADER_SIZE, SegmentContext, SegmentKind
from keys.types import DataKey
from pipeline import egress
from pipeline.bot.connectors.janus import JanusConnector
from pipeline.capture.ice import configure_ice, ice_hosts
from pipeline.capture.room import MeetingRoom
from pipeline.capture.whip import MAX_OFFER_BYTES, WhipIngest, WhipSession, check_offer
from pipeline.egress import EgressPolicy
from pipeline.errors import InvalidInput, SealscribeError
from pipeline.models import AudioSegment, Meeting, TranscriptSegment, parse_segment_id
from pipeline.runtime import Runtime
from pipeline.services.captions import parse_cursor


def fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=n,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- (a) the sealed-segment parser ---------------------------------------------------------

KEY = DataKey(bytes(range(32)))
OTHER_KEY = DataKey(bytes(range(1, 33)))
CTX = SegmentContext("t_fuzz", "m_fuzz", "alice", 7, SegmentKind.AUDIO)
CHUNK = 16 * 1024

# Ids are str from our own stores; lone surrogates cannot be encoded (see the report on
# SegmentContext), so they are left out here.
ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
contexts = st.builds(
    SegmentContext, ids, ids, ids, st.integers(0, 2**64 - 1), st.sampled_from(SegmentKind)
)
payloads = st.binary(max_size=2048)


def opens_or_invalid_seal(key: DataKey, ctx: SegmentContext, blob: bytes) -> bytes | None:
    """``open``'s result, None for InvalidSeal; any other exception fails the test."""
    try:
        return segment.open(key, ctx, blob)
    except InvalidSeal as exc:
        assert str(exc) == ""  # message-less, on purpose
        return None


@fuzz_settings(300)
@given(blob=st.binary(max_size=512), ctx=contexts)
def test_random_bytes_never_open(blob: bytes, ctx: SegmentContext) -> None:
    assert opens_or_invalid_seal(KEY, ctx, blob) is None
    # past the header check, into the Cobblestone parser
    assert opens_or_invalid_seal(KEY, ctx, ctx.header() + blob) is None


@fuzz_settings(100)
@given(payload=payloads, ctx=contexts)
@example(payload=b"", ctx=CTX)
@example(payload=bytes(CHUNK), ctx=CTX)
@example(payload=bytes(CHUNK + 1), ctx=CTX)
def test_round_trip(payload: bytes, ctx: SegmentContext) -> None:
    blob = segment.seal(KEY, ctx, payload)
    assert blob[:HEADER_SIZE] == ctx.header()
    assert segment.open(KEY, ctx, blob) == payload
    assert opens_or_invalid_seal(OTHER_KEY, ctx, blob) is None


def _mutate(data: st.DataObject, blob: bytes) -> bytes:
    """One or more truncations, bit flips, extensions, byte rewrites or splices of ``blob``;
    never returns ``blob`` itself."""
    out = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        how = data.draw(st.sampled_from(["truncate", "flip", "extend", "set", "cut"]), label="how")
        if how == "truncate" and out:
            del out[data.draw(st.integers(0, len(out) - 1), label="keep") :]
        elif how == "flip" and out:
            i = data.draw(st.integers(0, len(out) - 1), label="at")
            out[i] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        elif how == "set" and out:
            i = data.draw(st.integers(0, len(out) - 1), label="at")
            out[i] = data.draw(st.integers(0, 255), label="byte")
        elif how == "cut" and len(out) > 1:
            i = data.draw(st.integers(0, len(out) - 1), label="from")
            j = data.draw(st.integers(i + 1, len(out)), label="to")
            del out[i:j]
        else:
            out += data.draw(st.binary(min_size=1, max_size=64), label="tail")
    if bytes(out) == blob:  # a set or several flips can undo each other
        out.append(0)
    return bytes(out)


@fuzz_settings(200)
@given(
    payload=st.one_of(payloads, st.sampled_from([bytes(CHUNK), bytes(CHUNK + 100)])), data=st.data()
)
def test_tampered_blob_never_opens(payload: bytes, data: st.DataObject) -> None:
    blob = segment.seal(KEY, CTX, payload)
    assert segment.open(KEY, CTX, blob) == payload
    tampered = _mutate(data, blob)
    assert opens_or_invalid_seal(KEY, CTX, tampered) is None


@fuzz_settings(150)
@given(payload=st.binary(max_size=256), ctx=contexts)
def test_wrong_context_never_opens(payload: bytes, ctx: SegmentContext) -> None:
    blob = segment.seal(KEY, CTX, payload)
    got = opens_or_invalid_seal(KEY, ctx, blob)
    if ctx == CTX:
        assert got == payload
    else:
        assert got is None


# -- (b) the Janus join-URL parser ---------------------------------------------------------

#: pins and secrets are drawn from letters that no host (lower-cased), port, room or message
#: of the parser contains, so finding one in an output is a leak
CANARY_ALPHABET = "QXZJKVWY"
canaries = st.text(CANARY_ALPHABET, min_size=8, max_size=16)


def check_join_url(url: str, secrets: list[str]) -> JanusConnector | None:
    try:
        connector = JanusConnector.from_url(url)
    except InvalidInput as exc:
        message = str(exc)
        assert message.startswith("invalid Janus URL: ")
        for secret in secrets:
            assert secret not in message
        return None
    shown = [
        connector.describe(),
        repr(connector.address),
        connector.address.api_url,
        connector.address.netloc,
    ]
    for secret in secrets:
        for text in shown:
            assert secret not in text
    return connector


hostnames = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,8}){0,3}\Z")
hosts = st.one_of(
    hostnames,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.ip_addresses(v=6).map(str),  # unbracketed: refused
    st.sampled_from(
        [
            "",
            "[",
            "[::1",
            "::1]",
            "[zz::1]",
            "[::1]x",
            "[v1.fe]",
            "-a",
            "a..b",
            "a_b",
            "A.EXAMPLE",
            "localhost.",
            "x" * 70,
            "127.0.0.1",
            "[::1]",
            "@",
            "user@h",
            "[fe80::1%25eth0]",
            "ÿ.example",
            "%41",
        ]
    ),
)
ports = st.one_of(
    st.just(""),
    st.integers(-5, 70000).map(lambda p: f":{p}"),
    st.sampled_from(
        [":", ":0", ":65535", ":65536", ":abc", ":\uff18\uff10", ":1:2", ":+80", ": 80"]
    ),
)
rooms = st.one_of(
    st.integers(-2, 2**64).map(lambda r: f"/{r}"),
    st.sampled_from(
        ["", "/", "/0", "/01", "/1/2", "/abc", "//1", "/1.5", "/\u0661\u0662", "/1%32"]
    ),
)
suffixes = st.sampled_from(
    ["", "", "", "%21", "+1", "%zz", "%", "%C3%A9", "%FF", "&", "=", "#", ";", "%00"]
)


@st.composite
def join_urls(draw: st.DrawFn) -> tuple[str, list[str]]:
    pin, secret = draw(canaries), draw(canaries)
    params = []
    if draw(st.booleans()):
        params.append(f"pin={pin}{draw(suffixes)}")
    if draw(st.booleans()):
        params.append(f"secret={secret}{draw(suffixes)}")
    params += draw(
        st.lists(
            st.sampled_from(
                [
                    f"pin={pin}",
                    f"secret={secret}",
                    "pin=",
                    f"secret{secret}",
                    f"other={pin}",
                    "&",
                    f"{pin}",
                    f"pin={secret}%2",
                    f"Pin={pin}",
                ]
            ),
            max_size=2,
        )
    )
    params = draw(st.permutations(params)) if params else params
    scheme = draw(
        st.sampled_from(
            ["janus://"] * 6 + ["JANUS://", "janus:/", "http://", f"janus://{pin}@", ""]
        )
    )
    bare_question_mark: bool = draw(st.booleans())
    query = ("?" + "&".join(params)) if params or bare_question_mark else ""
    tail = draw(st.sampled_from(["", "", "", f"#{secret}", f" {pin}", f"\n{secret}"]))
    url = f"{scheme}{draw(hosts)}{draw(ports)}{draw(rooms)}{query}{tail}"
    return url, [pin, secret]


@fuzz_settings(600)
@given(case=join_urls())
@example(case=("janus://[::1]:8088/1234?pin=QXZJKVWY&secret=YWVKJZXQ", ["QXZJKVWY", "YWVKJZXQ"]))
def test_join_url_never_leaks(case: tuple[str, list[str]]) -> None:
    url, secrets = case
    check_join_url(url, secrets)


@fuzz_settings(300)
@given(text=st.text(max_size=80), pin=canaries, secret=canaries)
def test_join_url_random_text(text: str, pin: str, secret: str) -> None:
    check_join_url(text, [pin, secret])
    check_join_url(f"janus://{text}?pin={pin}&secret={secret}", [pin, secret])
    check_join_url(f"janus://h/1?pin={pin}&{text}&secret={secret}", [pin, secret])


@fuzz_settings(150)
@given(
    host=st.one_of(hostnames, st.ip_addresses().map(str)),
    port=st.integers(1, 65535),
    room=st.integers(1, 2**63 - 1),
    pin=canaries,
    secret=canaries,
)
def test_valid_join_url_parses(host: str, port: int, room: int, pin: str, secret: str) -> None:
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    connector = check_join_url(f"janus://{netloc}/{room}?pin={pin}&secret={secret}", [pin, secret])
    assert connector is not None
    assert connector.address.pin == pin and connector.address.secret == secret
    assert connector.address.port == port and connector.address.room == room


# -- (c) WHIP SDP handling -----------------------------------------------------------------

SDP_CANARY = "QXZJKVWYcanary"


async def _make_offer() -> str:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        return sdp
    finally:
        await pc.close()


@pytest.fixture(scope="module")
def loopback_ice() -> Any:
    """Offers with loopback candidates, which the egress policy lets through (so that
    aiortc parses them) as the tests' SEALSCRIBE_BOT_ALLOW=127.0.0.1 would."""
    before = ",".join(ice_hosts())
    configure_ice("127.0.0.1")
    egress.configure(EgressPolicy.parse("127.0.0.1"))
    yield
    egress.configure(None)
    configure_ice(before)


@pytest.fixture(scope="module")
def real_offer(loopback_ice: None) -> str:
    sdp = asyncio.run(_make_offer())
    assert "m=audio" in sdp and "127.0.0.1" in sdp
    return sdp


def sdp_messages(data: st.DataObject, offer: str) -> str:
    """A mutated offer that carries the canary somewhere."""
    lines = offer.split("\r\n")
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        i = data.draw(st.integers(0, max(len(lines) - 1, 0)), label="line")
        how = data.draw(
            st.sampled_from(
                ["drop", "dup", "swap", "value", "insert", "field", "truncate", "garbage"]
            ),
            label="how",
        )
        if not lines:
            lines.append(SDP_CANARY)
        elif how == "drop":
            del lines[i]
        elif how == "dup":
            lines.insert(i, lines[i])
        elif how == "swap":
            j = data.draw(st.integers(0, len(lines) - 1), label="other")
            lines[i], lines[j] = lines[j], lines[i]
        elif how == "value":  # keep the type, replace everything after '='
            lines[i] = lines[i][:2] + SDP_CANARY
        elif how == "insert":
            kind = data.draw(st.sampled_from("amcbtsvoik"), label="type")
            lines.insert(i, f"{kind}={SDP_CANARY}")
        elif how == "field":  # one space-separated field of the line becomes the canary
            fields = lines[i].split(" ")
            k = data.draw(st.integers(0, len(fields) - 1), label="field")
            fields[k] = (fields[k][:2] + SDP_CANARY) if k == 0 else SDP_CANARY
            lines[i] = " ".join(fields)
        elif how == "truncate":
            cut = data.draw(st.integers(0, len(lines[i])), label="cut")
            lines[i] = lines[i][:cut] + SDP_CANARY
        else:
            lines[i] += data.draw(st.text(max_size=20), label="garbage") + SDP_CANARY
    text = "\r\n".join(lines)
    if SDP_CANARY not in text:
        text += f"a={SDP_CANARY}\r\n"
    return text


def check_offer_only_invalid_input(sdp: str, canary: str | None) -> bool:
    try:
        check_offer(sdp)
    except InvalidInput as exc:
        assert canary is None or canary not in str(exc)
        return False
    return True


@fuzz_settings(300)
@given(text=st.text(max_size=300))
@example(text="v=0")
@example(text="v=0\nm=")
@example(text="v=0\nm=audio")
@example(text="\n\n v=0 \n m=audio 9 x")
@example(text="é" * (MAX_OFFER_BYTES // 2 + 1))
def test_check_offer_random_text(text: str) -> None:
    check_offer_only_invalid_input(text, None)


@fuzz_settings(300)
@given(data=st.data())
def test_check_offer_mutated(real_offer: str, data: st.DataObject) -> None:
    check_offer_only_invalid_input(sdp_messages(data, real_offer), SDP_CANARY)


class _FakeRoom:
    """What WhipIngest needs of a MeetingRoom, with no Redis behind it."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    def track_added(self, participant: str, track: object) -> str:
        self.labels.append(participant)
        return participant

    def track_removed(self, participant: str) -> None:
        pass

    async def close(self) -> None:
        pass


class _FakeRoomIngest(WhipIngest):
    async def _claim(self, session: WhipSession) -> None:
        pass  # no Redis: nothing counts the sessions

    async def _route(self, meeting_id: str, tenant_id: str) -> None:
        pass  # no Redis: this is the only process

    async def _disown(self, meeting_id: str) -> None:
        pass

    async def _room(self, meeting: Meeting) -> MeetingRoom:
        async with self._lock:
            room = self._rooms.get(meeting.id)
            if room is None:
                room = cast(MeetingRoom, _FakeRoom())
                self._rooms[meeting.id] = room
            return room


MEETING = Meeting(id="m_fuzz", tenant_id="t_fuzz", created=0.0, transcription=True)


async def _offer_once(sdp: str) -> tuple[bool, str]:
    """(answered, error message); the session is always closed again."""
    ingest = _FakeRoomIngest(cast(Runtime, object()))
    try:
        session_id, answer = await ingest.offer(MEETING, sdp, "fuzzer")
    except InvalidInput as exc:
        assert not ingest._sessions and not ingest._rooms
        return False, str(exc)
    finally:
        await ingest.close()
    assert session_id.startswith("w_") and answer.startswith("v=0")
    return True, ""


def test_whip_offer_real_offer_answers(real_offer: str) -> None:
    answered, _ = asyncio.run(_offer_once(real_offer))
    assert answered


@fuzz_settings(120)
@given(data=st.data())
def test_whip_offer_mutated(real_offer: str, data: st.DataObject) -> None:
    sdp = sdp_messages(data, real_offer)
    try:
        _, message = asyncio.run(_offer_once(sdp))
    except SealscribeError:
        raise
    except Exception as exc:  # the property: nothing but InvalidInput escapes
        pytest.fail(f"WhipIngest.offer raised {type(exc).__name__}: {exc!r}")
    assert SDP_CANARY not in message


@fuzz_settings(80)
@given(text=st.text(max_size=200))
def test_whip_offer_random_text(loopback_ice: None, text: str) -> None:
    offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n" + SDP_CANARY + text
    _, message = asyncio.run(_offer_once(offer))
    # Neither the canary nor a run of the text long enough not to be our own wording by
    # chance (a generated "word" is in "password is missing") comes back.
    assert SDP_CANARY not in message
    assert len(text) < 16 or text not in message


# -- (d) payload, id and cursor parsers ----------------------------------------------------


@fuzz_settings(300)
@given(participant=ids, seq=st.integers(0, 2**64 - 1), payload=st.binary(max_size=64))
def test_audio_from_payload(participant: str, seq: int, payload: bytes) -> None:
    try:
        audio = AudioSegment.from_payload(participant, seq, payload)
    except InvalidInput:
        assert len(payload) < 12
        return
    assert audio.payload() == payload


@fuzz_settings(200)
@given(
    participant=ids,
    seq=st.integers(0, 2**64 - 1),
    start=st.integers(0, 2**64 - 1),
    rate=st.integers(1, 2**32 - 1),
    pcm=st.binary(max_size=64),
)
def test_audio_round_trip(participant: str, seq: int, start: int, rate: int, pcm: bytes) -> None:
    audio = AudioSegment(participant, seq, start, rate, pcm)
    assert AudioSegment.from_payload(participant, seq, audio.payload()) == audio


ascii_segment_ids = st.from_regex(r"\A[ -~]{0,20}\Z")


@fuzz_settings(300)
@given(sid=ascii_segment_ids)
@example(sid="a.")
@example(sid=".1")
@example(sid="a.b.3")
def test_parse_segment_id_ascii(sid: str) -> None:
    try:
        participant, seq = parse_segment_id(sid)
    except InvalidInput:
        return
    assert f"{participant}.{seq}" == sid or sid.rpartition(".")[2].lstrip("0") == ""


@fuzz_settings(300)
@given(cursor=st.one_of(st.none(), st.from_regex(r"\A[ -~]{0,45}\Z")))
@example(cursor="")
@example(cursor="$")
@example(cursor="1700000000000-0")
@example(cursor="1" * 21 + "-0")
def test_parse_cursor_ascii(cursor: str | None) -> None:
    try:
        got = parse_cursor(cursor)
    except InvalidInput:
        return
    assert got == (cursor or "0")


words = st.fixed_dictionaries(
    {
        "start_ms": st.integers(0, 10**9),
        "end_ms": st.integers(0, 10**9),
        "word": st.text(max_size=10),
        "probability": st.floats(0, 1),
    }
)
transcripts = st.builds(
    TranscriptSegment,
    participant_id=ids,
    seq=st.integers(0, 2**64 - 1),
    start_ms=st.integers(0, 10**9),
    end_ms=st.integers(0, 10**9),
    text=st.text(max_size=40),
    words=st.lists(words, max_size=3).map(lambda ws: tuple(_word(w) for w in ws)),
    language=st.one_of(st.none(), st.sampled_from(["en", "de"])),
    translated=st.booleans(),
)


def _word(doc: dict[str, Any]) -> Any:
    from pipeline.models import Word

    return Word(**doc)


@fuzz_settings(150)
@given(segment_=transcripts)
def test_transcript_round_trip(segment_: TranscriptSegment) -> None:
    assert TranscriptSegment.from_payload(segment_.payload()) == segment_


@fuzz_settings(200)
@given(payload=st.binary(max_size=64))
def test_transcript_from_random_bytes(payload: bytes) -> None:
    """Bytes that are not JSON raise JSON's own errors (documented; ValueError subclasses)."""
    try:
        json.loads(payload)
    except ValueError:
        with pytest.raises(ValueError):
            TranscriptSegment.from_payload(payload)


# -- bugs the fuzzing found, fixed: each stays as a regression test --------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=8,
)


@fuzz_settings(100)
@given(doc=json_values)
@example(doc={})
def test_transcript_wrong_shape_json(doc: Any) -> None:
    with contextlib.suppress(InvalidInput, ValueError):
        TranscriptSegment.from_payload(json.dumps(doc).encode())


@pytest.mark.parametrize("sid", ["a.²", "a.\u0661"])
def test_parse_segment_id_non_ascii_digits(sid: str) -> None:
    with pytest.raises(InvalidInput):
        parse_segment_id(sid)


@pytest.mark.parametrize("cursor", ["0\n", "\u0661-0"])
def test_parse_cursor_rejects_newline_and_non_ascii(cursor: str) -> None:
    with pytest.raises(InvalidInput):
        parse_cursor(cursor)


@pytest.mark.parametrize("where", ["check_offer", "open"])
def test_lone_surrogate(where: str) -> None:
    if where == "check_offer":
        with pytest.raises(InvalidInput):
            check_offer("v=0\r\nm=audio \ud800")
    else:  # such a context cannot even be built, so nothing is sealed or opened under it
        with pytest.raises(ValueError, match="surrogate"):
            SegmentContext("t", "m", "\ud800", 0, SegmentKind.AUDIO)


def test_whip_offer_without_setup(real_offer: str) -> None:
    sdp = "".join(
        line for line in real_offer.splitlines(keepends=True) if not line.startswith("a=setup:")
    )
    answered, message = asyncio.run(_offer_once(sdp))
    assert not answered and message
