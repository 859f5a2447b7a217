#!/usr/bin/env bash
# GPU check for issue 11 (not run by CI): 16 streams of a 640x480 video in ONE mask-monitor, MTCNN batched
# and the classifier on CUDA, against 16 separate single-source processes in the same run.
# Targets: >= 25 frames/s per source in one process, and >= 1.5x the aggregate frames/s of the 16 processes.
#
# Usage (repository root, an NVIDIA GPU, `pip install -e '.[dev]'` done):
#   .ci/gpu_check_streams.sh [ENGINE] [STREAMS]
# ENGINE: a classifier file for the GPU (.pt or .engine; the bundled .onnx runs in ONNX Runtime on the CPU).
#         Default: a .pt made from the demo model's architecture by tests.helpers.make_checkpoint (speed does
#         not depend on the weights).
set -euo pipefail
ENGINE="${1:-}"
STREAMS="${2:-16}"
PY="${PYTHON:-python}"
OUT="${OUT:-/tmp/gpu_check_streams}"
mkdir -p "$OUT"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('GPU:', torch.cuda.get_device_name(0))"
if [ -z "$ENGINE" ]; then
  ENGINE="$OUT/demo_arch.pt"
  "$PY" - "$ENGINE" <<'PYEOF'
import sys
from pathlib import Path
from tests.helpers import make_checkpoint
make_checkpoint(Path(sys.argv[1]))  # mobilenet_v2, the demo model's 96x128 input
PYEOF
fi
# MTCNN on CUDA (pyramid on the device, box crops from the integral images) finds what it finds on the CPU
"$PY" - <<'PYEOF'
import cv2, numpy as np
from engines.config import DetectorConfig
from engines.faces import FaceDetector
cap = cv2.VideoCapture("samples/entrance.mp4")
frames = [cap.read()[1] for _ in range(90)][::6]
frames = [cv2.resize(f, (320, 240), interpolation=cv2.INTER_AREA) for f in frames]
cpu = FaceDetector(DetectorConfig(device="cpu")).detect_batch(frames)
gpu = FaceDetector(DetectorConfig(device="cuda")).detect_batch(frames)
same = all(len(a) == len(b) and all(np.allclose(x.box, y.box, atol=1.0) for x, y in zip(a, b)) for a, b in zip(cpu, gpu))
print(f"MTCNN on CUDA vs CPU, {len(frames)} frames, {sum(map(len, cpu))} faces: {'the same' if same else 'DIFFERENT'}")
PYEOF
cat > "$OUT/gpu.toml" <<TOML
[engine]
device = "cuda"
[detector]
device = "cuda"
[classifier]
batch_size = 32
TOML
# 640x480 input: the bundled sample video (25 fps, 602 frames, 1 face at a time)
"$PY" -m monitor bench --video samples/entrance.mp4 --streams "$STREAMS" --config "$OUT/gpu.toml" \
  --engine "$ENGINE" --json "$OUT/streams.json"
"$PY" - "$OUT/streams.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
one, sep = r["one"], r["separate"]
print(f"one process: {one['fps_aggregate']:.1f} frames/s in all, slowest source {one['fps_min']:.1f}")
print(f"{sep['processes']} processes: {sep['fps_aggregate']:.1f} frames/s in all; ratio {r['ratio']:.2f}x")
ok = one["fps_min"] >= 25 and r["ratio"] >= 1.5
print("targets (>= 25 frames/s per source, >= 1.5x):", "MET" if ok else "NOT MET")
sys.exit(0 if ok else 1)
PYEOF
