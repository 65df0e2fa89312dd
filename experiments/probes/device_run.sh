#!/usr/bin/env bash
# Issue 13's device runs: bash experiments/probes/device_run.sh STEP:SECONDS ... on the H200 (the
# device tool), from the repository root, with the wheels of .whl/ (pyopencl, pytools, platformdirs,
# siphash24, diffusers, importlib_metadata) carried; each step writes its raw output to $OUT under
# its own time limit, so that one slow step cannot take the others. Commit what comes back under
# experiments/results/<issue>_<device>_<date>/ with this script's steps.txt (the 2026-12-04 runs
# used the earlier copy in experiments/results/issue13_h200_2026-12-04/device_run.sh). E.g.
#   bash experiments/probes/device_run.sh tests_attention:150 flash:150 hlo_float16_flash:90 \
#        profile_float16_none+flash+best:150 jax_float16_all_default:280 diffusers_float16:60
#
#   probe_conv        experiments.probes.jax_conv_dtypes: 16-bit convolutions and products by output dtype, and
#                     the convolution's bias in both forms (does XLA fold it into cuDNN's call?)
#   probe_upconv      experiments.probes.jax_upsample_conv: the decoder's upsample-then-conv3x3 against its four
#                     2x2 output phases (one convolution of 4x the channels, or four), fp16 and fp32, and torch
#   flashhopper[_DT]  experiments.probes.jax_flash_blocks, fp16 and bf16 (or DT): our Mosaic GPU kernel's candidates
#                     (attention_hopper.py) and the Triton kernel's default blocks, against SDPA
#   flashhopperstages the same in fp16 with 2 and 3 K/V slots in the Hopper kernel's ring (no Triton rows)
#   sweep_attention   the same for attention in fp16 and bf16: naive, both forms of the partially fused softmax's
#                     statistics, flash (on (B, H, N, d) operands, and on the network's (B, N, H, d)), SDPA;
#                     sweep_FAMILY_DT: one storage dtype (e.g. sweep_attention_float16)
#   sweep_group_norm_nhwc  GroupNorm+SiLU on channels-last activations (the networks' layout): XLA and the
#                     channels_last form with each statistics kernel (tiles, lanes), parts and blocks
#   tests_hopper      tests/jax/test_jax_attention_hopper.py (the Mosaic GPU kernel's values)
#   sweep_gelu        experiments.probes.jax_kernel_sweep --families gelu, fp16, bf16 and fp32: the GEGLU kernel with
#                     each erfc form (Cephes, Chebyshev) and block, against XLA and torch
#   flash             experiments.probes.jax_flash_blocks, fp16, and JAX's Mosaic GPU FlashAttention 3
#                     as a yardstick; flashstages: fp16 and bf16, Triton pipeline stages 2 and 3
#   profile_DT_CFGS[_X]  experiments.probes.jax_unet_profile: the UNet's kernels by kind (CFGS joined by
#                     +); profiledecoder_DT_CFGS[_X]: the VAE decoder's. _X as for jax_ below (the runs of
#                     2026-12-07 before commit 8cdc9ef named profilecl_, profileauto_, profileslab_ and
#                     profileepi_ what are now the _gncl, _autolayout, _slabview and _convepilogue suffixes)
#   jax_DT_CFGS[_X]   experiments.sd_latency in one process with DT = float16 | bfloat16 | float32
#                     storage, CFGS = configurations joined by + or "all". _X, several joined by ",":
#                     default      nothing
#                     notriton     --xla-option xla_gpu_enable_triton_gemm=false
#                     gncl         --backend-option fused_group_norm_form=channels_last
#                     autolayout   --backend-option parameter_layouts=auto (gncl and autolayout: JaxBackend's
#                                  network defaults on a GPU since 2026-12-07)
#                     rowmajor     --backend-option parameter_layouts=default (the earlier default, for A/B)
#                     gnsplit      --backend-option fused_group_norm_form=split (an NCHW form in the networks)
#                     slabview     --backend-option group_norm_view=slab
#                     gnlanes      --backend-option group_norm_stats=lanes (the channels_last GroupNorm's statistics
#                                  with a running mean and M2 per lane, no reduction in the loop)
#                     convepilogue --backend-option conv_bias=epilogue (the bias before the convolution's one rounding)
#                     mosaic       --backend-option flash_lowering=auto (the Hopper kernel where it accepts the shape)
#                     triton       --backend-option flash_lowering=triton (the Triton flash kernel everywhere)
#                     autotuneN    --xla-option xla_gpu_autotune_level=N (XLA's autotuning of convolutions and
#                                  GEMMs: 0 off, 4 its default with the results checked)
#                     nographs     XLA_FLAGS=--xla_gpu_enable_command_buffer= (no CUDA graphs)
#                     graphs1      XLA_FLAGS=--xla_gpu_graph_min_graph_size=1 (graphs of any length; XLA's default: 5)
#                     convgraphs   XLA_FLAGS=--xla_gpu_enable_command_buffer=+CONVOLUTION (cuDNN convolutions in the
#                                  CUDA graphs too; XLA's default list has fusions, cuBLAS, custom calls and cuDNN
#                                  graphs, not convolutions, so each convolution ends a graph)
#                     cache        --backend-option compilation_cache=/tmp/jax_cache (JAX's persistent compilation
#                                  cache, kept for the call's later steps: the first such step fills it, the next
#                                  ones read it; the calls of 2026-12-07 passed it as sd_latency's --compilation-cache)
#                     autotunedb   --backend-option autotune_results=$OUT/autotune_db (XLA's autotuning results,
#                                  one file per convolution, GEMM or fusion timed, read and written there and
#                                  brought back: the first such step fills it, the next ones read it)
#                     isolated     --process-per-config (each configuration in a process of its own: cold first
#                                  calls, and no row measured after others in the same process)
#                     upconvphases --backend-option upsample_conv=phases (the upsamplers as four 2x2 output phases)
#                     upconvupsample --backend-option upsample_conv=upsample (the upsampled image, then the 3x3
#                                  convolution: JaxBackend's default since 5b4472a; calls 26-28 ran at deb98cc,
#                                  where the phases were the default)
#                     derivedpercall --backend-option derived_weights=per_call (Winograd's transformed filters
#                                  and the phase kernels formed in every call, as before the derived weights)
#                     nodb         --backend-option autotune_results=off (not the committed results: a cold start)
#                     warm         nothing (a second step of the same options under its own log name, e.g.
#                                  jax_float32_none_cache then jax_float32_none_cache,warm: cold, then warm)
#   hlo_DT_CFG        XLA's optimized HLO (text) of the networks of configuration CFG: where the
#                     layout changes (transposes) come from
#   diffusers_DT      experiments.diffusers_latency (the peer)
#   bench_OPS         make bench's harness on the JAX backend, every storage dtype, OPS joined by +
#   tests_attention   the JAX attention tests on the GPU (tests/jax/test_jax_attention.py, tests/test_attention.py)
#   tests_jax         the JAX GPU tests (tests/jax and the JAX rows of the shared suites)
# Everything lands in $OUT/run and is packed into $OUT/run.tgz after each step (the device tool
# brings back a handful of files only).
set -u
FINAL_OUT=$OUT OUT=$OUT/run
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
export BENCH_COMMIT=${BENCH_COMMIT:-unknown}
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv > "$OUT/gpu.txt"

