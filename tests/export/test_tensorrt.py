"""TensorRT engines: `rd-export --engine`, the builder across TensorRT versions, the sidecar.

Without a GPU the builder runs against a small stand-in ``tensorrt`` module that records what
it is asked (flags, profile, workspace, timing cache) with the API surface of 8.5, 10 and 11.
The tests marked ``tensorrt``/``gpu`` build real engines and compare them with ONNX Runtime on
the CPU; scripts/gpu_check.sh runs them and prints their PARITY lines.
"""

import enum
import importlib.util
import json
import subprocess
import sys
import textwrap
import types
from dataclasses import replace

import numpy as np
import onnx
import pytest
from fake_cuda import FakeCuda, install

from rd_edge.core.errors import BackendError, ExportError, MetadataError
from rd_edge.core.files import sha256_file
from rd_edge.core.sidecar import EngineSidecar, GpuInfo, sidecar_path
from rd_edge.runtime import load_runner
from rd_edge.runtime.backends.trt import builder as tb
from rd_edge.runtime.backends.trt import util as trt_backend
from rd_export.cli import main as export_main
from rd_export.graph import read_metadata

FAKE_GPU = GpuInfo("NVIDIA Fake GPU", "8.7", 16, 8192)


# --- a stand-in tensorrt module -------------------------------------------------------------------


class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class LayerType(enum.Enum):
    CONVOLUTION = "Conv"
    QUANTIZE = "QuantizeLinear"
    DEQUANTIZE = "DequantizeLinear"
    OTHER = "other"


class Tensor:
    def __init__(self, name, shape, dtype="float32"):
        self.name, self.shape, self.dtype = name, shape, dtype


class Layer:
    def __init__(self, node):
        self.name = node.name
        kinds = {t.value: t for t in LayerType}
        self.type = kinds.get(node.op_type, LayerType.OTHER)
        self.num_outputs = len(node.output)
        self._outputs = [
            Tensor(o, (), "int64" if node.op_type == "Shape" else "float32") for o in node.output
        ]
        self.precision = None
        self.output_types = {}

    def get_output(self, i):
        return self._outputs[i]

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype


class Network:
    def __init__(self, flags, strongly_typed):
        self.flags, self.inputs, self.layers = flags, [], []
        self.strongly_typed = strongly_typed  # 11: always; 10: only with the STRONGLY_TYPED flag
        self.weight_types = set()  # element types of the graph's float initializers

    num_inputs = property(lambda self: len(self.inputs))
    num_layers = property(lambda self: len(self.layers))

    def get_input(self, i):
        return self.inputs[i]

    def get_layer(self, i):
        return self.layers[i]


class ParserError:
    def __init__(self, node, desc):
        self._node, self._desc = node, desc

    def node(self):
        return self._node

    def desc(self):
        return self._desc


class OnnxParser:
    fail_with = []  # set by a test: parser errors to report

    def __init__(self, network, logger):
        self.network, self.errors = network, list(self.fail_with)

    def parse_from_file(self, path):
        if self.errors:
            return False
        model = onnx.load(path)
        for inp in model.graph.input:
            dims = tuple(
                d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim
            )
            self.network.inputs.append(Tensor(inp.name, dims))
        self.network.layers = [Layer(n) for n in model.graph.node]
        names = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}
        self.network.weight_types = {
            names[t.data_type] for t in model.graph.initializer if t.data_type in names
        }
        return True

    num_errors = property(lambda self: len(self.errors))

    def get_error(self, i):
        return ParserError(*self.errors[i])


class TimingCache:
    """A cache blob is b"cache/<TensorRT version>/<device>/<entries>"."""

    def __init__(self, version, device, entries=b""):
        self.version, self.device, self.entries = version, device, entries

    def serialize(self):
        return memoryview(b"cache/%s/%d/%s" % (self.version.encode(), self.device, self.entries))


class Config:
    def __init__(self, trt):
        self.trt, self.flags, self.profiles, self.pool_limits = trt, set(), [], {}
        self.cache = None

    def set_memory_pool_limit(self, pool, size):
        self.pool_limits[pool] = size

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def add_optimization_profile(self, profile):
        # NvInfer.h IBuilderConfig::addOptimizationProfile: "the index of the optimization
        # profile (starting from 0) if the input is valid, or -1 if the input is not valid".
        mins, opts, maxs = profile.shapes["image"]
        if not all(lo <= opt <= hi for lo, opt, hi in zip(mins, opts, maxs)):
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data):
        # NvInfer.h IBuilderConfig::createTimingCache returns nullptr for a blob it cannot
        # deserialize (another TensorRT version, a truncated file); trtexec and Polygraphy's
        # CreateConfig ("if cache is None: cache = config.create_timing_cache(b'')") check it.
        version = self.trt.__version__
        if not data:
            return TimingCache(version, current_device())
        parts = bytes(data).split(b"/", 3)
        if len(parts) != 4 or parts[0] != b"cache" or parts[1] != version.encode():
            return None
        return TimingCache(version, int(parts[2]), parts[3])

    def set_timing_cache(self, cache, ignore_mismatch):
        # pybind11 rejects None for the ITimingCache const& argument; a cache recorded on another
        # device is refused (returns false) unless ignore_mismatch.
        if not isinstance(cache, TimingCache):
            raise TypeError("set_timing_cache(): incompatible function arguments")
        if cache.device != current_device() and not ignore_mismatch:
            return False
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


class Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min_shape, opt_shape, max_shape):
        # The binding checks min <= opt <= max per dimension (IOptimizationProfile::setDimensions
        # fails) and raises; an invalid profile never reaches add_optimization_profile.
        if not all(lo <= opt <= hi for lo, opt, hi in zip(min_shape, opt_shape, max_shape)):
            raise RuntimeError(
                f"set_shape(): invalid dimensions min {tuple(min_shape)} opt "
                f"{tuple(opt_shape)} max {tuple(max_shape)} for {name}"
            )
        self.shapes[name] = (tuple(min_shape), tuple(opt_shape), tuple(max_shape))


FAKE_CUDA = {0: None}  # the FakeCuda of the running test, when it installs one


def current_device():
    """The device TensorRT works on: the current context's, else the CUDA runtime's default 0."""
    cuda = FAKE_CUDA[0]
    device = cuda.current_device() if cuda is not None else None
    return 0 if device is None else device


def computes_in(network, config):
    """The precision the convolutions run in: a strongly typed network's come from the graph
    (fp16 weights, Q/DQ layers); a weakly typed one's from the FP16/INT8 builder flags."""
    qdq = any(layer.type in (LayerType.QUANTIZE, LayerType.DEQUANTIZE) for layer in network.layers)
    if network.strongly_typed:
        return "int8" if qdq else "fp16" if "float16" in network.weight_types else "fp32"
    flags = {f.name for f in config.flags}
    return "int8" if qdq and "INT8" in flags else "fp16" if "FP16" in flags else "fp32"


def fake_tensorrt(version):
    """A ``tensorrt`` module with the API surface of ``version`` (8.5, 10.x or 11.x)."""
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.float32, trt.float16 = "float32", "float16"
    trt.LayerType = LayerType
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")
    flags = ["TF32"] + (["FP16", "INT8", "PREFER_PRECISION_CONSTRAINTS"] if major < 11 else [])
    trt.BuilderFlag = enum.Enum("BuilderFlag", flags)
    creation = (["EXPLICIT_BATCH"] if major < 11 else []) + (["STRONGLY_TYPED"] if major >= 10 else [])
    trt.NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag", {n: i for i, n in enumerate(creation)}
    )

    class ILogger:
        Severity = globals()["Severity"]

        def __init__(self):
            pass

    class Builder:
        built = []  # (network, config) of every build, for the tests to inspect
        devices = []  # the CUDA device current during each build
        computes = []  # what each engine's convolutions compute in: fp32, fp16 or int8
        fail = False

        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            creation = trt.NetworkDefinitionCreationFlag
            typed = major >= 11 or bool(flags & (1 << int(getattr(creation, "STRONGLY_TYPED", 99))))
            if major >= 11 and flags:  # deprecated flags are ignored, with a warning
                self.logger.log(Severity.WARNING, "network creation flags are deprecated and ignored")
            return Network(flags, typed)

        def create_builder_config(self):
            return Config(trt)

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            Builder.built.append((network, config))
            Builder.devices.append(current_device())
            if Builder.fail:
                self.logger.log(Severity.ERROR, "out of tactics for /rd/teacher/conv1/Conv")
                return None
            if config.cache is not None:
                config.cache.entries += b"t"  # one more timed tactic
            Builder.computes.append(computes_in(network, config))
            return memoryview(b"PLAN" + version.encode())

    trt.ILogger, trt.Builder, trt.OnnxParser = ILogger, Builder, OnnxParser
    return trt


@pytest.fixture
def fake_trt(monkeypatch):
    """Install a fake tensorrt of a given version; the GPU is faked too."""

    def install(version="10.3.0"):
        trt = fake_tensorrt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(tb, "gpu_identity", lambda device_id=0: FAKE_GPU)
        monkeypatch.setattr(OnnxParser, "fail_with", [])
        monkeypatch.setitem(FAKE_CUDA, 0, None)
        return trt

    return install


