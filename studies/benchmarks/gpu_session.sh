#!/usr/bin/env bash
# Everything issue 4 measures on a GPU, in calls of at most ~9 minutes each.
#
# A GPU machine is lent for a short time (here: 30 device-minutes per session, 10 minutes
# per command, a bare machine per start), so the measurements are scripted once and run
# unattended. Two steps:
#
#   1. where pip can reach a registry (the development machine), once:
#        bash studies/benchmarks/gpu_session.sh prepare
#      downloads the wheels the GPU image lacks (zarr and its needs, mnist1d, numba's
#      versions are already there) for CPython 3.12 x86-64 into .whl/ (in .gitignore);
#   2. on the GPU machine, from the repository root, with .whl/ carried along:
#        OUT=/some/dir bash studies/benchmarks/gpu_session.sh bench    # <= 8 min: GPU tests, entropy,
#                                                                       #   ConvNet fp32 / tf32 / bf16 vs eager
#        OUT=/some/dir bash studies/benchmarks/gpu_session.sh tuning   # <= 7 min: CUDA graphs, log-step
#                                                                       #   cost (K = 1000, N = 4000), ResNet-18, simulator
#        OUT=/some/dir bash studies/benchmarks/gpu_session.sh study    # <= 8 min: network study, 1 seed
#      Each part installs the wheels and thermonet (no network needed), runs its steps
#      with a time limit each, and leaves in $OUT: summary.md (what ran, exit codes,
#      seconds, the last lines of each log) and results.tar.gz (every log, JSON file,
#      report and figure). `smoke` runs the bench part on the CPU with tiny sizes to check
#      the script itself (tests/test_packaging.py does).
#
# Record what comes back in docs/performance.md (GPU model, numbers) and docs/networks.md.

set -uo pipefail
part=${1:-}
OUT=${OUT:-reports/gpu-session}
mkdir -p "$OUT/logs"
PY=${PYTHON:-python3}

if [[ "$part" == "prepare" ]]; then
    platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
               --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    for spec in zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 mnist1d==0.0.2.post1 \
                pytest-timeout==2.4.0; do
        $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            "${platforms[@]}" -d .whl "$spec" || exit 1
    done
    ls -l .whl
    exit 0
fi

case "$part" in
    bench|tuning|study|smoke) ;;
    *) echo "usage: $0 prepare | bench | tuning | study | smoke   (OUT=folder for the results)" >&2; exit 2 ;;
esac

DRY_RUN=${DRY_RUN:-0}  # 1: only list the commands of the part in $OUT/commands.txt (tests parse them)
if [[ "$part" == "smoke" || "$DRY_RUN" == 1 ]]; then
    DEVICE=cpu
else
    DEVICE=cuda
    if [[ -d .whl ]] && ls .whl/*.whl >/dev/null 2>&1; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
            || exit 1
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . \
        || $PY -m pip install -q --no-deps --no-build-isolation --no-index --upgrade --target /tmp/site . || exit 1
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

summary="$OUT/summary.md"
rm -f "$OUT/commands.txt"
{
    echo "# gpu_session.sh $part ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
    echo
    $PY - <<'EOF'
import platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, GPU: {gpu}, "
      f"python {platform.python_version()}")
EOF
    echo
    echo "| step | exit | seconds |"
    echo "|---|---|---|"
} > "$summary"

# step NAME LIMIT_SECONDS COMMAND...: run with a time limit, log to $OUT/logs/NAME.log
step() {
    local name=$1 limit=$2
    shift 2
    if [[ "$DRY_RUN" == 1 ]]; then
        printf '%s\t%s\n' "$name" "$*" >> "$OUT/commands.txt"
        return 0
    fi
    echo "== $name (limit ${limit}s): $*"
    local tic=$SECONDS
    timeout "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
    local rc=$?
    echo "| $name | $rc | $((SECONDS - tic)) |" >> "$summary"
    tail -n 25 "$OUT/logs/$name.log"
}

B=studies/benchmarks
if [[ "$part" == "smoke" ]]; then
    step ensemble-smoke 300 $PY $B/ensemble_speed.py --device cpu --threads 1 --members 1,2 --width 1 \
        --input-shape 1,16 --n-train 64 --n-test 32 --batch-size 8 --steps 2 --warmup 1 --eager-steps 2 \
        --grad-samples 2 --queue-size 8 --json "$OUT/logs/ensemble-smoke.json"
    step entropy-smoke 120 $PY $B/entropy_gpu.py --n 50 --dim 40 --device cpu --repeats 1
elif [[ "$part" == "bench" ]]; then
    step gpu-tests 150 $PY -m pytest -q -m gpu -p no:cacheprovider tests
    step entropy 90 $PY $B/entropy_gpu.py --n 4000 --dim 100000 --device cuda
    common=(--device cuda --model convnet-si --width 8 --batch-size 128 --input-shape 3,32,32)
    step convnet-fp32 90 $PY $B/ensemble_speed.py "${common[@]}" --members 1,8,32,64,128 \
        --json "$OUT/logs/convnet-fp32.json"
    step convnet-tf32 75 $PY $B/ensemble_speed.py "${common[@]}" --members 64,128 --tf32 \
        --json "$OUT/logs/convnet-tf32.json"
    step convnet-bf16 75 $PY $B/ensemble_speed.py "${common[@]}" --members 64,128 --tf32 --autocast bf16 \
        --json "$OUT/logs/convnet-bf16.json"
elif [[ "$part" == "tuning" ]]; then
    common=(--device cuda --model convnet-si --width 8 --batch-size 128 --input-shape 3,32,32)
    step convnet-graphs 150 $PY $B/ensemble_speed.py "${common[@]}" --members 64 --tf32 \
        --compile reduce-overhead --json "$OUT/logs/convnet-graphs.json"
    step convnet-logstep 90 $PY $B/ensemble_speed.py "${common[@]}" --members 64 --tf32 --steps 10 \
        --grad-samples 1000 --grad-chunk 2 --queue-size 4000 --json "$OUT/logs/convnet-logstep.json"
    step resnet18 90 $PY $B/ensemble_speed.py --device cuda --model resnet18-si --width 4 --batch-size 128 \
        --input-shape 3,32,32 --members 1,16,64 --tf32 --json "$OUT/logs/resnet18.json"
    step simulator 45 $PY $B/simulator_speed.py --device cuda --quick --skip-paper
else
    # runs/ (git-ignored) outlives $OUT while the machine stays warm: a study cut off by its
    # limit (SIGTERM: the run checkpoints) continues from there when the part is run again
    step network-study 480 $PY studies/network_ideal_gas.py --device cuda --steps 20000 --seeds 0 --resume \
        --runs runs --out "$OUT/network-ideal-gas"
fi

tar -czf "$OUT/results.tar.gz" -C "$OUT" --exclude=results.tar.gz --exclude=runs . 2>/dev/null
echo
cat "$summary"
