/* GroupNorm, the paper's first idea: fused (one launch) and the unfused 3-4 kernel baseline;
 * and LayerNorm, the same statistics over one row. Host side: ../group_norm.py (the math and
 * the launch plans).
 *
 * Every reduction kernel runs ONE work-group of WG items per reduced slab (a (sample, group)
 * slab for GroupNorm, a row for LayerNorm). Items stride over the slab with step WG, so
 * consecutive items read consecutive elements (coalesced), accumulate in float, and then
 * combine their partials with a __local tree reduction (wg_sum, common.h). WG is a compile-time
 * power of two (define WG); every barrier is reached by all items of the work-group.
 *
 * Variance is always the centred (two-pass) form, corrected for the rounding of the mean
 * (Chan, Golub & LeVeque's "corrected two-pass" algorithm):
 *     m0  = sum(x) / n                                    pass 1
 *     d   = sum(x - m0),   q = sum((x - m0)^2)            pass 2
 *     dm  = d / n,   var = q / n - dm^2,   x - mean = (x - m0) - dm
 * d is zero in exact arithmetic; in float it removes the rounding error of m0. Unlike
 * E[x^2] - E[x]^2 this does not cancel when |mean| >> std (mean 1e3, std 0.1 in fp32).
 * The mean is kept as the unevaluated pair (m0, dm) and subtracted in two steps: m0 + dm
 * rounded to one float would lose dm again (half an ulp of 1e3 is 3e-5, 3e-4 of a std of
 * 0.1), while x - m0 is exact for x near m0 (Sterbenz) and dm is then removed from a small
 * number. Every normalization kernel here (fused, unfused apply, LayerNorm) does so.
 */
#ifndef WG
#define WG 256
#endif

/* The statistics of the n values x[base .. base+n), corrected two-pass: (m0, dm, rstd) with
 * mean = m0 + dm kept as two floats (see above) and rstd = 1/sqrt(var + eps).
 * Called by the whole work-group (it contains barriers). */
float4 wg_mean_rstd(const __global storage_t *x, const long base, const int n, const float eps,
                    __local float *scratch)
{
    const int lid = get_local_id(0);
    float s = 0.0f;
    for (int i = lid; i < n; i += WG)
        s += LOAD(x, base + i);
    const float m0 = wg_sum(s, scratch, WG) / n;

    float d = 0.0f, q = 0.0f;
    for (int i = lid; i < n; i += WG) {
        const float v = LOAD(x, base + i) - m0;
        d += v;
        q = fma(v, v, q);
    }
    const float dm = wg_sum(d, scratch, WG) / n;
    const float var = fmax(wg_sum(q, scratch, WG) / n - dm * dm, 0.0f);
    return (float4)(m0, dm, rsqrt(var + eps), 0.0f);
}

/* (x - mean) * rstd for the mean pair (m0, dm): m0 first (exact near m0), then the correction. */
float normalized(const float x, const float m0, const float dm, const float rstd)
{
    return ((x - m0) - dm) * rstd;
}

/* ---------------------------------------------------------------- GroupNorm, fused (1 launch)
 * Grid: one work-group per (sample, group) = N*G work-groups of WG items.
 * In NCHW the C/G channels of a group are consecutive, so the slab of group ng is the
 * contiguous range [ng * n, (ng + 1) * n) with n = (C/G) * spatial. The kernel reads it for the
 * mean, again for the centred sums, and a third time to write
 *     y = (x - mean) * rstd * weight[c] + bias[c]        (then y * sigmoid(y) if apply_silu)
 * Nothing is stored between the passes except two floats in registers: no temporaries.
 */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_fused(const __global storage_t *x, const __global storage_t *weight,
                      const __global storage_t *bias, __global storage_t *y,
                      const int has_weight, const int has_bias, const int groups,
                      const int group_channels, const int spatial, const float eps,
                      const int apply_silu)
{
    __local float scratch[WG];
    const int ng = get_group_id(0);                 /* sample * groups + group */
    const int n = group_channels * spatial;          /* elements in the slab */
    const long base = (long)ng * n;
    const int c0 = (ng % groups) * group_channels;   /* first channel of the group */

    const float4 stats = wg_mean_rstd(x, base, n, eps, scratch);

    for (int i = get_local_id(0); i < n; i += WG) {
        const int c = c0 + i / spatial;
        float v = normalized(LOAD(x, base + i), stats.x, stats.y, stats.z);
        if (has_weight)
            v *= LOAD(weight, c);
        if (has_bias)
            v += LOAD(bias, c);
        if (apply_silu)
            v *= sigmoid(v);
        STORE(y, base + i, v);
    }
}

