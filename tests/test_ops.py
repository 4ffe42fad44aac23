"""edge_mlla.ops against independent references: Ultralytics' LetterBox/scale_boxes/non_max_suppression, torchvision NMS."""

from __future__ import annotations

import numpy as np
import pytest

from edge_mlla.errors import ConfigError, ModelFileError, ShapeError
from edge_mlla.ops import box_iou, letterbox, nms, postprocess, preprocess, scale_boxes, xywh2xyxy
from edge_mlla.ops.boxes import MATRIX_NMS


@pytest.fixture(scope="module")
def ul():
    """Ultralytics' own ops (the reference), imported offline."""
    import edge_mlla._env

    edge_mlla._env.setup_offline()
    import torch
    import torchvision
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils import nms as ul_nms
    from ultralytics.utils import ops as ul_ops

    return {"torch": torch, "tv": torchvision, "LetterBox": LetterBox, "nms": ul_nms, "ops": ul_ops}


def _random_boxes(rng, n, size=320.0, nc=3):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(4, size / 3, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    return boxes, rng.random(n).astype(np.float32), rng.integers(0, nc, n)


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (1, 1), (3, 2000), (333, 517), (320, 320), (6000, 8000)])
@pytest.mark.parametrize("new_shape", [320, (256, 416)])
def test_letterbox_matches_ultralytics(ul, shape, new_shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
    ours, meta = letterbox(img, new_shape)
    ref = ul["LetterBox"](new_shape, auto=False, stride=32)(image=img)
    assert ours.shape == ref.shape
    assert np.array_equal(ours, ref)
    # the fused-preprocessing batch (letterboxed straight into its slot; RGB input flipped back to BGR): same pixels
    batch, metas = preprocess([img, img[..., ::-1]], new_shape, layout="nhwc_u8", batch_size=3)
    assert metas[0] == meta and np.array_equal(batch[0], ref) and (batch[2] == 114).all()
    rgb, _ = preprocess([img[..., ::-1]], new_shape, layout="nhwc_u8", rgb=True)
    assert np.array_equal(rgb[0], ref)
    # the boxes of the whole image map back onto the whole image, as Ultralytics' scale_boxes says
    h, w = shape
    top, left = meta.pad[1], meta.pad[0]
    full = np.array([[left, top, left + w * meta.gain[1], top + h * meta.gain[0]]], np.float32)
    back = scale_boxes(full.copy(), meta)
    ref_back = ul["ops"].scale_boxes(ours.shape[:2], full.copy(), shape)
    np.testing.assert_allclose(back, ref_back, atol=1e-3)
    np.testing.assert_allclose(back, [[0, 0, w, h]], atol=1e-3)


def test_letterbox_auto_pads_to_stride():
    img, meta = letterbox(np.zeros((480, 640, 3), np.uint8), 640, stride=32, auto=True)
    assert img.shape == (480, 640, 3) and meta.pad == (0, 0)
    img, _ = letterbox(np.zeros((500, 640, 3), np.uint8), 640, stride=32, auto=True)
    assert img.shape[0] % 32 == 0 and img.shape[0] >= 500


def test_preprocess_channels_scale_and_padding():
    img = np.zeros((32, 32, 3), np.uint8)
    img[..., 0] = 255  # pure blue in BGR
    x, metas = preprocess([img, img], 32, batch_size=4)
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.float32 and len(metas) == 2
    assert x.flags.c_contiguous
    np.testing.assert_array_equal(x[0, 2], 1.0)  # blue -> last channel (RGB)
    np.testing.assert_array_equal(x[0, :2], 0.0)
    np.testing.assert_allclose(x[2:], 114 / 255, atol=1e-7)  # padded batch slots are letterbox grey
    x_rgb, _ = preprocess([img], 32, rgb=True)
    np.testing.assert_array_equal(x_rgb[0, 0], 1.0)  # rgb=True keeps the channel order
    with pytest.raises(ShapeError, match="no images"):
        preprocess([], 32)


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.0]], atol=1e-6)


@pytest.mark.parametrize("n", [0, 1, 50, MATRIX_NMS, MATRIX_NMS + 1, 1300])  # the matrix path up to MATRIX_NMS, rows above
def test_nms_matches_torchvision(ul, n):
    torch, tv = ul["torch"], ul["tv"]
    rng = np.random.default_rng(n)
    boxes, scores, cls = _random_boxes(rng, n)
    for iou in (0.3, 0.45, 0.7):
        ref = tv.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, iou), ref)
        ref_c = tv.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(cls), iou).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, iou, class_id=cls), ref_c)
    if n:
        np.testing.assert_array_equal(nms(boxes, scores, 0.45, max_det=5), tv.ops.nms(
            torch.from_numpy(boxes), torch.from_numpy(scores), 0.45).numpy()[:5])


