"""The CUDA backends on a real NVIDIA GPU, against the CPU runtime on the same file (skipped without a GPU).

What each test compares is independent of the code under test: ONNX Runtime's CPU provider on the same ONNX
file, PyTorch on the CPU for the torch backend, and Ultralytics-exact mAP on the CPU for ``evaluate``. GPU
kernels (cuDNN, TF32 on Ampere and later, fp16) differ from the CPU's in the last bits, so the bounds are the
ones a detector's user cares about: the same detections, boxes within a pixel, scores within 1e-2.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from edge_mlla.runtimes import available
from edge_mlla.runtimes.cuda import CUDA_EP, TRT_EP, tensorrt_missing
from test_detector import CONF, IOU, match

from edge_mlla import Detector
from edge_mlla.errors import ConfigError


def _torch_cuda() -> bool:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


pytestmark = pytest.mark.cuda
ort_cuda = pytest.mark.skipif(not available()["cuda"].available, reason=available()["cuda"].reason or "no CUDA")
torch_cuda = pytest.mark.skipif(not _torch_cuda(), reason="torch sees no CUDA device")


@pytest.fixture(scope="module")
def images(val_images) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in val_images[:6]]


@pytest.fixture(scope="module")
def cpu_ref(exported) -> Detector:
    return Detector(exported("onnx"), backend="onnxruntime", conf=CONF, iou=IOU)


@ort_cuda
def test_default_cuda_backend_starts_without_tensorrt_libraries(exported, tmp_path):
    """onnxruntime-gpu lists TensorRT whether or not it is installed; the default must start anyway."""
    from edge_mlla.runtimes.cuda import CudaBackend

    be = CudaBackend(exported("onnx"), engine_cache=tmp_path)
    assert be.providers[0] in (CUDA_EP, TRT_EP)
    if tensorrt_missing():
        assert be.providers[0] == CUDA_EP
    assert be.device == "cuda:0" and be.precision == "f32"


@ort_cuda
def test_detector_on_cuda_matches_cpu(exported, cpu_ref, images):
    det = Detector(exported("onnx"), backend="cuda", tensorrt=False, conf=CONF, iou=IOU)
    assert det.backend.name == "cuda" and det.backend.cuda_graph  # fixed-shape model: replayed as a CUDA graph
    pairs = 0
    for img in images:
        ref, got = cpu_ref(img), det(img)
        pairs += match(got, ref, box_px=1.0, score_tol=1e-2)["pairs"]
        match(ref, got, box_px=1.0, score_tol=1e-2)
    assert pairs > 30
    batch = det(images)  # a list call = the per-image calls
    for img, res in zip(images, batch):
        match(res, det(img), box_px=1e-3, score_tol=1e-5)


@ort_cuda
def test_cuda_graph_replays_what_a_normal_run_computes(exported, val_images):
    """The captured graph reads each new input (no stale buffers), also under concurrent calls, and gives what a
    session without a graph gives; a dynamic-shape model runs without one."""
    from concurrent.futures import ThreadPoolExecutor

    from edge_mlla.ops import preprocess
    from edge_mlla.runtimes.cuda import CudaBackend

    onnx = exported("onnx")
    graph, plain = CudaBackend(onnx, tensorrt=False), CudaBackend(onnx, tensorrt=False, cuda_graph=False)
    assert graph.cuda_graph and not plain.cuda_graph
    assert graph._session.get_provider_options()[CUDA_EP]["enable_cuda_graph"] == "1"  # ONNX Runtime took it
    batches = [preprocess([cv2.imread(str(p))], 320)[0] for p in val_images[:8]]
    want = [plain.infer(b)[0] for b in batches]
    assert not np.allclose(want[0], want[1])  # different images, different outputs: a stale buffer would show
    for b, w in zip(batches, want):
        np.testing.assert_allclose(graph.infer(b)[0], w, atol=1e-4)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda b: graph.infer(b)[0], batches * 3))
    for g, w in zip(got, want * 3):
        np.testing.assert_allclose(g, w, atol=1e-4)
    np.testing.assert_allclose(graph.submit(batches[2]).result()[0], want[2], atol=1e-4)
    dyn = exported("onnx", dynamic=True)
    assert not CudaBackend(dyn, tensorrt=False).cuda_graph
    with pytest.raises(ConfigError, match="shapes are fixed"):
        CudaBackend(dyn, tensorrt=False, cuda_graph=True)
    graph.close()
    with pytest.raises(ConfigError, match="closed"):
        graph.infer(batches[0])


@ort_cuda
def test_fp16_export_on_the_cuda_provider(exported, cpu_ref, images):
    """precision='f16' on the CUDA provider alone runs an fp16 export (TensorRT is not needed for it)."""
    det = Detector(exported("onnx", half=True), backend="cuda", tensorrt=False, conf=CONF, iou=IOU)
    assert det.precision == "f16"
    for img in images:
        match(det(img), cpu_ref(img), box_px=2.0, score_tol=2e-2)
    with pytest.raises(ConfigError, match="fp16 export"):
        Detector(exported("onnx"), backend="cuda", precision="f16", tensorrt=False)


@torch_cuda
@pytest.mark.parametrize("precision", ["f32", "f16"])
def test_torch_backend_on_cuda_matches_cpu(trained_pt, images, precision):
    cpu = Detector(trained_pt, backend="torch", device="cpu", imgsz=320, conf=CONF, iou=IOU)
    gpu = Detector(trained_pt, backend="torch", precision=precision, imgsz=320, conf=CONF, iou=IOU)  # GPU by default
    assert gpu.precision == precision and gpu.backend.device == "cuda" and cpu.backend.device == "cpu"
    tol = {"f32": (1.0, 1e-2), "f16": (2.0, 2e-2)}[precision]
    for img in images:
        match(gpu(img), cpu(img), *tol)


@ort_cuda
def test_map_on_cuda_matches_cpu(exported):
    from edge_mlla.eval import evaluate

    onnx = exported("onnx")
    cpu = evaluate(onnx, backend="onnxruntime", progress=False)
    gpu = evaluate(onnx, backend="cuda", progress=False)
    half = evaluate(exported("onnx", half=True), backend="cuda", progress=False)
    print(f"\nBCCD val mAP50-95 at 320: CPU {cpu['mAP50-95']:.4f}, CUDA f32 {gpu['mAP50-95']:.4f}, fp16 {half['mAP50-95']:.4f}")
    assert gpu["backend"] == "cuda" and half["precision"] == "f16"
    assert abs(gpu["mAP50-95"] - cpu["mAP50-95"]) < 2e-3
    assert abs(half["mAP50-95"] - cpu["mAP50-95"]) < 5e-3