/* ------------------------------------------------- GroupNorm, unfused baseline (3 launches)
 * The "before" of the paper: statistics go through global temporaries of N*G floats.
 * 1. group_mean:  one work-group per (sample, group) writes mean[ng] = m0 = sum(x) / n
 * 2. group_var:   one work-group per (sample, group) reads m0 and writes the centred statistics
 *                 stats[ng] = (dm, var): the mean's correction and the corrected variance
 * 3. group_norm_apply: one item per element, reads m0, (dm, var) of its group and the affine
 * (4. SiLU, a separate elementwise launch from elementwise.cl, when asked for.)
 * x is read three times, as by the fused kernel.
 */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_mean(const __global storage_t *x, __global float *mean, const int n)
{
    __local float scratch[WG];
    const int ng = get_group_id(0);
    const long base = (long)ng * n;
    float s = 0.0f;
    for (int i = get_local_id(0); i < n; i += WG)
        s += LOAD(x, base + i);
    const float total = wg_sum(s, scratch, WG);
    if (get_local_id(0) == 0)
        mean[ng] = total / n;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_var(const __global storage_t *x, const __global float *mean, __global float2 *stats,
               const int n)
{
    __local float scratch[WG];
    const int ng = get_group_id(0);
    const long base = (long)ng * n;
    const float m0 = mean[ng];
    float d = 0.0f, q = 0.0f;
    for (int i = get_local_id(0); i < n; i += WG) {
        const float v = LOAD(x, base + i) - m0;
        d += v;
        q = fma(v, v, q);
    }
    const float dm = wg_sum(d, scratch, WG) / n;
    const float var = fmax(wg_sum(q, scratch, WG) / n - dm * dm, 0.0f);
    if (get_local_id(0) == 0)
        stats[ng] = (float2)(dm, var);
}

/* One item per element i of x (N, C, spatial): its slab is i / n, its channel (i / spatial) % C. */
__kernel void group_norm_apply(const __global storage_t *x, const __global float *mean,
                               const __global float2 *stats, const __global storage_t *weight,
                               const __global storage_t *bias, __global storage_t *y,
                               const int has_weight, const int has_bias, const int channels,
                               const int n, const int spatial, const int total, const float eps)
{
    const int i = get_global_id(0);
    if (i >= total)
        return;
    const int ng = i / n;
    const int c = (i / spatial) % channels;
    const float2 s = stats[ng];
    float v = normalized(LOAD(x, i), mean[ng], s.x, rsqrt(s.y + eps));
    if (has_weight)
        v *= LOAD(weight, c);
    if (has_bias)
        v += LOAD(bias, c);
    STORE(y, i, v);
}

/* ---------------------------------------------------------------- LayerNorm (1 launch)
 * One work-group per row of `cols` values (the last axis); corrected two-pass statistics as
 * above, then y = (x - mean) * rstd * weight[j] + bias[j].
 */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void layer_norm(const __global storage_t *x, const __global storage_t *weight,
                const __global storage_t *bias, __global storage_t *y,
                const int has_weight, const int has_bias, const int cols, const float eps)
{
    __local float scratch[WG];
    const long base = (long)get_group_id(0) * cols;
    const float4 stats = wg_mean_rstd(x, base, cols, eps, scratch);
    for (int j = get_local_id(0); j < cols; j += WG) {
        float v = normalized(LOAD(x, base + j), stats.x, stats.y, stats.z);
        if (has_weight)
            v *= LOAD(weight, j);
        if (has_bias)
            v += LOAD(bias, j);
        STORE(y, base + j, v);
    }
}
