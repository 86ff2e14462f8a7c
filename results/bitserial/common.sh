# Shared by run.sh and extra_steps.sh (sourced from the repository root): the snnconv command, the output folder,
# the training settings of every bit-serial run, `train` (train, or finish a run a previous call left part-way; a
# finished run is a no-op), `model_args` and `exact_run`.
S=${SNNCONV:-.venv/bin/snnconv}
OUT=results/bitserial
train() {
  local out=$1; shift
  if [ -f $out/last.pt ]; then $S train "$@" --out $out --resume; else $S train "$@" --out $out; fi
}
COMMON="--dataset fashion-mnist --epochs 3 --subset 20000 --optimizer adam --lr 0.002 --weight-decay 0 --threshold-init 4 --batch-size 128"
model_args() {  # `--model` arguments of a MODELS entry ("vgg16" = VGG-16 at width 0.25)
  if [ $1 = vgg16 ]; then echo "vgg16 --width 0.25"; else echo $1; fi
}
exact_run() {  # train (or finish) model $1's QCFS run with L = 2^T - 1 levels for T = $2 bits; sets L and RUN
  L=$(( (1 << $2) - 1 ))
  RUN=runs/bitserial/$1_L$L
  train $RUN --model $(model_args $1) $COMMON --levels $L
}
