"""An OPC UA server for the line's PLC (asyncua): results, counters, model identity, triggers.

``rd-infer ... --opcua opc.tcp://127.0.0.1:4840`` serves, in namespace ``urn:rd-edge:vision``, an
information model shaped after OPC 40100-1 (OPC UA for Machine Vision), with string NodeIds a PLC
programmer can type (``ns=<index of urn:rd-edge:vision>;s=RdEdge.Streams.<stream>.Result.Verdict``):

    RdEdge                                 the vision system (40100: VisionSystem)
      State                String          Operational | Stopped          (40100: system state)
      Heartbeat            UInt64          +1 every second while the server runs
      Configuration        (40100: the active recipe/configuration)
        ModelFile, ModelSha256       String  the model's file name and SHA-256
        ImageThreshold, PixelThreshold  Double  the thresholds in force
      Streams.<stream>                     one per source (stream label as in the records)
        State              String          Running | Outage | WaitingForTrigger
        Result             (40100: ResultManagement, the last result)
          ResultId UInt64, FrameNumber Int64, Verdict String (OK | NG | ERROR), IsAnomalous Boolean,
          Score Double, NormalizedScore Double (0.5 = threshold), CameraTimestamp Double (s, the
          camera's clock; 0 when it gives none), CaptureTime DateTime, LatencyMs Double, Error String
        Counters           Inspected, NG, Errors, Dropped        UInt64
        Trigger()          method -> ResultId, FrameNumber, Verdict, Score, NormalizedScore, Error
        TriggerRequest     Boolean, writable: write true -> one inspection; the server writes false
                           once the result is published (a PLC handshake without method calls)

Covered from OPC 40100-1: the split into system, configuration and result management, results
published as nodes with an id, and a trigger that starts one inspection. Not covered: the 40100
state machines (VisionStateMachine, AutomaticModeStateMachine), recipe and configuration
management methods, the structured ResultDataType and result transfer, events and alarms.

All variables of one result change in one step of the server's event loop, so one Read request
(or one subscription publish) never mixes two frames. Security: anonymous access only when the
server listens on a loopback address; any other address needs a user name and password (given by
the caller) and a server certificate and key, and then offers Basic256Sha256 SignAndEncrypt only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from rd_edge.core.files import sha256_file
from rd_edge.core.optional import import_optional

from .base import Result, Sink, SinkError
from .trigger import TriggerBoard, TriggerError

NAMESPACE = "urn:rd-edge:vision"
TRIGGER_TIMEOUT = 10.0  # seconds a Trigger call waits for its result


@dataclass(frozen=True)
class OpcUaSecurity:
    """For a server on a non-loopback address: who may connect, and the server's certificate."""

    user: str
    password: str
    certificate: Path
    private_key: Path


