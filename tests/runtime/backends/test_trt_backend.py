"""The TensorRT backend: the sidecar contract (no GPU needed) and, on a GPU, the runner itself."""

import importlib.util
import json

import numpy as np
import pytest

from rd_edge.core.errors import BackendError, MetadataError
from rd_edge.core.sidecar import (
    EngineSidecar,
    GpuInfo,
    check_compatible,
    format_compute_capability,
    sidecar_path,
)
from rd_edge.runtime import Detector, load_runner
from rd_edge.runtime.backends.trt import util as trt_backend

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
HAVE_PYCUDA = importlib.util.find_spec("pycuda") is not None


ORIN_AGX = GpuInfo("Orin", "8.7", 16, 62841, "NVIDIA Jetson AGX Orin Developer Kit")
ORIN_NANO = GpuInfo("Orin", "8.7", 8, 7620, "NVIDIA Jetson Orin Nano Developer Kit")


def sidecar_for(meta, version="8.6.1", gpu=ORIN_AGX, max_batch=4):
    return EngineSidecar(
        tensorrt_version=version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision="fp16",
        min_batch=1,
        max_batch=max_batch,
        onnx_sha256="ab" * 32,
        metadata=meta,
        sm_count=gpu.sm_count,
        total_memory_mb=gpu.total_memory_mb,
        device_model=gpu.device_model,
    )


@pytest.fixture
def fake_plan(tmp_path, metadata_factory):
    """A plan file (bytes never reach TensorRT in these tests) with a valid sidecar."""
    plan = tmp_path / "model.engine"
    plan.write_bytes(b"not really a plan")
    sidecar_for(metadata_factory()).write(plan)
    return plan


def running(monkeypatch, version="8.6.1", gpu=ORIN_AGX):
    """Pretend this machine runs ``version`` on ``gpu``."""
    monkeypatch.setattr(trt_backend, "tensorrt_version", lambda: version)
    monkeypatch.setattr(trt_backend, "gpu_identity", lambda device_id=0: gpu)


def test_sidecar_sits_next_to_the_plan_and_round_trips(fake_plan, metadata_factory):
    assert sidecar_path(fake_plan).name == "model.engine.json"
    data = json.loads(sidecar_path(fake_plan).read_text())
    assert set(data) == {
        "tensorrt_version",
        "gpu_name",
        "compute_capability",
        "precision",
        "min_batch",
        "max_batch",
        "onnx_sha256",
        "rd_edge",
        "sm_count",
        "total_memory_mb",
        "device_model",
    }
    assert EngineSidecar.read(fake_plan) == sidecar_for(metadata_factory())
    unknown = sidecar_for(metadata_factory(), gpu=GpuInfo("NVIDIA A2", "8.6"))  # no SMs/memory/board known
    assert not {"sm_count", "total_memory_mb", "device_model"} & set(unknown.to_dict())  # omitted, never null


def test_plan_from_another_tensorrt_version_is_refused(fake_plan, monkeypatch):
    running(monkeypatch, version="10.3.0")
    with pytest.raises(
        BackendError,
        match=r"built for TensorRT 8\.6\.1 \(running 10\.3\.0\).*"
        r"Rebuild it on this machine.*rd-export model\.onnx --engine.*"
        r"or run it as is with `pip install tensorrt==8\.6\.1`",
    ):
        load_runner(fake_plan)


@pytest.mark.parametrize(
    "built, jetson, hint",
    [
        ("8.6.1", False, "`pip install tensorrt==8.6.1`"),  # 8.x wheels have no CUDA suffix
        ("10.3.0", False, "`pip install tensorrt-cu12==10.3.0`"),
        ("11.4.0", False, "`pip install tensorrt-cu13==11.4.0`"),
        ("10.3.0", True, "the JetPack release that ships TensorRT 10.3.0 (python3-libnvinfer)"),
    ],
)
def test_version_mismatch_names_the_package_that_built_the_plan(built, jetson, hint, tmp_path, monkeypatch):
    release = tmp_path / "nv_tegra_release"
    if jetson:
        release.write_text("# R36 (release), REVISION: 4.0\n")
    monkeypatch.setenv(trt_backend.TEGRA_RELEASE_ENV, str(release))
    monkeypatch.setattr(trt_backend, "installed_tensorrt_flavour", lambda: None)  # none installed here
    assert trt_backend.tensorrt_install_hint(built) == hint


