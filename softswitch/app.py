"""`softswitch serve`: assembles a running switch (the only module that knows every layer).

Start-up: open the store and migrate it, restore the bindings it holds (their remaining lifetime
converted from wall clock to the loop's monotonic clock), build the sans-IO endpoint, open the SIP
listeners and the control API, log `ready`. Shutdown (SIGINT/SIGTERM, uvicorn's lifecycle, style 9.15):
stop accepting, let the writer commit everything already submitted and send the answers that were
waiting on it, then close sockets and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import secrets
import signal
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softswitch import __version__
from softswitch.acd import AcdEngine, AgentConfig, QueueConfig
from softswitch.callflow import AcdRecord, CallFlow, CallLogged, CallRecordReady, Directory, Route, UserInfo
from softswitch.config.schema import Settings
from softswitch.control.reports import store_records
from softswitch.media.player import Sound, SoundFileError, load_sound
from softswitch.media.relay import Leg, RelayEvent, RelaySession
from softswitch.media.ticker import Ticker
from softswitch.media.udp import MediaSockets, RelayRunner, RtpPortAllocator
from softswitch.prompts import PromptLibrary, feature_prompt, timeout_prompt
from softswitch.sip.auth import DigestAuthenticator
from softswitch.sip.b2bua import B2bua, Call
from softswitch.sip.endpoint import (
    AuthFailed,
    BindingsExpired,
    BindingsRestored,
    Endpoint,
    EndpointConfig,
    EndpointEvent,
    MessageDropped,
    PersistBindings,
    ReachabilityChanged,
    SourceBanned,
)
from softswitch.sip.flow import Flow
from softswitch.sip.guard import Guard
from softswitch.sip.location import Binding, LocationTable, contact_key
from softswitch.sip.parser import ParserLimits
from softswitch.sip.registrar import RegistrarPolicy
from softswitch.sip.timers import TimerValues
from softswitch.sip.transport import ListenAddress, SipTransport
from softswitch.sip.uri import parse_uri
from softswitch.store.acd import latest_agent_states, save_agent_states, save_queue_events
from softswitch.store.bindings import delete_expired, load_bindings, replace_many
from softswitch.store.cdrs import save_call
from softswitch.store.db import make_engine, migrate
from softswitch.store.records import BindingRow
from softswitch.store.writer import StoreWriter

__all__ = ["App", "binding_from_row", "binding_to_row"]

log = logging.getLogger("softswitch")
# Lifecycle lines (ready, stopping, stopped) are written whatever the log level: supervisors and tests
# wait for them.
lifecycle = logging.getLogger("softswitch.lifecycle")
lifecycle.setLevel(logging.INFO)

WILDCARDS = {"0.0.0.0", "::", ""}
# How often the ACD engine is reconciled with live calls and phones (issue 4 §10: nobody stays stuck).
RECONCILE_EVERY = 30.0


def binding_to_row(binding: Binding, wall_offset: float) -> BindingRow:
    flow = binding.flow
    return BindingRow(
        aor=binding.aor,
        contact=binding.contact,
        expires_at=binding.expires_at + wall_offset,
        call_id=binding.call_id,
        cseq=binding.cseq,
        transport=flow.transport,
        source_host=flow.remote[0],
        source_port=flow.remote[1],
        local_host=flow.local[0],
        local_port=flow.local[1],
        q=binding.q,
        instance_id=binding.instance_id,
        reg_id=binding.reg_id,
        user_agent=binding.user_agent,
        created_at=binding.registered_at + wall_offset,
    )


def binding_from_row(row: BindingRow, wall_offset: float, now: float) -> Binding:
    return Binding(
        aor=row.aor,
        contact=row.contact,
        expires_at=row.expires_at - wall_offset,
        # A restored TCP/TLS binding has lost its connection (conn_id 0): the phone reconnects.
        flow=Flow(row.transport, (row.source_host, row.source_port), (row.local_host, row.local_port)),
        call_id=row.call_id,
        cseq=row.cseq,
        q=row.q,
        instance_id=row.instance_id,
        reg_id=row.reg_id,
        user_agent=row.user_agent,
        registered_at=now if row.created_at is None else row.created_at - wall_offset,
        key=contact_key(parse_uri(row.contact), row.instance_id, row.reg_id),
    )


def primary_address() -> str:
    """The address this host uses to reach the internet (no packet is sent)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.1", 9))
        return str(sock.getsockname()[0])
    return "127.0.0.1"


