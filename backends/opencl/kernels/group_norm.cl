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

/* ---------------------------------------------------------------- GroupNorm, fused
 * Both fused forms cut every (sample, group) slab into `parts` contiguous parts of `chunk`
 * vectors (the last part may be shorter) and give each part its own work-group, so the grid has
 * N*G*parts work-groups however few groups there are (../group_norm.py picks `parts` to fill the
 * device). A vector is VEC consecutive elements (4 when spatial % 4 == 0, else 1): one channel,
 * one aligned LOAD4 / STORE4. The slab of ng = sample * groups + group is the contiguous range
 * [ng * n, (ng + 1) * n) of NCHW x, n = (C/G) * spatial = n_vec * VEC.
 *
 * Statistics (float32 whatever the storage), robust to a mean far from zero without a second
 * read of x:
 *   - every value is shifted by the slab's first element, v = x - x0 (exact for x near x0,
 *     Sterbenz): the mean is kept as the pair (x0, mean(v)) and subtracted in two steps, as in
 *     the unfused kernels;
 *   - each item keeps the moments (count, mean, M2 = sum of squared deviations) of the values
 *     it reads, one vector at a time: the vector's own mean and M2, then Chan, Golub & LeVeque's
 *     pairwise update
 *         n = na + nb,  delta = mean_b - mean_a,  mean = mean_a + delta * nb/n,
 *         M2 = M2_a + M2_b + delta^2 * na * nb/n
 *     which, unlike sum(v^2) - sum(v)^2 / n, adds no cancelling terms;
 *   - the work-group merges its items' moments the same way (a tree through __local memory)
 *     into the part's (mean, M2): the (N, G, parts, 2) float32 partials;
 *   - the normalizing work-groups combine the parts of their slab exactly:
 *         mean = sum_p n_p mean_p / n,   M2 = sum_p (M2_p + n_p (mean_p - mean)^2),
 *     var = M2 / n, and write y = ((x - x0) - mean) * rsqrt(var + eps) * weight[c] + bias[c]
 *     (then y * sigmoid(y) if apply_silu).
 */
#ifndef VEC
#define VEC 1
#endif
#if VEC == 4
typedef float4 vec_t;
#define LOADV LOAD4
#define STOREV STORE4
#elif VEC == 1
typedef float vec_t;
#define LOADV LOAD
#define STOREV STORE
#else
#error "VEC must be 1 or 4"
#endif

typedef struct {
    int n;        /* how many values */
    float mean;   /* their mean */
    float m2;     /* the sum of their squared deviations from it */
} moments_t;

moments_t merge_moments(const moments_t a, const moments_t b)
{
    moments_t r = a;
    r.n = a.n + b.n;
    if (b.n == 0)
        return a;
    const float delta = b.mean - a.mean;
    const float weight_b = (float)b.n / (float)r.n;
    r.mean = fma(delta, weight_b, a.mean);
    r.m2 = a.m2 + b.m2 + delta * delta * ((float)a.n * weight_b);
    return r;
}

/* The moments of one vector's VEC values. */
moments_t vector_moments(const vec_t v)
{
    moments_t r;
    r.n = VEC;
#if VEC == 4
    r.mean = (v.s0 + v.s1 + v.s2 + v.s3) * 0.25f;
    const float4 d = v - r.mean;
    r.m2 = dot(d, d);
#else
    r.mean = v;
    r.m2 = 0.0f;
#endif
    return r;
}

vec_t silu_vec(const vec_t v)
{
#if VEC == 4
    return v * (float4)(sigmoid(v.s0), sigmoid(v.s1), sigmoid(v.s2), sigmoid(v.s3));
#else
    return v * sigmoid(v);
#endif
}

/* The vectors [begin, end) of a slab's part. */
int part_begin(const int part, const int chunk) { return part * chunk; }
int part_end(const int part, const int chunk, const int n_vec) { return min(part * chunk + chunk, n_vec); }

/* The moments of v = x - shift over the vectors [begin, end) from `at` on, merged over the
 * work-group and returned to every item (contains barriers: call from the whole work-group). */