step() {  # name, seconds, command...
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: rc $? in $((SECONDS - started)) s (limit $limit s)" | tee -a "$OUT/steps.txt"
    tar czf "$FINAL_OUT/run.tgz" -C "$FINAL_OUT" run  # after every step: a call cut short keeps what ran
}

ALL="none+fused_group_norm+fused_gelu+partial_softmax+flash+winograd4+paper+best"
options() {  # CFGS[_X[,X...]] -> configs, extra (arguments of sd_latency and the profile), flags (XLA_FLAGS)
    local rest=$1 suffix=${1##*_} x
    extra= flags= configs=$rest
    for x in ${suffix//,/ }; do
        case $x in default|notriton|gncl|autolayout|rowmajor|gnsplit|slabview|convepilogue|nographs|graphs1|convgraphs|mosaic|triton|autotune[0-4]|autotunedb|nodb|cache|warm|isolated|upconvupsample|upconvphases|derivedpercall|gnlanes) ;;
            *) return ;;  # no _X: CFGS may hold "_"
        esac
    done
    configs=${rest%_*}
    for x in ${suffix//,/ }; do
        case $x in
            notriton) extra="$extra --xla-option xla_gpu_enable_triton_gemm=false" ;;
            gncl) extra="$extra --backend-option fused_group_norm_form=channels_last" ;;
            autolayout) extra="$extra --backend-option parameter_layouts=auto" ;;
            rowmajor) extra="$extra --backend-option parameter_layouts=default" ;;
            gnsplit) extra="$extra --backend-option fused_group_norm_form=split" ;;
            slabview) extra="$extra --backend-option group_norm_view=slab" ;;
            convepilogue) extra="$extra --backend-option conv_bias=epilogue" ;;
            mosaic) extra="$extra --backend-option flash_lowering=auto" ;;
            triton) extra="$extra --backend-option flash_lowering=triton" ;;
            autotune[0-4]) extra="$extra --xla-option xla_gpu_autotune_level=${x#autotune}" ;;
            nographs) flags="$flags --xla_gpu_enable_command_buffer=" ;;
            graphs1) flags="$flags --xla_gpu_graph_min_graph_size=1" ;;
            convgraphs) flags="$flags --xla_gpu_enable_command_buffer=+CONVOLUTION" ;;
            cache) extra="$extra --backend-option compilation_cache=/tmp/jax_cache" ;;
            isolated) extra="$extra --process-per-config" ;;
            nodb) extra="$extra --backend-option autotune_results=off" ;;
            upconvupsample) extra="$extra --backend-option upsample_conv=upsample" ;;
            upconvphases) extra="$extra --backend-option upsample_conv=phases" ;;
            derivedpercall) extra="$extra --backend-option derived_weights=per_call" ;;
            gnlanes) extra="$extra --backend-option group_norm_stats=lanes" ;;
            autotunedb) extra="$extra --backend-option autotune_results=$OUT/autotune_db" ;;
        esac
    done
}

