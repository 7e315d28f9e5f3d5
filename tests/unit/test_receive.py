"""Capture's receive path: aiortc's receivers decode in the event loop, as mono."""

from __future__ import annotations

import asyncio

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from pipeline.capture.ice import configure_ice
from pipeline.capture.receive import LoopDecoder, decode_in_loop

_QUEUE = "_RTCRtpReceiver__decoder_queue"  # aiortc's private name the swap replaces

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


def opus_frames(seconds: float) -> list[bytes]:
    """A 440 Hz tone in the left channel only, as 20 ms stereo Opus packets."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "stereo", "s16"
    t = np.arange(int(48000 * seconds)) / 48000
    left = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    both = np.stack([left, np.zeros_like(left)], axis=1).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(both, format="s16", layout="stereo")
    frame.sample_rate = 48000
    packets = []
    for chunk in av.AudioResampler("s16", "stereo", 48000, frame_size=960).resample(frame):
        packets += [bytes(p) for p in enc.encode(chunk)]
    return packets


def _offered_receiver(track: MediaStreamTrack) -> RTCRtpReceiver:
    """The receiver of a peer connection that has taken an offer of ``track`` (not
    connected), swapped by :func:`decode_in_loop` if it would be."""

    async def offer() -> RTCRtpReceiver:
        configure_ice("127.0.0.1")
        sender, receiving = RTCPeerConnection(), RTCPeerConnection()
        try:
            sender.addTrack(track)
            await sender.setLocalDescription(await sender.createOffer())
            await receiving.setRemoteDescription(sender.localDescription)
            (transceiver,) = receiving.getTransceivers()
            assert transceiver.kind == track.kind
            receiver = transceiver.receiver
            swapped = decode_in_loop(receiver)
            assert not decode_in_loop(receiver)  # once only
            assert swapped == isinstance(getattr(receiver, _QUEUE), LoopDecoder)
            return receiver
        finally:
            await sender.close()
            await receiving.close()

    return asyncio.run(offer())


def test_an_audio_receiver_decodes_in_the_loop() -> None:
    receiver = _offered_receiver(AudioStreamTrack())
    # this aiortc is laid out as expected: the swap applied
    assert isinstance(getattr(receiver, _QUEUE), LoopDecoder)


def test_a_video_receiver_is_left_to_aiortc() -> None:
    receiver = _offered_receiver(VideoStreamTrack())
    assert not isinstance(getattr(receiver, _QUEUE), LoopDecoder)


def test_loop_decoder_gives_mono_48k_frames_and_ends_the_track() -> None:
    frames: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue()
    decoder = LoopDecoder(frames)
    for i, data in enumerate(opus_frames(0.5)):
        decoder.put((OPUS, JitterFrame(data=data, timestamp=i * 960)))
    decoder.put(None)
    decoded = []
    while (frame := frames.get_nowait()) is not None:
        decoded.append(frame)
    assert len(decoded) >= 20
    assert {(f.layout.name, f.sample_rate, f.format.name) for f in decoded} == {
        ("mono", 48000, "s16")
    }
    pcm = np.concatenate([f.to_ndarray()[0] for f in decoded]).astype(np.float64)
    # the left channel's tone, mixed down at about half its level
    assert 2000 < np.sqrt(np.mean(pcm[9600:] ** 2)) < 5000
    decoder.get()  # aiortc's idle thread is released once the track ended


def test_a_frame_libav_cannot_decode_is_skipped() -> None:
    frames: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue()
    decoder = LoopDecoder(frames)
    good = opus_frames(0.1)
    decoder.put((OPUS, JitterFrame(data=b"\xff" * 3, timestamp=0)))  # a malformed packet
    assert (decoder.errors, frames.qsize()) == (1, 0)
    decoder.put((OPUS, JitterFrame(data=good[0], timestamp=960)))  # and the track goes on
    assert (decoder.errors, frames.qsize()) == (1, 1)
