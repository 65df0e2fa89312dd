/* GELU and GEGLU, the paper's second idea: the fused kernels (one launch, the whole formula in
 * one pass) and the primitives of the unfused op-by-op baseline. Host side: ../gelu.py (the
 * math and the launch plans).
 *
 * Every kernel here is elementwise: one work-item per output element, a bounds check against
 * the element count (the global size is rounded up to the work-group size), float arithmetic,
 * storage through LOAD / STORE. The unfused graph also uses the arithmetic kernels of
 * elementwise.cl (scale_shift, add, mul), which the rest of the network shares.
 */

#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_TANH_COEFF 0.044715f

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

/* ---------------------------------------------------------------- fused GELU, GEGLU (1 launch) */

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