@pytest.fixture(scope="module")
def int8_trt_onnx(r18_onnx, demo_category, tmp_path_factory):
    from rd_export.quantize import quantize_int8

    out = tmp_path_factory.mktemp("trt_int8") / "r18_int8.onnx"
    return quantize_int8(r18_onnx, out, demo_category, target="tensorrt", max_images=4).onnx_path


def flag_names(config):
    return {f.name for f in config.flags}


@pytest.mark.parametrize("version", ["8.5.3", "10.3.0"])
def test_tensorrt_85_and_10_fp16_engine_flags_profile_and_sidecar(fake_trt, r18_onnx, tmp_path, version):
    trt = fake_trt(version)
    plan = tmp_path / "r18_fp16.engine"
    report = tb.build_engine(r18_onnx, plan, precision="fp16", max_batch=4, workspace_mb=512)
    network, config = trt.Builder.built[-1]
    # EXPLICIT_BATCH is required before 10, deprecated and implied from 10
    explicit = (
        1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if int(version.split(".")[0]) < 10 else 0
    )
    assert network.flags == explicit and not network.strongly_typed
    assert flag_names(config) == {"FP16", "PREFER_PRECISION_CONSTRAINTS"}  # TF32 cleared
    assert trt.Builder.computes[-1] == "fp16"
    assert config.profiles[0].shapes["image"] == ((1, 3, 64, 64), (1, 3, 64, 64), (4, 3, 64, 64))
    assert list(config.pool_limits.values()) == [512 << 20]
    head = [
        layer
        for layer in network.layers
        if layer.name.startswith("/head/") and layer.get_output(0).dtype == "float32"
    ]
    assert head and all(layer.precision == "float32" for layer in head)  # the map reduction stays fp32
    assert all(layer.precision is None for layer in network.layers if layer.name.startswith("/rd/"))
    assert plan.read_bytes() == b"PLAN" + version.encode()
    sidecar = EngineSidecar.read(plan)  # the runtime's own reader validates it
    assert (sidecar.tensorrt_version, sidecar.gpu) == (version, FAKE_GPU)
    assert (sidecar.precision, sidecar.min_batch, sidecar.max_batch) == ("fp16", 1, 4)
    assert sidecar.onnx_sha256 == sha256_file(r18_onnx)
    assert sidecar.metadata == replace(read_metadata(onnx.load(str(r18_onnx))), precision="fp16")
    assert report.sidecar == sidecar_path(plan)


def test_tensorrt_10_int8_sets_int8_flag_for_qdq_and_no_explicit_batch(fake_trt, int8_trt_onnx, tmp_path):
    trt = fake_trt("10.3.0")
    tb.build_engine(int8_trt_onnx, tmp_path / "m.engine")  # precision taken from the graph: int8
    network, config = trt.Builder.built[-1]
    assert network.flags == 0  # EXPLICIT_BATCH is deprecated and implied from 10
    assert flag_names(config) == {"INT8", "FP16", "PREFER_PRECISION_CONSTRAINTS"}  # fp16 outside Q/DQ
    assert trt.Builder.computes[-1] == "int8"
    assert all(
        layer.precision == "float32"
        for layer in network.layers
        if layer.name.startswith("/head/") and layer.get_output(0).dtype == "float32"
    )
    assert EngineSidecar.read(tmp_path / "m.engine").metadata.extra["int8_target"] == "tensorrt"


def test_tensorrt_11_takes_precision_from_the_onnx(fake_trt, int8_trt_onnx, r18_onnx, tmp_path):
    trt = fake_trt("11.4.0")
    tb.build_engine(int8_trt_onnx, tmp_path / "m.engine", precision="int8")
    network, config = trt.Builder.built[-1]
    assert network.flags == 0  # STRONGLY_TYPED is deprecated and ignored in 11: every network is typed
    assert flag_names(config) == set()  # no FP16/INT8 flags exist in 11
    assert trt.Builder.computes[-1] == "int8"
    with pytest.raises(
        ExportError, match=r"TensorRT 11 takes fp16 from the ONNX.*--precision fp16.*gpu-cu12"
    ):
        tb.build_engine(r18_onnx, tmp_path / "h.engine", precision="fp16")


