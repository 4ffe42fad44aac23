#!/bin/bash
# The BCCD study's GPU runs on a lent CUDA machine that has PyTorch but no network and no edge_mlla install (this
# workplace's H200: Python 3.12, torch 2.11): ultralytics and its two small pure-Python needs travel as wheels in
# .whl/ (see below), edge_mlla runs from the checkout.
#
#   bash benchmarks/device/study_gpu.sh e50 SECONDS    # seeds 5-9 of bccd-e50, both arms: 10 runs at a time
#   bash benchmarks/device/study_gpu.sh e150 SECONDS   # the 150-epoch pair, seeds 0-1: 4 runs at a time
#   bash benchmarks/device/study_gpu.sh both SECONDS   # the two side by side (14 runs, one CPU thread each)
#
# SECONDS bounds each study (then SIGTERM: finished runs keep their records, a run in flight keeps last.pt and
# resumes when the same command runs again while the machine is warm: runs/ stays there between calls). What a
# record needs comes back in $OUT/study-<e50|e150>.tgz (records, per-image stats, reports, run logs, results.csv; no
# weights), refreshed every 30 s so that a call cut short still returns what finished. Unpack in the repo root.
#
# Wheels (here, once): python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform any -d .whl ultralytics==8.4.190 ultralytics-thop==2.2.3 ultralytics-platform==0.1.99
# polars (54 MB) does not fit what the device tool carries; Ultralytics imports it only to copy results.csv into
# a checkpoint's metadata, inside a try/except, so benchmarks/device/shim/polars stands in for it there.
#
# Measured on the H200 (16 cores), 2026-12-04, 14 runs side by side (e50 and e150 at nice 10): 2.5 min at a load of
# 90-164 before the first epoch (every run's torch on all 16 cores: fixed since, runner.child_env), then the ten
# 50-epoch runs trained in ~5.2 min (~6 s an epoch each, GPU 99-100%, 39 GiB) while the 150-epoch runs reached 21
# epochs; the ten were still scoring when the call ended. All the work (10 x 50 + 4 x 150 epochs) at that pace is
# ~10 min, plus start and scoring: two calls on a warm machine.
#
# A dry run here on the CPU before spending device time (every setting can be overridden from the environment):
#   OUT=/tmp/o PY=.venv/bin/python DEVICE=cpu SEEDS=0 EPOCHS=1 IMGSZ=64 JOBS=1 STUDY_DIR=/tmp/o/study \
#     RUNS_DIR=/tmp/o/runs bash benchmarks/device/study_gpu.sh both 300
set -u
PHASE=${1:?e50, e150 or both}; BUDGET=${2:-500}; OUT=${OUT:-/tmp/out}; PY=${PY:-python3}; mkdir -p "$OUT"
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
case $PHASE in
  e50 | e150) PHASES=$PHASE ;;
  both) PHASES="e50 e150"; export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} ;;  # 14 runs on 16 cores
  *) echo "phase must be e50, e150 or both" >&2; exit 2 ;;
esac
if ! $PY -c "import ultralytics" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
fi
export PYTHONPATH=$PWD:/tmp/site:$PWD/benchmarks/device/shim PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
# pyproject's package-dir maps runtimes/ and quantize/ into edge_mlla; without an install, links do it
$PY -c "import edge_mlla.runtimes" 2>/dev/null || { ln -sfn ../runtimes edge_mlla/runtimes; ln -sfn ../quantize edge_mlla/quantize; }
nvidia-smi -L 2>/dev/null; $PY -c "import sys, torch, ultralytics; print(sys.version.split()[0], torch.__version__, ultralytics.__version__, torch.cuda.is_available())"
$PY - <<'PY' || exit 4
# label caches written once, before the runs start side by side and would all write them at once
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset

import edge_mlla.nn  # noqa: F401  (offline setup)
from edge_mlla.data import validate_dataset

d = check_det_dataset(validate_dataset("bccd", splits=("val",))["yaml"])
for split in ("train", "val", "test"):
    print(split, len(YOLODataset(img_path=d[split], data=d, imgsz=416, augment=False).labels), "labels")
PY

settings() {  # one phase's study: seeds S, epochs E, jobs J, out O, runs R (SEEDS, EPOCHS, JOBS, STUDY_DIR, RUNS_DIR win)
  case $1 in
    e50) S=${SEEDS:-5-9}; E=${EPOCHS:-50}; J=${JOBS:-10}; R=${RUNS_DIR:-runs/study} ;;
    e150) S=${SEEDS:-0-1}; E=${EPOCHS:-150}; J=${JOBS:-4}; R=${RUNS_DIR:-runs/study}-e150 ;;
  esac
  O=${STUDY_DIR:-benchmarks/results/study/bccd}-$1
}
snap() {
  for p in $PHASES; do
    settings "$p"
    tar czf "$OUT/.s.tgz" "$O" $(ls "$R"/*.log "$R"/*/results.csv 2>/dev/null) 2>/dev/null && mv "$OUT/.s.tgz" "$OUT/study-$p.tgz"
  done
}
mon() { while sleep 30; do
  echo "t=$(el) load=$(cut -d' ' -f1 /proc/loadavg) gpu=$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)" \
    "epochs: $(for f in runs/study*/*/results.csv; do [ -f "$f" ] && printf '%s=%s ' "$(basename "$(dirname "$f")")" $(( $(wc -l < "$f") - 1 )); done)"
  snap; done; }
mon > "$OUT/monitor.log" 2>&1 & MON=$!
PIDS=""
for p in $PHASES; do
  settings "$p"
  timeout -k 60 "$BUDGET" $PY -m edge_mlla study --models yolo11n-mlla.yaml,yolo11n.yaml --data bccd \
    --imgsz "${IMGSZ:-416}" --batch 16 --device "${DEVICE:-0}" --no-progress --seeds "$S" --epochs "$E" --jobs "$J" \
    --out "$O" --runs "$R" > "$OUT/study-$p.log" 2>&1 &
  PIDS="$PIDS $!"
done
for pid in $PIDS; do wait "$pid"; echo "study $pid exit $? at t=$(el)"; done
kill $MON; snap
grep -h "done: pooled\|failed" "$OUT"/study-*.log; tail -n 2 "$OUT/monitor.log"
