/* Activations and elementwise ops. Host side: ../activations.py (the math and launch plans).
 *
 * Every kernel here is elementwise: one work-item per output element, a bounds check against
 * the element count (the global size is rounded up to the work-group size), float arithmetic,
 * storage through LOAD / STORE. The fused kernels (gelu, geglu, silu, quick_gelu) do their whole
 * formula in one pass; the small primitives further down (scale_shift, erf_map, tanh_map, mul,
 * split_halves) are the op-by-op graph of the unfused GELU/GEGLU baselines.
 */

#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_TANH_COEFF 0.044715f

/* sigmoid(w) = 1 / (1 + exp(-w)), evaluated with exp(-|w|) <= 1 so that it never overflows:
 * for w < 0 it is e / (1 + e), which underflows gracefully instead of giving x / inf. */
float sigmoid(const float w)
{
    const float e = exp(-fabs(w));
    return (w >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/* gelu(v) = v * Phi(v) = v/2 * (1 + erf(v / sqrt 2)) = v/2 * erfc(-v / sqrt 2).
 * The erfc spelling is the same function but does not cancel for negative v, where
 * 1 + erf(z) -> 0 loses every digit of erf's rounding error. */
float gelu_erf(const float v)
{
    return 0.5f * v * erfc(-v * M_SQRT1_2_F);
}

/* The tanh approximation v/2 * (1 + tanh(u)), u = sqrt(2/pi) * (v + 0.044715 v^3), spelled
 * v * sigmoid(2u) (the same function: 1 + tanh(u) = 2 sigmoid(2u)), again without the
 * cancellation of 1 + tanh(u) for negative v. */
float gelu_tanh(const float v)
{
    return v * sigmoid(2.0f * SQRT_2_OVER_PI * fma(GELU_TANH_COEFF * v, v * v, v));
}

/* silu(v) = v * sigmoid(v), quick_gelu(v) = v * sigmoid(1.702 v). */
float x_sigmoid(const float v, const float beta)
{
    return v * sigmoid(beta * v);
}

/* ---------------------------------------------------------------- fused activations (1 launch) */

__kernel void gelu(const __global storage_t *x, __global storage_t *y, const int n,
                   const int approximate)
{
    const int i = get_global_id(0);
    if (i >= n)
        return;
    const float v = LOAD(x, i);
    STORE(y, i, approximate ? gelu_tanh(v) : gelu_erf(v));
}

/* x is (rows, 2F), y is (rows, F): y[r, j] = x[r, j] * gelu(x[r, F + j]). Both halves are read
 * straight from x, so the split costs nothing. */
__kernel void geglu(const __global storage_t *x, __global storage_t *y, const int features,
                    const int n, const int approximate)
{
    const int i = get_global_id(0);
    if (i >= n)
        return;
    const int r = i / features, j = i - r * features;
    const long a_at = (long)r * 2 * features + j;
    const float a = LOAD(x, a_at), b = LOAD(x, a_at + features);
    STORE(y, i, a * (approximate ? gelu_tanh(b) : gelu_erf(b)));
}

__kernel void silu(const __global storage_t *x, __global storage_t *y, const int n)
{
    const int i = get_global_id(0);
    if (i < n)
        STORE(y, i, x_sigmoid(LOAD(x, i), 1.0f));
}

__kernel void quick_gelu(const __global storage_t *x, __global storage_t *y, const int n)
{
    const int i = get_global_id(0);
    if (i < n)
        STORE(y, i, x_sigmoid(LOAD(x, i), 1.702f));
}

/* ---------------------------------------------------------------- elementwise ops of the network */

/* y = a * x + b (mul_scalar: b = 0; also the "x / sqrt 2" and "1 + t" steps of unfused GELU). */
__kernel void scale_shift(const __global storage_t *x, __global storage_t *y, const int n,
                          const float a, const float b)
{
    const int i = get_global_id(0);
    if (i < n)
        STORE(y, i, fma(a, LOAD(x, i), b));
}

/* y = p + q, same shapes. */
__kernel void add(const __global storage_t *p, const __global storage_t *q, __global storage_t *y,
                  const int n)
{
    const int i = get_global_id(0);
    if (i < n)
        STORE(y, i, LOAD(p, i) + LOAD(q, i));
}

/* y[nc, s] = x[nc, s] + v[nc]: x is (N*C, spatial), v is (N*C,) (the timestep embedding add). */
__kernel void add_broadcast(const __global storage_t *x, const __global storage_t *v,
                            __global storage_t *y, const int spatial, const int n)
{
    const int i = get_global_id(0);
    if (i < n)
        STORE(y, i, LOAD(x, i) + LOAD(v, i / spatial));
}

/* y = alpha * p * q, same shapes (the last step of unfused GELU, and GEGLU's product). */
__kernel void mul(const __global storage_t *p, const __global storage_t *q, __global storage_t *y,
                  const int n, const float alpha)
{
    const int i = get_global_id(0);
    if (i < n)
        STORE(y, i, alpha * LOAD(p, i) * LOAD(q, i));
}

/* Nearest upsampling of (planes, H, W) by an integer factor s: grid (W*s, H*s, planes). */
__kernel void upsample_nearest2d(const __global storage_t *x, __global storage_t *y,
                                 const int height, const int width, const int s)
{
    const int ox = get_global_id(0), oy = get_global_id(1), p = get_global_id(2);
    const int out_w = width * s, out_h = height * s;
    if (ox >= out_w || oy >= out_h)
        return;
    const long src = ((long)p * height + oy / s) * width + ox / s;
    const long dst = ((long)p * out_h + oy) * out_w + ox;
    STORE(y, dst, LOAD(x, src));
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

/* One input of a concatenation: src viewed as (outer, len, inner) is copied into dst viewed as
 * (outer, total, inner) at [:, offset:offset + len, :]. One launch per input. */
__kernel void copy_into_slice(const __global storage_t *src, __global storage_t *dst, const int n,
                              const int len, const int inner, const int total, const int offset)
{
    const int i = get_global_id(0);
    if (i >= n)
        return;
    const int k = i % inner, j = (i / inner) % len, o = i / (inner * len);
    STORE(dst, (o * total + offset + j) * inner + k, LOAD(src, i));
}
