/* GELU and GEGLU, the paper's second idea: the fused kernels (one launch, the whole formula in
 * one pass) and the primitives of the unfused op-by-op baseline. Host side: ../gelu.py (the
 * math and the launch plans).
 *
 * Every kernel here is elementwise, with float arithmetic and a bounds check against the element
 * count (the global size is rounded up to the work-group size). The fused kernels read and write
 * vectors of VEC elements, PER_ITEM of them per work-item; the unfused primitives one element per
 * work-item through LOAD / STORE. The unfused graph also uses the arithmetic kernels of
 * elementwise.cl (scale_shift, add, mul), which the rest of the network shares.
 */

#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_TANH_COEFF 0.044715f

/* erfc(z) for z >= 0 by the Chebyshev fit of Numerical Recipes (2nd ed., 6.2, erfcc), whose
 * fractional error is below 1.2e-7 for every z >= 0:
 *     t = 1 / (1 + z/2),   erfc(z) = t * exp(-z^2 + P(t)),   P a degree-9 polynomial.
 * exp(-z^2) is taken as exp(-hi) * (1 - lo) with z^2 = hi + lo split exactly by an fma, so the
 * rounding of z^2 (half an ulp of 32 at z = 5.7, a relative 2e-6 of the result) is not added to
 * the exponent; exp(P(t)) is a second exp for the same reason. In float32 this stays within
 * 3.7 ulps of erfc of the same argument on PoCL (test bound: 8 ulps, where the result is a
 * normal float32; beyond z = 9 erfc is subnormal). It replaces OpenCL's erfc because that one
 * costs the fused GEGLU a third of its time on an H200 (experiments/probes/gelu_gate_cost.py:
 * 0.0512 ms with erfc, 0.0356 with erf, 0.0351 with no gate at all). */
float erfc_nonnegative(const float z)
{
    const float t = 1.0f / fma(0.5f, z, 1.0f);
    float p = 0.17087277f;
    p = fma(p, t, -0.82215223f);
    p = fma(p, t, 1.48851587f);
    p = fma(p, t, -1.13520398f);
    p = fma(p, t, 0.27886807f);
    p = fma(p, t, -0.18628806f);
    p = fma(p, t, 0.09678418f);
    p = fma(p, t, 0.37409196f);
    p = fma(p, t, 1.00002368f);
    p = fma(p, t, -1.26551223f);
    const float hi = z * z, lo = fma(z, z, -hi);
    return t * exp(-hi) * exp(p) * (1.0f - lo);
}

/* gelu(v) = v * Phi(v) = v/2 * (1 + erf(v / sqrt 2)) = v/2 * erfc(-v / sqrt 2).
 * The erfc spelling is the same function but does not cancel for negative v, where
 * 1 + erf(z) -> 0 loses every digit of erf's rounding error. For v > 0 (z < 0) it is
 * 2 - erfc(|z|), between 1 and 2: no cancellation either. */
float gelu_erf(const float v)
{
    const float z = -v * M_SQRT1_2_F;
    const float e = erfc_nonnegative(fabs(z));
    return 0.5f * v * (z >= 0.0f ? e : 2.0f - e);
}

/* The tanh approximation v/2 * (1 + tanh(u)), u = sqrt(2/pi) * (v + 0.044715 v^3), spelled
 * v * sigmoid(2u) (the same function: 1 + tanh(u) = 2 sigmoid(2u)), again without the
 * cancellation of 1 + tanh(u) for negative v. */
float gelu_tanh(const float v)
{
    return v * sigmoid(2.0f * SQRT_2_OVER_PI * fma(GELU_TANH_COEFF * v, v * v, v));
}

/* ---------------------------------------------------------------- fused GELU, GEGLU (1 launch)
 * Vectors of VEC elements (4 where the length, or GEGLU's F, is a multiple of 4, else 1), read
 * and written as one aligned access (LOAD4 / STORE4). Each work-group covers WG * PER_ITEM
 * consecutive vectors; item l takes vectors l, l + WG, ... of it (every access coalesced), loads
 * all PER_ITEM of them before it computes, and so keeps PER_ITEM loads in flight. n counts
 * vectors. */
#ifndef VEC
#define VEC 1
#endif
#ifndef PER_ITEM
#define PER_ITEM 1
#endif
#ifndef WG
#define WG 256
#endif
#if VEC == 4
typedef float4 vec_t;
#define LOADV LOAD4
#define STOREV STORE4
vec_t gelu_vec(const vec_t v, const int approximate)
{
    return approximate ? (float4)(gelu_tanh(v.s0), gelu_tanh(v.s1), gelu_tanh(v.s2), gelu_tanh(v.s3))
                       : (float4)(gelu_erf(v.s0), gelu_erf(v.s1), gelu_erf(v.s2), gelu_erf(v.s3));
}
#else
typedef float vec_t;
#define LOADV LOAD
#define STOREV STORE
vec_t gelu_vec(const vec_t v, const int approximate)
{
    return approximate ? gelu_tanh(v) : gelu_erf(v);
}
#endif

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void gelu(const __global storage_t *x, __global storage_t *y, const int n, const int approximate)
{
    const int first = get_group_id(0) * (WG * PER_ITEM) + get_local_id(0);
    vec_t v[PER_ITEM];
    for (int k = 0; k < PER_ITEM; ++k) {
        const int i = first + k * WG;
        if (i < n)
            v[k] = LOADV(x, i);
    }
    for (int k = 0; k < PER_ITEM; ++k) {
        const int i = first + k * WG;
        if (i < n)
            STOREV(y, i, gelu_vec(v[k], approximate));
    }
}

/* x is (rows, 2F), y is (rows, F): y[r, j] = x[r, j] * gelu(x[r, F + j]). Both halves are read
 * straight from x, so the split costs nothing. `features` counts vectors (F / VEC). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void geglu(const __global storage_t *x, __global storage_t *y, const int features, const int n,
           const int approximate)
{
    const int first = get_group_id(0) * (WG * PER_ITEM) + get_local_id(0);
    vec_t a[PER_ITEM], b[PER_ITEM];
    for (int k = 0; k < PER_ITEM; ++k) {
        const int i = first + k * WG;
        if (i < n) {
            const int r = i / features, j = i - r * features;
            const long a_at = (long)r * 2 * features + j;
            a[k] = LOADV(x, a_at);
            b[k] = LOADV(x, a_at + features);
        }
    }
    for (int k = 0; k < PER_ITEM; ++k) {
        const int i = first + k * WG;
        if (i < n)
            STOREV(y, i, a[k] * gelu_vec(b[k], approximate));
    }
}

/* ---------------------------------------------------------------- unfused GELU / GEGLU primitives */

__kernel void erf_map(const __global storage_t *x, __global storage_t *y, const int n)
{
    const int i = get_global_id(0);
    if (i < n)
        STORE(y, i, erf(LOAD(x, i)));
}

__kernel void tanh_map(const __global storage_t *x, __global storage_t *y, const int n)
{
    const int i = get_global_id(0);
    if (i < n)
        STORE(y, i, tanh(LOAD(x, i)));
}

/* x (rows, 2F) -> a = x[:, :F], b = x[:, F:], each (rows, F) (a Split op with two outputs). */
__kernel void split_halves(const __global storage_t *x, __global storage_t *a,
                           __global storage_t *b, const int features, const int n)
{
    const int i = get_global_id(0);
    if (i >= n)
        return;
    const int r = i / features, j = i - r * features;
    const long at = (long)r * 2 * features + j;
    STORE(a, i, LOAD(x, at));
    STORE(b, i, LOAD(x, at + features));
}