for s in "$@"; do  # NAME:SECONDS
    name=${s%%:*} limit=${s#*:}
    case $name in
        flash) step flash "$limit" python3 -m experiments.probes.jax_flash_blocks --dtypes float16 --stages 2 --mosaic ;;
        probe_conv) step probe_conv "$limit" python3 -m experiments.probes.jax_conv_dtypes ;;
        probe_upconv) step probe_upconv "$limit" python3 -m experiments.probes.jax_upsample_conv ;;
        flashhopperstages) step flashhopperstages "$limit" python3 -m experiments.probes.jax_flash_blocks --dtypes float16 \
                               --hopper --hopper-stages 2 3 --triton none --layouts 2 ;;
        flashhopper*) dtypes=${name#flashhopper} dtypes=${dtypes#_}  # flashhopper_float16: one dtype
                      step "$name" "$limit" python3 -m experiments.probes.jax_flash_blocks --dtypes ${dtypes:-float16 bfloat16} \
                          --hopper --triton default --layouts 2 ;;
        flashstages) step flashstages "$limit" python3 -m experiments.probes.jax_flash_blocks --dtypes float16 bfloat16 \
                         --stages 2 3 ;;
        profile_*|profiledecoder_*)
                   rest=${name#*_} component=unet
                   dtype=${rest%%_*}
                   options "${rest#*_}"
                   [ "${name%%_*}" = profiledecoder ] && component=decoder
                   XLA_FLAGS="$flags" step "$name" "$limit" python3 -m experiments.probes.jax_unet_profile \
                       --dtype "$dtype" --component $component --configs ${configs//+/ } $extra ;;
        hlo_*) rest=${name#hlo_} dtype=${rest%%_*} config=${rest#*_}  # the optimized HLO of the UNet and decoder
               XLA_FLAGS="--xla_dump_to=$OUT/$name --xla_dump_hlo_as_text" step "$name" "$limit" \
                   python3 -m experiments.sd_latency --backend jax --dtype "$dtype" --iterations 1 --configs "$config"
               find "$OUT/$name" -type f ! -name '*after_optimizations.txt' -delete
               find "$OUT/$name" -type f -size -200k -delete ;;
        jax_*) rest=${name#jax_}
               dtype=${rest%%_*} rest=${rest#*_}
               options "$rest"
               [ "$configs" = all ] && configs=$ALL
               XLA_FLAGS="$flags" step "sd_latency_${dtype}_$rest" "$limit" python3 -m experiments.sd_latency --backend jax \
                   --dtype "$dtype" --iterations 5 --configs ${configs//+/ } $extra --json "$OUT/sd_latency_${dtype}_$rest.json"
               [ -d "$OUT/autotune_db" ] && echo "  autotune_db: $(find "$OUT/autotune_db" -type f | wc -l) results" | tee -a "$OUT/steps.txt" ;;
        diffusers_*) dtype=${name#diffusers_}
                     step "diffusers_latency_$dtype" "$limit" python3 -m experiments.diffusers_latency --dtype "$dtype" \
                         --json "$OUT/diffusers_latency_$dtype.json" ;;
        bench_*) ops=${name#bench_}
                 step "$name" "$limit" python3 -m experiments.kernels --backends jax --ops ${ops//+/ } \
                     --dtypes float16 bfloat16 float32 --full --out "$OUT" ;;
        sweep_*) family=${name#sweep_} dtypes="float16 bfloat16 float32"
                 case $family in *_float16|*_bfloat16|*_float32) dtypes=${family##*_} family=${family%_*} ;; esac
                 step "$name" "$limit" python3 -m experiments.probes.jax_kernel_sweep --families $family --dtypes $dtypes ;;
        tests_hopper) step tests_hopper "$limit" python3 -m pytest -q -p no:cacheprovider tests/jax/test_jax_attention_hopper.py ;;
        tests_attention) step tests_attention "$limit" python3 -m pytest -q -p no:cacheprovider \
                             tests/jax/test_jax_attention.py tests/test_attention.py -k jax ;;
        tests_jax) step tests_jax "$limit" python3 -m pytest -q -p no:cacheprovider tests/jax tests/test_attention.py \
                       tests/test_group_norm.py tests/test_gelu.py -k jax ;;
        *) echo "unknown step $name" | tee -a "$OUT/steps.txt" ;;
    esac
done
tar czf "$FINAL_OUT/run.tgz" -C "$FINAL_OUT" run && rm -rf "$OUT"
