#!/usr/bin/env bash
# The device runs behind this folder's files: bash device_run.sh STEP... on the H200, from the
# repository root, with the wheels of .whl/ (pyopencl, diffusers) carried; each step writes its
# raw output to $OUT under its own time limit, so that one slow step cannot take the others.
#
#   bench_OPS      make bench's harness on the JAX backend, every storage dtype, for OPS joined by +
#                  (e.g. bench_group_norm+gelu; the parts are merged with experiments.kernels --merge)
#   jax_DT_CFGS    experiments.sd_latency in one process with DT = float16 | bfloat16 | float32
#                  storage, CFGS = configurations joined by + or "all" (the first pays XLA's
#                  autotuning; a configuration alone in its process shows what a user's first call costs)
#   diffusers_DT   experiments.diffusers_latency (the peer) with DT = bfloat16 | float32
#   golden         the golden tests (diffusers' outputs) on the GPU, JAX rows
#   probe_conv     experiments.probes.jax_conv_dtypes (how XLA runs 16-bit convolutions)
# Everything lands in $OUT/run and is packed into $OUT/run.tgz at the end (the device tool
# brings back a handful of files only).
set -u
FINAL_OUT=$OUT OUT=$OUT/run
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/.whl/diffusers_site XLA_PYTHON_CLIENT_PREALLOCATE=false
export BENCH_COMMIT=${BENCH_COMMIT:-unknown}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv > "$OUT/gpu.txt"

step() {  # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: rc $? in $((SECONDS - started)) s (limit $limit s)" | tee -a "$OUT/steps.txt"
}

for s in "$@"; do  # NAME:SECONDS
    name=${s%%:*} limit=${s#*:}
    case $name in
        bench_*) ops=${name#bench_}
                 step "$name" "$limit" python3 -m experiments.kernels --backends jax --ops ${ops//+/ } \
                     --dtypes float16 bfloat16 float32 --full --out "$OUT" ;;
        jax_*) rest=${name#jax_} dtype=${rest%%_*} configs=${rest#*_}
               [ "$configs" = all ] && configs="none+fused_group_norm+fused_gelu+partial_softmax+flash+winograd4+paper+best"
               step "sd_latency_jax_${dtype}_${rest#*_}" "$limit" python3 -m experiments.sd_latency --backend jax \
                   --dtype "$dtype" --configs ${configs//+/ } --json "$OUT/sd_latency_jax_${dtype}_${rest#*_}.json" ;;
        diffusers_*) dtype=${name#diffusers_}
                     step "diffusers_latency_$dtype" "$limit" python3 -m experiments.diffusers_latency --dtype "$dtype" \
                         --json "$OUT/diffusers_latency_$dtype.json" ;;
        probe_conv) step probe_conv "$limit" python3 -m experiments.probes.jax_conv_dtypes ;;
        golden) step golden "$limit" python3 -m pytest -q -p no:cacheprovider tests/sd/test_golden.py -k jax ;;
        *) echo "unknown step $name" | tee -a "$OUT/steps.txt" ;;
    esac
done
tar czf "$FINAL_OUT/run.tgz" -C "$FINAL_OUT" run && rm -rf "$OUT"
