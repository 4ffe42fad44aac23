"""No surprises on unseen data: one image-file rule, one imgsz parser, datasets validated up front, truncated and
16-bit images, bad list items named, no run overwritten, no traceback in front of a CLI user."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_mlla.errors import ConfigError, DatasetError, ImageReadError, InputTypeError, MissingFileError, ShapeError
from edge_mlla.ops import IMAGE_SUFFIXES, as_bgr, is_image_file, list_images, parse_imgsz, read_image

BCCD = Path(__file__).resolve().parents[1] / "edge_mlla" / "data" / "bccd"


# ---------------------------------------------------------------------------------------------- imgsz parser
@pytest.mark.parametrize(
    "value,want",
    [(640, (640, 640)), ("640", (640, 640)), ("192x640", (192, 640)), ("192,640", (192, 640)),
     ("192 640", (192, 640)), ((192, 640), (192, 640)), ([320], (320, 320)), (["192", "640"], (192, 640)),
     ("192X640", (192, 640)), (np.int64(320), (320, 320)), (" 192 x 640 ", (192, 640))],
)  # fmt: skip
def test_one_imgsz_parser(value, want):
    assert parse_imgsz(value) == want


@pytest.mark.parametrize("value", ["", "6x4x2", "abc", "0", "-32", (1, 2, 3), 1.5, True, None, "320.5", "640x", "x640", "640,"])
def test_imgsz_parser_rejects(value):
    with pytest.raises(ConfigError):
        parse_imgsz(value)


def test_imgsz_stride_message_suggests_a_size():
    with pytest.raises(ConfigError, match=r"multiple of the model's max stride 32 \(e.g. 224x640\)"):
        parse_imgsz("200x640", stride=32)


def test_every_command_takes_every_imgsz_spelling():
    from edge_mlla.cli import build_parser

    for cmd, extra in (("export", ["m.pt"]), ("quantize", ["m.xml", "--calib", "bccd"]), ("eval", ["m.xml"]),
                       ("predict", ["m.xml", "a.jpg"])):  # fmt: skip
        for spelling in (["192x640"], ["192,640"], ["192", "640"]):
            a = build_parser().parse_args([cmd, *extra, "--imgsz", *spelling])
            assert a.imgsz == (192, 640), (cmd, spelling, a.imgsz)
        assert build_parser().parse_args([cmd, *extra, "--imgsz", "320"]).imgsz == 320


# ---------------------------------------------------------------------------------------------- image files
def test_image_rule_is_case_insensitive_and_covers_opencv_suffixes(tmp_path):
    img = cv2.imread(str(next((BCCD / "images" / "val").glob("*.jpg"))))
    for name in ("a.jpg", "b.JPG", "c.jpeg", "d.JPEG", "e.png", "f.PNG", "g.bmp", "h.tif", "i.webp"):
        assert cv2.imwrite(str(tmp_path / name.lower()), img)
        (tmp_path / name.lower()).rename(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    found = [p.name for p in list_images(tmp_path)]
    assert found == sorted(["a.jpg", "b.JPG", "c.jpeg", "d.JPEG", "e.png", "f.PNG", "g.bmp", "h.tif", "i.webp"])
    assert all(is_image_file(f"x{s.upper()}") for s in IMAGE_SUFFIXES)
    for f in found:  # everything the rule admits really decodes
        assert read_image(tmp_path / f).shape == img.shape


def _truncated_copy(tmp_path: Path, suffix: str = ".jpg") -> tuple[Path, np.ndarray]:
    src = next((BCCD / "images" / "val").glob("*.jpg"))
    img = cv2.imread(str(src))
    full = tmp_path / f"full{suffix}"
    cv2.imwrite(str(full), img)
    data = full.read_bytes()
    bad = tmp_path / f"truncated{suffix}"
    bad.write_bytes(data[: len(data) // 3])
    return bad, img


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_file_is_an_error_or_a_warning(tmp_path, suffix):
    bad, img = _truncated_copy(tmp_path, suffix)
    partial = cv2.imread(str(bad))  # OpenCV alone decodes part of it and says nothing a program can see
    assert suffix == ".png" or (partial is not None and partial.shape == img.shape)
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(bad)
    if partial is not None:
        from edge_mlla.ops import ImageReadWarning

        with pytest.warns(ImageReadWarning, match="partly decoded"):
            assert read_image(bad, strict=False).shape == img.shape


def test_folder_given_as_image_says_folder(tmp_path):
    with pytest.raises(ImageReadError, match="is a folder, not an image file"):
        read_image(tmp_path)
    with pytest.raises(MissingFileError, match="image file not found"):
        read_image(tmp_path / "nope.jpg")


def test_16bit_images_are_scaled_not_clipped(tmp_path):
    img8 = cv2.imread(str(next((BCCD / "images" / "val").glob("*.jpg"))))
    img16 = img8.astype(np.uint16) * 257  # the exact 16-bit image of img8
    np.testing.assert_array_equal(as_bgr(img16), img8)
    assert cv2.imwrite(str(tmp_path / "deep.png"), img16)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), img8)
    with pytest.raises(ShapeError, match=r"\(img \* 255\)"):  # the float hint stays, for floats only
        as_bgr(img8.astype(np.float32) / 255)


def test_a_bad_list_item_names_its_index(exported):
    from edge_mlla import Detector

    det = Detector(exported("onnx", imgsz=320), backend="onnxruntime")
    good = np.zeros((100, 120, 3), np.uint8)
    with pytest.raises(ShapeError, match=r"^images\[2\]: image dtype is float64"):
        det([good, good, np.zeros((10, 10, 3))])
    with pytest.raises(InputTypeError, match=r"^images\[1\]: image is None"):
        det([good, None])
    with pytest.raises(MissingFileError, match=r"^images\[0\]: image file not found"):
        det(["missing.jpg", good])
    det.close()


# ---------------------------------------------------------------------------------------------- datasets
def _copy_bccd(tmp_path: Path, n: int = 4) -> Path:
    root = tmp_path / "ds"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for im in sorted((BCCD / "images" / split).glob("*.jpg"))[:n]:
            shutil.copy(im, root / "images" / split)
            shutil.copy(BCCD / "labels" / split / f"{im.stem}.txt", root / "labels" / split)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [RBC, WBC, Platelets]\n")
    return root


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda r: (r / "data.yaml").write_text("path: /no/such/root\ntrain: images/train\nval: images/val\nnames: [a]\n"),
         "path '/no/such/root' does not exist"),
        (lambda r: (r / "data.yaml").write_text("train: images/nope\nval: images/val\nnames: [RBC, WBC, Platelets]\n"),
         "train source .*images/nope does not exist; fix 'train:'"),
        (lambda r: (r / "data.yaml").write_text("train: images/train\nval: images/val\n"), "has no 'names' entry"),
        (lambda r: (r / "data.yaml").write_text("train: images/train\nval: images/val\nnc: 5\nnames: [a, b]\n"),
         "nc is 5 but 'names' has 2 classes"),
        (lambda r: (r / "data.yaml").write_text("train: [images/train\nnames: [a]"), "not valid YAML"),
        (lambda r: next((r / "labels" / "train").glob("*.txt")).write_text("0 0.5 0.5 0.1\n"), r"\.txt:1: expected 'cls cx cy w h'"),
        (lambda r: next((r / "labels" / "val").glob("*.txt")).write_text("7 0.5 0.5 0.1 0.1\n"),
         r"class id 7 is not an integer in \[0, 3\)"),
        (lambda r: shutil.rmtree(r / "labels" / "train"), "none of the 4 train images has a label file"),
        (lambda r: [p.unlink() for p in (r / "images" / "val").glob("*.jpg")], "the val split .* has no images"),
    ],
)  # fmt: skip
def test_dataset_validated_up_front(tmp_path, edit, needle):
    from edge_mlla.data import validate_dataset

    root = _copy_bccd(tmp_path)
    edit(root)
    with pytest.raises(DatasetError, match=needle):
        validate_dataset(root / "data.yaml")


def test_bundled_dataset_validates_with_counts():
    from edge_mlla.data import validate_dataset

    d = validate_dataset("bccd", splits=("train", "val", "test"))
    assert {k: v["images"] for k, v in d["counts"].items()} == {"train": 205, "val": 87, "test": 72}
    assert all(v["labelled"] == v["images"] and v["boxes"] > 0 for v in d["counts"].values())


def test_relative_path_resolves_from_yaml_folder_then_cwd(tmp_path, monkeypatch):
    from edge_mlla.data import load_data_yaml

    root = _copy_bccd(tmp_path)
    monkeypatch.chdir(tmp_path / "ds" / "images")
    assert load_data_yaml(root / "data.yaml")["root"] == root.resolve()  # "path: ." is the yaml's folder
    (root / "data.yaml").write_text("path: ds\ntrain: images/train\nval: images/val\nnames: [a, b, c]\n")
    monkeypatch.chdir(tmp_path)  # "ds" is not beside the yaml, but exists relative to cwd (Ultralytics' rule)
    assert load_data_yaml(root / "data.yaml")["root"] == root.resolve()
    monkeypatch.chdir(root / "images")  # neither beside the yaml nor below cwd
    with pytest.raises(DatasetError, match="path 'ds' does not exist"):
        load_data_yaml(root / "data.yaml")


# ---------------------------------------------------------------------------------------------- CLI
def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_mlla", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_predict_folder_counts_every_image_and_skips_bad_ones(exported, tmp_path):
    onnx = exported("onnx", imgsz=320)
    folder = tmp_path / "imgs"
    folder.mkdir()
    srcs = sorted((BCCD / "images" / "val").glob("*.jpg"))[:3]
    img = cv2.imread(str(srcs[0]))
    cv2.imwrite(str(folder / "a.jpeg"), img)
    cv2.imwrite(str(folder / "b.JPG"), img)
    cv2.imwrite(str(folder / "c.png"), img)
    (folder / "d.jpg").write_bytes(b"not an image at all")
    bad, _ = _truncated_copy(tmp_path)
    shutil.copy(bad, folder / "e.jpg")
    out = _cli("predict", str(onnx), str(folder), "--backend", "onnxruntime", "--save", str(tmp_path / "ann"))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ": " in ln and "detections" in ln]
    assert sorted(Path(ln.split(": ")[0]).name for ln in lines) == ["a.jpeg", "b.JPG", "c.png"]
    assert "3 image(s) processed, 2 skipped" in out.stderr
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == ["a.jpeg", "b.JPG", "c.png"]


def _bad_inputs(tmp: Path) -> dict[str, str]:
    """Files a new user really meets: a dataset of other classes, a dataset without labels, random bytes named .pt/.xml."""
    rng = np.random.default_rng(0)
    (tmp / "rand.pt").write_bytes(rng.bytes(3000))
    (tmp / "rand.xml").write_bytes(rng.bytes(3000))
    (tmp / "cut.xml").write_text('<?xml version="1.0"?>\n<net name="m" version="11">\n<layers>\n')  # an IR cut short
    (tmp / "cut.bin").write_bytes(rng.bytes(64))
    names8 = tmp / "names8.yaml"  # BCCD's own images and labels (ids 0-2), but an 8-class KITTI-like yaml
    names8.write_text(f"path: {BCCD}\ntrain: images/train\nval: images/val\n"
                      "names: [car, van, truck, pedestrian, person_sitting, cyclist, tram, misc]\n")  # fmt: skip
    nl = tmp / "nolabels"
    for sub in ("images/val", "labels/val", "images/train", "labels/train"):
        (nl / sub).mkdir(parents=True)
    for im in sorted((BCCD / "images" / "val").glob("*.jpg"))[:2]:
        shutil.copy(im, nl / "images/val" / im.name)
    (nl / "data.yaml").write_text("train: images/val\nval: images/val\nnames: [RBC, WBC, Platelets]\n")
    return {"names8": str(names8), "nolabels": str(nl / "data.yaml"), "randpt": str(tmp / "rand.pt"),
            "randxml": str(tmp / "rand.xml"), "cutxml": str(tmp / "cut.xml")}


def test_predict_same_names_subfolders_and_warnings_as_one_line(exported, tmp_path):
    """a/x.jpg and b/x.jpg both survive --save; a folder's sub-folders are named, not silently skipped; a
    truncated image used with --no-strict gives one warning line (no libjpeg line, no Python source line)."""
    onnx = exported("onnx", imgsz=320)
    src = sorted((BCCD / "images" / "val").glob("*.jpg"))[:2]
    for sub, im in zip("ab", src):
        (tmp_path / sub / "deeper").mkdir(parents=True)
        shutil.copy(im, tmp_path / sub / "x.jpg")
        shutil.copy(im, tmp_path / sub / "deeper" / "y.jpg")
    bad, _ = _truncated_copy(tmp_path)
    out = _cli("predict", str(onnx), str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b"), str(bad), "--no-strict",
               "--backend", "onnxruntime", "--save", str(tmp_path / "ann"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    saved = sorted(str(p.relative_to(tmp_path / "ann")) for p in (tmp_path / "ann").rglob("*.jpg"))
    assert saved == ["a/x.jpg", "b/x.jpg", bad.name], saved
    assert cv2.imread(str(tmp_path / "ann" / "a" / "x.jpg")).shape == cv2.imread(str(src[0])).shape
    assert f"{tmp_path / 'b'}: 1 image(s) in sub-folders not read (pass --recursive)" in out.stderr
    warn = [ln for ln in out.stderr.splitlines() if "truncated" in ln]
    assert len(warn) == 1 and warn[0].startswith("warning: "), out.stderr
    assert "Premature end" not in out.stderr and "warnings.warn" not in out.stderr, out.stderr
    assert out.stderr.count("Detector") <= 1, out.stderr  # said once, not printed and logged


@pytest.mark.parametrize(
    "args,needle,code",
    [
        (["predict", "{onnx}", "{empty}"], "no images in", 2),
        (["predict", "{onnx}", "{empty}/nope.jpg"], "no such image or folder", 2),
        (["predict", "{onnx}", "{yaml}"], "is not an image file", 2),
        (["predict", "{empty}", "{img}"], "exactly one OpenVINO model", 2),
        (["eval", "{onnx}", "--data", "{empty}"], "folder without a data.yaml", 2),
        (["eval", "{onnx}", "--split", "nope"], "has no 'nope' split", 2),
        (["quantize", "{onnx}", "--calib", "{empty}"], "calibration folder .* is empty", 2),
        (["quantize", "{img}", "--calib", "bccd"], "takes an exported .onnx or OpenVINO .xml", 2),
        (["export", "{img}"], "must be an Ultralytics .pt file", 2),
        (["train", "--data", "{yaml}", "--epochs", "1"], "has no 'names' entry", 2),
        (["train", "--imgsz", "192x640", "--epochs", "1"], "training uses a square size", 2),
        (["eval", "{onnx}", "--data", "{names8}"], r"has 3 classes \(RBC, WBC, Platelets\) but .* has 8", 2),
        (["eval", "{onnx}", "--data", "{nolabels}"], "none of the 2 val images has a labelled object", 2),
        (["export", "{randpt}"], "is not a PyTorch checkpoint", 2),
        (["predict", "{randxml}", "{img}"], "is not an OpenVINO IR", 2),
        (["quantize", "{randxml}", "--calib", "bccd"], "is not an OpenVINO IR", 2),
        (["predict", "{cutxml}", "{img}"], "openvino could not read .*cut.xml: .*tags mismatch", 2),
        (["quantize", "{cutxml}", "--calib", "bccd"], "openvino could not read .*cut.xml: .*tags mismatch", 2),
        (["eval", "{cutxml}", "--data", "bccd"], "openvino could not read .*cut.xml: .*tags mismatch", 2),
        (["export-repo", "{cutxml}", "--out", "{empty}/repo"], "openvino could not read .*cut.xml: .*tags mismatch", 2),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line_never_a_traceback(exported, tmp_path, args, needle, code):
    import re

    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.yaml").write_text("train: images/train\n")
    img = next((BCCD / "images" / "val").glob("*.jpg"))
    fill = {"onnx": str(exported("onnx", imgsz=320)), "empty": str(tmp_path / "empty"), "yaml": str(tmp_path / "bad.yaml"),
            "img": str(img), **_bad_inputs(tmp_path)}  # fmt: skip
    out = _cli(*[a.format(**fill) for a in args], cwd=tmp_path)
    assert out.returncode == code, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "tensorflow" not in out.stderr and "yolo predict" not in out.stderr, out.stderr[-2000:]  # others' noise
    errors = [ln for ln in out.stderr.splitlines() if ": error: " in ln]
    assert len(errors) == 1 and re.search(needle, errors[0]), out.stderr[-2000:]


def test_unexpected_error_is_one_line_and_verbose_shows_the_traceback(monkeypatch, capsys):
    from edge_mlla import cli

    def boom(a):
        raise RuntimeError("something broke")

    monkeypatch.setattr(cli, "_cmd_backends", boom)
    assert cli.main(["backends"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: something broke" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        cli.main(["backends", "--verbose"])
