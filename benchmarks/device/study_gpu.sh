#!/bin/bash
# The BCCD study's GPU runs in one call on a lent CUDA machine that has PyTorch but no network and no edge_mlla
# install (this workplace's H200: Python 3.12, torch 2.11): ultralytics and its two small pure-Python needs travel
# as wheels in .whl/ (see the note below), edge_mlla runs from the checkout.
#
#   bash benchmarks/device/study_gpu.sh e50 SECONDS    # seeds 5-9 of bccd-e50, both arms, 10 runs at a time
#   bash benchmarks/device/study_gpu.sh e150 SECONDS   # the 150-epoch pair, seeds 0-1, 4 runs at a time
#
# SECONDS bounds the study (it is stopped with SIGTERM after that: finished runs keep their records, a run in
# flight keeps last.pt and resumes on the next call while the machine is warm). Everything a record needs comes back
# in $OUT/study-<phase>.tgz (records, per-image stats, reports, run logs, results.csv; no weights), refreshed every
# 30 s so that a call cut short still returns what finished. Unpack it in the repo root and commit.
#
# Wheels (here, once): python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform any -d .whl ultralytics==8.4.190 ultralytics-thop==2.2.3 ultralytics-platform==0.1.99
# polars (54 MB) does not fit what the device tool carries; Ultralytics imports it only to copy results.csv into
# a checkpoint's metadata, inside a try/except, so benchmarks/device/shim/polars stands in for it there.
#
# Measured on the H200 (16 cores), 2026-12-04: ten 50-epoch runs side by side trained in ~5.5 min after a ~2.5 min
# start that threads oversubscription caused (fixed since: runner.child_env); a 150-epoch pair run beside them at
# nice 10 got 21 epochs in 7 min.
#
# A dry run here on the CPU before spending device time (every setting can be overridden from the environment):
#   OUT=/tmp/o PY=.venv/bin/python DEVICE=cpu SEEDS=0 EPOCHS=1 IMGSZ=64 JOBS=2 STUDY_OUT=/tmp/o/study \
#     STUDY_RUNS=/tmp/o/runs bash benchmarks/device/study_gpu.sh e50 300
set -u
PHASE=${1:?e50 or e150}; BUDGET=${2:-500}; OUT=${OUT:-/tmp/out}; PY=${PY:-python3}; mkdir -p "$OUT"
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
case $PHASE in
  e50) SEEDS=${SEEDS:-5-9}; EPOCHS=${EPOCHS:-50}; JOBS=${JOBS:-10}; STUDY_RUNS=${STUDY_RUNS:-runs/study} ;;
  e150) SEEDS=${SEEDS:-0-1}; EPOCHS=${EPOCHS:-150}; JOBS=${JOBS:-4}; STUDY_RUNS=${STUDY_RUNS:-runs/study-e150} ;;
  *) echo "phase must be e50 or e150" >&2; exit 2 ;;
esac
STUDY_OUT=${STUDY_OUT:-benchmarks/results/study/bccd-$PHASE}
if ! $PY -c "import ultralytics" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
fi
export PYTHONPATH=$PWD:/tmp/site:$PWD/benchmarks/device/shim PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
# pyproject's package-dir maps runtimes/ and quantize/ into edge_mlla; without an install, links do it
$PY -c "import edge_mlla.runtimes" 2>/dev/null || { ln -sfn ../runtimes edge_mlla/runtimes; ln -sfn ../quantize edge_mlla/quantize; }
nvidia-smi -L 2>/dev/null; $PY -c "import sys, torch, ultralytics; print(sys.version.split()[0], torch.__version__, ultralytics.__version__, torch.cuda.is_available())"
$PY - <<'PY' || exit 4
# label caches written once, before ten runs start side by side and would all write them at once
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset

import edge_mlla.nn  # noqa: F401  (offline setup)
from edge_mlla.data import validate_dataset

d = check_det_dataset(validate_dataset("bccd", splits=("val",))["yaml"])
for split in ("train", "val", "test"):
    print(split, len(YOLODataset(img_path=d[split], data=d, imgsz=416, augment=False).labels), "labels")
PY
snap() {
  tar czf "$OUT/.s.tgz" "$STUDY_OUT" $(ls "$STUDY_RUNS"/*.log "$STUDY_RUNS"/*/results.csv 2>/dev/null) 2>/dev/null \
    && mv "$OUT/.s.tgz" "$OUT/study-$PHASE.tgz"
}
mon() { while sleep 30; do
  echo "t=$(el) load=$(cut -d' ' -f1 /proc/loadavg) gpu=$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)" \
    "epochs: $(for f in "$STUDY_RUNS"/*/results.csv; do [ -f "$f" ] && printf '%s=%s ' "$(basename "$(dirname "$f")")" $(( $(wc -l < "$f") - 1 )); done)"
  snap; done; }
mon > "$OUT/monitor-$PHASE.log" 2>&1 & MON=$!
timeout -k 60 "$BUDGET" $PY -m edge_mlla study --models yolo11n-mlla.yaml,yolo11n.yaml --data bccd \
  --imgsz "${IMGSZ:-416}" --batch 16 --device "${DEVICE:-0}" --no-progress --seeds "$SEEDS" --epochs "$EPOCHS" \
  --jobs "$JOBS" --out "$STUDY_OUT" --runs "$STUDY_RUNS" > "$OUT/study-$PHASE.log" 2>&1
echo "study exit $? at t=$(el)"; kill $MON; snap
grep -h "done: pooled\|failed" "$OUT/study-$PHASE.log"; tail -n 2 "$OUT/monitor-$PHASE.log"
