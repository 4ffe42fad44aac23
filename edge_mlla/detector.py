"""``Detector``: one object-detection API over every runtime backend (torch-free).

``Detector(model)`` loads a model file with a backend chosen from its suffix and what is installed
(``.xml`` -> OpenVINO; ``.onnx`` -> CUDA when a GPU is usable, else ONNX Runtime, else OpenVINO;
``.pt`` -> torch), reads class names, stride and input size from the file's metadata (ours or
Ultralytics'), and lets constructor arguments override them. Calling it runs letterbox preprocessing,
the backend and decode + class-aware NMS (:mod:`edge_mlla.ops`) and returns :class:`Detections` in
original-image pixels.

Input images (``det(image)``):

* a BGR ``uint8`` HxWx3 array, as OpenCV gives it (``rgb=True`` if it is RGB); any strides;
* 2-D (HxW) or HxWx1 grayscale: converted to 3-channel (documented conversion);
* HxWx4 BGRA (RGBA with ``rgb=True``): the alpha channel is dropped (documented conversion);
* a path (``str`` / ``Path``) to an image file, read with OpenCV;
* a list/tuple of the above, or an NxHxWx3 array: one batch, a list of ``Detections`` back.

Anything else raises a typed :mod:`edge_mlla.errors` exception: ``None`` or another type ->
``InputTypeError``; empty, non-uint8, or wrongly shaped arrays -> ``ShapeError``; a missing file ->
``MissingFileError``; a file that is not an image -> ``ImageReadError``.

A ``Detector`` is thread-safe: backends keep one infer request per thread (OpenVINO), rely on
thread-safe sessions (ONNX Runtime) or lock (torch).

Example:
    >>> from edge_mlla import Detector
    >>> det = Detector("yolo11n-mlla-bccd.onnx", conf=0.25)   # doctest: +SKIP
    >>> d = det("blood.jpg")                                   # doctest: +SKIP
    >>> d.xyxy.shape, d.class_name[:3]                         # doctest: +SKIP
    ((23, 4), array(['RBC', 'RBC', 'WBC'], dtype='<U3'))

Imports inside functions: the runtime registry loads when a Detector is made, and each backend imports its own
library (OpenVINO, ONNX Runtime, torch) only when chosen, so ``import edge_mlla`` stays light.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from edge_mlla.errors import ClosedError, ConfigError, EdgeMLLAError, InputTypeError, MissingFileError, ModelFileError, ShapeError
from edge_mlla.modelfile import ModelInfo, parse_metadata
from edge_mlla.ops import LetterboxMeta, as_bgr, check_thresholds, parse_imgsz, postprocess, preprocess
from edge_mlla.results import Detections, Timing

LOGGER = logging.getLogger("edge_mlla")

ImageLike = Union[np.ndarray, str, os.PathLike]
_MAX_DYNAMIC_BATCH = 16  # images per inference call for dynamic-batch models


@dataclass
class _Prepared:
    batches: list[tuple[np.ndarray, list[LetterboxMeta]]] = field(default_factory=list)
    single: bool = False
    preprocess_s: float = 0.0


class Detector:
    """A YOLO detector over any backend. Call it on an image, a path, or a list of them.

    Args:
        model: ``.xml`` (or its folder), ``.onnx`` or ``.pt`` model file.
        backend: ``"auto"`` or a name from :func:`edge_mlla.runtimes.available` (``openvino``,
            ``onnxruntime``, ``cuda``, ``torch``).
        device: backend device (``CPU``/``GPU``/``NPU``/``AUTO`` for OpenVINO, ``cuda:N``, ``cpu``); backend default if None.
        precision: ``f32``, ``bf16``, ``f16`` or ``int8`` where the backend offers it. None (default) means the
            fastest the device runs natively: OpenVINO bf16 on CPUs with AMX / AVX-512 BF16, f32 on other CPUs,
            f16 on GPU/NPU; ONNX Runtime and CUDA run the file's own precision. What runs is ``det.precision``
            (and ``repr(det)``); ``precision="f32"`` gives exact parity.
        conf, iou, max_det, classes: detection threshold, NMS IoU threshold, boxes per image,
            class ids to keep (None keeps all).
        imgsz: input (height, width) override for dynamic-size models (metadata otherwise).
        names: class names override (dict or list).
        agnostic: class-agnostic NMS.
        multi_label, clip: ``multi_label=True, clip=False`` decodes as Ultralytics' validator does (every
            class above ``conf`` per box, boxes not clipped): for mAP evaluation, not for prediction.
        strict: a truncated or corrupt image file raises ``ImageReadError`` (default); ``False`` uses the partly
            decoded image with an ``ImageReadWarning``.
        **backend_options: passed to the backend (e.g. ``hint="throughput"`` for OpenVINO,
            ``threads=2`` for ONNX Runtime).

    Example:
        >>> import numpy as np
        >>> from edge_mlla import Detector
        >>> det = Detector("model.onnx", backend="onnxruntime")   # doctest: +SKIP
        >>> d = det(np.zeros((480, 640, 3), np.uint8))            # doctest: +SKIP
        >>> det([img1, "b.jpg"])                                   # doctest: +SKIP
        [Detections(n=12, ...), Detections(n=9, ...)]
    """

    def __init__(
        self,
        model: str | os.PathLike,
        backend: str = "auto",
        device: str | None = None,
        precision: str | None = None,
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 300,
        classes: Sequence[int] | None = None,
        *,
        imgsz: int | Sequence[int] | None = None,
        names: dict[int, str] | Sequence[str] | None = None,
        agnostic: bool = False,
        multi_label: bool = False,
        clip: bool = True,
        strict: bool = True,
        **backend_options: Any,
    ) -> None:
        from edge_mlla.runtimes import select_backend

        if not isinstance(model, (str, os.PathLike)):
            raise InputTypeError(f"model must be a path to a .xml, .onnx or .pt file, got {type(model).__name__}")
        path = Path(model)
        if not path.exists():
            raise MissingFileError(f"model file not found: {path} (expected .xml, .onnx or .pt)")
        if not isinstance(backend, str):
            raise InputTypeError(f"backend must be a name like 'auto' or 'openvino', got {type(backend).__name__}")
        check_thresholds(conf, iou, max_det)
        self.conf, self.iou, self.max_det = float(conf), float(iou), int(max_det)
        self.classes = None if classes is None else [int(c) for c in classes]
        self.agnostic, self.multi_label, self.clip = bool(agnostic), bool(multi_label), bool(clip)
        self.strict = bool(strict)
        cls = select_backend(path, backend)
        self.backend = cls(path, device=device, precision=precision, **backend_options)
        self.info: ModelInfo = parse_metadata(self.backend.metadata)
        self.names: dict[int, str] = self._names(names)
        spec = self.backend.inputs[0]
        self._layout = getattr(self.backend, "input_layout", "nchw")
        nchw = spec.shape if self._layout == "nchw" else (spec.shape[0], spec.shape[3], spec.shape[1], spec.shape[2])
        if len(spec.shape) != 4 or nchw[1] not in (None, 3):
            raise ModelFileError(f"{path} input {spec.name!r} has shape {spec.shape}; expected (batch, 3, height, width)")
        self.stride = int(self.info.stride)
        self.imgsz = self._imgsz(imgsz, nchw, path)
        self.batch = spec.shape[0]  # None: dynamic
        self._check_outputs(path)
        self._check_classes()
        self._closed = False
        self._local = threading.local()  # per-thread last_timing
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        LOGGER.info(
            "Detector: %s on %s/%s (%s), imgsz %s, %d classes",
            path.name, self.backend.name, self.backend.device, self.backend.precision, self.imgsz, len(self.names),
        )  # fmt: skip

    # ---------------------------------------------------------------------------------- set-up
    def _names(self, names: Any) -> dict[int, str]:
        if names is None:
            return dict(self.info.names)
        if isinstance(names, dict):
            return {int(k): str(v) for k, v in names.items()}
        if isinstance(names, (list, tuple)):
            return {i: str(v) for i, v in enumerate(names)}
        raise InputTypeError(f"names must be a dict or a list of class names, got {type(names).__name__}")

    def _imgsz(self, imgsz: Any, shape: tuple, path: Path) -> tuple[int, int]:
        fixed = (shape[2], shape[3]) if shape[2] is not None and shape[3] is not None else None
        if imgsz is not None:
            hw = parse_imgsz(imgsz)
            if fixed and hw != fixed:
                raise ConfigError(f"imgsz={hw} but {path.name} has a fixed input size {fixed}; re-export it for {hw}")
            if any(s % self.stride for s in hw):
                raise ConfigError(f"imgsz {hw} must be a multiple of the model stride {self.stride}")
            return hw
        if fixed:
            return fixed
        if self.info.imgsz:
            return tuple(self.info.imgsz)
        raise ConfigError(f"{path.name} has a dynamic input size and no imgsz metadata; pass imgsz=(height, width)")

    def _check_outputs(self, path: Path) -> None:
        outs = self.backend.outputs
        if not outs:
            raise ModelFileError(f"{path} has no outputs")
        shape = outs[0].shape
        nc = len(self.names) or None
        ok = len(shape) == 3 and (
            nc is None
            or shape[1] in (None, 4 + nc)
            or shape[2] in (None, 4 + nc, 6)
        )
        if not ok:
            raise ModelFileError(
                f"{path} output {outs[0].name!r} has shape {shape}; expected a YOLO detect output (batch, "
                f"{4 + nc if nc else '4 + classes'}, anchors) or an end-to-end (batch, detections, 6) output"
            )
        if not nc:
            if shape[1] is None or shape[1] <= 4:
                raise ModelFileError(f"{path} has no class names in its metadata; pass names=[...] to Detector")
            self.names = {i: str(i) for i in range(shape[1] - 4)}

    def _check_classes(self) -> None:
        if self.classes is None:
            return
        bad = [c for c in self.classes if c not in self.names]
        if bad:
            shown = ", ".join(f"{k}={v}" for k, v in list(self.names.items())[:8]) + (", ..." if len(self.names) > 8 else "")
            raise ConfigError(f"classes {bad} are not class ids of this model; it has {len(self.names)}: {shown}")

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this Detector is closed; create a new Detector(model) to run it again")

    @property
    def precision(self) -> str:
        """The precision the backend really computes in (``f32``, ``bf16``, ``f16``, or ``int8`` for a quantized
        model, whose other ops run in :attr:`float_precision`)."""
        return self.backend.precision

    @property
    def float_precision(self) -> str:
        """The precision of the ops that are not INT8 (equal to :attr:`precision` for a float model)."""
        return self.backend.float_precision

    @property
    def device(self) -> str:
        return self.backend.device

    def __repr__(self) -> str:
        prec = repr(self.precision) + (f" (float ops {self.float_precision})" if self.precision == "int8" else "")
        return (
            f"Detector(backend={self.backend.name!r}, device={self.device!r}, precision={prec}, "
            f"imgsz={self.imgsz}, classes={len(self.names)})"
        )

    # ---------------------------------------------------------------------------------- running
    def _prepare(self, images: Any, rgb: bool) -> _Prepared:
        self._check_open()
        t0 = time.perf_counter()
        single = True
        if isinstance(images, np.ndarray) and images.ndim == 4:
            items, single = list(images), False
        elif isinstance(images, (list, tuple)):
            if not images:
                raise ShapeError("got an empty list of images; expected at least one")
            items, single = list(images), False
        else:
            items = [images]
        if single:
            imgs = [as_bgr(items[0], rgb, self.strict)]
        else:
            imgs = []
            for i, im in enumerate(items):
                try:
                    imgs.append(as_bgr(im, rgb, self.strict))
                except EdgeMLLAError as e:  # name the bad item; keep the error's type
                    raise type(e)(f"images[{i}]: {e}") from e
        per = self.batch or _MAX_DYNAMIC_BATCH
        prep = _Prepared(single=single)
        for i in range(0, len(imgs), per):
            chunk = imgs[i : i + per]
            x, metas = preprocess(chunk, self.imgsz, self.stride, rgb=rgb, batch_size=self.batch, layout=self._layout)
            prep.batches.append((x, metas))
        prep.preprocess_s = time.perf_counter() - t0
        return prep

    def _finish(self, outputs: list[np.ndarray], metas: list[LetterboxMeta]) -> list[Detections]:
        return postprocess(
            outputs[0], metas, self.conf, self.iou, self.max_det, self.classes, self.names, self.agnostic,
            nc=len(self.names), multi_label=self.multi_label, clip=self.clip,
        )  # fmt: skip

    @property
    def last_timing(self) -> Timing:
        """:class:`Timing` of the last call made *from this thread* (each result also carries its own
        ``detections.timing``, which is what concurrent callers should read)."""
        return getattr(self._local, "timing", None) or Timing()

    @staticmethod
    def _stamp(results: list[Detections], timing: Timing) -> None:
        for d in results:
            d.timing = timing

    def predict(self, images: ImageLike | Sequence[ImageLike] | np.ndarray, rgb: bool = False) -> Detections | list[Detections]:
        """Detect objects; one image gives ``Detections``, a list (or NxHxWx3 array) gives a list.

        Example:
            >>> det = Detector("model.xml")                     # doctest: +SKIP
            >>> det.predict(img, rgb=False).xyxy                # doctest: +SKIP
        """
        prep = self._prepare(images, rgb)
        t_inf = t_post = 0.0
        results: list[Detections] = []
        for x, metas in prep.batches:
            t0 = time.perf_counter()
            outs = self.backend.infer(x)
            t1 = time.perf_counter()
            results.extend(self._finish(outs, metas))
            t_inf += t1 - t0
            t_post += time.perf_counter() - t1
        timing = Timing(prep.preprocess_s, t_inf, t_post, len(results))
        self._stamp(results, timing)
        self._local.timing = timing
        return results[0] if prep.single else results

    __call__ = predict

    def submit(self, image: ImageLike, rgb: bool = False) -> Future:
        """Start detection on one image without waiting; the future resolves to its ``Detections``.

        Uses the backend's async requests when it has them (several in flight), else a worker thread.
        Preprocessing runs in the caller's thread, postprocessing in a runtime callback thread.

        Example:
            >>> fut = det.submit(frame)   # doctest: +SKIP
            >>> dets = fut.result()       # doctest: +SKIP
        """
        from edge_mlla.runtimes import AsyncBackend

        prep = self._prepare(image, rgb)
        if len(prep.batches) != 1 or not prep.single:
            raise InputTypeError("submit() takes one image; call it once per image, or use predict() for a batch")
        x, metas = prep.batches[0]
        out: Future = Future()
        t_sub = time.perf_counter()
        if isinstance(self.backend, AsyncBackend):
            inner = self.backend.submit(x)
        else:
            with self._pool_lock:  # two threads submitting first must not make two pools
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="edge_mlla-detector")
                pool = self._pool
            inner = pool.submit(self.backend.infer, x)

        def done(f: Future) -> None:
            try:
                t1 = time.perf_counter()  # infer = submit -> outputs ready (includes queueing behind other requests)
                res = self._finish(f.result(), metas)
                self._stamp(res, Timing(prep.preprocess_s, t1 - t_sub, time.perf_counter() - t1, 1))
                out.set_result(res[0])
            except Exception as e:
                out.set_exception(e)

        inner.add_done_callback(done)
        return out

    def close(self) -> None:
        """Release the backend (and worker threads). Safe to call twice; a closed Detector raises ClosedError."""
        self._closed = True
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