def load_or_create_secret(path: Path) -> bytes:
    """The digest nonce key, kept across restarts so nonces handed out before a restart stay valid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    data = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return data


class RelayPool:
    """callflow's `MediaFactory` over real sockets: one `RelayRunner` per call, one epoll set for all."""

    def __init__(
        self,
        *,
        allocator: RtpPortAllocator,
        host: str,
        rtp_timeout: float,
        on_event: Any,
    ) -> None:
        self.sockets = MediaSockets()
        self.ticker = Ticker(self.sockets.write)
        self.allocator = allocator
        self.host = host
        self.rtp_timeout = rtp_timeout
        self.on_event = on_event
        self.runners: dict[str, RelayRunner] = {}

    def open(self, call_id: str) -> RelaySession:
        session = RelaySession(a_port=None, b_port=None, rtp_timeout=self.rtp_timeout)
        runner = RelayRunner(session, self.sockets, on_event=lambda event: self.on_event(call_id, event))
        try:
            runner.bind_now(Leg.A, host=self.host, allocator=self.allocator)
            runner.bind_now(Leg.B, host=self.host, allocator=self.allocator)
        except Exception:
            runner.close()
            raise
        self.runners[call_id] = runner
        return session

    def poke(self, call_id: str) -> None:
        runner = self.runners.get(call_id)
        if runner is not None:
            runner.poke()

    def ticking(self, call_id: str, on: bool) -> None:
        runner = self.runners.get(call_id)
        if runner is None:
            return
        if on:
            self.ticker.add(runner.session)
            self.ticker.start()
        else:
            self.ticker.remove(runner.session)

    def close(self, call_id: str) -> None:
        runner = self.runners.pop(call_id, None)
        if runner is not None:
            self.ticker.remove(runner.session)
            runner.close()

    def shutdown(self) -> None:
        for call_id in list(self.runners):
            self.close(call_id)
        self.ticker.stop()
        self.sockets.shutdown()


def build_directory(settings: Settings) -> Directory:
    directory = Directory(domain=str(settings.server.domain))
    for agent in settings.agents:
        directory.users[agent.id] = UserInfo(agent.id, agent.name or agent.id, agent.extension, "agent")
        if agent.extension:
            directory.numbers[agent.extension] = Route("user", agent.id)
    for supervisor in settings.supervisors:
        directory.users[supervisor.id] = UserInfo(
            supervisor.id, supervisor.name or supervisor.id, supervisor.extension, "supervisor"
        )
        if supervisor.extension:
            directory.numbers[supervisor.extension] = Route("user", supervisor.id)
    for queue in settings.queues:
        for number in queue.numbers:
            directory.numbers[number] = Route("queue", queue.name)
    for trunk in settings.trunks:
        directory.trunk_dids[trunk.name] = dict(trunk.dids)
    directory.queue_names = {queue.name for queue in settings.queues}
    directory.feature = settings.features.match
    return directory


def acd_config(settings: Settings) -> tuple[list[QueueConfig], list[AgentConfig]]:
    """The ACD engine's view of the configured queues and agents."""
    queues = [QueueConfig.from_dict(q.model_dump(mode="json")) for q in settings.queues]
    agents = [AgentConfig.from_dict(a.model_dump(mode="json")) for a in settings.agents]
    return queues, agents