def _asyncua() -> Any:
    return import_optional("asyncua", "the OPC UA server (--opcua)", "pip install '.[opcua]'", SinkError)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_endpoint(url: str) -> Tuple[str, int]:
    """'opc.tcp://HOST:PORT' -> (host, port); SinkError for anything else."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "opc.tcp" or not parts.hostname or port is None:
        raise SinkError(f"--opcua: expected opc.tcp://HOST:PORT (e.g. opc.tcp://127.0.0.1:4840), got {url!r}")
    return parts.hostname, port


class OpcUaSink(Sink):
    """Serves the node model above while the run lasts; ``write`` updates a stream's nodes."""

    name = "opcua"

    def __init__(
        self,
        endpoint: str,
        streams: Sequence[str],
        model_path: Optional[str],
        thresholds: Tuple[float, float],
        triggers: Optional[TriggerBoard] = None,
        triggered: Sequence[str] = (),
        security: Optional[OpcUaSecurity] = None,
    ) -> None:
        self.ua = _asyncua()
        self.host, self.port = parse_endpoint(endpoint)
        if not _is_loopback(self.host) and security is None:
            raise SinkError(
                f"--opcua on {self.host}: anonymous access is allowed on a loopback address only; "
                f"give --opcua-user USER (password in RD_EDGE_OPCUA_PASSWORD) and --opcua-cert/--opcua-key"
            )
        self.endpoint = f"opc.tcp://{self.host}:{self.port}"
        self.streams, self.triggers, self.security = list(streams), triggers, security
        self._triggered = set(triggered)
        self._model = (
            Path(model_path).name if model_path else "",
            sha256_file(model_path) if model_path else "",
        )
        self._thresholds = thresholds
        self._nodes: Dict[str, Dict[str, Any]] = {}
        self._counts = {s: {"Inspected": 0, "NG": 0, "Errors": 0, "Dropped": 0} for s in self.streams}
        self._result_ids = {s: 0 for s in self.streams}
        self._inflight = 0  # Trigger calls waiting for their result
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rd-opcua", daemon=True)
        self._thread.start()
        self._server: Any = None
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=60)
        except Exception as exc:
            self._stop_loop()
            raise SinkError(f"cannot serve OPC UA on {self.endpoint}: {exc}") from None

    # --- the address space ----------------------------------------------------------------

    async def _start(self) -> None:
        ua = self.ua.ua
        server = self.ua.Server(user_manager=_Users(self.security) if self.security else None)
        await server.init()
        self._building = server
        server.set_endpoint(self.endpoint)
        server.set_server_name("rd-edge vision system")
        if self.security is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            _allow(server, ua.AnonymousIdentityToken, "Anonymous")
        else:
            await server.load_certificate(str(self.security.certificate))
            await server.load_private_key(str(self.security.private_key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            _allow(server, ua.UserNameIdentityToken, "Username")
        self.ns = await server.register_namespace(NAMESPACE)
        root = await self._object(server.nodes.objects, "RdEdge", "RdEdge")
        self._system = {
            "State": await self._var(root, "RdEdge", "State", "Operational", ua.VariantType.String),
            "Heartbeat": await self._var(root, "RdEdge", "Heartbeat", 0, ua.VariantType.UInt64),
        }
        config = await self._object(root, "RdEdge.Configuration", "Configuration")
        for name, value, kind in (
            ("ModelFile", self._model[0], ua.VariantType.String),
            ("ModelSha256", self._model[1], ua.VariantType.String),
            ("ImageThreshold", float(self._thresholds[0]), ua.VariantType.Double),
            ("PixelThreshold", float(self._thresholds[1]), ua.VariantType.Double),
        ):
            await self._var(config, "RdEdge.Configuration", name, value, kind)
        streams = await self._object(root, "RdEdge.Streams", "Streams")
        for stream in self.streams:
            await self._add_stream(streams, stream)
        await server.start()
        self._server = server
        self._heartbeat = self._loop.create_task(self._beat())

    async def _object(self, parent: Any, path: str, name: str) -> Any:
        return await parent.add_object(
            self.ua.ua.NodeId(path, self.ns), self.ua.ua.QualifiedName(name, self.ns)
        )

    async def _var(
        self, parent: Any, path: str, name: str, value: Any, kind: Any, writable: bool = False
    ) -> Any:
        ua = self.ua.ua
        node = await parent.add_variable(
            ua.NodeId(f"{path}.{name}", self.ns), ua.QualifiedName(name, self.ns), ua.Variant(value, kind)
        )
        if writable:
            await node.set_writable()
        return node

    async def _add_stream(self, parent: Any, stream: str) -> None:
        ua = self.ua.ua
        base = f"RdEdge.Streams.{stream}"
        obj = await self._object(parent, base, stream)
        state = "WaitingForTrigger" if stream in self._triggered else "Running"
        nodes = {"State": await self._var(obj, base, "State", state, ua.VariantType.String)}
        result = await self._object(obj, f"{base}.Result", "Result")
        for name, (value, kind) in _result_values(None, 0, ua).items():
            nodes[name] = await self._var(result, f"{base}.Result", name, value, kind)
        counters = await self._object(obj, f"{base}.Counters", "Counters")
        for name in self._counts[stream]:
            nodes[name] = await self._var(counters, f"{base}.Counters", name, 0, ua.VariantType.UInt64)
        outputs = [
            _argument(ua, n, t)
            for n, t in (
                ("ResultId", ua.ObjectIds.UInt64),
                ("FrameNumber", ua.ObjectIds.Int64),
                ("Verdict", ua.ObjectIds.String),
                ("Score", ua.ObjectIds.Double),
                ("NormalizedScore", ua.ObjectIds.Double),
                ("Error", ua.ObjectIds.String),
            )
        ]
        await obj.add_method(
            ua.NodeId(f"{base}.Trigger", self.ns),
            ua.QualifiedName("Trigger", self.ns),
            self._method(stream),
            [],
            outputs,
        )
        request = await self._var(obj, base, "TriggerRequest", False, ua.VariantType.Boolean, writable=True)
        self._server_setter(request, stream)
        nodes["TriggerRequest"] = request
        self._nodes[stream] = nodes

    # --- triggers -------------------------------------------------------------------------

    def _method(self, stream: str) -> Any:
        ua = self.ua.ua

        async def trigger(parent: Any) -> List[Any]:
            self._inflight += 1
            try:
                result = await self._inspect(stream)
            finally:
                self._inflight -= 1
            values = _result_values(result, self._result_ids[stream], ua)
            return [
                ua.Variant(*values[name])
                for name in ("ResultId", "FrameNumber", "Verdict", "Score", "NormalizedScore", "Error")
            ]

        return trigger

    async def _inspect(self, stream: str) -> Result:
        if self.triggers is None:
            raise self.ua.ua.UaStatusCodeError(self.ua.ua.StatusCodes.BadNotSupported)
        try:
            future = self.triggers.request(stream)
            return await asyncio.wait_for(asyncio.wrap_future(future), TRIGGER_TIMEOUT)
        except (TriggerError, asyncio.TimeoutError):
            raise self.ua.ua.UaStatusCodeError(self.ua.ua.StatusCodes.BadTimeout) from None

    def _server_setter(self, node: Any, stream: str) -> None:
        """TriggerRequest: a PLC writes true -> one inspection; false is written back once published."""

        def setter(node_data: Any, attr: Any, value: Any) -> None:
            node_data.attributes[attr].value = value
            if value.Value is not None and value.Value.Value is True:
                self._loop.create_task(self._request_by_variable(stream))

        # the setter runs inside the server's write service, in this loop (no await there)
        self._building.set_attribute_value_setter(node.nodeid, setter)

    async def _request_by_variable(self, stream: str) -> None:
        try:
            await self._inspect(stream)
        except Exception:  # noqa: BLE001  the error is in the Result nodes, or the stream is gone
            pass
        await self._write(stream, {"TriggerRequest": (False, self.ua.ua.VariantType.Boolean)})

    # --- updates --------------------------------------------------------------------------

    async def _beat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(1.0)
            beats += 1
            await self._system["Heartbeat"].write_value(
                self.ua.ua.Variant(beats, self.ua.ua.VariantType.UInt64)
            )

    async def _write(
        self, stream: str, values: Dict[str, Tuple[Any, Any]], when: Optional[datetime] = None
    ) -> None:
        """Every value of ``values`` into its node; no await yields between the assignments."""
        ua, server = self.ua.ua, self._server
        if server is None:  # closed meanwhile (the run ended)
            return
        for name, (value, kind) in values.items():
            data = ua.DataValue(ua.Variant(value, kind), SourceTimestamp=when, ServerTimestamp=when)
            await server.write_attribute_value(self._nodes[stream][name].nodeid, data)

    def write(self, result: Result) -> None:
        stream = result.stream
        if stream not in self._nodes:
            return
        ua = self.ua.ua
        counts = self._counts[stream]
        counts["Inspected"] += 1
        counts["Dropped"] += result.dropped_before
        counts["Errors"] += int(result.prediction is None)
        counts["NG"] += int(result.prediction is not None and bool(result.prediction.is_anomalous))
        self._result_ids[stream] += 1
        values = _result_values(result, self._result_ids[stream], ua)
        values.update({name: (count, ua.VariantType.UInt64) for name, count in counts.items()})
        outage = result.item.outage
        if outage is not None or stream not in self._triggered:
            state = "Outage" if outage is not None and outage.end is None else "Running"
            values["State"] = (
                "WaitingForTrigger" if stream in self._triggered and state == "Running" else state,
                ua.VariantType.String,
            )
        when = datetime.fromtimestamp(result.captured_at, timezone.utc)
        future = asyncio.run_coroutine_threadsafe(self._write(stream, values, when), self._loop)
        future.result(timeout=5.0)  # published before the next sink (the trigger board) answers

    def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None

            async def stop() -> None:
                for _ in range(40):  # a Trigger answered by the run's last frame still gets its reply out
                    if not self._inflight:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.1)
                self._heartbeat.cancel()
                await self._system["State"].write_value(
                    self.ua.ua.Variant("Stopped", self.ua.ua.VariantType.String)
                )
                await server.stop()

            try:
                asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
            except Exception:  # noqa: BLE001  closing: nothing left to tell the PLC
                pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def summary(self) -> Optional[str]:
        return None


def _allow(server: Any, token: Any, legacy_name: str) -> None:
    """The one identity token the server accepts (set_identity_tokens; older asyncua: set_security_IDs)."""
    if hasattr(server, "set_identity_tokens"):
        server.set_identity_tokens([token])
    else:
        server.set_security_IDs([legacy_name])


def _result_values(result: Optional[Result], result_id: int, ua: Any) -> Dict[str, Tuple[Any, Any]]:
    """The Result nodes' values (and types) for one result; None: the initial, empty result."""
    t = ua.VariantType
    p = result.prediction if result is not None else None
    verdict = "" if result is None else "ERROR" if p is None else "NG" if p.is_anomalous else "OK"
    captured = datetime.fromtimestamp(result.captured_at if result else time.time(), timezone.utc)
    return {
        "ResultId": (result_id, t.UInt64),
        "FrameNumber": (result.index if result else -1, t.Int64),
        "Verdict": (verdict, t.String),
        "IsAnomalous": (bool(p.is_anomalous) if p else False, t.Boolean),
        "Score": (float(p.score) if p else float("nan"), t.Double),
        "NormalizedScore": (float(p.normalized_score) if p else float("nan"), t.Double),
        "CameraTimestamp": (float(result.item.camera_time or 0.0) if result else 0.0, t.Double),
        "CaptureTime": (captured, t.DateTime),
        "LatencyMs": (float(p.timings["total_ms"]) if p else float("nan"), t.Double),
        "Error": ((result.error or "") if result is not None and p is None else "", t.String),
    }


def _argument(ua: Any, name: str, data_type: int) -> Any:
    argument = ua.Argument()
    argument.Name = name
    argument.DataType = ua.NodeId(data_type)
    argument.ValueRank = -1
    return argument


class _Users:
    """asyncua user manager: one user name and password (non-loopback servers)."""

    def __init__(self, security: OpcUaSecurity) -> None:
        self.security = security

    def get_user(
        self,
        iserver: Any,
        username: Optional[str] = None,
        password: Optional[str] = None,
        certificate: Any = None,
    ) -> Any:
        from asyncua.crypto.permission_rules import User, UserRole

        if username == self.security.user and password == self.security.password:
            return User(role=UserRole.User)
        return None
