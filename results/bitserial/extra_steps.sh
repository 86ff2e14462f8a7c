#!/usr/bin/env bash
# Seed 001 Tables 1-2 shape: bit-serial SNNs fired for more steps than their exact bits (T = exact, +2, +4), with
# the extra steps refining below the LSB ("refine", the seed's reading, SPEC §3) or silent ("pad": SNN == QANN).
# Trains (or resumes) the small_cnn runs of run.sh (QCFS L = 2^T - 1, T = 2, 3, 4); MODELS as in run.sh.
# First SUBSET (default 2000) test images. SNNCONV overrides the command (default .venv/bin/snnconv).
# Then: python results/bitserial/table.py
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/bitserial/common.sh
for name in ${MODELS:-small_cnn}; do
  for T in 2 3 4; do
    exact_run $name $T
    for rule in refine pad; do
      $S evaluate $RUN --method bitserial --T $T,$((T + 2)),$((T + 4)) --extra-steps $rule --subset ${SUBSET:-2000} \
        --json $OUT/${name}_L${L}_extra_${rule}.json | tee $OUT/${name}_L${L}_extra_${rule}.txt
    done
  done
done
