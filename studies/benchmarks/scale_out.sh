#!/usr/bin/env bash
# Speed-up of a sharded run (docs/scale-out.md): the isotropic paper grid (fixed LR,
# 17 x 17 = 289 members, D = 3, 2e6 steps) on 1 and on 2 local Dask workers of one thread
# each, then in one process with 1 thread and with the default threads. Each line: label and
# wall seconds of the whole command (cluster start, store, entropies included).
#
#   studies/benchmarks/scale_out.sh [OUT_DIR] [REPEATS]
set -euo pipefail
out=${1:-runs/scale-out}
repeats=${2:-1}
mkdir -p "$out"
grid=(--protocol fixed-lr --dim 3 --lr 1e-3:1e-1:17 --wd 1e-3:1e-1:17 --steps 2000000 --seed 0 --quiet --overwrite)
one_thread=(env NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1)

timed() {  # label, command...; prints the label, the wall seconds and the load average before and after
    local label=$1 start end before
    shift
    before=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s.%N)
    "$@" > /dev/null
    end=$(date +%s.%N)
    python3 -c "print(f'$label: {$end - $start:.1f} s (load average $before -> $(cut -d' ' -f1 /proc/loadavg))')"
}

share() {  # how much CPU one busy process gets, and two at once: what the machine gives now
    python3 - <<'PY'
import multiprocessing as mp, time
def busy(seconds=5.0):
    t0, c0 = time.time(), time.process_time()
    while time.time() - t0 < seconds:
        sum(range(10000))
    return (time.process_time() - c0) / (time.time() - t0)
if __name__ == "__main__":
    one = busy()
    with mp.Pool(2) as pool:
        two = pool.map(busy, [5.0, 5.0])
    print(f"machine: 1 busy process gets {one:.2f} of a core, 2 get {two[0]:.2f} + {two[1]:.2f}")
PY
}

share
thermonet simulate isotropic "${grid[@]}" --steps 100000 --out "$out/warm.zarr" > /dev/null  # compile the kernel once
for _ in $(seq "$repeats"); do
    timed "1 worker (1 thread)" "${one_thread[@]}" thermonet simulate isotropic "${grid[@]}" --workers 1 --out "$out/w1.zarr"
    timed "2 workers (1 thread each)" thermonet simulate isotropic "${grid[@]}" --workers 2 --out "$out/w2.zarr"
done
timed "1 process, 1 thread" "${one_thread[@]}" thermonet simulate isotropic "${grid[@]}" --out "$out/p1.zarr"
timed "1 process, default threads" thermonet simulate isotropic "${grid[@]}" --out "$out/p2.zarr"
share
python3 - "$out" <<'PY'
import sys
import numpy as np
import xarray as xr
out = sys.argv[1]
ref = xr.open_zarr(f"{out}/p2.zarr")
for name in ("w1", "w2", "p1", "p2"):
    ds = xr.open_zarr(f"{out}/{name}.zarr")
    same = all(np.array_equal(ds[v].values, ref[v].values, equal_nan=True) for v in ref.data_vars)
    parts = [(s["members"], s["timing_s"]) for s in ds.attrs.get("shard_state", [])] or [(ds.sizes["lr"] * ds.sizes["wd"], ds.attrs["timing_s"])]
    loops = "; ".join(f"{m} members: loop {t['total']:.1f} s, {t['cpu']:.1f} CPU s (engine {t['engine']:.1f}, "
                      f"entropy {t['entropy']:.1f})" for m, t in parts)
    print(f"{name}: equals the default single-process run: {same}; {loops}")
PY
