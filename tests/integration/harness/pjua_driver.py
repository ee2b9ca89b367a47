"""One pjsua2 user agent per process, driven by JSON lines (a test-harness tool, not part of the switch).

Run as ``python -m tests.integration.harness.pjua_driver --id-uri sip:alice@127.0.0.1 ...`` or by path.
It imports nothing but pjsua2 and the standard library.

Model (see /work/shared/harness.md §3 for the pitfalls this follows):
* One `pj.Endpoint` in main-thread mode (``threadCnt=0``, ``mainThreadOnly=True``), pumped by
  ``libHandleEvents(10)``; every callback runs on the main thread; there is no ``time.sleep`` anywhere
  (timed actions such as a delayed answer are deadlines checked by the pump).
* Null audio device, conference clock 8000 Hz, PCMU then PCMA preferred, every other codec priority 0,
  SIP and RTP bound to 127.0.0.1 (or --bind-address: 127.0.0.2 plays a trunk). One account; at most 4
  calls (the wheel's PJSUA_MAX_CALLS).
* Commands arrive on stdin, one per line: a JSON object ``{"cmd": "call", "uri": "sip:..."}`` or the plain
  form ``call sip:...``. Each command is answered by an ``ok`` or ``error`` event carrying ``cmd`` (and
  the command's ``id`` if it had one).
* Events leave on stdout as JSON lines ``{"event": NAME, ...}``. pjlib's own console output is moved to
  stderr (stdout's file descriptor is swapped at start-up), so stdout carries events only.

Events (every one also has "t", the driver's monotonic clock; "call" is the pjsua call index):
  ready          name, pid, port (local SIP port), transport, contact
  reg_state      code, reason, expiration, active, status
  incoming_call  call, remote_uri, local_uri, sip_call_id, src, invite (the raw INVITE)
  call_state     call, state (CALLING INCOMING EARLY CONNECTING CONFIRMED DISCONNECTED), code, reason,
                 sip_call_id, remote_uri, role (uac/uas)
  media_state    call, status (ACTIVE LOCAL_HOLD REMOTE_HOLD NONE ERROR), dir
  media_active   call                      (after the player/recorder were (re)connected)
  dtmf           call, digit, method (rfc2833/info), duration
  tsx_rx         call, line (first line), cseq (method), msg (raw) for every SIP message received in a call
  record_done    call, path, number, complete, seconds (the WAV is final on disk)
  ok / error     cmd, id (if the command had one), result fields / message
  exit           code
Commands: call URI, answer [CODE], ringing, reject [CODE], hangup [CODE], dtmf DIGITS [method],
info-dtmf DIGITS, hold, unhold, register [EXPIRY], reregister [EXPIRY], unregister, play PATH, stop_play,
record PATH, stop_record, set (auto_answer, answer_delay, answer_code, ring), info, quit. Commands that act
on a call take "call" (an index); without it they act on the newest live call.

Not here: video, SRTP key choice (on/off only), transfers, presence, more than one account.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import pjsua2 as pj

STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}
MEDIA_NAMES = {
    pj.PJSUA_CALL_MEDIA_NONE: "NONE",
    pj.PJSUA_CALL_MEDIA_ACTIVE: "ACTIVE",
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "LOCAL_HOLD",
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "REMOTE_HOLD",
    pj.PJSUA_CALL_MEDIA_ERROR: "ERROR",
}
DTMF_METHODS = {"rfc2833": pj.PJSUA_DTMF_METHOD_RFC2833, "info": pj.PJSUA_DTMF_METHOD_SIP_INFO}
DTMF_METHOD_NAMES = {value: key for key, value in DTMF_METHODS.items()}
TRANSPORTS = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP, "tls": pj.PJSIP_TRANSPORT_TLS}
SRTP_USE = {
    "off": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
}


class EventWriter:
    """Writes one JSON object per line to the events stream (the original stdout)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, event: str, **fields: Any) -> None:
        fields["event"] = event
        fields["t"] = round(time.monotonic(), 4)
        try:
            self.stream.write(json.dumps(fields, default=str) + "\n")
            self.stream.flush()
        except BrokenPipeError:  # the test went away; nothing to report to
            pass