def test_plan_for_another_gpu_is_refused(fake_plan, monkeypatch):
    running(monkeypatch, gpu=GpuInfo("NVIDIA H100", "9.0", 132, 81559))
    with pytest.raises(BackendError, match=r"GPU Orin compute 8\.7 .*\(running NVIDIA H100 compute 9\.0"):
        load_runner(fake_plan, backend="trt")


def test_plan_for_another_orin_is_refused(fake_plan, monkeypatch):
    # Finding 5: Orin Nano, NX and AGX are all "Orin", compute 8.7.
    running(monkeypatch, gpu=ORIN_NANO)
    with pytest.raises(
        BackendError, match=r"16 SMs.*AGX Orin.*\(running Orin compute 8\.7 \(8 SMs.*Orin Nano"
    ):
        load_runner(fake_plan)


def test_old_sidecar_loads_on_a_dgpu_and_is_refused_on_a_jetson(fake_plan, monkeypatch):
    path = sidecar_path(fake_plan)
    data = json.loads(path.read_text())
    for key in ("sm_count", "total_memory_mb", "device_model"):
        data.pop(key)  # as written before the device identity was recorded
    data.update(gpu_name="NVIDIA A2")
    path.write_text(json.dumps(data))
    old = EngineSidecar.read(fake_plan)
    assert old.sm_count is None and old.device_model is None
    check_compatible(old, fake_plan, "8.6.1", GpuInfo("NVIDIA A2", "8.7", 10, 15000))  # no exception
    with pytest.raises(BackendError, match=r"from before boards were recorded.*Rebuild it on this machine"):
        check_compatible(old, fake_plan, "8.6.1", ORIN_NANO._replace(name="NVIDIA A2"))


def test_matching_sidecar_passes_the_check(fake_plan):
    check_compatible(EngineSidecar.read(fake_plan), fake_plan, "8.6.1", ORIN_AGX)  # no exception


@pytest.mark.skipif(HAVE_TRT, reason="checks the message shown when tensorrt is missing")
def test_missing_tensorrt_names_jetpack_and_the_extra(fake_plan):
    with pytest.raises(
        BackendError,
        match=r"JetPack.*pip install '\.\[gpu-cu12\]'` \(TensorRT 10, "
        r"NVIDIA driver >= 525\) or `pip install '\.\[gpu-cu13\]'` \(TensorRT 11",
    ):
        load_runner(fake_plan)


def test_plan_without_sidecar(tmp_path):
    plan = tmp_path / "bare.plan"
    plan.write_bytes(b"x")
    with pytest.raises(MetadataError, match=r"no sidecar bare\.plan\.json.*rd-export model\.onnx --engine"):
        load_runner(plan)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("tensorrt_version"), r"sidecar lacks \['tensorrt_version'\]"),
        (lambda d: d.update(min_batch=8), r"1 <= min <= max <= 4096, found \[8, 4\]"),
        (lambda d: d.update(compute_capability="sm87"), r"'major.minor' or \[major, minor\], found 'sm87'"),
        (lambda d: d["rd_edge"].update(format_version=99), r"metadata format version 99"),
        # issue 21: absurd sizes and numbers beyond float range were accepted or raised OverflowError
        (lambda d: d.update(max_batch=10**9), r"1 <= min <= max <= 4096, found \[1, 1000000000\]"),
        (
            lambda d: d["rd_edge"].update(image_size=[10**6, 64]),
            r"image_size must be \[H, W\] integers in 1..8192",
        ),
        (lambda d: d["rd_edge"].update(threshold=10**400), r"threshold must be a finite number or null"),
    ],
)
def test_invalid_sidecars_say_what_is_wrong(fake_plan, edit, message):
    path = sidecar_path(fake_plan)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(MetadataError, match=message):
        load_runner(fake_plan)


def test_a_sidecar_nested_100000_deep_is_one_clear_error(fake_plan):
    sidecar_path(fake_plan).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(MetadataError, match="nested too deep"):
        load_runner(fake_plan)


def test_compute_capability_forms():
    assert format_compute_capability((8, 7)) == "8.7"
    assert format_compute_capability([9, 0]) == "9.0"
    assert format_compute_capability("7.2") == "7.2"


def test_engines_do_not_run_on_the_cpu_or_take_ort_options(fake_plan, monkeypatch):
    running(monkeypatch)
    with pytest.raises(BackendError, match="runs on the GPU; use device='cuda'"):
        load_runner(fake_plan, device="cpu")
    with pytest.raises(BackendError, match=r"does not take option\(s\) \['providers'\]"):
        load_runner(fake_plan, providers=["cuda"])


