"""Media layer: RTP relay, SDP offer/answer, G.711, players, tones, mixer (see each module's docstring).

The names below are what the layers above (callflow.py, recording/) use; they are all sans-IO. The asyncio
edge lives in `softswitch.media.udp` (sockets, port allocation, `RelayRunner`) and
`softswitch.media.ticker` (the 20 ms media clock); only app.py should import those.
This package imports nothing from sip/, acd/ or store/.
"""

from __future__ import annotations

from softswitch.media.dtmf import DtmfDetector, TelephoneEvent
from softswitch.media.g711 import PCMA, PCMU, SAMPLE_RATE, SAMPLES_PER_FRAME, Codec, codec_by_name
from softswitch.media.mixer import Mixer, Supervision, SupervisionMode
from softswitch.media.player import LoopingPlayer, PromptPlayer, Sound, SoundFileError, load_sound
from softswitch.media.port import BufferPort, MediaPort, NullPort
from softswitch.media.relay import (
    DtmfEvent,
    Latched,
    Leg,
    LegStats,
    MediaTimeout,
    RelayEvent,
    RelaySession,
    RemoteMedia,
    RtcpBye,
    Tap,
    TapFrame,
)
from softswitch.media.sdp import (
    Direction,
    LocalOrigin,
    Negotiation,
    NegotiationError,
    SdpParseError,
    SessionDescription,
    anchor,
    answer_for,
    direction,
    negotiate,
    offer_for,
)
from softswitch.media.stream import Address, OutboundStream, Send, StreamSender
from softswitch.media.tones import beep, busy, confirmation_tone, dtmf_tone, ringback

__all__ = [
    "PCMA",
    "PCMU",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "Address",
    "BufferPort",
    "Codec",
    "Direction",
    "DtmfDetector",
    "DtmfEvent",
    "Latched",
    "Leg",
    "LegStats",
    "LocalOrigin",
    "LoopingPlayer",
    "MediaPort",
    "MediaTimeout",
    "Mixer",
    "Negotiation",
    "NegotiationError",
    "NullPort",
    "OutboundStream",
    "PromptPlayer",
    "RelayEvent",
    "RelaySession",
    "RemoteMedia",
    "RtcpBye",
    "SdpParseError",
    "Send",
    "SessionDescription",
    "Sound",
    "SoundFileError",
    "StreamSender",
    "Supervision",
    "SupervisionMode",
    "Tap",
    "TapFrame",
    "TelephoneEvent",
    "anchor",
    "answer_for",
    "beep",
    "busy",
    "codec_by_name",
    "confirmation_tone",
    "direction",
    "dtmf_tone",
    "load_sound",
    "negotiate",
    "offer_for",
    "ringback",
]
