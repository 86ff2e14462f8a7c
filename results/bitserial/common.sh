# Shared by run.sh and extra_steps.sh (sourced from the repository root): the snnconv command, the output folder,
# the training settings of every bit-serial run, and `train` (train, or finish a run a previous call left part-way;
# a finished run is a no-op).
S=${SNNCONV:-.venv/bin/snnconv}
OUT=results/bitserial
train() {
  local out=$1; shift
  if [ -f $out/last.pt ]; then $S train "$@" --out $out --resume; else $S train "$@" --out $out; fi
}
COMMON="--dataset fashion-mnist --epochs 3 --subset 20000 --optimizer adam --lr 0.002 --weight-decay 0 --threshold-init 4 --batch-size 128"