@pytest.mark.parametrize(
    "version, flags", [("10.3.0", {"FP16", "PREFER_PRECISION_CONSTRAINTS"}), ("11.4.0", set())]
)
def test_cli_fp16_engine_from_an_fp32_onnx_on_tensorrt_10_and_11(
    fake_trt, r18_onnx, tmp_path, capsys, version, flags
):
    # Issue 22: on TensorRT 11 the documented `rd-export model.onnx --engine --precision fp16`
    # was refused; rd-export now writes the fp16 graph first and builds from it.
    trt = fake_trt(version)
    onnx_copy = tmp_path / "m.onnx"
    onnx_copy.write_bytes(r18_onnx.read_bytes())
    assert export_main([str(onnx_copy), "--engine", "--precision", "fp16"]) == 0, capsys.readouterr().err
    network, config = trt.Builder.built[-1]
    assert trt.Builder.computes[-1] == "fp16" and flag_names(config) == flags
    sidecar = EngineSidecar.read(tmp_path / "m_fp16.engine")
    half = tmp_path / "m_fp16.onnx"
    if version.startswith("11"):  # built from the fp16 graph written beside the plan
        assert network.weight_types == {"float16", "float32"}  # fp16 convolutions, fp32 head constants
        assert read_metadata(onnx.load(str(half))).precision == "fp16"
        assert sidecar.onnx_sha256 == sha256_file(half)
    else:  # the fp32 graph with the FP16 flag
        assert not half.exists() and sidecar.onnx_sha256 == sha256_file(onnx_copy)
    assert sidecar.precision == "fp16"


def test_fp16_graph_keeps_the_head_float32_and_matches_the_fp32_graph(r18_onnx, tmp_path):
    from rd_export.half import fp16_graph
    from rd_export.verify import run_onnxruntime

    half = fp16_graph(r18_onnx, tmp_path / "h.onnx")
    model = onnx.load(str(half))
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    # One Cast into the fp16 teacher/student, one out per feature map (3 teacher + 3 student):
    # no float16 round trips inside the float32 head or in front of the outputs.
    assert [c.attribute[0].i for c in casts].count(onnx.TensorProto.FLOAT16) == 1
    assert len(casts) == 7 and not any(n.name.startswith("/head/") for n in casts)
    images = np.random.default_rng(1).random((3, 3, 64, 64), dtype=np.float32)
    (map32, score32), (map16, score16) = run_onnxruntime(r18_onnx, images), run_onnxruntime(half, images)
    assert np.abs(map16 - map32).max() <= 1e-3 and np.abs(score16 - score32).max() <= 1e-3


def test_fp32_engine_has_no_reduced_precision_flags(fake_trt, r18_onnx, tmp_path):
    trt = fake_trt("10.3.0")
    tb.build_engine(r18_onnx, tmp_path / "m.engine", max_batch=2)
    _, config = trt.Builder.built[-1]
    assert flag_names(config) == set() and not config.pool_limits
    assert config.profiles[0].shapes["image"][2] == (2, 3, 64, 64)


def test_timing_cache_is_saved_then_loaded(fake_trt, r18_onnx, tmp_path):
    fake_trt("10.3.0")
    cache = tmp_path / "cache" / "trt.cache"
    first = tb.build_engine(r18_onnx, tmp_path / "a.engine", timing_cache=cache)
    assert cache.read_bytes() == b"cache/10.3.0/0/t" and "saved timing cache" in first.timing_cache
    second = tb.build_engine(r18_onnx, tmp_path / "b.engine", timing_cache=cache)
    assert "loaded 16 bytes" in second.timing_cache
    assert cache.read_bytes() == b"cache/10.3.0/0/tt"  # the second build added to it


@pytest.mark.parametrize(
    "old, why",
    [
        (b"cache/8.6.1/0/ttt", "unreadable"),  # a JetPack upgrade: createTimingCache returns None
        (b"cache/10.3", "unreadable"),  # truncated by an interrupted write
        (b"cache/10.3.0/1/ttt", "from another GPU"),  # set_timing_cache returns False
    ],
)
def test_unusable_timing_cache_is_replaced_by_a_fresh_one(fake_trt, r18_onnx, tmp_path, old, why):
    # Finding 2: None from create_timing_cache went straight into set_timing_cache.
    fake_trt("10.3.0")
    cache = tmp_path / "trt.cache"
    cache.write_bytes(old)
    report = tb.build_engine(r18_onnx, tmp_path / "a.engine", timing_cache=cache)
    assert why in report.timing_cache and "started a new one" in report.timing_cache
    assert cache.read_bytes() == b"cache/10.3.0/0/t"
    assert EngineSidecar.read(tmp_path / "a.engine").tensorrt_version == "10.3.0"


