"""The architecture of DESIGN.md, checked: what may import what, one owner per piece of model knowledge,
one precision vocabulary, thread-safe per-call timing."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG_DIRS = {"edge_mlla": ROOT / "edge_mlla", "edge_mlla.runtimes": ROOT / "runtimes", "edge_mlla.quantize": ROOT / "quantize"}


def _edge_imports(path: Path) -> set[str]:
    """Every ``edge_mlla...`` module a file imports, at any depth (functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edge_mlla"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("edge_mlla")}
    return out


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_runtimes_never_import_the_export_or_training_side():
    allowed = ("edge_mlla.errors", "edge_mlla.modelfile", "edge_mlla.ovread", "edge_mlla.runtimes", "edge_mlla._env")
    for f in _sources(ROOT / "runtimes"):
        for mod in _edge_imports(f):
            if f.name == "torch.py" and mod.startswith("edge_mlla.nn"):
                continue  # the one exception: the torch backend loads checkpoints through the model side
            assert mod.startswith(allowed), f"{f.name} imports {mod}"


def test_the_edge_side_never_imports_export_quantize_or_nn():
    edge = ["detector.py", "results.py", "modelfile.py", "ovread.py", "graph.py", "data.py", "eval.py", "clips.py",
            "cliargs.py"]
    for pkg in ("ops", "stream", "serve"):  # the edge-side packages, every module of them
        edge += [str(p.relative_to(ROOT / "edge_mlla")) for p in sorted((ROOT / "edge_mlla" / pkg).glob("*.py"))]
    assert len(edge) > 30, edge  # the packages were found
    for name in edge:
        f = ROOT / "edge_mlla" / name
        if not f.is_file():
            continue
        bad = {m for m in _edge_imports(f) if m.startswith(("edge_mlla.export", "edge_mlla.quantize", "edge_mlla.nn",
                                                            "edge_mlla.reparam", "edge_mlla.train"))}  # fmt: skip
        assert not bad, f"{name} imports {bad}"


def test_nothing_imports_quantize_except_the_cli_and_benchmarks():
    for pkg, folder in PKG_DIRS.items():
        if pkg == "edge_mlla.quantize":
            continue
        for f in _sources(folder):
            if f.name in ("cli.py", "demo.py") or "quantize" in f.parts or "bench" in f.parts:  # bench: INT8 cells quantize
                continue
            assert not any(m.startswith("edge_mlla.quantize") for m in _edge_imports(f)), f


def test_no_import_runs_back_up_to_the_cli():
    """edge_mlla.cli registers the commands of quantize, serve, stream, bench and study; they share what every
    command needs through edge_mlla.cliargs, never by importing the CLI back (python -m edge_mlla.quantize included)."""
    for folder in PKG_DIRS.values():
        for f in _sources(folder):
            if f.relative_to(ROOT).as_posix() in ("edge_mlla/cli.py", "edge_mlla/__main__.py"):
                continue
            assert "edge_mlla.cli" not in _edge_imports(f), f"{f.relative_to(ROOT)} imports edge_mlla.cli back"


def test_modules_and_functions_stay_readable():
    """No module over 500 lines, no function over 80, in the package, the samples and the benchmark scripts."""
    files = [f for folder in PKG_DIRS.values() for f in _sources(folder)]
    files += _sources(ROOT / "samples") + sorted((ROOT / "benchmarks").glob("*.py"))
    assert len(files) > 80, len(files)  # the folders were found
    over = []
    for f in files:
        text = f.read_text()
        if text.count("\n") > 500:
            over.append(f"{f.relative_to(ROOT)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                over.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name}(): {node.end_lineno - node.lineno + 1} lines")
    assert not over, "split by job: " + "; ".join(over)


def test_edge_modules_are_torch_free_at_import():
    script = (
        "import json, sys\n"
        "import edge_mlla, edge_mlla.detector, edge_mlla.results, edge_mlla.ops, edge_mlla.stream, edge_mlla.modelfile\n"
        "import pkgutil, importlib, edge_mlla.stream as _s, edge_mlla.clips\n"
        "[importlib.import_module('edge_mlla.stream.' + m.name) for m in pkgutil.iter_modules(_s.__path__)]\n"
        "import edge_mlla.graph, edge_mlla.data, edge_mlla.eval, edge_mlla.runtimes\n"
        "import edge_mlla.bench.measure  # the measuring module serve uses\n"
        "import edge_mlla.study.cli; assert callable(edge_mlla.study)  # the report side of a study is torch-free\n"
        "from edge_mlla.runtimes import available; available()\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ultralytics', 'nncf'})))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_model_file_knowledge_has_one_owner():
    """Writing/reading metadata entries and resolving OpenVINO folders happen in edge_mlla.modelfile only."""
    needles = ("metadata_props", '"model_info"', "'model_info'", 'glob("*.xml")', "def normalize_precision",
               "def resolve_model_file", "def parse_metadata", "def make_metadata", "def model_files",
               "def atomic_write", "def replace_dir", "def _replace_dir", "def native_precision")  # fmt: skip
    owners = {"modelfile.py", "capabilities.py"}  # capabilities.py: the precision policy, on top of modelfile's names
    for folder in PKG_DIRS.values():
        for f in _sources(folder):
            if f.name in owners:
                continue
            text = f.read_text()
            for n in needles:
                assert n not in text, f"{f.relative_to(ROOT)} contains {n!r}: model-file knowledge belongs to modelfile.py"


def test_one_precision_vocabulary():
    from edge_mlla.modelfile import PRECISIONS, make_metadata, normalize_precision, parse_metadata

    assert PRECISIONS == ("f32", "bf16", "f16", "int8")
    md = make_metadata({0: "a"}, 32, (64, 64), precision="fp16")  # old spellings are accepted and normalised
    assert json.loads(md["edge_mlla"])["precision"] == "f16" and parse_metadata(md).precision == "f16"
    old = {"names": "{0: 'a'}", "edge_mlla": json.dumps({"precision": "fp32"})}  # a file written by 0.1
    assert parse_metadata(old).precision == "f32"
    import edge_mlla.runtimes as rt

    assert rt.normalize_precision is normalize_precision and rt.PRECISIONS is PRECISIONS


def test_version_lives_in_one_module():
    import edge_mlla
    from edge_mlla._version import __version__
    from edge_mlla.modelfile import make_metadata

    assert edge_mlla.__version__ == __version__
    assert json.loads(make_metadata({0: "a"}, 32, (64, 64))["edge_mlla"])["version"] == __version__
    assert 'attr = "edge_mlla._version.__version__"' in (ROOT / "pyproject.toml").read_text()


def test_audit_and_quantize_scope_share_one_graph_reader(exported):
    from edge_mlla.export import audit
    from edge_mlla.graph import read_graph
    from edge_mlla.quantize import scope

    assert scope.read_graph is read_graph and audit.read_graph is read_graph
    g = read_graph(exported("onnx", imgsz=320))
    assert g.op_counts()["Conv"] > 50 and g.all_ops and len(g.all_ops) >= len(g.nodes)


def test_torch_backend_has_no_silent_fallback(monkeypatch, trained_pt):
    """A broken re-parameterization is an error, not a quiet run of the training form."""
    import edge_mlla.nn.reparam as rp
    from edge_mlla.runtimes.torch import TorchBackend

    def broken(*a, **k):
        raise RuntimeError("reparam broke")

    monkeypatch.setattr(rp, "reparameterize", broken)
    with pytest.raises(RuntimeError, match="reparam broke"):
        TorchBackend(trained_pt)


def test_timing_is_per_call_under_threads(exported):
    """Each result carries its own call's timing; last_timing is per thread; concurrent first submits make one pool."""
    from edge_mlla import Detector

    det = Detector(exported("onnx", imgsz=320), backend="onnxruntime", workers=2)
    img = np.zeros((120, 160, 3), np.uint8)
    seen: dict[int, tuple] = {}
    barrier = threading.Barrier(4)

    def work(k: int) -> None:  # thread k makes batches of k + 1 images: its timings must say k + 1
        barrier.wait()
        futs = [det.submit(img) for _ in range(3)]
        res = [f.result() for f in futs]
        for _ in range(5):
            batch = det([img] * (k + 1))
            mine = det.last_timing
            assert all(d.timing is mine for d in batch) and mine.images == k + 1
        seen[k] = (batch[0].timing, det.last_timing, [r.timing for r in res])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pools = [t for t in threading.enumerate() if t.name.startswith("edge_mlla-onnxruntime")]
    assert len(pools) <= 2, [t.name for t in pools]  # one pool of 2 workers, not one per racing thread
    assert sorted(seen) == [0, 1, 2, 3]
    for k, (own, last, subs) in seen.items():
        assert own is last and own.images == k + 1, k  # this thread's last call, not another thread's
        assert own.infer > 0 and all(t is not None and t.images == 1 and t.infer > 0 for t in subs)
    det.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("edge_mlla-onnxruntime")]


def test_serve_imports_ray_only_inside_itself_and_lazily():
    """Ray is imported in edge_mlla.serve only, inside functions: `import edge_mlla.serve` (and its CLI) loads no
    Ray, Starlette or torch; serve stays on the edge side (no export, quantize, nn or train)."""
    for folder in PKG_DIRS.values():
        for f in _sources(folder):
            mods = set()
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    mods.add(node.module)
                elif isinstance(node, ast.Import):
                    mods |= {a.name for a in node.names}
            in_serve = "serve" in f.relative_to(folder).parts
            assert in_serve or not any(m == "ray" or m.startswith("ray.") for m in mods), f"{f} imports Ray"
            if in_serve:
                bad = {m for m in mods if m.startswith(("edge_mlla.export", "edge_mlla.quantize", "edge_mlla.nn", "edge_mlla.train"))}
                assert not bad, f"{f.name} imports {bad}"
    script = ("import json, sys\nimport edge_mlla.serve, edge_mlla.serve.cli, edge_mlla.serve.repository\n"
              "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'starlette', 'torch', 'ultralytics'})))\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
