#!/usr/bin/env bash
# One prepared accelerator run (under 8 minutes): SCF timings, a fixed-mode and an end-to-end
# training step, a density refresh; results appended to *_gpu.md (or *_cpu.md) in $OUT.
#
# Here, once (needs PySCF; the folder is git-ignored):
#     python benchmarks/device_run.py prepare --data data/device_run [--sizes 8 16 32]
# There (no PySCF needed), e.g. through the device tool with carry ["data/device_run"]:
#     bash benchmarks/device_run.sh
# Dry run on this machine (tiny sizes, seconds to a minute):
#     python benchmarks/device_run.py prepare --cpu --data /tmp/dr && \
#         DATA=/tmp/dr OUT=/tmp/dr-out bash benchmarks/device_run.sh --cpu
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/device_run}
OUT=${OUT:-benchmarks/results}
# 470 s hard limit; no new part starts after 420 s (compile included)
timeout 470 python benchmarks/device_run.py run --data "$DATA" --out "$OUT" --budget 420 "$@"
