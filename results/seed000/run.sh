#!/usr/bin/env bash
# Seed 000 on Fashion-MNIST at a small CPU budget: the L x T grid (w_q = 0) and the w_q x T table at L = 8
# (the w_q = 0 row of that table is the L = 8 row of the grid). MODELS defaults to ResNet-20 (width 0.5); VGG-16
# (width 0.25) with MODELS="resnet20 vgg16". 3 epochs on 10,000 training images, 1,000 test images: about 25 min
# per model on 2 cores (a full-width ResNet-20 epoch on 20,000 images took 9 min on the loaded machine).
# Each sweep is resumable: re-run the same command to continue. FORMS picks the regularizer readings of the w_q
# sweep (SPEC §2; default raw, the only one when these tables were made): FORMS="raw seed clipped" adds the other two
# (files *_wqxT_seed.*, *_wqxT_clipped.*); GRID=0 skips the L x T grid. SNNCONV overrides the command (default
# .venv/bin/snnconv).
set -euo pipefail
cd "$(dirname "$0")/../.."
S=${SNNCONV:-.venv/bin/snnconv}
COMMON="--dataset fashion-mnist --epochs 3 --subset 10000 --optimizer adam --lr 0.002 --weight-decay 0 --threshold-init 4 --batch-size 128 --eval-subset 1000 --T 1,2,4,8,16,32"
for name in ${MODELS:-resnet20}; do
  M=$name; [ $name = vgg16 ] && M="vgg16 --width 0.25"; [ $name = resnet20 ] && M="resnet20 --width 0.5"
  if [ "${GRID:-1}" = 1 ]; then  # GRID=0: only the w_q sweeps
    $S sweep --model $M $COMMON --L 2,4,8,16 --wq 0 --out runs/seed000/${name}_grid
    cp runs/seed000/${name}_grid/tables.md results/seed000/${name}_LxT.md
    cp runs/seed000/${name}_grid/results.csv results/seed000/${name}_LxT.csv
  fi
  for form in ${FORMS:-raw}; do
    sfx=""; [ $form = raw ] || sfx="_$form"
    $S sweep --model $M $COMMON --L 8 --wq 0.1,0.2 --qcfs-reg-form $form --out runs/seed000/${name}_wq$sfx
    cp runs/seed000/${name}_wq$sfx/tables.md results/seed000/${name}_wqxT$sfx.md
    cp runs/seed000/${name}_wq$sfx/results.csv results/seed000/${name}_wqxT$sfx.csv
  done
done
