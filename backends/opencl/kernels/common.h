/* Prepended to every .cl file by backends/opencl/runtime.py: what more than one kernel file needs.
 *
 * Storage vs arithmetic: tensors are stored as float (STORAGE_HALF=0) or as half
 * (STORAGE_HALF=1, read and written with vload_half / vstore_half, which need no cl_khr_fp16);
 * all arithmetic is float. Kernels read and write global tensors only through LOAD and STORE.
 */
#if STORAGE_HALF
typedef half storage_t;
#define LOAD(p, i) vload_half((i), (p))
#define STORE(p, i, v) vstore_half((v), (i), (p))
#else
typedef float storage_t;
#define LOAD(p, i) ((p)[(i)])
#define STORE(p, i, v) ((p)[(i)] = (v))
#endif

/* Four consecutive elements [4i, 4i + 4) as one float4, read and written as one aligned 16-byte
 * (float) or 8-byte (half) access: the array's first element must be so aligned (device buffers
 * are), which makes every fourth element so. The vector kernels of group_norm.cl and gelu.cl. */
#if STORAGE_HALF
#define LOAD4(p, i) vloada_half4((i), (p))
#define STORE4(p, i, v) vstorea_half4((v), (i), (p))
#else
#define LOAD4(p, i) (((const __global float4 *)(p))[(i)])
#define STORE4(p, i, v) (((__global float4 *)(p))[(i)] = (v))
#endif

/* sigmoid(w) = 1 / (1 + exp(-w)), evaluated with exp(-|w|) <= 1 so that it never overflows:
 * for w < 0 it is e / (1 + e), which underflows gracefully instead of giving x / inf.
 * (SiLU after GroupNorm, SiLU and quick GELU, the tanh form of GELU.) */
float sigmoid(const float w)
{
    const float e = exp(-fabs(w));
    return (w >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/* Work-group reduction over dimension 0: the sum of every item's v, returned to
 * every item. `size` is the work-group size, a power of two (a compile-time constant at every
 * call site, so the loop unrolls); scratch holds `size` floats. Every item of the work-group must
 * call it (it contains barriers); scratch may be reused right after it returns. */
float wg_sum(const float v, __local float *scratch, const int size)
{
    const int lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = size / 2; stride > 0; stride >>= 1) {
        if (lid < stride)
            scratch[lid] += scratch[lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);  /* everyone has read scratch[0] before it is reused */
    return total;
}
