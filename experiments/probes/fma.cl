// fp32 multiply-add throughput probe (experiments/peers.py, fma_probe).
//
// Each work-item runs 8 independent dependent chains x <- x * a + b in registers, 4 rounds per
// loop step (32 multiply-adds), and writes one sum, so the kernel does no memory traffic worth
// counting. Eight independent chains hide the FMA latency (about 4 cycles on recent GPUs)
// within one work-item; the host launches enough work-items to fill every compute unit. a and
// b are kernel arguments, so the compiler cannot fold the chains; with 0 < a < 1 every chain
// converges to b / (1 - a), so no value overflows or goes denormal.
//
// x * a + b with contraction on (the pragma below; no fast-math build flags) becomes one fused
// multiply-add instruction on GPUs (NVIDIA: FFMA); on a CPU target without FMA (PoCL's generic
// one) it is a multiply and an add, where fma() would be a correctly rounded library call.
// FLOPs per launch = 2 * 32 * iterations * global size either way.

#pragma OPENCL FP_CONTRACT ON

#define MULTIPLY_ADD_ROUND    \
    x0 = x0 * a + b;          \
    x1 = x1 * a + b;          \
    x2 = x2 * a + b;          \
    x3 = x3 * a + b;          \
    x4 = x4 * a + b;          \
    x5 = x5 * a + b;          \
    x6 = x6 * a + b;          \
    x7 = x7 * a + b;

__kernel void fma_chains(__global float *out, const int iterations, const float a, const float b) {
    const size_t gid = get_global_id(0);
    float x0 = (float)(gid & 1023) * 1e-4f;
    float x1 = x0 + 0.1f, x2 = x0 + 0.2f, x3 = x0 + 0.3f;
    float x4 = x0 + 0.4f, x5 = x0 + 0.5f, x6 = x0 + 0.6f, x7 = x0 + 0.7f;
    for (int i = 0; i < iterations; ++i) {
        MULTIPLY_ADD_ROUND
        MULTIPLY_ADD_ROUND
        MULTIPLY_ADD_ROUND
        MULTIPLY_ADD_ROUND
    }
    out[gid] = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
}