emit: EventWriter = EventWriter(sys.stdout)


def guarded(method: Callable[..., None]) -> Callable[..., None]:
    """pjsua2 swallows exceptions raised in callbacks; report them as `error` events instead."""

    def wrapper(self: Any, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as exc:
            emit("error", where=method.__name__, message=repr(exc), traceback=traceback.format_exc())

    wrapper.__name__ = method.__name__
    return wrapper


def _cseq_method(message: str) -> str:
    for line in message.split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "cseq":
            parts = value.split()
            return parts[1] if len(parts) > 1 else ""
    return ""


class PhoneCall(pj.Call):
    """One call; events name it by its pjsua call index (`call`)."""

    def __init__(self, ua: UserAgent, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.ua = ua
        self.index = -1
        self.recorder: pj.AudioMediaRecorder | None = None
        self.record_path: str | None = None
        self.player: pj.AudioMediaPlayer | None = None
        self.use_default_player = True
        self.media_index: int | None = None
        self.disconnected = False
        self.number = 0

    @guarded
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        ci = self.getInfo()
        self.index = ci.id
        state = STATE_NAMES.get(ci.state, str(ci.state))
        emit(
            "call_state",
            call=ci.id,
            state=state,
            code=ci.lastStatusCode,
            reason=ci.lastReason,
            sip_call_id=ci.callIdString,
            remote_uri=ci.remoteUri,
            role="uac" if ci.role == pj.PJSIP_ROLE_UAC else "uas",
        )
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
            self.ua.retire(self)

    @guarded
    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        ci = self.getInfo()  # keep the struct alive while iterating (SWIG temporaries, pitfall 6)
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            status = MEDIA_NAMES.get(mi.status, str(mi.status))
            emit("media_state", call=ci.id, status=status, dir=int(mi.dir))
            if mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.media_index = mi.index
                # The conference slot is recreated by every re-INVITE: reconnect on every ACTIVE (pitfall 7).
                self.connect_media()
                emit("media_active", call=ci.id)

    def audio_media(self) -> pj.AudioMedia | None:
        if self.media_index is None or self.disconnected:
            return None
        try:
            return self.getAudioMedia(self.media_index)
        except pj.Error:
            return None

    def connect_media(self) -> None:
        am = self.audio_media()
        if am is None:
            return
        player = (
            self.player
            if self.player is not None
            else (self.ua.default_player if self.use_default_player else None)
        )
        if player is not None:
            player.startTransmit(am)
        if self.recorder is None and self.record_path is None and self.ua.record_template:
            self.record_path = self.ua.next_record_path(self)
        if self.recorder is None and self.record_path is not None:
            Path(self.record_path).parent.mkdir(parents=True, exist_ok=True)
            self.recorder = pj.AudioMediaRecorder()
            self.recorder.createRecorder(self.record_path)
        if self.recorder is not None:
            am.startTransmit(self.recorder)

    def close_recorder(self) -> None:
        if self.recorder is not None:
            am = self.audio_media()
            if am is not None:
                try:
                    am.stopTransmit(self.recorder)
                except pj.Error:
                    pass
            self.recorder = None  # dropping it closes the WAV and writes its header (pitfall 5) ...
            # ... but pjmedia 2.15 removes the port from the conference bridge on its clock thread, so the
            # file is complete a tick later: `record_done` is emitted once its header says so.
            if self.record_path is not None:
                self.ua.watch_recording(self.record_path, self.index, self.number)
        self.record_path = None

    @guarded
    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        emit(
            "dtmf",
            call=self.getId(),
            digit=prm.digit,
            method=DTMF_METHOD_NAMES.get(prm.method, str(prm.method)),
            duration=None if prm.duration >= 0xFFFFFFFF else prm.duration,
        )

    @guarded
    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        event = prm.e
        if event.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx_state = event.body.tsxState
        if tsx_state.type != pj.PJSIP_EVENT_RX_MSG:
            return
        message = tsx_state.src.rdata.wholeMsg
        emit(
            "tsx_rx",
            call=self.getId(),
            line=message.split("\r\n", 1)[0],
            cseq=_cseq_method(message),
            msg=message,
        )


class PhoneAccount(pj.Account):
    def __init__(self, ua: UserAgent) -> None:
        super().__init__()
        self.ua = ua

    @guarded
    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        info = self.getInfo()
        emit(
            "reg_state",
            code=prm.code,
            reason=prm.reason,
            expiration=prm.expiration,
            active=bool(info.regIsActive),
            status=prm.status,
        )

    @guarded
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = PhoneCall(self.ua, self, prm.callId)
        self.ua.adopt(call)  # keep a reference or the call is garbage-collected and hung up (pitfall 5)
        ci = call.getInfo()
        call.index = ci.id
        emit(
            "incoming_call",
            call=ci.id,
            remote_uri=ci.remoteUri,
            local_uri=ci.localUri,
            sip_call_id=ci.callIdString,
            src=prm.rdata.srcAddress,
            invite=prm.rdata.wholeMsg,
        )
        self.ua.on_incoming(call)


class UserAgent:
    """Owns the endpoint, the account, the calls and the deadlines; runs the pump."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ep = pj.Endpoint()
        self.account: PhoneAccount | None = None
        self.calls: dict[int, PhoneCall] = {}
        self.retired: list[PhoneCall] = []
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.default_player: pj.AudioMediaPlayer | None = None
        self.record_template: str | None = args.record
        self.call_count = 0
        self.quitting = False
        self.auto_answer: bool = args.auto_answer
        self.answer_delay: float = args.answer_delay
        self.answer_code: int = args.answer_code
        self.ring: bool = not args.no_ring
        self.reg_expiry: int = args.reg_expiry
        self.stdin_buffer = b""
        self.reinvite_not_before = 0.0
        self.closing_records: list[tuple[str, int, int, float]] = []
        self.local_port = 0

    # -- start-up -----------------------------------------------------------------------------------------

    def start(self) -> None:
        args = self.args
        ep = self.ep
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 4
        cfg.uaConfig.userAgent = f"softswitch-harness-pjsua2/{args.name}"
        cfg.logConfig.level = args.log_level
        cfg.logConfig.consoleLevel = 0
        if args.log_file:
            cfg.logConfig.filename = args.log_file
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.channelCount = 1
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        ep.libInit(cfg)
        ep.audDevManager().setNullDev()  # keeps the conference bridge clocked (pitfall 10)

        tc = pj.TransportConfig()
        tc.port = args.port
        tc.boundAddress = args.bind_address
        tc.publicAddress = args.bind_address
        if args.transport == "tls":
            tc.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            if args.ca_file:
                tc.tlsConfig.CaListFile = args.ca_file
            if args.cert_file:
                tc.tlsConfig.certFile = args.cert_file
            if args.key_file:
                tc.tlsConfig.privKeyFile = args.key_file
            tc.tlsConfig.verifyServer = bool(args.verify_server)
        transport_id = ep.transportCreate(TRANSPORTS[args.transport], tc)
        ep.libStart()
        for codec in ep.codecEnum2():
            name = codec.codecId.split("/")[0].upper()
            priority = {"PCMU": 255, "PCMA": 254}.get(name, 0)
            ep.codecSetPriority(codec.codecId, priority)
        local = ep.transportGetInfo(transport_id).localName
        self.local_port = int(local.rsplit(":", 1)[1])

        if args.play:
            self.default_player = pj.AudioMediaPlayer()
            self.default_player.createPlayer(args.play, 0)  # 0 = loop

        self.account = PhoneAccount(self)
        self.account.create(
            self.account_config(register_on_add=bool(args.registrar) and not args.no_register)
        )
        user = args.id_uri.split(":", 1)[1].split("@", 1)[0] if "@" in args.id_uri else args.name
        suffix = "" if args.transport == "udp" else f";transport={args.transport}"
        scheme = "sips" if args.transport == "tls" and args.sips else "sip"
        emit(
            "ready",
            name=args.name,
            pid=os.getpid(),
            port=self.local_port,
            transport=args.transport,
            contact=f"{scheme}:{user}@{args.bind_address}:{self.local_port}{suffix}",
        )

    def account_config(
        self, *, register_on_add: bool, disable_reg_on_modify: bool = False
    ) -> pj.AccountConfig:
        args = self.args
        acfg = pj.AccountConfig()
        acfg.idUri = args.id_uri
        registrar = args.registrar
        if registrar and args.transport != "udp" and "transport=" not in registrar:
            registrar = f"{registrar};transport={args.transport}"
        if registrar:
            acfg.regConfig.registrarUri = registrar
        acfg.regConfig.registerOnAdd = register_on_add
        acfg.regConfig.timeoutSec = self.reg_expiry
        acfg.regConfig.retryIntervalSec = 0  # a failed REGISTER is reported, not retried forever
        acfg.regConfig.disableRegOnModify = disable_reg_on_modify
        if args.password is not None:
            username = args.username or (args.id_uri.split(":", 1)[1].split("@", 1)[0])
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", args.realm, username, 0, args.password))
        proxies = list(args.proxy or [])
        if not proxies and registrar and args.transport != "udp":
            proxies = [f"{registrar};lr"]
        for proxy in proxies:
            acfg.sipConfig.proxies.append(proxy)
        acfg.mediaConfig.transportConfig.boundAddress = args.bind_address
        acfg.mediaConfig.transportConfig.publicAddress = args.bind_address
        acfg.mediaConfig.transportConfig.port = args.rtp_port
        acfg.mediaConfig.transportConfig.portRange = args.rtp_port_range
        acfg.mediaConfig.lockCodecEnabled = not args.no_lock_codec
        acfg.mediaConfig.srtpUse = SRTP_USE[args.srtp]
        if args.srtp != "off":
            acfg.mediaConfig.srtpSecureSignaling = 0
        return acfg

    # -- calls ---------------------------------------------------------------------------------------------

    def adopt(self, call: PhoneCall) -> None:
        self.call_count += 1
        call.number = self.call_count
        self.calls[call.getId()] = call

    def retire(self, call: PhoneCall) -> None:
        """Called from the DISCONNECTED callback: the call is dropped later, from the pump (pitfall 5)."""
        self.after(0.0, lambda: self._drop(call))

    def _drop(self, call: PhoneCall) -> None:
        call.close_recorder()
        call.player = None
        for key, value in list(self.calls.items()):
            if value is call:
                del self.calls[key]

    def watch_recording(self, path: str, index: int, number: int) -> None:
        self.closing_records.append((path, index, number, time.monotonic() + 2.0))

    def check_recordings(self) -> None:
        """Emit `record_done` for every dropped recorder whose WAV header is final (RIFF size = file - 8)."""
        still = []
        for path, index, number, deadline in self.closing_records:
            complete, data_bytes = wav_is_final(path)
            if complete or time.monotonic() >= deadline:
                emit(
                    "record_done",
                    call=index,
                    path=path,
                    number=number,
                    complete=complete,
                    seconds=round(data_bytes / 2 / 8000, 3),
                )
            else:
                still.append((path, index, number, deadline))
        self.closing_records = still

    def next_record_path(self, call: PhoneCall) -> str:
        template = self.record_template or ""
        if "{" in template:
            return template.format(call=call.getId(), n=call.number, name=self.args.name)
        if call.number <= 1:
            return template
        path = Path(template)
        return str(path.with_name(f"{path.stem}-{call.number}{path.suffix}"))

    def on_incoming(self, call: PhoneCall) -> None:
        if self.ring:
            self.after(0.0, lambda: self._answer(call, 180))
        if self.auto_answer:
            code = self.answer_code
            self.after(self.answer_delay, lambda: self._answer(call, code))

    def _answer(self, call: PhoneCall, code: int) -> None:
        if call.disconnected:
            return
        prm = pj.CallOpParam()
        prm.statusCode = code
        try:
            call.answer(prm)
        except pj.Error as exc:
            emit("error", where="answer", call=call.getId(), message=exc.info())

    def pick_call(self, command: dict[str, Any]) -> PhoneCall:
        if "call" in command and command["call"] is not None:
            index = int(command["call"])
            if index not in self.calls or self.calls[index].disconnected:
                raise CommandError(f"no live call {index}; live calls: {self.live_calls()}")
            return self.calls[index]
        live = [c for c in self.calls.values() if not c.disconnected]
        if not live:
            raise CommandError("no live call")
        return max(live, key=lambda c: c.number)

    def live_calls(self) -> list[int]:
        return sorted(i for i, c in self.calls.items() if not c.disconnected)

    # -- commands ------------------------------------------------------------------------------------------

    def handle_line(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        try:
            command = parse_command(line)
        except CommandError as exc:
            emit("error", cmd=None, message=str(exc), line=line)
            return
        name = command.get("cmd")
        handler = getattr(self, f"cmd_{str(name).replace('-', '_')}", None)
        reply: dict[str, Any] = {"cmd": name}
        if "id" in command:
            reply["id"] = command["id"]
        if handler is None:
            emit("error", message=f"unknown command {name!r}", **reply)
            return
        try:
            result = handler(command) or {}
        except CommandError as exc:
            emit("error", message=str(exc), **reply)
            return
        except pj.Error as exc:
            emit("error", message=exc.info(), **reply)
            return
        except Exception as exc:
            emit("error", message=repr(exc), traceback=traceback.format_exc(), **reply)
            return
        emit("ok", **reply, **result)

    def cmd_call(self, command: dict[str, Any]) -> dict[str, Any]:
        uri = command.get("uri")
        if not uri:
            raise CommandError("call needs a uri")
        assert self.account is not None
        call = PhoneCall(self, self.account)
        prm = pj.CallOpParam(True)
        call.makeCall(uri, prm)
        self.adopt(call)
        call.index = call.getId()
        return {"call": call.getId()}

    def cmd_answer(self, command: dict[str, Any]) -> dict[str, Any]:
        call = self.pick_call(command)
        prm = pj.CallOpParam()
        prm.statusCode = int(command.get("code", 200))
        call.answer(prm)
        return {"call": call.getId()}

    def cmd_ringing(self, command: dict[str, Any]) -> dict[str, Any]:
        return self.cmd_answer({**command, "code": 180})

    def cmd_reject(self, command: dict[str, Any]) -> dict[str, Any]:
        call = self.pick_call(command)
        prm = pj.CallOpParam()
        prm.statusCode = int(command.get("code", 486))
        call.answer(prm)
        return {"call": call.getId()}

    def cmd_hangup(self, command: dict[str, Any]) -> dict[str, Any]:
        call = self.pick_call(command)
        prm = pj.CallOpParam(True)
        if command.get("code") is not None:
            prm.statusCode = int(command["code"])
        call.hangup(prm)
        return {"call": call.getId()}

    def cmd_dtmf(self, command: dict[str, Any]) -> dict[str, Any]:
        call = self.pick_call(command)
        digits = str(command.get("digits", ""))
        if not digits:
            raise CommandError("dtmf needs digits")
        method = str(command.get("method", self.args.dtmf_method))
        if method not in DTMF_METHODS:
            raise CommandError(f"dtmf method must be one of {sorted(DTMF_METHODS)}, not {method!r}")
        prm = pj.CallSendDtmfParam()
        prm.method = DTMF_METHODS[method]
        prm.digits = digits
        prm.duration = int(command.get("duration", 160))
        call.sendDtmf(prm)
        if method == "rfc2833":
            # A re-INVITE right after RFC 2833 digits makes the far pjsua2 report the last digit twice (the
            # new stream sees the end-packet retransmits, pitfall 9): hold re-INVITEs until the digits are out
            # (about 200 ms each) plus 300 ms.
            busy_until = time.monotonic() + len(digits) * 0.2 + 0.3
            self.reinvite_not_before = max(self.reinvite_not_before, busy_until)
        return {"call": call.getId(), "digits": digits, "method": method}

    def cmd_info_dtmf(self, command: dict[str, Any]) -> dict[str, Any]:
        return self.cmd_dtmf({**command, "method": "info"})

    def cmd_hold(self, command: dict[str, Any]) -> dict[str, Any]:
        call = self.pick_call(command)
        return self._reinvite_soon(call, "hold", lambda: call.setHold(pj.CallOpParam(True)))

    def cmd_unhold(self, command: dict[str, Any]) -> dict[str, Any]:
        call = self.pick_call(command)

        def unhold() -> None:
            prm = pj.CallOpParam(True)
            prm.opt.flag = pj.PJSUA_CALL_UNHOLD
            call.reinvite(prm)

        return self._reinvite_soon(call, "unhold", unhold)

    def _reinvite_soon(self, call: PhoneCall, name: str, action: Callable[[], None]) -> dict[str, Any]:
        """Run a re-INVITE now, or once recent RFC 2833 digits are out (errors then come as events)."""
        wait = self.reinvite_not_before - time.monotonic()
        if wait <= 0:
            action()
            return {"call": call.getId(), "deferred": 0.0}

        def later() -> None:
            if call.disconnected:
                return
            try:
                action()
            except pj.Error as exc:
                emit("error", where=name, call=call.getId(), message=exc.info())

        self.after(wait, later)
        return {"call": call.getId(), "deferred": round(wait, 3)}

    def cmd_register(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.account is not None
        if not self.args.registrar:
            raise CommandError("this phone has no registrar (--registrar)")
        expiry = command.get("expiry")
        if expiry is not None and int(expiry) != self.reg_expiry:
            self.reg_expiry = int(expiry)
            self.account.modify(self.account_config(register_on_add=True, disable_reg_on_modify=True))
        self.account.setRegistration(True)
        return {"expiry": self.reg_expiry}

    def cmd_reregister(self, command: dict[str, Any]) -> dict[str, Any]:
        return self.cmd_register(command)

    def cmd_unregister(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.account is not None
        self.account.setRegistration(False)
        return {}

    def cmd_play(self, command: dict[str, Any]) -> dict[str, Any]:
        path = command.get("path")
        if not path:
            raise CommandError("play needs a path")
        call = self.pick_call(command)
        self._stop_play(call)
        call.player = pj.AudioMediaPlayer()
        call.player.createPlayer(str(path), 0)
        call.connect_media()
        return {"call": call.getId(), "path": path}

    def cmd_stop_play(self, command: dict[str, Any]) -> dict[str, Any]:
        call = self.pick_call(command)
        self._stop_play(call)
        call.use_default_player = False
        return {"call": call.getId()}

    def _stop_play(self, call: PhoneCall) -> None:
        am = call.audio_media()
        for player in (call.player, self.default_player):
            if player is not None and am is not None:
                try:
                    player.stopTransmit(am)
                except pj.Error:
                    pass
        call.player = None

    def cmd_record(self, command: dict[str, Any]) -> dict[str, Any]:
        path = command.get("path")
        if not path:
            raise CommandError("record needs a path")
        call = self.pick_call(command)
        call.close_recorder()
        call.record_path = str(path)
        call.connect_media()
        return {"call": call.getId(), "path": path}

    def cmd_stop_record(self, command: dict[str, Any]) -> dict[str, Any]:
        call = self.pick_call(command)
        path = call.record_path
        call.close_recorder()
        return {"call": call.getId(), "path": path}

    def cmd_set(self, command: dict[str, Any]) -> dict[str, Any]:
        if "auto_answer" in command:
            self.auto_answer = bool(command["auto_answer"])
        if "answer_delay" in command:
            self.answer_delay = float(command["answer_delay"])
        if "answer_code" in command:
            self.answer_code = int(command["answer_code"])
        if "ring" in command:
            self.ring = bool(command["ring"])
        return {
            "auto_answer": self.auto_answer,
            "answer_delay": self.answer_delay,
            "answer_code": self.answer_code,
            "ring": self.ring,
        }

    def cmd_info(self, command: dict[str, Any]) -> dict[str, Any]:
        calls = []
        for index in self.live_calls():
            ci = self.calls[index].getInfo()
            calls.append(
                {"call": index, "state": STATE_NAMES.get(ci.state, str(ci.state)), "code": ci.lastStatusCode}
            )
        return {"calls": calls, "port": self.local_port}

    def cmd_quit(self, command: dict[str, Any]) -> dict[str, Any]:
        self.quitting = True
        return {}

    # -- the pump ------------------------------------------------------------------------------------------

    def after(self, delay: float, action: Callable[[], None]) -> None:
        self.timers.append((time.monotonic() + delay, action))

    def run_due(self) -> None:
        if self.closing_records:
            self.check_recordings()
        now = time.monotonic()
        due = [t for t in self.timers if t[0] <= now]
        if not due:
            return
        self.timers = [t for t in self.timers if t[0] > now]
        for _, action in sorted(due, key=lambda t: t[0]):
            try:
                action()
            except Exception as exc:
                emit("error", where="timer", message=repr(exc), traceback=traceback.format_exc())

    def read_stdin(self, fd: int) -> bool:
        """Handle complete lines available on stdin; return False at end of input."""
        ready, _, _ = select.select([fd], [], [], 0)
        if not ready:
            return True
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        self.stdin_buffer += chunk
        while b"\n" in self.stdin_buffer:
            raw, self.stdin_buffer = self.stdin_buffer.split(b"\n", 1)
            self.handle_line(raw.decode("utf-8", errors="replace"))
        return True

    def pump_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() >= deadline:
                return False
            self.ep.libHandleEvents(10)
            self.run_due()
        return True

    def run(self) -> None:
        fd = sys.stdin.fileno()
        stdin_open = True
        while not self.quitting:
            self.ep.libHandleEvents(10)
            self.run_due()
            if stdin_open:
                stdin_open = self.read_stdin(fd)
                if not stdin_open:
                    self.quitting = True

    def shutdown(self) -> None:
        if self.calls:
            try:
                self.ep.hangupAllCalls()
            except pj.Error:
                pass
            self.pump_until(lambda: all(c.disconnected for c in self.calls.values()), 2.0)
        self.run_due()
        for call in list(self.calls.values()):
            call.close_recorder()
            call.player = None
        self.calls.clear()
        self.timers.clear()
        self.default_player = None
        self.pump_until(lambda: not self.closing_records, 2.5)
        if self.account is not None:
            self.account.shutdown()
            self.account = None
        # Every Call/Account/recorder reference is gone now (pitfall 5); skip waiting for the unREGISTER.
        self.ep.libDestroy(pj.PJSUA_DESTROY_NO_RX_MSG)


def wav_is_final(path: str) -> tuple[bool, int]:
    """(header final?, data bytes) of a WAV pjmedia writes: its RIFF size stays 0 until the file is closed."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(44)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return False, 0
    if len(header) < 44 or header[:4] != b"RIFF":
        return False, 0
    riff_size = int.from_bytes(header[4:8], "little")
    return riff_size >= 36 and riff_size == size - 8, max(0, size - 44)


class CommandError(Exception):
    """A command the driver cannot carry out; reported as an `error` event."""


_POSITIONAL = {
    "call": "uri",
    "answer": "code",
    "reject": "code",
    "hangup": "code",
    "dtmf": "digits",
    "info-dtmf": "digits",
    "register": "expiry",
    "reregister": "expiry",
    "play": "path",
    "record": "path",
}


def parse_command(line: str) -> dict[str, Any]:
    """A JSON object, or the plain form `NAME [ARG]` (e.g. `call sip:bob@127.0.0.1`, `dtmf 12#`)."""
    if line.startswith("{"):
        try:
            command = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CommandError(f"bad JSON command: {exc}") from exc
        if not isinstance(command, dict) or "cmd" not in command:
            raise CommandError('a JSON command must be an object with "cmd"')
        return command
    name, _, rest = line.partition(" ")
    command: dict[str, Any] = {"cmd": name}
    rest = rest.strip()
    if rest:
        key = _POSITIONAL.get(name)
        if key is None:
            raise CommandError(f"{name} takes no argument in the plain form")
        command[key] = rest
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--name", default="phone", help="a label for logs and the User-Agent")
    parser.add_argument("--id-uri", required=True, help="the account's URI, e.g. sip:alice@127.0.0.1")
    parser.add_argument("--registrar", help="registrar URI, e.g. sip:127.0.0.1:5060 (none: no REGISTER)")
    parser.add_argument("--username", help="digest username (default: the id URI's user part)")
    parser.add_argument("--password", help="digest password (plaintext)")
    parser.add_argument("--realm", default="*", help='digest realm ("*" answers any realm)')
    parser.add_argument("--transport", choices=sorted(TRANSPORTS), default="udp")
    parser.add_argument("--sips", action="store_true", help="advertise a sips: contact with TLS")
    parser.add_argument("--port", type=int, default=0, help="local SIP port (0: any)")
    parser.add_argument(
        "--bind-address", default="127.0.0.1", help="local address for SIP and RTP (any 127.x.y.z works)"
    )
    parser.add_argument("--proxy", action="append", help="outbound proxy URI (repeatable)")
    parser.add_argument("--reg-expiry", type=int, default=300)
    parser.add_argument("--no-register", action="store_true", help="do not REGISTER at start")
    parser.add_argument("--auto-answer", action="store_true")
    parser.add_argument("--answer-delay", type=float, default=0.0, help="seconds between 180 and the answer")
    parser.add_argument(
        "--answer-code", type=int, default=200, help="final code for auto-answer (486, 603 ...)"
    )
    parser.add_argument("--no-ring", action="store_true", help="do not send 180 on an incoming call")
    parser.add_argument("--play", help="WAV to play into every call, looped")
    parser.add_argument("--record", help="WAV path for what each call receives; may use {call}, {n}, {name}")
    parser.add_argument("--rtp-port", type=int, default=0, help="first RTP port (0: pjsua's default 4000)")
    parser.add_argument("--rtp-port-range", type=int, default=200)
    parser.add_argument("--ca-file")
    parser.add_argument("--cert-file")
    parser.add_argument("--key-file")
    parser.add_argument("--verify-server", action="store_true")
    parser.add_argument("--srtp", choices=sorted(SRTP_USE), default="off")
    parser.add_argument("--dtmf-method", choices=sorted(DTMF_METHODS), default="rfc2833")
    parser.add_argument("--no-lock-codec", action="store_true", help="do not send UPDATE to lock the codec")
    parser.add_argument("--log-file", help="pjsip log file (SIP messages at level 4 and up)")
    parser.add_argument("--log-level", type=int, default=4)
    return parser


def main(argv: list[str] | None = None) -> int:
    global emit
    args = build_parser().parse_args(argv)
    # Events get the real stdout; pjlib's console output (printed before logConfig applies, pitfall 11)
    # goes to stderr via the swapped file descriptor 1.
    events_fd = os.dup(1)
    os.dup2(2, 1)
    emit = EventWriter(os.fdopen(events_fd, "w", buffering=1, encoding="utf-8"))
    ua = UserAgent(args)

    def on_signal(signum: int, frame: object) -> None:
        ua.quitting = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        ua.start()
        ua.run()
    except pj.Error as exc:
        emit("error", where="start", message=exc.info())
        code = 2
    except Exception as exc:
        emit("error", where="main", message=repr(exc), traceback=traceback.format_exc())
        code = 2
    finally:
        try:
            ua.shutdown()
        except Exception as exc:
            emit("error", where="shutdown", message=repr(exc))
            code = code or 3
    emit("exit", code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())
