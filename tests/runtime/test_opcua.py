"""rd-infer --opcua: a real asyncua client on 127.0.0.1 browses, reads, and triggers inspections.

The camera is Aravis' fake GigE Vision camera in software-trigger mode (test_aravis.FakeCamera);
the atomicity test uses a fast synthetic live source so results change while the client reads.
"""

import asyncio
import json
import threading
import time

import pytest
from pipeline_parts import FrameSource, ListSink, make_detector
from ports import free_ports

from rd_edge.core.files import sha256_file

asyncua = pytest.importorskip("asyncua", reason="the opcua extra (pip install '.[opcua]')")

NS = "urn:rd-edge:vision"


async def connect(url, deadline=30.0):
    end = time.monotonic() + deadline
    while True:
        client = asyncua.Client(url, timeout=10)
        try:
            await client.connect()
            return client
        except (OSError, asyncio.TimeoutError):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.1)


async def browse(node, depth=0):
    """'name [class] nodeid' lines of the tree under ``node`` (the closing note prints this)."""
    lines = []
    for child in await node.get_children():
        name = (await child.read_browse_name()).Name
        kind = (await child.read_node_class()).name
        if name in ("OutputArguments", "InputArguments"):
            continue
        lines.append(f"{'  ' * depth}{name} [{kind}] {child.nodeid.to_string()}")
        lines += await browse(child, depth + 1)
    return lines


def test_a_plc_browses_triggers_and_reads_results_of_a_triggered_camera(tiny_onnx, tmp_path):
    from test_aravis import ADDRESS, FakeCamera

    from rd_edge.runtime.cli import main

    camera = FakeCamera()
    url = f"opc.tcp://127.0.0.1:{free_ports()[0]}"
    records_path = tmp_path / "r.jsonl"
    rc = []
    run = threading.Thread(
        target=lambda: rc.append(
            main(
                [
                    str(tiny_onnx),
                    f"cam=aravis://{ADDRESS}?Width=64&Height=48",
                    "--trigger",
                    "--opcua",
                    url,
                    "--limit",
                    "5",
                    "--json",
                    str(records_path),
                    "--quiet",
                ]
            )
        ),
        daemon=True,
    )
    run.start()

    async def plc():
        client = await connect(url)
        try:
            ns = await client.get_namespace_index(NS)
            node = lambda path: client.get_node(f"ns={ns};s=RdEdge.{path}")  # noqa: E731
            tree = await browse(client.get_node(f"ns={ns};s=RdEdge"))
            assert await node("Streams.cam.State").read_value() == "WaitingForTrigger"
            assert await node("Configuration.ModelSha256").read_value() == sha256_file(tiny_onnx)
            answers = []
            for _ in range(3):  # method calls: each returns its own frame's result
                answers.append(await node("Streams.cam").call_method(f"{ns}:Trigger"))
                read = await client.read_values(
                    [node(f"Streams.cam.Result.{n}") for n in ("ResultId", "FrameNumber", "Verdict", "Score")]
                )
                assert read == answers[-1][:4]  # the nodes were published before the call returned
            request = node("Streams.cam.TriggerRequest")  # the handshake without a method call
            await request.write_value(True)
            for _ in range(200):
                if await node("Streams.cam.Result.ResultId").read_value() == 4:
                    break
                await asyncio.sleep(0.02)
            counters = await client.read_values(
                [node(f"Streams.cam.Counters.{n}") for n in ("Inspected", "Errors")]
            )
            await node("Streams.cam").call_method(f"{ns}:Trigger")  # the 5th: --limit 5 ends the run
            return tree, answers, counters
        finally:
            await client.disconnect()

    try:
        tree, answers, counters = asyncio.run(plc())
        run.join(timeout=20)
    finally:
        camera.kill()
    assert rc == [0]
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    assert len(records) == 5  # exactly one frame per trigger: 3 calls, 1 TriggerRequest, 1 call
    assert [a[0] for a in answers] == [1, 2, 3]
    for answer, record in zip(answers, records):
        assert answer[1] == record["frame"] and answer[2] == ("NG" if record["is_anomalous"] else "OK")
        assert answer[3] == pytest.approx(record["score"]) and answer[5] == ""
    assert counters == [4, 0]
    names = {line.split()[0] for line in tree}
    assert {
        "State",
        "Heartbeat",
        "ModelFile",
        "ModelSha256",
        "ImageThreshold",
        "Streams",
        "cam",
        "Trigger",
        "TriggerRequest",
        "Verdict",
        "Score",
        "NormalizedScore",
        "FrameNumber",
        "CameraTimestamp",
        "LatencyMs",
        "Inspected",
        "NG",
        "Errors",
        "Dropped",
    } <= names


