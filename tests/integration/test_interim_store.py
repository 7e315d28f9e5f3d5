"""The interim store on a real Redis: one slot per participant that takes only what is newer,
counts what it overwrites, gives way to the final, lets a batch take other waiting slots, and
shows an utterance's caption until its final lands."""

from __future__ import annotations

from typing import Any

from pipeline.models import SealedSegment
from pipeline.runtime import Runtime
from pipeline.store import schema


def interim(meeting: str, participant: str, seq: int, blob: bytes = b"sealed") -> SealedSegment:
    return SealedSegment(meeting, participant, seq, blob)


def test_a_slot_holds_the_newest_interim_and_counts_what_it_overwrites(rt: Runtime) -> None:
    store = rt.store.interims
    assert store.put_audio(interim("m_1", "ana", 100, b"one"), 1)
    assert store.put_audio(interim("m_1", "ana", 100, b"two"), 2)  # overwrites part 1
    assert not store.put_audio(interim("m_1", "ana", 100, b"old"), 1)  # older: refused
    assert not store.put_audio(interim("m_1", "ana", 50, b"older"), 5)  # older utterance
    assert store.put_audio(interim("m_1", "ana", 200, b"next"), 1)  # a newer utterance
    assert store.counts("m_1") == {"superseded": 2}
    taken = store.take_audio("m_1", "ana")
    assert taken is not None
    part, sealed = taken
    assert (part, sealed.seq, sealed.sealed) == (1, 200, b"next")
    assert store.take_audio("m_1", "ana") is None  # taken once only


def test_the_final_makes_a_waiting_interim_moot(rt: Runtime) -> None:
    store = rt.store.interims
    store.put_audio(interim("m_1", "ana", 100), 3)
    rt.store.segments.put_audio(SealedSegment("m_1", "ana", 100, b"final"))
    assert store.take_audio("m_1", "ana") is None
    assert store.counts("m_1") == {"superseded": 1}
    # an interim of a later utterance survives an earlier final
    store.put_audio(interim("m_1", "ana", 300), 1)
    rt.store.segments.put_audio(SealedSegment("m_1", "ana", 200, b"final"))
    assert store.take_audio("m_1", "ana") is not None


def test_a_batch_takes_other_waiting_slots_oldest_first(rt: Runtime) -> None:
    store = rt.store.interims
    store.put_audio(interim("m_1", "ana", 1), 1)
    store.put_audio(interim("m_2", "ben", 1), 1)
    store.put_audio(interim("m_1", "cy", 1), 1)
    assert store.take_audio("m_1", "ana") is not None  # its own task
    taken = store.take_waiting(5)
    assert [(m, s.participant_id) for m, _, s in taken] == [("m_2", "ben"), ("m_1", "cy")]
    assert store.take_audio("m_2", "ben") is None  # its own task finds nothing
    assert rt.store.redis.zcard(schema.INTERIMS_WAITING) == 0


def test_an_utterances_caption_is_shown_until_its_final_lands(rt: Runtime) -> None:
    store, r = rt.store.interims, rt.store.redis
    assert store.put_text(interim("m_1", "ana", 100, b"t1"), 1, 1000)
    assert store.put_text(interim("m_1", "ana", 100, b"t2"), 2, 1000)
    assert not store.put_text(interim("m_1", "ana", 100, b"t0"), 1, 1000)  # older
    shown = store.get_text("m_1", "ana")
    assert shown is not None and shown[0] == 2 and shown[1].sealed == b"t2"
    entries: Any = r.xrange(schema.meeting_captions("m_1"))
    assert [e[1][b"part"] for e in entries] == [b"1", b"2"]
    rt.store.segments.complete(SealedSegment("m_1", "ana", 100, b"final"), 0)
    assert store.get_text("m_1", "ana") is None
    entries = r.xrange(schema.meeting_captions("m_1"))
    assert [e[1] for e in entries] == [{b"sid": b"ana.100"}]  # the final's entry only
    # once the final is stored, an interim of it that finishes late is not shown
    assert not store.put_text(interim("m_1", "ana", 100, b"late"), 3, 1000)