moments_t part_moments(const __global storage_t *x, const long at, const int begin, const int end,
                       const float shift, __local int *count, __local float *mean, __local float *m2)
{
    const int lid = get_local_id(0);
    moments_t m = {0, 0.0f, 0.0f};
    for (int j = begin + lid; j < end; j += WG)
        m = merge_moments(m, vector_moments(LOADV(x, at + j) - shift));
    count[lid] = m.n;
    mean[lid] = m.mean;
    m2[lid] = m.m2;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = WG / 2; stride > 0; stride >>= 1) {
        if (lid < stride) {
            const moments_t a = {count[lid], mean[lid], m2[lid]};
            const moments_t b = {count[lid + stride], mean[lid + stride], m2[lid + stride]};
            const moments_t r = merge_moments(a, b);
            count[lid] = r.n;
            mean[lid] = r.mean;
            m2[lid] = r.m2;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const moments_t total = {count[0], mean[0], m2[0]};
    barrier(CLK_LOCAL_MEM_FENCE);  /* everyone has read slot 0 before the scratch is reused */
    return total;
}

/* (mean of v, rstd) of a whole slab from its parts' (mean, M2) in __local `parts_stats`. */
float2 slab_mean_rstd(__local const float2 *parts_stats, const int parts, const int chunk,
                      const int n_vec, const float eps)
{
    const float n = (float)n_vec * VEC;
    float mean = 0.0f;
    for (int p = 0; p < parts; ++p)
        mean = fma((float)(part_end(p, chunk, n_vec) - part_begin(p, chunk)) * VEC, parts_stats[p].x, mean);
    mean /= n;
    float m2 = 0.0f;
    for (int p = 0; p < parts; ++p) {
        const float delta = parts_stats[p].x - mean;
        const float n_p = (float)(part_end(p, chunk, n_vec) - part_begin(p, chunk)) * VEC;
        m2 += fma(n_p * delta, delta, parts_stats[p].y);
    }
    return (float2)(mean, rsqrt(m2 / n + eps));
}

/* Writes the normalized, affine (and SiLU) vectors [begin, end) of the slab at `at`. */
void normalize_part(const __global storage_t *x, const __global storage_t *weight,
                    const __global storage_t *bias, __global storage_t *y, const int has_weight,
                    const int has_bias, const int apply_silu, const long at, const int begin,
                    const int end, const int c0, const int spatial_vec, const float shift,
                    const float2 mean_rstd)
{
    for (int j = begin + get_local_id(0); j < end; j += WG) {
        const int c = c0 + j / spatial_vec;
        vec_t v = ((LOADV(x, at + j) - shift) - mean_rstd.x) * mean_rstd.y;
        if (has_weight)
            v *= LOAD(weight, c);
        if (has_bias)
            v += LOAD(bias, c);
        if (apply_silu)
            v = silu_vec(v);
        STOREV(y, at + j, v);
    }
}

/* --- the split form: 2 launches, the (N, G, parts, 2) float32 partials between them.
 * group_norm_stats: work-group g = ng * parts + part writes its part's (mean, M2) of x - x0. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_stats(const __global storage_t *x, __global float2 *partials, const int parts,
                      const int chunk, const int n_vec)
{
    __local int count[WG];
    __local float mean[WG], m2[WG];
    const int g = get_group_id(0), ng = g / parts, part = g % parts;
    const long at = (long)ng * n_vec;
    const float shift = LOAD(x, at * VEC);
    const moments_t m = part_moments(x, at, part_begin(part, chunk), part_end(part, chunk, n_vec),
                                     shift, count, mean, m2);
    if (get_local_id(0) == 0)
        partials[g] = (float2)(m.mean, m.m2);
}

/* group_norm_normalize: work-group g combines the partials of its slab, then normalizes its part. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_normalize(const __global storage_t *x, const __global storage_t *weight,
                          const __global storage_t *bias, const __global float2 *partials,
                          __global storage_t *y, const int has_weight, const int has_bias,
                          const int groups, const int group_channels, const int spatial_vec,
                          const int parts, const int chunk, const int n_vec, const float eps,
                          const int apply_silu)
{
    __local float2 parts_stats[WG];
    const int g = get_group_id(0), ng = g / parts, part = g % parts, lid = get_local_id(0);
    const long at = (long)ng * n_vec;
    if (lid < parts)
        parts_stats[lid] = partials[ng * parts + lid];
    barrier(CLK_LOCAL_MEM_FENCE);
    const float2 mean_rstd = slab_mean_rstd(parts_stats, parts, chunk, n_vec, eps);
    normalize_part(x, weight, bias, y, has_weight, has_bias, apply_silu, at, part_begin(part, chunk),
                   part_end(part, chunk, n_vec), (ng % groups) * group_channels, spatial_vec,
                   LOAD(x, at * VEC), mean_rstd);
}

/* --- the one-launch form: the paper's "one GPU command", 2 * T work-groups for T = N*G*parts.
 * Work-groups are handed jobs in the order they start, by an atomic ticket (sync[0]): tickets
 * 0 .. T-1 are the statistics of part `ticket` (as group_norm_stats, then sync[2 + ng] counts
 * the slab's finished parts); tickets T .. 2T-1 normalize part `ticket - T` once its slab's
 * count reaches `parts`. A normalizing work-group only ever waits for statistics jobs, and every
 * statistics ticket was taken by a work-group that had started and never waits, so the wait
 * ends on any scheduling in which a started work-group keeps running (no assumption about
 * which or how many work-groups are resident at once; tests/opencl run it on PoCL's CPU threads).
 * The partials and counters are read and written with atomics, which reach the device's
 * point of coherence (L2 on a GPU), and a device-scope fence (device_fence) orders a part's
 * partials before its count. The last work-group to finish (sync[1]) sets the counters back to 0 for the next launch,
 * so the buffer is zeroed once when it is made, not per call.
 */
/* Orders this item's earlier global writes (atomics included) before its later ones as every
 * work-group of the device sees them. OpenCL 1.2's mem_fence(CLK_GLOBAL_MEM_FENCE) compiles to a
 * block-scope membar.cta on NVIDIA (experiments/probes/group_norm_fence_ptx.py prints the PTX),
 * which does not order them for another SM, so there the runtime defines NVIDIA_PTX and the fence
 * is the device-scope membar.gl. On a CPU (PoCL) the atomics themselves are ordered. */
void device_fence(void)
{
#if NVIDIA_PTX
    __asm__ volatile("membar.gl;" ::: "memory");
#else
    mem_fence(CLK_GLOBAL_MEM_FENCE);
#endif
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void group_norm_fused(const __global storage_t *x, const __global storage_t *weight,
                      const __global storage_t *bias, volatile __global int *partial_bits,
                      volatile __global int *sync, __global storage_t *y, const int has_weight,
                      const int has_bias, const int groups, const int group_channels,
                      const int spatial_vec, const int parts, const int chunk, const int n_vec,
                      const float eps, const int apply_silu)
{
    __local int count[WG];
    __local float mean[WG], m2[WG];
    __local float2 parts_stats[WG];
    __local int ticket;
    const int lid = get_local_id(0);
    const int jobs = get_num_groups(0) / 2;        /* T */
    volatile __global int *done = sync + 2;        /* finished statistics parts per slab */
    if (lid == 0)
        ticket = atomic_inc(&sync[0]);
    barrier(CLK_LOCAL_MEM_FENCE);
    const int job = ticket < jobs ? ticket : ticket - jobs;
    const int ng = job / parts, part = job % parts;
    const long at = (long)ng * n_vec;
    const float shift = LOAD(x, at * VEC);
    /* Every barrier is outside the branches on the job kind (both kinds run all of them, with
     * an empty range where a step is not theirs): PoCL, for one, hangs on barriers inside a
     * branch even when the branch is uniform over the work-group. */
    const int statistics = ticket < jobs;
    const int begin = part_begin(part, chunk), end = part_end(part, chunk, n_vec);
    const moments_t m = part_moments(x, at, begin, statistics ? end : begin, shift, count, mean, m2);
    if (lid == 0) {
        if (statistics) {
            atomic_xchg(&partial_bits[2 * job], as_int(m.mean));
            atomic_xchg(&partial_bits[2 * job + 1], as_int(m.m2));
            device_fence();
            atomic_inc(&done[ng]);
        } else {
            while (atomic_or(&done[ng], 0) < parts)
                ;
        }
    }
    barrier(CLK_GLOBAL_MEM_FENCE);
    if (!statistics && lid < parts)
        parts_stats[lid] = (float2)(as_float(atomic_or(&partial_bits[2 * (ng * parts + lid)], 0)),
                                    as_float(atomic_or(&partial_bits[2 * (ng * parts + lid) + 1], 0)));
    barrier(CLK_LOCAL_MEM_FENCE);
    if (!statistics)
        normalize_part(x, weight, bias, y, has_weight, has_bias, apply_silu, at, begin, end,
                       (ng % groups) * group_channels, spatial_vec, shift,
                       slab_mean_rstd(parts_stats, parts, chunk, n_vec, eps));
    if (lid == 0) {
        device_fence();
        if (atomic_inc(&sync[1]) == 2 * jobs - 1) {   /* the last work-group of the launch */
            const int slabs = jobs / parts;
            for (int s = 0; s < slabs; ++s)
                atomic_xchg(&done[s], 0);
            atomic_xchg(&sync[1], 0);
            atomic_xchg(&sync[0], 0);
        }
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