def test_one_read_never_mixes_two_frames(tiny_onnx):
    from rd_edge.runtime.pipeline import Pipeline
    from rd_edge.runtime.sinks.opcua import OpcUaSink

    url = f"opc.tcp://127.0.0.1:{free_ports()[0]}"
    sink = ListSink()
    with make_detector(tiny_onnx) as det:
        opcua = OpcUaSink(url, ["cam"], str(tiny_onnx), (det.threshold, det.pixel_threshold))
        pipeline = Pipeline(det, [FrameSource("cam", 100000, period=0.001, live=True)], [opcua, sink])
        reads = []

        async def plc():
            client = await connect(url)
            try:
                ns = await client.get_namespace_index(NS)
                nodes = [
                    client.get_node(f"ns={ns};s=RdEdge.Streams.cam.Result.{n}")
                    for n in ("FrameNumber", "Score", "ResultId")
                ]
                for _ in range(150):
                    reads.append(await client.read_values(nodes))
            finally:
                await client.disconnect()
                pipeline.stop()

        threading.Thread(target=lambda: asyncio.run(plc()), daemon=True).start()
        pipeline.run()
    scores = {r.index: r.prediction.score for r in sink.results}
    seen = [(frame, score) for frame, score, result_id in reads if result_id > 0]
    assert len({frame for frame, _ in seen}) > 10  # the results changed while the PLC read
    assert all(score == pytest.approx(scores[frame]) for frame, score in seen)


def test_anonymous_access_is_refused_off_loopback():
    from rd_edge.runtime.sinks.base import SinkError
    from rd_edge.runtime.sinks.opcua import OpcUaSink

    with pytest.raises(SinkError, match="anonymous access is allowed on a loopback address only"):
        OpcUaSink("opc.tcp://0.0.0.0:4840", ["cam"], None, (0.3, 0.3))
    with pytest.raises(SinkError, match="expected opc.tcp://HOST:PORT"):
        OpcUaSink("http://127.0.0.1:4840", ["cam"], None, (0.3, 0.3))


def test_without_asyncua_the_error_names_the_extra_from_the_checkout(monkeypatch):
    import sys

    from rd_edge.runtime.sinks.base import SinkError
    from rd_edge.runtime.sinks.opcua import _asyncua

    monkeypatch.setitem(sys.modules, "asyncua", None)  # makes `import asyncua` fail
    with pytest.raises(SinkError, match=r"OPC UA server \(--opcua\) needs .*: pip install '\.\[opcua\]'"):
        _asyncua()


def test_with_credentials_only_the_user_gets_in_encrypted(tmp_path):
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from rd_edge.runtime.sinks.opcua import OpcUaSecurity, OpcUaSink

    async def certificates():
        for who, use in (
            ("server", ExtendedKeyUsageOID.SERVER_AUTH),
            ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
        ):
            await setup_self_signed_certificate(
                tmp_path / f"{who}.pem",
                tmp_path / f"{who}.der",
                f"urn:rd-edge:test:{who}",
                "localhost",
                [use],
                {"commonName": who},
            )

    asyncio.run(certificates())
    url = f"opc.tcp://127.0.0.1:{free_ports()[0]}"
    security = OpcUaSecurity("plc", "s3cret", tmp_path / "server.der", tmp_path / "server.pem")
    sink = OpcUaSink(url, ["cam"], None, (0.3, 0.3), security=security)

    async def connect_as(user, password, encrypted):
        client = asyncua.Client(url, timeout=2)
        if encrypted:
            await client.set_security_string(
                f"Basic256Sha256,SignAndEncrypt,{tmp_path / 'client.der'},{tmp_path / 'client.pem'}"
            )
        if user:
            client.set_user(user)
            client.set_password(password)
        try:
            await client.connect()
        except Exception as exc:  # noqa: BLE001  refused: the kind of refusal does not matter here
            return type(exc).__name__
        try:
            ns = await client.get_namespace_index(NS)
            return await client.get_node(f"ns={ns};s=RdEdge.State").read_value()
        finally:
            await client.disconnect()

    try:
        assert asyncio.run(connect_as("plc", "s3cret", True)) == "Operational"
        assert asyncio.run(connect_as(None, None, False)) != "Operational"  # anonymous, plain
        assert asyncio.run(connect_as("plc", "wrong", True)) != "Operational"
    finally:
        sink.close()


def test_a_cancelled_trigger_is_skipped_and_the_next_one_answered():
    """A client that gave up (its Future cancelled) must not break the board: the frame taken for
    it answers nobody, the next request gets its own frame (issue 28: identities)."""
    import numpy as np

    from rd_edge.runtime.sinks.base import Result
    from rd_edge.runtime.sinks.trigger import TriggerBoard
    from rd_edge.runtime.sources import SourceItem

    class Camera:
        label = "cam"

        def __init__(self):
            self.tokens = []

        def request_trigger(self, token):
            self.tokens.append(token)

    camera = Camera()
    board = TriggerBoard([camera])
    gave_up = board.request("cam")
    assert gave_up.cancel()
    waiting = board.request("cam")

    def taken(index, token):
        item = SourceItem(f"cam#{index}", str(index), np.zeros((2, 2, 3), np.uint8), None)
        item.triggers = [token]
        return Result("cam", index, item)

    board.write(taken(0, camera.tokens[0]))  # for the cancelled request: nobody to answer
    second = taken(1, camera.tokens[1])
    board.write(second)
    assert waiting.result(timeout=1) is second and gave_up.cancelled()
    board.close()