# --- on a GPU with TensorRT and pycuda -------------------------------------------------------


def _gpu_skip_reason():
    if not HAVE_TRT:
        return "tensorrt is not installed"
    if not HAVE_PYCUDA:
        return "pycuda is not installed"
    return trt_backend.probe()  # None when a CUDA device is usable


def build_engine(onnx_path, plan_path, meta, max_batch=4):
    """Build a TensorRT plan from the stand-in ONNX (profile 1..max_batch) plus its sidecar."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = (
        0
        if int(trt.__version__.split(".")[0]) >= 10
        else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    )
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), [parser.get_error(i) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    h, w = meta.image_size
    profile.set_shape("image", (1, 3, h, w), (1, 3, h, w), (max_batch, 3, h, w))
    config.add_optimization_profile(profile)
    plan_path.write_bytes(bytes(builder.build_serialized_network(network, config)))
    gpu = trt_backend.gpu_identity(0)
    EngineSidecar(
        trt_backend.tensorrt_version(),
        gpu.name,
        gpu.compute_capability,
        "fp32",
        1,
        max_batch,
        "0" * 64,
        meta,
        gpu.sm_count,
        gpu.total_memory_mb,
        gpu.device_model,
    ).write(plan_path)
    return plan_path


@pytest.fixture
def tiny_plan(tiny_onnx, tmp_path, metadata_factory):
    """A TensorRT plan of the stand-in graph; skips with the reason where no GPU/TensorRT runs."""
    reason = _gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    return build_engine(tiny_onnx, tmp_path / "model.engine", metadata_factory())


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_runner_matches_onnxruntime(tiny_onnx, tiny_plan):
    plan = tiny_plan
    x = np.random.default_rng(0).random((3, 3, 24, 32), dtype=np.float32)
    with load_runner(tiny_onnx) as ort_runner, load_runner(plan) as trt_runner:
        assert trt_runner.name == "trt" and trt_runner.max_batch == 4
        want = ort_runner.infer({"image": x})
        for n in (1, 3, 2):  # changing batch sizes reuse the same buffers
            got = trt_runner.infer({"image": x[:n]})
            np.testing.assert_allclose(got["anomaly_map"], want["anomaly_map"][:n], atol=1e-5)
            np.testing.assert_allclose(got["score"], want["score"][:n], atol=1e-5)
        with pytest.raises(BackendError, match=r"\[1\.\.4, 3, 24, 32\]"):
            trt_runner.infer({"image": np.zeros((5, 3, 24, 32), np.float32)})


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_detector_on_tensorrt_with_cuda_preprocessing_matches_onnxruntime(tiny_onnx, tiny_plan):
    plan = tiny_plan
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((480, 640), (24, 32), (10, 14))]
    with Detector(tiny_onnx) as cpu, Detector(plan, batch_size=4) as gpu:
        if gpu.preprocess_device != "cuda":
            pytest.skip(f"CUDA preprocessing unavailable: {gpu.preprocess_fallback_reason}")
        want, got = cpu.predict(frames), gpu.predict(frames)
    for w, g in zip(want, got):
        # The kernel is within 1/255 of cv2 per input pixel; the map is a channel-weighted sum
        # of those, so it moves by at most 1/255 too.
        assert abs(g.score - w.score) <= 1 / 255 + 1e-5
        np.testing.assert_allclose(g.anomaly_map, w.anomaly_map, atol=1 / 255 + 1e-5)


def test_gpu_identity_reads_the_jetson_board(monkeypatch, tmp_path):
    from fake_cuda import FakeCuda, install

    install(monkeypatch, FakeCuda())
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin NX Engineering Reference Developer Kit\x00")  # NUL-terminated
    monkeypatch.setenv(trt_backend.DEVICE_TREE_MODEL_ENV, str(model))
    monkeypatch.setenv(trt_backend.TEGRA_RELEASE_ENV, str(tmp_path / "absent"))
    assert trt_backend.gpu_identity(1) == GpuInfo("Fake GPU", "8.7", 8, 4096, None)  # not a Jetson
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n")
    monkeypatch.setenv(trt_backend.TEGRA_RELEASE_ENV, str(release))
    assert trt_backend.is_jetson()
    assert trt_backend.gpu_identity(0) == GpuInfo(
        "Fake GPU", "8.7", 16, 8192, "NVIDIA Jetson Orin NX Engineering Reference Developer Kit"
    )
    with pytest.raises(BackendError, match=r"CUDA device 2 does not exist; found 2"):
        trt_backend.gpu_identity(2)
