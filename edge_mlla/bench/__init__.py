"""``edge-mlla bench``: latency per stage, async throughput, resolution scaling and % of hardware peak of a model
over backends x precisions x input sizes, next to a stock YOLO11n baseline measured in the same run.

:func:`run_bench` takes a ``.pt`` checkpoint (exported to ONNX / OpenVINO IR at each size into a temporary folder)
or an exported ``.onnx`` / ``.xml`` (then its own input size, or the asked sizes when its input is dynamic) and,
for every backend x precision x size cell:

* runs ``Detector(file)(image)`` ``runs`` times after ``warmup`` calls on one fixed, realistic image (a BCCD test
  image resized so its long side is the input size) and keeps the median and p90 of every stage of
  :class:`~edge_mlla.results.Timing` (``preprocess``, ``infer``, ``postprocess``, ``total``) and of the wall time;
* measures async throughput: images per second with ``Detector.submit()`` keeping the backend's optimal number of
  requests in flight (OpenVINO with the ``throughput`` hint);
* ``int8`` cells quantize the float export with a small calibration subset of the bundled BCCD train split
  (``calib_size`` images, 32 by default), or use ``int8=FILE``.

The baseline is stock Ultralytics YOLO11n (``yolo11n.yaml`` built offline with the same classes, random weights:
speed does not depend on them), exported the same way and run through our ``Detector`` and through Ultralytics'
own ``YOLO(file).predict`` (whose ``results[0].speed`` per-stage milliseconds are kept too), each at its default
precision. Cells that share a backend and size are measured interleaved (round robin), so background load hits
them alike; the ratios (our Detector / Ultralytics predict end to end on the same file; MLLA model / stock model
inference) are therefore the least noisy numbers of the report.

It also fits the growth exponent of inference time against pixel count (log-log least squares), compares the
model's GFLOP/s with the peak this CPU reaches in the same runtime and precision on a large 3x3 convolution, and
states plainly whether INT8 pays here (INT8 throughput vs the native float precision's, in the same run).

The package, one job per module: :mod:`.machine` (what it ran on), :mod:`.options` (what to measure, checked),
:mod:`.prepare` (exports, INT8, the baseline), :mod:`.measure` (the one measuring module: latency, throughput with
requests in flight, interleaved rounds; quantize and serve use it too), :mod:`.runners` (the cells), :mod:`.peak`
(the hardware limit), :mod:`.analysis` (ratios, scaling, verdicts), :mod:`.result`, :mod:`.report` and
:mod:`.charts` (the output), :mod:`.vs_ultralytics` (our deploy path against Ultralytics' on one checkpoint) and
:mod:`.cli` (``edge-mlla bench``).

Example:
    >>> from edge_mlla.bench import run_bench
    >>> res = run_bench("edge_mlla/weights/yolo11n-mlla-bccd.pt", imgsz=[320, 640], runs=20)  # doctest: +SKIP
    >>> print(res.table())                                                                   # doctest: +SKIP
    >>> paths = res.save("runs/bench")      # bench.json, bench.md, latency_stages.png, scaling.png  # doctest: +SKIP
"""

from __future__ import annotations

from edge_mlla.bench.analysis import INT8_PAYS, fit_exponent
from edge_mlla.bench.machine import ISA_FLAGS, describe_machine, machine_line
from edge_mlla.bench.options import PEAK_CONV, MeasureOptions, parse_sizes
from edge_mlla.bench.peak import measure_peak
from edge_mlla.bench.prepare import count_gflops
from edge_mlla.bench.result import SCHEMA, STAGES, BenchResult, Cell
from edge_mlla.bench.run import DEFAULT_BACKENDS, DEFAULT_BASELINE, DEFAULT_PRECISIONS, DEFAULT_SIZES, default_image, run_bench

__all__ = ["run_bench", "BenchResult", "Cell", "MeasureOptions", "describe_machine", "machine_line", "measure_peak",
           "count_gflops", "fit_exponent", "parse_sizes", "default_image", "SCHEMA", "STAGES", "ISA_FLAGS",
           "DEFAULT_BACKENDS", "DEFAULT_PRECISIONS", "DEFAULT_SIZES", "DEFAULT_BASELINE", "INT8_PAYS", "PEAK_CONV"]
