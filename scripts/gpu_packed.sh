#!/usr/bin/env bash
# Packed sweeps on one GPU: the checks and figures that need one, in stages, each timed.
#
#   scripts/gpu_packed.sh OUT [STAGE ...]   # stages: cuda bench onset1 bs512 bs128 (default: all)
#   scripts/gpu_packed.sh OUT --tiny        # the same commands, tiny, on a CPU (a check)
#   ONSET_LRS=4,8,16,32 scripts/gpu_packed.sh OUT onset1   # the width-1 check at these factors
#
#   cuda   pytest tests/test_cuda.py (graph vs eager step on the GPU) and tests/test_packed.py
#   bench  python -m forgetting.bench --packed: sequential (compiled, CUDA graphs) vs packed vs
#          K processes (with and without CUDA MPS), widths 1, 0.5, 0.25, K = 1, 2, 4, 8
#   onset1 the width-1 check of the onset's extrapolation: +sweep=quick_onset_width at
#          model.width=1 (batch 128 and 512, seeds 0, 1, packed) at the LR factors in $ONSET_LRS,
#          the ones that bracket the width-1 interval of the CPU sweep's "onset against width"
#          (forgetting.analyze prints them: ONSET_LRS=...); unset, the preset's factors (16
#          points). Its verdict gives each seed's max sharpness ratio and loss onset per batch
#          size, to hold against that interval (not timed on a GPU yet)
#   bs512  the seed's figure 2 at full scale: +sweep=lr_subset_bs512, packed (40 points)
#   bs128  the seed's figure 1 at full scale: +sweep=lr_subset_bs128, packed (40 points)
# Each sweep stage is followed by forgetting.analyze and forgetting.plot on its folder. Every
# command's output goes to OUT/<name>.log, its wall time and points per hour (points counted by
# the array launcher) to OUT/times.txt. The CIFAR-10 tree is $FORGETTING_DATA (default
# ../shared/data/cifar10-jpg, an ImageFolder tree train/<class>, test/<class>). Sweep folders are
# OUT/multirun/<preset> (onset1: quick_onset_width_w1): a rerun resumes them.
set -euo pipefail

OUT=${1:?usage: scripts/gpu_packed.sh OUT [--tiny] [STAGE ...]}
shift
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TINY=0
STAGES=()
for arg in "$@"; do
    case $arg in
        --tiny) TINY=1 ;;
        cuda|bench|onset1|bs512|bs128) STAGES+=("$arg") ;;
        *) echo "error: unknown stage '$arg' (choose cuda, bench, onset1, bs512, bs128," \
                "--tiny)" >&2
           exit 2 ;;
    esac
done
[ ${#STAGES[@]} -eq 0 ] && STAGES=(cuda bench onset1 bs512 bs128)
PY=${PYTHON:-python}
DATA=${FORGETTING_DATA:-../shared/data/cifar10-jpg}

if [ $TINY = 1 ]; then  # the same commands on a CPU in about a minute each
    DEVICE=(device=cpu precision=fp32)
    SWEEP=(data=synthetic model=tiny epochs=1 data.train_size=640 data.test_size=200
           batch_size=64 diag.sharpness_examples=64 diag.iters=4
           "hydra.sweeper.params.subset='0.5,1.0'" "hydra.sweeper.params.lr='1,4'")
    BENCH=(--device cpu --widths 0.125 --ks 1,2 --train-size 256 --test-size 128
           --batch-size 32 --rounds 1)
    ONSET=(data=synthetic model=tiny epochs=1 data.train_size=640 data.test_size=200 subset=1.0
           batch_size=32,64 seed=0 diag.sharpness_examples=64 diag.iters=4)
    PACK=2
else
    DEVICE=(device=cuda precision=bf16)
    SWEEP=(data=cifar10 "data.root=$DATA" data.download=false)
    BENCH=(--device cuda --precision bf16 --compile --widths 1,0.5,0.25 --ks 1,2,4,8
           --train-size 50000 --test-size 10000 --batch-size 512 --rounds 2)
    ONSET=("${SWEEP[@]}")
    PACK=auto
fi

timed() {  # NAME POINTS COMMAND...: run, log, and record wall time and points per hour
    local name=$1 points=$2
    shift 2
    local start end
    start=$(date +%s.%N)
    echo "== $name: $*" | tee -a "$OUT/times.txt"
    if "$@" > "$OUT/$name.log" 2>&1; then status=ok; else status="failed ($?)"; fi
    end=$(date +%s.%N)
    awk -v n="$name" -v s="$start" -v e="$end" -v p="$points" -v st="$status" 'BEGIN {
        w = e - s; printf "%s: %s, %.0f s", n, st, w;
        if (p > 0) printf ", %d points, %.1f points/h", p, p * 3600 / w; printf "\n" }' \
        | tee -a "$OUT/times.txt"
    tail -n 25 "$OUT/$name.log"
}

sweep() {  # PRESET NAME OVERRIDE...: the packed sweep into OUT/multirun/NAME, its verdict, figures
    local preset=$1 name=$2 folder="$OUT/multirun/$2" points
    shift 2
    # the points, counted by the array launcher (composes, runs nothing); 0 when that fails
    points=$("$PY" -m forgetting.run "+sweep=$preset" "${DEVICE[@]}" "$@" hydra/launcher=array \
        hydra.launcher.count=true 2>/dev/null | tail -n 1) || points=0
    [[ $points =~ ^[0-9]+$ ]] || points=0
    timed "$name" "$points" "$PY" -m forgetting.run "+sweep=$preset" "${DEVICE[@]}" "$@" \
        hydra/launcher=packed "hydra.launcher.pack=$PACK" "hydra.sweep.dir=$folder"
    timed "$name-analyze" 0 "$PY" -m forgetting.analyze "$folder"
    timed "$name-plot" 0 "$PY" -m forgetting.plot "$folder"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/device.txt" \
    2>/dev/null || echo "no nvidia-smi" > "$OUT/device.txt"
for stage in "${STAGES[@]}"; do
    case $stage in
        cuda) timed cuda 0 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py \
                  tests/test_packed.py ;;
        bench) timed bench 0 "$PY" -m forgetting.bench --packed "${BENCH[@]}" \
                   --json "$OUT/bench_packed.json" ;;
        onset1) sweep quick_onset_width quick_onset_width_w1 "${ONSET[@]}" model.width=1 \
                    ${ONSET_LRS:+"lr=$ONSET_LRS"} ;;
        bs512) sweep lr_subset_bs512 lr_subset_bs512 "${SWEEP[@]}" ;;
        bs128) sweep lr_subset_bs128 lr_subset_bs128 "${SWEEP[@]}" ;;
    esac
done
echo "figures, tables and logs in $OUT"