def test_plan_and_cache_are_replaced_atomically(fake_trt, r18_onnx, tmp_path, monkeypatch):
    # Finding 2: an interrupted write must leave the previous plan and cache whole.
    fake_trt("10.3.0")
    plan, cache = tmp_path / "m.engine", tmp_path / "trt.cache"
    tb.build_engine(r18_onnx, plan, timing_cache=cache)
    before = plan.read_bytes(), cache.read_bytes()

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tb.build_engine(r18_onnx, plan, timing_cache=cache)
    assert (plan.read_bytes(), cache.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json", "trt.cache"]


def test_engine_is_built_on_the_chosen_device(fake_trt, r18_onnx, tmp_path, monkeypatch):
    # Finding 4: device_id only named the GPU in the sidecar; the build ran on device 0.
    trt = fake_trt("10.3.0")
    cuda = FakeCuda()
    install(monkeypatch, cuda)
    monkeypatch.setitem(FAKE_CUDA, 0, cuda)
    monkeypatch.setattr(tb, "gpu_identity", trt_backend.gpu_identity)  # the real one, on the fake pycuda
    tb.build_engine(r18_onnx, tmp_path / "m.engine", device_id=1, timing_cache=tmp_path / "c")
    assert trt.Builder.devices[-1] == 1
    sidecar = EngineSidecar.read(tmp_path / "m.engine")
    assert (sidecar.sm_count, sidecar.total_memory_mb) == (8, 4096)  # device 1's, not device 0's
    assert (tmp_path / "c").read_bytes().startswith(b"cache/10.3.0/1/")
    assert cuda.driver_stack == [] and cuda.retained == {1: 0}  # the build left no context behind


def test_every_parser_error_is_listed(fake_trt, r18_onnx, tmp_path, monkeypatch):
    fake_trt("8.6.1")
    monkeypatch.setattr(OnnxParser, "fail_with", [(3, "Unsupported operator Foo"), (7, "bad shape")])
    with pytest.raises(
        ExportError, match=r"could not parse .*node 3: Unsupported operator Foo; node 7: bad shape"
    ):
        tb.build_engine(r18_onnx, tmp_path / "m.engine")
    assert not (tmp_path / "m.engine").exists()


def test_failed_build_reports_tensorrt_errors(fake_trt, r18_onnx, tmp_path, monkeypatch):
    trt = fake_trt("10.3.0")
    monkeypatch.setattr(trt.Builder, "fail", True)
    with pytest.raises(ExportError, match=r"failed to build m\.engine .*out of tactics"):
        tb.build_engine(r18_onnx, tmp_path / "m.engine")
    assert not sidecar_path(tmp_path / "m.engine").exists()


def test_plan_from_another_tensorrt_version_is_refused_by_the_runtime(
    fake_trt, r18_onnx, tmp_path, monkeypatch
):
    fake_trt("8.5.2")
    plan = tmp_path / "m.engine"
    tb.build_engine(r18_onnx, plan)
    monkeypatch.setattr(trt_backend, "tensorrt_version", lambda: "10.3.0")
    monkeypatch.setattr(trt_backend, "gpu_identity", lambda device_id=0: FAKE_GPU)
    with pytest.raises(
        BackendError,
        match=r"built for TensorRT 8\.5\.2 \(running 10\.3\.0\).*"
        r"rd-export model\.onnx --engine",
    ):
        load_runner(plan)


@pytest.mark.parametrize(
    "have, extra, want, message",
    [
        ("int8", {"int8_target": "cpu"}, "int8", r"quantized for --int8-target cpu.*--int8-target tensorrt"),
        ("int8", {"int8_target": "tensorrt"}, "fp16", r"int8 Q/DQ graph and builds only an int8 engine"),
        ("fp32", {}, "int8", r"needs a Q/DQ graph.*--calib-dir"),
        ("fp16", {}, "fp32", r"fp16 graph; an fp32 engine needs the fp32 ONNX"),
    ],
)
def test_precision_combinations_that_cannot_work(r18_onnx, have, extra, want, message):
    meta = replace(read_metadata(onnx.load(str(r18_onnx))), precision=have, extra=extra)
    with pytest.raises(ExportError, match=message):
        tb.resolve_precision(want, meta, "m.onnx", 10)


def test_precision_defaults_to_the_graphs(r18_onnx):
    meta = read_metadata(onnx.load(str(r18_onnx)))
    assert tb.resolve_precision(None, meta, "m.onnx", 10) == "fp32"
    assert tb.resolve_precision("fp16", meta, "m.onnx", 8) == "fp16"


# --- the CLI without TensorRT ----------------------------------------------------------------------


def run_cli_in_subprocess(args, block_tensorrt=True):
    """rd-export in a fresh interpreter; returns (rc, stderr, torch or onnx imported?)."""
    code = textwrap.dedent(f"""
        import json, sys
        if {block_tensorrt!r}:
            sys.modules["tensorrt"] = None  # import tensorrt -> ImportError, as on a machine without it
        from rd_export.cli import main
        rc = main({[str(a) for a in args]!r})
        print(json.dumps({{"rc": rc, "heavy": sorted({{"torch", "onnx"}} & set(sys.modules))}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["rc"], proc.stderr, result["heavy"]


def test_engine_without_tensorrt_is_one_clear_error_and_never_imports_torch(r18_onnx, tmp_path):
    # The engine path from an ONNX file is what a Jetson runs: neither torch nor onnx there.
    rc, err, heavy = run_cli_in_subprocess([r18_onnx, "--engine", tmp_path / "m.engine"])
    assert rc == 1 and heavy == []
    assert err.count("\n") == 1 and err.startswith("error: building a TensorRT engine needs the tensorrt")
    assert "pip install '.[gpu-cu12]'" in err and "'.[gpu-cu13]'" in err and "JetPack" in err
    assert not (tmp_path / "m.engine").exists()


def test_engine_from_onnx_without_metadata(r18_onnx, tmp_path, capsys):
    model = onnx.load(str(r18_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    assert export_main([str(bare), "--engine"]) == 1
    err = capsys.readouterr().err
    assert "has no 'rd_edge' metadata" in err and "rd-export model.pt" in err
    with pytest.raises(MetadataError):
        tb.read_onnx_metadata(bare)


def test_metadata_is_read_without_onnx_and_agrees_with_it(r18_onnx, int8_trt_onnx, tmp_path):
    for path in (r18_onnx, int8_trt_onnx):
        assert tb.read_onnx_metadata(path) == read_metadata(onnx.load(str(path)))
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(r18_onnx.read_bytes()[:1000])
    with pytest.raises((ExportError, MetadataError)):
        tb.read_onnx_metadata(truncated)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes([0x0F]) * 10)  # wire type 7 does not exist
    with pytest.raises(MetadataError, match=r"garbage\.onnx is not a readable ONNX model"):
        tb.read_onnx_metadata(garbage)


def test_cli_builds_from_onnx_with_fake_tensorrt(fake_trt, r18_onnx, tmp_path, capsys):
    fake_trt("10.3.0")
    onnx_copy = tmp_path / "m.onnx"
    onnx_copy.write_bytes(r18_onnx.read_bytes())
    rc = export_main(
        [
            str(onnx_copy),
            "--engine",
            "--precision",
            "fp16",
            "--max-batch",
            "2",
            "--timing-cache",
            str(tmp_path / "t.cache"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    plan = tmp_path / "m_fp16.engine"  # default name: the stem plus the precision it changed to
    assert EngineSidecar.read(plan).max_batch == 2 and (tmp_path / "t.cache").is_file()


def _triton_config(folder):
    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _with_input_batch(source, out, batch):
    """A copy of the graph whose image input has a fixed batch (as `rd-export --batch N` writes)."""
    model = onnx.load(str(source))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    onnx.save(model, str(out))
    return out


def test_cli_writes_a_tensorrt_triton_repository_from_the_plans_profile(fake_trt, r18_onnx, tmp_path, capsys):
    trt = fake_trt("10.3.0")
    onnx_copy = tmp_path / "m.onnx"
    onnx_copy.write_bytes(r18_onnx.read_bytes())
    rc = export_main(
        [str(onnx_copy), "--engine", "--max-batch", "4", "--triton-repo", str(tmp_path / "repo")]
    )
    assert rc == 0, capsys.readouterr().err
    folder = tmp_path / "repo" / "rd_m"
    assert (folder / "1" / "model.plan").read_bytes() == (tmp_path / "m.engine").read_bytes()
    config = _triton_config(folder)
    (lo, opt, hi) = trt.Builder.built[-1][1].profiles[0].shapes["image"]  # what the plan was built with
    # Triton's TensorRT backend refuses a max_batch_size above the profile's max batch.
    assert (config.backend, config.max_batch_size) == ("tensorrt", hi[0]) == ("tensorrt", 4)
    assert config.HasField("dynamic_batching")
    assert [i.name for i in config.input] == ["image"] and list(config.input[0].dims) == list(hi[1:])


def test_triton_repository_of_a_fixed_batch_plan_does_not_batch(fake_trt, r18_onnx, tmp_path, capsys):
    # Issue 22: a plan whose batch is fixed at N got max_batch_size 8 (the CLI's default), which
    # Triton refuses; it now gets max_batch_size 0 and the full [N, ...] shapes.
    fake_trt("10.3.0")
    static = _with_input_batch(r18_onnx, tmp_path / "s.onnx", 2)
    rc = export_main([str(static), "--engine", "--triton-repo", str(tmp_path / "repo")])
    assert rc == 0, capsys.readouterr().err
    sidecar = EngineSidecar.read(tmp_path / "s.engine")
    assert (sidecar.min_batch, sidecar.opt_batch, sidecar.max_batch, sidecar.static_batch) == (2, 2, 2, True)
    config = _triton_config(tmp_path / "repo" / "rd_s")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    dims = {t.name: list(t.dims) for t in list(config.input) + list(config.output)}
    assert dims == {"image": [2, 3, 64, 64], "anomaly_map": [2, 1, 64, 64], "score": [2]}


def test_triton_repository_of_a_fixed_batch_onnx_graph_does_not_batch(r18_onnx, tmp_path, capsys):
    # The onnxruntime backend refuses a batching config for a graph whose batch is fixed too.
    static = _with_input_batch(r18_onnx, tmp_path / "s.onnx", 3)
    assert export_main([str(static), "--triton-repo", str(tmp_path / "repo")]) == 0, capsys.readouterr().err
    config = _triton_config(tmp_path / "repo" / "rd_s")
    assert (config.backend, config.max_batch_size) == ("onnxruntime", 0)
    assert list(config.input[0].dims) == [3, 3, 64, 64] and not config.HasField("dynamic_batching")
    assert export_main([str(r18_onnx), "--triton-repo", str(tmp_path / "dyn")]) == 0
    assert _triton_config(tmp_path / "dyn" / "rd_r18").max_batch_size == 8  # a dynamic graph batches


def test_opt_batch_is_the_typical_batch_and_recorded_in_the_sidecar(fake_trt, r18_onnx, tmp_path, capsys):
    trt = fake_trt("10.3.0")
    onnx_copy = tmp_path / "m.onnx"
    onnx_copy.write_bytes(r18_onnx.read_bytes())
    assert export_main([str(onnx_copy), "--engine", "--max-batch", "4", "--opt-batch", "3"]) == 0
    assert trt.Builder.built[-1][1].profiles[0].shapes["image"][1] == (3, 3, 64, 64)
    assert EngineSidecar.read(tmp_path / "m.engine").opt_batch == 3
    assert "batch 1..4 tuned for 3" in capsys.readouterr().out
    assert export_main([str(onnx_copy), "--engine", "--max-batch", "4", "--opt-batch", "5"]) == 1
    assert "--opt-batch 5 is outside the engine's batch range 1..4" in capsys.readouterr().err
    # A tiled model runs a frame's tiles as one batch: 128x192 frames in 64 px tiles are 6.
    meta = read_metadata(onnx.load(str(r18_onnx)))
    tiled = replace(meta, tiling={"tile": [64, 64], "overlap": 0.0, "frame": [128, 192]})
    assert [tb.typical_batch(tiled, m) for m in (8, 4)] == [6, 4]  # capped at the max batch
    assert tb.typical_batch(replace(tiled, tiling={"tile": [64, 64]}), 8) == 8  # any frame size
    assert tb.typical_batch(meta, 8) == 1  # one camera frame at a time


def test_on_device_build_command_writes_the_same_plan_and_sidecar(fake_trt, r18_onnx, tmp_path, capsys):
    """rd-build-engine (the runtime's, torch-free) builds what rd-export --engine builds."""
    from rd_edge.runtime.build_cli import main as build_main

    fake_trt("10.3.0")
    onnx_copy = tmp_path / "m.onnx"
    onnx_copy.write_bytes(r18_onnx.read_bytes())
    assert build_main([str(onnx_copy), "--precision", "fp16", "--max-batch", "3"]) == 0, (
        capsys.readouterr().err
    )
    sidecar = EngineSidecar.read(tmp_path / "m_fp16.engine")
    assert (sidecar.precision, sidecar.max_batch, sidecar.onnx_sha256) == ("fp16", 3, sha256_file(onnx_copy))
    assert "wrote" in capsys.readouterr().out


def test_on_device_build_command_without_tensorrt_or_metadata_is_one_line(r18_onnx, tmp_path):
    code = textwrap.dedent(f"""
        import json, sys
        sys.modules["tensorrt"] = None
        from rd_edge.runtime.build_cli import main
        rcs = [main([{str(r18_onnx)!r}, "-o", {str(tmp_path / "m.engine")!r}]), main([{str(tmp_path / "none.onnx")!r}])]
        print(json.dumps({{"rcs": rcs, "heavy": sorted({{"torch", "onnx"}} & set(sys.modules))}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"rcs": [1, 1], "heavy": []}, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert (
        lines[0].startswith("error: building a TensorRT engine needs the tensorrt") and "JetPack" in lines[0]
    )
    assert lines[1].startswith("error: cannot read model metadata from") and "no such file" in lines[1]
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--calib-dir", "x"], "--calib-dir is for --precision int8"),
        (["--engine", "--precision", "int8", "--int8-target", "cpu"], "need --int8-target tensorrt"),
        (["--max-batch", "4"], "is for --engine or --triton-repo"),
    ],
)
def test_option_combinations_that_would_be_ignored(r18_onnx, capsys, args, message):
    assert export_main([str(r18_onnx)] + args) == 1
    assert message in capsys.readouterr().err


# --- real TensorRT on a GPU -----------------------------------------------------------------------


def gpu_skip_reason():
    """None when TensorRT can build and run engines here, else why not."""
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (pip install '.[gpu-cu12]' or '.[gpu-cu13]', or JetPack)"
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda is not installed (the runtime's TensorRT runner needs it)"
    return trt_backend.probe()


# Engine vs ONNX Runtime CPU on the same graph, max |difference| of map and score. fp32: the
# design's 1e-3; fp16: the exporter's fp16 tolerance; int8: the engine runs the same Q/DQ graph
# (teacher in fp16), but may round a value to the neighbouring int8 step. Printed as PARITY
# lines by scripts/gpu_check.sh, with the map's range and Pearson correlation.
PARITY_TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}


@pytest.fixture(scope="module")
def gpu_images(demo_category):
    from rd_edge.model import ModelConfig
    from rd_export.verify import check_images

    images, _ = check_images(ModelConfig("resnet18", (64, 64)), str(demo_category), n=4)
    return images


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime_cpu(precision, r18_onnx, int8_trt_onnx, gpu_images, tmp_path):
    reason = gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    from rd_export.verify import run_onnxruntime

    source = int8_trt_onnx if precision == "int8" else r18_onnx
    plan = tmp_path / f"r18_{precision}.engine"
    report = tb.build_engine(
        source, plan, precision=precision, max_batch=4, timing_cache=tmp_path / "timing.cache"
    )
    ref_map, ref_score = run_onnxruntime(source, gpu_images)
    with load_runner(plan) as runner:
        assert runner.max_batch == 4
        outs = [runner.infer({"image": gpu_images[i : i + n]}) for i, n in ((0, 1), (1, 3))]
    amap = np.concatenate([o["anomaly_map"] for o in outs])
    score = np.concatenate([o["score"] for o in outs])
    d_map, d_score = float(np.abs(amap - ref_map).max()), float(np.abs(score - ref_score).max())
    span = float(ref_map.max() - ref_map.min())
    corr = float(np.corrcoef(amap.ravel(), ref_map.ravel())[0, 1])
    print(
        f"\nPARITY {precision:<5} TensorRT {report.tensorrt_version} {report.gpu}: max|d map| {d_map:.2e} "
        f"max|d score| {d_score:.2e} (map range {span:.3f}, Pearson {corr:.5f}, tolerance "
        f"{PARITY_TOLERANCE[precision]:g})"
    )
    assert d_map <= PARITY_TOLERANCE[precision] and d_score <= PARITY_TOLERANCE[precision]


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_real_plan_with_edited_version_is_refused(r18_onnx, tmp_path):
    reason = gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    plan = tmp_path / "m.engine"
    tb.build_engine(r18_onnx, plan, max_batch=1)
    with load_runner(plan) as runner:  # the real sidecar passes on the machine that built it
        assert runner.max_batch == 1
    data = json.loads(sidecar_path(plan).read_text())
    data["tensorrt_version"] = "8.5.2" if data["tensorrt_version"] != "8.5.2" else "10.3.0"
    sidecar_path(plan).write_text(json.dumps(data))
    with pytest.raises(BackendError, match=r"Rebuild it on this machine"):
        load_runner(plan)


def test_rejected_optimization_profile_is_an_error(fake_trt, r18_onnx, tmp_path, monkeypatch):
    fake_trt("10.3.0")
    monkeypatch.setattr(Config, "add_optimization_profile", lambda self, profile: -1)
    with pytest.raises(ExportError, match=r"rejected the optimization profile batch 1\.\.8 \(opt 1\)"):
        tb.build_engine(r18_onnx, tmp_path / "m.engine")
    assert not (tmp_path / "m.engine").exists()


def test_profile_the_binding_refuses_is_an_error(fake_trt, r18_onnx, tmp_path, monkeypatch):
    fake_trt("11.4.0")

    def refuse(self, name, lo, opt, hi):
        raise RuntimeError("set_shape(): invalid dimensions")

    monkeypatch.setattr(Profile, "set_shape", refuse)
    with pytest.raises(
        ExportError, match=r"rejected the optimization profile batch 1\.\.2 \(opt 2\).*invalid"
    ):
        tb.build_engine(r18_onnx, tmp_path / "m.engine", max_batch=2, opt_batch=2)