class AppSounds:
    """callflow's `Sounds`: music on hold per queue and the spoken prompts, decoded once at start-up.

    A sound file that cannot be read is a start-up error naming the file (never a call-time failure).
    Prompts come from `softswitch.prompts` (generated at set-up by `softswitch prompts`); a missing
    prompt is simply not played.
    """

    def __init__(self, settings: Settings, prompt_dir: Path) -> None:
        self.prompt_dir = prompt_dir
        self._prompts: dict[str, Sound | None] = {}
        self._default_music = self._file(prompt_dir / "moh-default.wav", required=False)
        self._music: dict[str, Sound | None] = {}
        for queue in settings.queues:
            self._music[queue.name] = self._file(Path(queue.moh), required=True) if queue.moh else None
        self._library = _prompt_library(prompt_dir)

    @staticmethod
    def _file(path: Path, *, required: bool) -> Sound | None:
        if not path.exists():
            if required:
                raise SoundFileError(f"{path}: no such sound file")
            return None
        return load_sound(path)

    def music(self, queue: str | None) -> Sound | None:
        found = self._music.get(queue) if queue is not None else None
        return found if found is not None else self._default_music

    def prompt(self, name: str) -> Sound | None:
        if name not in self._prompts:
            path = Path(name) if name.endswith(".wav") else self.prompt_dir / f"{name}.wav"
            try:
                self._prompts[name] = self._file(path, required=False)
            except SoundFileError as exc:
                log.warning("unusable prompt", extra={"event": "prompt_error", "error": str(exc)})
                self._prompts[name] = None
        return self._prompts[name]

    def position(self, position: int) -> list[Sound]:
        names = self._library.position_phrase(position) if self._library is not None else []
        return [s for s in (self.prompt(n) for n in names) if s is not None]

    def wait(self, seconds: float | None) -> list[Sound]:
        if seconds is None or self._library is None:
            return []
        return [s for s in (self.prompt(n) for n in self._library.wait_phrase(seconds)) if s is not None]

    def feature(self, action: str, ack: str) -> Sound | None:
        return self.prompt(feature_prompt(action, ack))

    def goodbye(self, reason: str, to: str | None) -> Sound | None:
        return self.prompt(timeout_prompt(reason, to))


def _prompt_library(directory: Path) -> Any:
    try:
        return PromptLibrary.load(directory)
    except Exception as exc:  # prompts not generated yet: queues still work, without spoken positions
        log.warning(
            "prompts unavailable",
            extra={"event": "prompts_missing", "dir": str(directory), "error": str(exc)},
        )
        return None


