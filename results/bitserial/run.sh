#!/usr/bin/env bash
# Seed 001 on Fashion-MNIST at a small CPU budget (MODELS, default small_cnn; "vgg16" = VGG-16 at width 0.25):
#  - Table 5 shape: QANN vs bit-serial SNN with T = Q bits (QCFS with L = 2^T - 1 levels), T = 2, 3, 4;
#  - Table 4 shape: ablations at T = 3 (L = 7);
#  - the bit-level l1 regularizer: spiking activity vs coefficient at T = 3.
set -euo pipefail
cd "$(dirname "$0")/../.."
source results/bitserial/common.sh
for name in ${MODELS:-small_cnn}; do
  M=$(model_args $name)
  for T in 2 3 4; do
    exact_run $name $T
    f64=""; [ $T -eq 3 ] && f64="--float64"   # float64 (exact equality) at T = 3; float32 elsewhere
    $S evaluate $RUN --method bitserial --T $T $f64 --json $OUT/${name}_L${L}_T${T}.json | tee $OUT/${name}_L${L}_T${T}.txt
  done
  $S evaluate runs/bitserial/${name}_L7 --method bitserial --T 2,3 --subset 2000 --ablation all \
    --json $OUT/${name}_ablation.json | tee $OUT/${name}_ablation.txt
  for C in 1e-6 1e-5; do
    run=runs/bitserial/${name}_L7_sp$C
    train $run --model $M $COMMON --levels 7 --sparsity $C
    $S evaluate $run --method bitserial --T 3 --json $OUT/${name}_L7_sparsity$C.json | tee $OUT/${name}_L7_sparsity$C.txt
  done
done
