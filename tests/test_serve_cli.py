"""The serve commands as a user runs them, and the serving layer without a shared server: CLI errors, the cluster
probe, where replicas run, how stream clients open sources, the greedy batcher, serve-streams giving up on a server
that is gone, and a SIGTERM during Ray's start-up leaving no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import cv2
import pytest
from conftest import ROOT
from serve_helpers import free_port as _free_port

pytest.importorskip("ray")

IMGSZ = 320


# ------------------------------------------------------------------ CLI errors (no Ray instance needed)
def test_cli_bad_input_is_one_line_no_traceback(tmp_path, monkeypatch, capsys, exported):
    from edge_mlla.cli import main

    assert main(["serve", str(tmp_path / "missing.xml"), "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err
    assert "model file not found" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    not_a_model = tmp_path / "model.onnx"
    not_a_model.write_bytes(b"this is not onnx")
    assert main(["serve", str(not_a_model), "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "model.onnx" in err

    assert main(["serve", str(exported("onnx", imgsz=IMGSZ)), "--replicas", "0"]) == 2
    assert "replicas must be an integer >= 1" in capsys.readouterr().err

    # Ray missing: the pip command, not an ImportError traceback
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    assert main(["serve", str(exported("onnx", imgsz=IMGSZ))]) == 2
    err = capsys.readouterr().err
    assert 'pip install "edge-mlla[serve]"' in err and "Traceback" not in err


def test_unreachable_cluster_fails_fast():
    """Ray itself retries a dead address for minutes; we check the port first."""
    from edge_mlla.errors import ConfigError, ServeError
    from edge_mlla.serve.raystart import probe_cluster as _probe_cluster

    with pytest.raises(ServeError, match=r"no Ray cluster answers at 127\.0\.0\.1:\d+ .*ray start --head"):
        _probe_cluster(f"127.0.0.1:{_free_port()}", timeout_s=2)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        _probe_cluster("not-an-address")


def test_replicas_run_what_the_probe_ran(trained_pt, exported, monkeypatch):
    """Replicas reserve CPUs only: the backend and device are decided once, for CPUs, before the probe, so a GPU on
    the serving machine cannot make the probe pass where every replica would fail."""
    import dataclasses

    from edge_mlla.errors import ConfigError
    from edge_mlla.runtimes import available, select_backend
    from edge_mlla.serve import replica_target

    assert replica_target(trained_pt) == ("torch", "cpu")  # a .pt: torch would pick cuda where it sees a GPU
    assert replica_target(trained_pt, "torch", "cpu") == ("torch", "cpu")
    onnx = exported("onnx")
    cpu_choice = select_backend(onnx).name  # what auto picks on this machine, which has no GPU
    assert cpu_choice != "cuda"
    gpu = {k: dataclasses.replace(v, available=True, reason="") if k == "cuda" else v for k, v in available().items()}
    for where in ("edge_mlla.runtimes.available", "edge_mlla.runtimes.base.available"):
        monkeypatch.setattr(where, lambda refresh=False: gpu)
    assert select_backend(onnx).name == "cuda"  # the stand-in GPU machine: auto would take cuda...
    assert replica_target(onnx) == (cpu_choice, None)  # ...but replicas serve .onnx on the CPU backend
    for bad in ({"backend": "cuda"}, {"device": "cuda:0"}):
        with pytest.raises(ConfigError, match="replicas on CPUs"):
            replica_target(onnx, **bad)


def test_stream_clients_open_sources_by_the_runner_rule(tmp_path, val_images):
    """serve-streams opens sources with stream.open_source's rule: folders too, files not live, the same typed
    errors, and no password in a label that reaches logs and reports."""
    from edge_mlla.errors import InputTypeError, MissingFileError, SourceError
    from edge_mlla.serve import open_capture

    folder = tmp_path / "frames"
    folder.mkdir()
    for p in val_images[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    cap, live, label = open_capture(folder)
    frames = [cap.read() for _ in range(3)]
    cap.release()
    assert not live and label == str(folder) and [ok for ok, _ in frames] == [True, True, False]
    with pytest.raises(MissingFileError, match="video source not found"):
        open_capture(tmp_path / "missing.mp4")
    with pytest.raises(InputTypeError):
        open_capture(3.5)
    with pytest.raises(SourceError) as e:  # nothing listens on this port: refused at once, within the open timeout
        open_capture(f"rtsp://admin:secret@127.0.0.1:{_free_port()}/live", open_timeout=2)
    assert "secret" not in str(e.value)


def test_cli_port_in_use_is_a_clear_error(exported):
    """A fresh process, as a user runs it: the port check happens before Ray starts."""
    model = exported("onnx", imgsz=IMGSZ)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        r = subprocess.run([sys.executable, "-m", "edge_mlla", "serve", str(model), "--port", str(port)],
                           capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------ greedy batcher (plain asyncio)
def test_greedy_batcher_fills_batches_from_the_backlog():
    import asyncio

    from edge_mlla.serve import GreedyBatcher

    sizes: list[int] = []

    async def work(xs):
        sizes.append(len(xs))
        await asyncio.sleep(0.01)
        if -1 in xs:
            raise ValueError("bad item")
        return [x * 10 for x in xs]

    async def main():
        b = GreedyBatcher(work, max_batch=4, wait_s=0.0)
        out = await asyncio.gather(*(b(i) for i in range(10)))  # all 10 wait before the first batch starts
        bad = await asyncio.gather(b(-1), b(5), return_exceptions=True)  # one batch: both callers get the error
        after = await b(7)  # the loop survives a failed batch
        return out, bad, after

    out, bad, after = asyncio.run(main())
    assert out == [i * 10 for i in range(10)]
    assert sizes[:3] == [4, 4, 2]  # full batches from the backlog, in arrival order
    assert all(isinstance(e, ValueError) for e in bad) and after == 70


def test_serve_streams_gives_up_on_a_server_that_is_gone(tmp_path, val_images):
    """Nothing listens at the URL: every frame fails after its retries; after --give-up seconds without an answer the
    run stops with one warning, and the command exits 1 (a fresh process, as a user runs it; no Ray involved)."""
    vid = tmp_path / "cam.avi"
    vw = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for p in val_images[:3] * 20:
        vw.write(cv2.resize(cv2.imread(str(p)), (160, 120)))
    vw.release()
    url = f"http://127.0.0.1:{_free_port()}/"
    r = subprocess.run([sys.executable, "-m", "edge_mlla", "serve-streams", str(vid), "--url", url, "--give-up", "1"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert r.returncode == 1, r.stderr
    err = [line for line in r.stderr.splitlines() if line.strip()]
    assert sum("giving up" in line for line in err) == 1 and "Traceback" not in r.stderr, r.stderr
    assert len(err) == 2 and "frame(s) failed (gave up: the server stopped answering)" in err[-1], err
    row = next(line for line in r.stdout.splitlines() if line.startswith(f"| {vid}"))
    read, processed, dropped, failed = (int(x) for x in row.split("|")[3:7])
    assert processed == 0 and failed >= 1 and read < 60  # it stopped early, not after trying every frame


def test_sigterm_during_ray_startup_leaves_no_process(exported):
    """`edge-mlla serve` gets SIGTERM while Ray's agents are starting: it exits as interrupted (130) in one line, and
    every process it started (raylet, GCS, DashboardAgent, RuntimeEnvAgent, ...) is gone."""
    psutil = pytest.importorskip("psutil")
    model = exported("onnx", imgsz=IMGSZ)
    cmd = [sys.executable, "-m", "edge_mlla", "serve", str(model), "--port", str(_free_port()), "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})  # fmt: skip
    parent, seen, signalled = psutil.Process(proc.pid), {}, False
    deadline = time.monotonic() + 240  # does not hang: the model check and Ray's start take ~5-20 s here
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            for p in parent.children(recursive=True):
                seen.setdefault(p.pid, p)
        except psutil.Error:
            pass
        if not signalled and any("Agent" in p.name() for p in seen.values() if p.is_running()):
            proc.send_signal(signal.SIGTERM)
            signalled = True
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)  # does not hang: each clean-up step is bounded (~3 s)
    assert signalled, f"no Ray agent seen before the command ended: {err[-2000:]}"
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "edge-mlla serve: interrupted", err[-2000:]
    assert "Traceback" not in err

    def left() -> list[str]:
        return [f"{p.pid}:{p.name()}" for p in seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    gone_by = time.monotonic() + 30  # does not hang: what was stopped is gone within seconds
    while left() and time.monotonic() < gone_by:
        time.sleep(0.2)
    assert seen and left() == []