@pytest.mark.parametrize("n", [20, 400, MATRIX_NMS + 100])
def test_nms_long_suppression_chain(n):
    # a chain where each box overlaps only its neighbour: greedy keeps every other box (the matrix path needs one
    # step per link here, its worst case; the rows path one per kept box)
    x = np.arange(n, dtype=np.float32) * 6
    boxes = np.stack([x, np.zeros_like(x), x + 10, np.full_like(x, 10)], 1)
    scores = np.linspace(1, 0.1, n).astype(np.float32)
    assert nms(boxes, scores, 0.2).tolist() == list(range(0, n, 2))


def _raw_output(rng, batch=2, nc=3, anchors=2100, size=320):
    out = np.zeros((batch, 4 + nc, anchors), np.float32)
    out[:, 0:2] = rng.uniform(0, size, (batch, 2, anchors))
    out[:, 2:4] = rng.uniform(4, size / 4, (batch, 2, anchors))
    out[:, 4:] = rng.random((batch, nc, anchors)) ** 6  # mostly low scores, a few hundred candidates
    return out


@pytest.mark.parametrize("classes", [None, [0, 2]])
def test_postprocess_matches_ultralytics(ul, classes):
    torch = ul["torch"]
    rng = np.random.default_rng(1)
    raw = _raw_output(rng)
    imgs = [np.zeros((480, 640, 3), np.uint8), np.zeros((700, 300, 3), np.uint8)]
    _, metas = preprocess(imgs, 320)
    ours = postprocess(raw, metas, conf=0.25, iou=0.45, max_det=100, classes=classes, names={0: "a", 1: "b", 2: "c"})
    ref = ul["nms"].non_max_suppression(torch.from_numpy(raw), 0.25, 0.45, classes=classes, max_det=100, nc=3)
    for d, r, img in zip(ours, ref, imgs):
        r = r.numpy()
        r[:, :4] = ul["ops"].scale_boxes((320, 320), r[:, :4].copy(), img.shape[:2])
        assert len(d) == len(r) > 10
        np.testing.assert_allclose(d.xyxy, r[:, :4], atol=1e-3)
        np.testing.assert_allclose(d.confidence, r[:, 4], atol=1e-6)
        np.testing.assert_array_equal(d.class_id, r[:, 5].astype(int))
        assert d.xyxy.dtype == np.float32 and d.class_id.dtype == np.int64
        assert set(d.class_name) <= {"a", "b", "c"}


def test_postprocess_channels_last_and_end2end():
    rng = np.random.default_rng(2)
    raw = _raw_output(rng, batch=1)
    _, metas = preprocess([np.zeros((320, 320, 3), np.uint8)], 320)
    a = postprocess(raw, metas, nc=3)[0]
    b = postprocess(raw.transpose(0, 2, 1).copy(), metas, nc=3)[0]
    assert a == b and len(a) > 0
    e2e = np.zeros((1, 300, 6), np.float32)
    e2e[0, :3] = [[10, 10, 50, 50, 0.9, 1], [20, 20, 60, 60, 0.8, 2], [0, 0, 5, 5, 0.1, 0]]
    d = postprocess(e2e, metas, conf=0.25, nc=3)[0]
    np.testing.assert_allclose(d.xyxy, [[10, 10, 50, 50], [20, 20, 60, 60]])
    assert d.class_id.tolist() == [1, 2]
    assert postprocess(e2e, metas, conf=0.25, classes=[2], nc=3)[0].class_id.tolist() == [2]


def test_postprocess_ignores_padded_rows_and_rejects_bad_outputs():
    rng = np.random.default_rng(3)
    raw = _raw_output(rng, batch=4)
    _, metas = preprocess([np.zeros((64, 64, 3), np.uint8)], 320)
    assert len(postprocess(raw, metas, nc=3)) == 1
    with pytest.raises(ModelFileError, match="expected"):
        postprocess(np.zeros((1, 10), np.float32)[None, None], metas, nc=3)
    with pytest.raises(ModelFileError, match="3 classes"):
        postprocess(np.zeros((1, 9, 2100), np.float32), metas, nc=3)
    with pytest.raises(ConfigError, match="conf"):
        postprocess(raw, metas, conf=1.5)
    with pytest.raises(ConfigError, match="max_det"):
        postprocess(raw, metas, max_det=0)


def test_xywh2xyxy():
    np.testing.assert_allclose(xywh2xyxy(np.array([[10, 20, 4, 6]], np.float32)), [[8, 17, 12, 23]])


def test_read_image_applies_exif_orientation():
    """A JPEG stored sideways with EXIF Orientation=8 reads upright, pixel for pixel as OpenCV's own imread (and
    Ultralytics) read it; its raw pixels are the transpose-flip of that."""
    from pathlib import Path

    import cv2

    from edge_mlla.ops import read_image

    path = Path(__file__).parent / "data" / "exif_orientation8.jpg"
    ours, opencv = read_image(path), cv2.imread(str(path))
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    assert ours.shape == opencv.shape == (480, 640, 3) and raw.shape == (640, 480, 3)
    np.testing.assert_array_equal(ours, opencv)
    np.testing.assert_array_equal(ours, cv2.rotate(raw, cv2.ROTATE_90_COUNTERCLOCKWISE))
