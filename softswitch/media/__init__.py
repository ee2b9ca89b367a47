"""Media layer: RTP relay, SDP offer/answer, G.711, players, tones, mixer (see each module's docstring).

The names below are what the layers above (callflow.py, recording/) use; they are all sans-IO. The asyncio
edge lives in `softswitch.media.udp` (sockets, port allocation, `RelayRunner`) and
`softswitch.media.ticker` (the 20 ms media clock); only app.py should import those.
This package imports nothing from sip/, acd/ or store/.

A queued call, as callflow.py would drive it (`pa`/`pb` are ports app.py bound with `RelayRunner.bind`,
`public` is `server.public_address` or the listening address, `caller_ip`/`agent_ip` the SIP source IPs):

    call = RelaySession(a_port=pa, b_port=pb, rtp_timeout=30.0)
    to_caller = LocalOrigin(session_id=1, address=public)          # one per SDP dialog we take part in
    to_agent = LocalOrigin(session_id=2, address=public)

    # INVITE from the caller: answer it ourselves (488 on NegotiationError) and play music on hold
    agreed = negotiate(offer)
    answer = answer_for(offer, address=public, port=pa, origin=to_caller)
    call.update(Leg.A, RemoteMedia.from_negotiation(agreed, signalling_host=caller_ip), now=now)
    call.start(now=now)
    call.feed(Leg.A, LoopingPlayer(moh_sound))                      # and ticker.add(call) while call.ticking

    # offer the agent the codec the caller already has; payload-type numbers may differ (translated)
    offer_b = offer_for(address=public, port=pb, origin=to_agent, codecs=(agreed.codec.name,))
    # ... the agent's 200 OK carries answer_b:
    call.update(Leg.B, RemoteMedia.from_sdp(answer_b, signalling_host=agent_ip), now=now)
    call.feed(Leg.A, None)                                          # music stops; the agent is heard

    # a re-INVITE from either side: anchor() its SDP for the other side, update() the leg that sent it
    # events: DtmfEvent -> ACD / feature codes, MediaTimeout -> hang up with its .reason, RtcpBye, Latched
    # recording: tap_a, tap_b = call.tap(Leg.A), call.tap(Leg.B); drain() both every tick or so
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
