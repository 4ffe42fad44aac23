"""Packaging and offline guarantees: light import, no network during training and export."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ultralytics", "openvino", "onnxruntime", "onnx", "nncf")


def _run(script: str, timeout: int = 600) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ}, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_edge_mlla_is_light():
    res = _run(
        """
        import json, sys
        import edge_mlla
        from edge_mlla import Detector, Detections  # the runtime API is part of the light surface
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
        """ % (HEAVY,)
    )
    assert res == [], f"import edge_mlla pulled in {res}"


def test_runtimes_and_subpackages_map_into_the_namespace():
    import edge_mlla.quantize
    import edge_mlla.runtimes

    assert Path(edge_mlla.runtimes.__file__).parent == ROOT / "runtimes"
    assert Path(edge_mlla.quantize.__file__).parent == ROOT / "quantize"


def test_training_and_export_make_no_network_connection(tiny_data, tmp_path):
    """Every socket connect / DNS look-up is recorded and refused while we train 1 epoch and export."""
    res = _run(
        f"""
        import json, socket
        attempts = []
        def refuse(kind):
            def f(*a, **k):
                import traceback; attempts.append([kind, repr(a[1:] if kind == "connect" else a)[:120], "".join(traceback.format_stack(limit=40))])
                raise OSError("network disabled by test")
            return f
        socket.socket.connect = refuse("connect")
        socket.socket.connect_ex = refuse("connect")
        socket.getaddrinfo = refuse("getaddrinfo")
        socket.gethostbyname = refuse("gethostbyname")
        socket.create_connection = refuse("create_connection")

        from edge_mlla.train import train
        from edge_mlla.export import export
        best = train("yolo11n-mlla.yaml", data={str(tiny_data)!r}, imgsz=64, epochs=1, batch=4,
                     project={str(tmp_path / "runs")!r}, workers=0, val=False)
        onnx_path = export(best, format="onnx", imgsz=64, output={str(tmp_path / "onnx")!r})
        xml_path = export(best, format="openvino", imgsz=64, output={str(tmp_path / "ov")!r})
        print(json.dumps({{"attempts": attempts, "files": [str(onnx_path), str(xml_path)]}}))
        """
    )
    assert res["attempts"] == [], "\n".join(a[2] for a in res["attempts"])
    assert all(Path(f).is_file() for f in res["files"])


def test_offline_setup_provides_font_and_telemetry_opt_out(sandbox):
    from edge_mlla._env import setup_offline

    cfg = setup_offline()
    assert os.environ["YOLO_OFFLINE"] == "1"
    assert (cfg / "Arial.ttf").stat().st_size > 100_000
    assert (Path(os.environ["HOME"]) / "intel" / "openvino_telemetry").read_text() == "0"


def test_no_cuda_home_notice_on_nncf_import():
    """torch logs "No CUDA runtime is found, using CUDA_HOME=..." when NNCF loads its extension helper on a machine
    with a CUDA folder but no GPU; our offline setup silences exactly that logger (not torch's other warnings)."""
    code = ("import logging\nfrom edge_mlla._env import setup_offline\nsetup_offline()\nimport nncf.torch\n"
            "print(logging.getLogger('torch.utils.cpp_extension').level, logging.getLogger('torch').level)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "No CUDA runtime" not in p.stderr
    assert p.stdout.split()[0] == str(logging.ERROR) and p.stdout.split()[1] != str(logging.ERROR)


def test_no_settings_notice_on_a_fresh_machine(tmp_path):
    """A first import of the model side in an empty config dir does not print Ultralytics' settings-file notice
    (which points users at `yolo settings` for a file in our private folder); Ultralytics' own messages still show."""
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    env.pop("YOLO_CONFIG_DIR", None)
    env.pop("YOLO_VERBOSE", None)  # Ultralytics' own switch would hide the notice and the control message alike
    code = ("import edge_mlla.nn\nfrom ultralytics.utils import LOGGER\nLOGGER.info('still-logging')\n"
            "from pathlib import Path\nimport os\nprint((Path(os.environ['YOLO_CONFIG_DIR']) / 'Ultralytics' / 'settings.json').is_file())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout + p.stderr
    assert "settings.json" not in out.replace("True", "") and "Creating new Ultralytics Settings" not in out
    assert "still-logging" in out and p.stdout.strip().endswith("True")  # the file was created, silently


def test_bundled_data_is_complete():
    from edge_mlla.data import load_data_yaml

    d = load_data_yaml("bccd")
    assert d["names"] == {0: "RBC", 1: "WBC", 2: "Platelets"}
    counts = {s: len(list(d[s].glob("*.jpg"))) for s in ("train", "val", "test")}
    assert counts == {"train": 205, "val": 87, "test": 72}
    assert (d["root"] / "LICENSE").read_text().startswith("MIT License")