@dataclass
class App:
    settings: Settings
    config_path: Path
    started_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.endpoint: Endpoint | None = None
        self.transport: SipTransport | None = None
        self.writer: StoreWriter | None = None
        self.control: Any = None
        self._stop = asyncio.Event()
        self.wall_offset = 0.0
        self.engine: Any = None
        self._contacts: dict[str, frozenset[str]] = {}
        self._binding_sets: dict[str, list[BindingRow]] = {}
        self._binding_tokens: list[int] = []
        self._binding_flush: asyncio.Handle | None = None
        self._binding_in_flight = False
        self._acd_records: list[Any] = []
        self._acd_flush: asyncio.Handle | None = None
        self._reconcile_timer: asyncio.TimerHandle | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.loop = loop
        settings = self.settings
        server = settings.server
        self.wall_offset = time.time() - loop.time()

        self.engine = await asyncio.to_thread(self._open_store, server.database)
        # No fixed group window: App._persist batches while a commit is in flight (group commit, no delay).
        self.writer = StoreWriter(self.engine, group_window=0.0)
        self.writer.start()

        location = LocationTable()
        rows = await asyncio.to_thread(self._load_bindings)
        now = loop.time()
        location.restore([binding_from_row(row, self.wall_offset, now) for row in rows])

        state_dir = Path(server.control_token_file).parent
        secret = load_or_create_secret(state_dir / "digest.key")
        authenticator = DigestAuthenticator(
            server.domain,
            secret,
            nonce_ttl=float(server.security.nonce_ttl),
            algorithms=tuple(server.security.digest_algorithms),
            started_at=loop.time(),  # the secret outlives restarts; the nonce counts do not
        )
        guard = Guard(
            failures=server.security.auth_failures,
            window=float(server.security.auth_window),
            ban_time=float(server.security.ban_time),
        )
        listen = [ListenAddress(spec.transport, str(spec.host), spec.port) for spec in server.listen]
        endpoint_config = self._endpoint_config(listen)
        endpoint = Endpoint(
            endpoint_config,
            authenticator=authenticator,
            guard=guard,
            credentials=self._lookup_credentials,
            location=location,
        )
        endpoint.wall_offset = self.wall_offset
        self.endpoint = endpoint

        self.relays = RelayPool(
            allocator=RtpPortAllocator(*server.rtp_ports),
            host="0.0.0.0",
            rtp_timeout=float(server.rtp_timeout),
            on_event=self._on_relay_event,
        )
        self.directory = build_directory(settings)
        queues, agents = acd_config(settings)
        self.acd = AcdEngine(queues, agents)
        self.sounds = AppSounds(settings, Path(server.sounds_dir))
        self.callflow = CallFlow(
            directory=self.directory,
            locations=location,
            media=self.relays,
            sdp_address=self._sdp_address,
            ring_timeout=float(server.ring_timeout),
            wall_offset=self.wall_offset,
            acd=self.acd,
            sounds=self.sounds,
        )
        self.b2bua = B2bua(
            endpoint,
            timers=endpoint_config.timers,
            hooks=self.callflow,
            authorizer=endpoint,
            trunk_for=self._trunk_name,
            domain=str(server.domain),
            public_number=lambda number: self.directory.is_public(number),
        )
        self.callflow.attach(self.b2bua)
        endpoint.usage = self.b2bua

        tls_context = self._tls_context() if any(a.transport == "tls" for a in listen) else None
        self.transport = SipTransport(
            endpoint,
            on_event=self._on_endpoint_event,
            tls_context=tls_context,
            idle_timeout=float(server.tcp_idle_timeout),
            max_message_size=server.limits.max_message_size,
            on_pump=self._drain_calls,
            timed=[self.callflow],
        )
        await self.transport.start(listen)
        # Now that ports are bound (port 0 may have been asked for), advertise the real ones.
        endpoint.config = self._endpoint_config(self.transport.bound)
        endpoint.qualify_all(now=now)
        self.transport.pump()

        await self._restore_agents()
        self._schedule_reconcile()

        from softswitch.control.api import start_control

        self.control = await start_control(self)

        # Everything built so far lives as long as the process: keep it out of the collector's sight, and
        # collect the young generation less often. A full collection walks every live object, and on a
        # busy switch (tens of thousands of bindings, waiting calls, transactions) that pauses the event
        # loop and the media clock for tens of milliseconds.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
        # The store writer thread shares the GIL with the event loop; after every socket call the loop
        # waits for it. A 1 ms switch interval (Python's default is 5 ms) bounds that wait.
        sys.setswitchinterval(0.001)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._reload_from_signal)
        lifecycle.info(
            "ready",
            extra={
                "event": "ready",
                "version": __version__,
                "listen": [f"{a.transport}://{a.host}:{a.port}" for a in self.transport.bound],
                "control": f"{server.control.host}:{server.control.port}",
                "bindings_restored": len(rows),
            },
        )
        await self._stop.wait()
        await self.shutdown()
        return 0

    def stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        lifecycle.info("shutting down", extra={"event": "stopping"})
        if self._reconcile_timer is not None:
            self._reconcile_timer.cancel()
        assert self.transport is not None and self.writer is not None and self.endpoint is not None
        await self.transport.stop_listening()
        if self._binding_flush is not None:
            self._binding_flush.cancel()
            self._binding_flush = None
        self._flush_bindings()
        # Let every commit already submitted finish and its held 200 go out.
        await asyncio.to_thread(self.writer.flush, 10.0)
        for _ in range(100):
            if not self.endpoint.pending_writes:
                break
            await asyncio.sleep(0.01)
        self.transport.pump()
        # New calls get 503 from now on; calls in progress get `shutdown_grace` seconds to finish.
        self.callflow.draining = True
        grace_until = self._now() + float(self.settings.server.shutdown_grace)
        while self.b2bua.calls and self._now() < grace_until:
            await asyncio.sleep(0.1)
        for call in list(self.b2bua.calls.values()):
            self.b2bua.hangup(call, now=self._now(), cause="shutdown", status=503)
        self.transport.pump()
        self._drain_calls()
        self._flush_acd_records()
        if self.control is not None:
            await self.control.cleanup()
        await self.transport.close()
        self.relays.shutdown()
        await self._settle_store()
        await asyncio.to_thread(self.writer.close, 10.0)
        self.engine.dispose()
        lifecycle.info("stopped", extra={"event": "stopped"})

    # -- wiring helpers ----------------------------------------------------------------------------------

    def _open_store(self, url: str) -> Any:
        migrate(url)
        return make_engine(url)

    def _load_bindings(self) -> list[BindingRow]:
        from sqlalchemy.orm import Session

        with Session(self.engine) as session, session.begin():
            delete_expired(session, now=time.time())
            return load_bindings(session, now=time.time())

    def _endpoint_config(self, listen: list[ListenAddress]) -> EndpointConfig:
        server = self.settings.server
        public = str(server.public_address) if server.public_address else None
        fallback = primary_address()
        advertise: dict[str, tuple[str, int]] = {}
        hosts: set[str] = set()
        for spec in listen:
            host = public or (spec.host if spec.host not in WILDCARDS else fallback)
            advertise.setdefault(spec.transport, (host, spec.port))
            hosts.add(host.lower())
            if spec.host not in WILDCARDS:
                hosts.add(spec.host.lower())
        aliases = frozenset({*(str(a).lower() for a in server.aliases), *hosts})
        return EndpointConfig(
            domain=str(server.domain),
            aliases=aliases,
            limits=ParserLimits(
                max_message_size=server.limits.max_message_size,
                max_headers=server.limits.max_headers,
                max_line_length=server.limits.max_line_length,
            ),
            timers=TimerValues(t1=server.timers.t1, t2=server.timers.t2, t4=server.timers.t4),
            registrar=RegistrarPolicy(
                min_expires=server.registrar.min_expires,
                max_expires=server.registrar.max_expires,
                default_expires=server.registrar.default_expires,
                max_contacts=server.registrar.max_contacts,
            ),
            qualify_interval=float(server.registrar.qualify_interval),
            qualify_timeout=float(server.registrar.qualify_timeout),
            user_agent=f"softswitch/{__version__}",
            advertise=advertise,
        )

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.settings.server.tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = (
            ssl.TLSVersion.TLSv1_2 if tls.min_version == "1.2" else ssl.TLSVersion.TLSv1_3
        )
        context.load_cert_chain(str(tls.cert), str(tls.key))
        return context

    def _lookup_credentials(self, username: str, algorithm: str) -> str | None:
        md5, sha256 = self.settings.credentials_for(username)
        return {"MD5": md5, "SHA-256": sha256}.get(algorithm.upper())

    # -- endpoint events ---------------------------------------------------------------------------------

    def _on_endpoint_event(self, event: EndpointEvent) -> None:
        match event:
            case PersistBindings(token=token, aor=aor, bindings=bindings, flow=flow):
                rows = [binding_to_row(b, self.wall_offset) for b in bindings]
                self._persist(aor, rows, token)
                # A new or removed contact is news; a refresh of the same ones is not (debug).
                contacts = frozenset(b.key for b in bindings)
                changed = self._contacts.get(aor) != contacts
                self._contacts[aor] = contacts
                self._agent_reachability(aor)
                if changed or log.isEnabledFor(logging.DEBUG):
                    log.log(
                        logging.INFO if changed else logging.DEBUG,
                        "registered",
                        extra={
                            "event": "register",
                            "aor": aor,
                            "source": str(flow),
                            "contacts": len(bindings),
                        },
                    )
            case BindingsRestored(aor=aor, bindings=bindings):
                self._contacts[aor] = frozenset(b.key for b in bindings)
                self._agent_reachability(aor)
            case BindingsExpired(aor=aor, bindings=bindings):
                rows = [binding_to_row(b, self.wall_offset) for b in bindings]
                self._persist(aor, rows, None)
                log.info("binding expired", extra={"event": "expired", "aor": aor, "contacts": len(bindings)})
                self._agent_reachability(aor)
            case ReachabilityChanged(aor=aor, contact=contact, reachable=reachable, rtt=rtt):
                self._agent_reachability(aor)
                log.info(
                    "reachability",
                    extra={
                        "event": "reachability",
                        "aor": aor,
                        "contact": contact,
                        "reachable": reachable,
                        "rtt_ms": None if rtt is None else round(rtt * 1000, 1),
                    },
                )
            case MessageDropped(flow=flow, reason=reason, detail=detail):
                log.info(
                    "x dropped",
                    extra={"event": "dropped", "source": str(flow), "reason": reason, "detail": detail},
                )
            case AuthFailed(source=source, username=username, outcome=outcome):
                log.warning(
                    "authentication failed",
                    extra={
                        "event": "auth_failed",
                        "source": source,
                        "username": username,
                        "outcome": outcome,
                    },
                )
            case SourceBanned(source=source, until=until):
                log.warning(
                    "source banned",
                    extra={"event": "banned", "source": source, "seconds": round(until - self._now(), 1)},
                )

    def _now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def _persist(self, aor: str, rows: list[BindingRow], token: int | None) -> None:
        """Queue an AOR's new binding set for the store.

        Group commit without a fixed delay: one binding job is in flight at a time; sets that arrive while
        it commits wait and go together as the next job (three bulk statements for all of them). An idle
        switch commits each REGISTER at once; a loaded one commits many per transaction. The held 200s go
        out when their job has committed.
        """
        assert self.loop is not None
        self._binding_sets[aor] = rows  # a later set for the same AOR supersedes an earlier one
        if token is not None:
            self._binding_tokens.append(token)
        if not self._binding_in_flight and self._binding_flush is None:
            # flush at the end of this loop iteration, so sets produced by one input travel together
            self._binding_flush = self.loop.call_soon(self._flush_bindings)

    def _flush_bindings(self) -> None:
        assert self.writer is not None and self.loop is not None
        self._binding_flush = None
        if self._binding_in_flight:
            return
        sets, self._binding_sets = self._binding_sets, {}
        tokens, self._binding_tokens = self._binding_tokens, []
        if not sets and not tokens:
            return
        loop = self.loop

        def job(session: Any) -> None:
            replace_many(session, sets)

        def done(result: object) -> None:
            ok = not isinstance(result, BaseException)
            if not ok:
                log.error(
                    "binding write failed",
                    extra={"event": "store_error", "aors": len(sets), "error": repr(result)},
                )
            loop.call_soon_threadsafe(self._bindings_written, tokens, ok)

        self._binding_in_flight = True
        if not self.writer.submit(job, done):
            log.error(
                "store queue full; refusing REGISTERs", extra={"event": "store_full", "aors": len(sets)}
            )
            self._bindings_written(tokens, False)

    def _bindings_written(self, tokens: list[int], ok: bool) -> None:
        self._binding_in_flight = False
        self._persisted_many(tokens, ok)
        if self._binding_sets or self._binding_tokens:
            self._flush_bindings()

    def _persisted_many(self, tokens: list[int], ok: bool) -> None:
        assert self.endpoint is not None and self.transport is not None
        now = self._now()
        try:
            for token in tokens:
                try:
                    self.endpoint.persisted(token, ok=ok, now=now)
                except Exception:  # one bad answer must not strand the REGISTERs behind it
                    log.exception("x answering a stored REGISTER failed")
        finally:
            self.transport.pump()

    def _trunk_name(self, address: str) -> str | None:
        trunk = self.settings.trunk_for(address)
        return None if trunk is None else trunk.name

    def _sdp_address(self, call: Call) -> str:
        assert self.endpoint is not None
        public = self.settings.server.public_address
        if public:
            return str(public)
        flow = call.leg_a.flow
        return self.endpoint.config.advertise.get(flow.transport, flow.local)[0]

    def _drain_calls(self) -> None:
        """Hand the B2BUA's call events to callflow and callflow's records to the store and the log."""
        now = self._now()
        b2bua = self.b2bua
        callflow = self.callflow
        while True:
            event = b2bua.next_event()
            if event is None:
                break
            callflow.handle(event, now=now)
        while (item := callflow.next_event()) is not None:
            match item:
                case CallRecordReady(call=record, legs=legs):
                    self._write_cdr(record, legs)
                case CallLogged(what=what, fields=fields):
                    log.info(f"call {what}", extra={"event": f"call_{what}", **fields})
                case AcdRecord(record=record):
                    self._acd_records.append(record)
        if self._acd_records and self._acd_flush is None:
            assert self.loop is not None
            self._acd_flush = self.loop.call_soon(self._flush_acd_records)

    def _write_cdr(self, record: Any, legs: Any) -> None:
        assert self.writer is not None

        def job(session: Any) -> None:
            save_call(session, record, legs)

        def done(result: object) -> None:
            if isinstance(result, BaseException):
                log.error(
                    "call record write failed",
                    extra={"event": "store_error", "call": record.call_id, "error": repr(result)},
                )

        if not self.writer.submit(job, done):
            log.error(
                "store queue full; call record lost", extra={"event": "store_full", "call": record.call_id}
            )

    def _on_relay_event(self, call_id: str, event: RelayEvent) -> None:
        self.callflow.on_relay_event(call_id, event, now=self._now())
        assert self.transport is not None
        self.transport.pump()

    # -- the ACD: agents, records, reconciliation, reload --------------------------------------------------

    def _user_of(self, aor: str) -> str:
        return aor.split(":", 1)[1].split("@", 1)[0]

    def _reachable(self, user: str) -> bool:
        """An agent's phone is reachable when it has a live binding that has not failed its qualify."""
        assert self.endpoint is not None
        location = self.endpoint.location
        aor = self.directory.aor(user)
        for binding in location.bindings(aor, now=self._now()):
            reach = location.peek_reachability(binding.aor, binding.key)
            if reach is None or reach.reachable is not False:
                return True
        return False

    async def _settle_store(self) -> None:
        """Before the writer stops: hand it what closing produced (the last calls' records and queue events,
        binding sets that waited behind a commit) and let all of it commit."""
        assert self.writer is not None
        for _ in range(3):
            self._drain_calls()
            if self._acd_flush is not None:
                self._acd_flush.cancel()
            self._flush_acd_records()
            if self._binding_flush is not None:
                self._binding_flush.cancel()
                self._binding_flush = None
            self._flush_bindings()
            await asyncio.to_thread(self.writer.flush, 10.0)
            await asyncio.sleep(0)  # run the completion callbacks that flush released
            waiting = self._binding_sets or self._binding_tokens or self._acd_records
            if not waiting and not self._binding_in_flight:
                return

    def _agent_reachability(self, aor: str) -> None:
        user = self._user_of(aor)
        self.callflow.agent_reachable(user, self._reachable(user), now=self._now())

    def _schedule_reconcile(self) -> None:
        assert self.loop is not None
        self._reconcile_timer = self.loop.call_later(RECONCILE_EVERY, self._reconcile)

    def _reconcile(self) -> None:
        """Every agent state has an exit: compare the engine with live calls and phones, repair and log."""
        try:
            reachable = {a.id for a in self.settings.agents if self._reachable(a.id)}
            for repair in self.callflow.reconcile(reachable, now=self._now()):
                log.warning("acd repaired", extra={"event": "acd_repair", "repair": repr(repair)})
        except Exception:
            log.exception("x reconciliation failed")
        finally:
            self._schedule_reconcile()  # first: a failing pump must not stop reconciliation for good
            assert self.transport is not None
            self.transport.pump()

    async def _restore_agents(self) -> None:
        """After a restart, agents are back in the state they last had (logged out, paused ...). An agent
        with no history starts logged in (like a static queue member), so a fresh install takes calls."""

        def read() -> dict[str, Any]:
            from sqlalchemy.orm import Session

            with Session(self.engine) as session:
                return latest_agent_states(session)

        last = await asyncio.to_thread(read)
        now = self._now()
        for agent in self.settings.agents:
            row = last.get(agent.id)
            state = getattr(row, "new", None)
            if state == "logged_out":
                continue
            self.callflow.agent_command(agent.id, "login", now=now)
            if state == "paused":
                reason = getattr(row, "reason", "") or "break"
                self.callflow.agent_command(agent.id, "pause", reason=reason, now=now)
            self.callflow.agent_reachable(agent.id, self._reachable(agent.id), now=now)
        self._drain_calls()

    def _flush_acd_records(self) -> None:
        self._acd_flush = None
        records, self._acd_records = self._acd_records, []
        if not records or self.writer is None:
            return
        # the offset stays fixed for the life of the process, so order and durations survive
        events, states = store_records(records, offset=self.wall_offset)

        def job(session: Any) -> None:
            if events:
                save_queue_events(session, events)
            if states:
                save_agent_states(session, states)

        if not self.writer.submit(job, None):
            log.error(
                "store queue full; queue events lost", extra={"event": "store_full", "rows": len(records)}
            )

    def reload(self) -> tuple[bool, list[str]]:
        """Apply the configuration file again: new queues, skills and agents take effect for new decisions;
        calls in progress are not touched. Returns (ok, problems)."""
        from softswitch.config.load import ConfigError, load_settings

        try:
            settings = load_settings(self.config_path)
            queues, agents = acd_config(settings)
            sounds = AppSounds(settings, Path(settings.server.sounds_dir))
        except ConfigError as exc:
            return False, [str(issue) for issue in exc.errors]
        except (SoundFileError, ValueError) as exc:
            return False, [str(exc)]
        now = self._now()
        try:
            self.acd.reload(queues, agents, now=now)
        except Exception as exc:
            return False, [str(exc)]
        old_agents = {a.id for a in self.settings.agents}
        self.settings = settings
        self.directory = build_directory(settings)
        self.callflow.directory = self.directory
        self.callflow.sounds = self.sounds = sounds
        for agent in settings.agents:
            if agent.id not in old_agents:
                self.callflow.agent_command(agent.id, "login", now=now)
                self.callflow.agent_reachable(agent.id, self._reachable(agent.id), now=now)
        self._drain_calls()
        assert self.transport is not None
        self.transport.pump()
        log.info(
            "configuration reloaded",
            extra={"event": "reloaded", "queues": len(queues), "agents": len(agents)},
        )
        return True, []

    def _reload_from_signal(self) -> None:
        ok, problems = self.reload()
        if not ok:
            log.error("reload refused", extra={"event": "reload_failed", "problems": problems})

    def acd_snapshot(self) -> Any:
        return self.acd.snapshot(now=self._now())

    def agent_command(self, agent: str, command: str, reason: str = "") -> str:
        ack = self.callflow.agent_command(agent, command, reason=reason, now=self._now())
        self._drain_calls()
        assert self.transport is not None
        self.transport.pump()
        return str(ack.value)

    def calls(self) -> list[dict[str, Any]]:
        return self.callflow.live_calls(self._now())

    # -- views for the control API -------------------------------------------------------------------------

    def registrations(self) -> list[dict[str, Any]]:
        assert self.endpoint is not None
        now = self._now()
        out: list[dict[str, Any]] = []
        location = self.endpoint.location
        for binding in location.all_bindings(now=now):
            reach = location.peek_reachability(binding.aor, binding.key)
            out.append(
                {
                    "aor": binding.aor,
                    "user": binding.aor.split(":", 1)[1].split("@", 1)[0],
                    "contact": binding.contact,
                    "transport": binding.flow.transport,
                    "source": f"{binding.flow.remote[0]}:{binding.flow.remote[1]}",
                    "source_host": binding.flow.remote[0],
                    "source_port": binding.flow.remote[1],
                    "user_agent": binding.user_agent,
                    "expires_at": round(binding.expires_at + self.wall_offset, 3),
                    "expires_in": binding.remaining(now),
                    "reachable": None if reach is None else reach.reachable,
                    "rtt_ms": None if reach is None or reach.rtt is None else round(reach.rtt * 1000, 1),
                }
            )
        return out

    def _media_clock(self) -> dict[str, int]:
        ticker = self.relays.ticker
        return {
            "members": len(ticker),
            "ticks": ticker.ticks,
            "late_ticks": ticker.late_ticks,
            "skipped_ticks": ticker.skipped_ticks,
            "errors": ticker.errors,
            "relays": len(self.relays.runners),
        }

    def status(self) -> dict[str, Any]:
        assert self.endpoint is not None and self.transport is not None
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started_at, 1),
            "domain": self.settings.server.domain,
            "listen": [f"{a.transport}://{a.host}:{a.port}" for a in self.transport.bound],
            "registrations": len(self.endpoint.location),
            "connections": self.transport.connection_count(),
            "transactions": len(self.endpoint.transactions),
            "calls": len(self.b2bua.calls),
            "counters": dict(self.endpoint.counters),
            "store": self.writer.stats() if self.writer is not None else {},
            "media_clock": self._media_clock(),
        }


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
