/* The remaining ops of the SD network: SiLU, quick GELU, elementwise arithmetic, nearest
 * upsampling, and layout (concatenation, axis permutation). Host side: ../elementwise.py.
 *
 * The elementwise kernels run one work-item per output element with a bounds check against the
 * element count (the global size is rounded up to the work-group size), float arithmetic,
 * storage through LOAD / STORE. The layout kernels copy values only, so fp16 storage is copied
 * exactly.
 */

/* silu(v) = v * sigmoid(v), quick_gelu(v) = v * sigmoid(1.702 v). */
float x_sigmoid(const float v, const float beta)
{
    return v * sigmoid(beta * v);
}

/* ---------------------------------------------------------------- activations */

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

/* ---------------------------------------------------------------- axis permutation
 * numpy.transpose, materialized C-contiguous (the plan: ../elementwise.py).
 *
 * The host pads the permutation to 4 dimensions (after merging input axes that stay adjacent),
 * so every transpose is one of these two kernels, one launch:
 *
 *   Y[o0, o1, o2, o3] = X[input offset  o0 is0 + o1 is1 + o2 is2 + o3 is3]
 *
 * where (Y0, Y1, Y2, Y3) is Y's shape and isK the input stride (in elements) of the input axis
 * that becomes output axis K. Copies only: values pass through LOAD/STORE (float), so fp16
 * storage is copied exactly. Element counts stay below 2^31 (the host checks), so int indexing.
 */
#ifndef TILE
#define TILE 16 /* side of the square tile of permute_tiled */
#endif

/* The innermost axis stays innermost (e.g. the head split (0, 2, 1, 3)): one work-item per
 * output element, in output order; neighbouring items read and write neighbouring addresses.
 * Global size (total), local (LOCAL); ragged last group masked. */
__kernel void permute(const __global storage_t *X, __global storage_t *Y, const int total,
                      const int Y1, const int Y2, const int Y3,
                      const int is0, const int is1, const int is2, const int is3)
{
    const int i = get_global_id(0);
    if (i >= total)
        return;
    const int o3 = i % Y3, o2 = (i / Y3) % Y2, o1 = (i / Y3 / Y2) % Y1, o0 = i / Y3 / Y2 / Y1;
    STORE(Y, i, LOAD(X, o0 * is0 + o1 * is1 + o2 * is2 + o3 * is3));
}

/* The innermost axis moves (e.g. NCHW -> NHWC (0, 2, 3, 1), or back (0, 3, 1, 2)): a tiled
 * transpose through __local memory, so both the reads and the writes are coalesced.
 *
 * Output axis 3 (size Y3) is input axis p; input axis 3 (stride 1) is output axis j < 3 (size Yj,
 * output stride osj). A work-group moves a TILE x TILE tile spanned by those two axes:
 *   read:  item (tx, ty) loads X at (output axis 3 = x0 + ty, output axis j = y0 + tx): along tx
 *          consecutive input addresses;
 *   write: item (tx, ty) stores Y at (output axis 3 = x0 + tx, output axis j = y0 + ty): along tx
 *          consecutive output addresses.
 * The other two output axes k < l are a batch index b = ok * Yl + ol, with input strides isk,
 * isl and output strides osk, osl. Work-groups are numbered along dimension 0 only (tiles along
 * axis 3, then along axis j, then batches), so no grid dimension limit applies:
 * global size (groups * TILE * TILE), local (TILE * TILE). */
__kernel __attribute__((reqd_work_group_size(TILE * TILE, 1, 1)))
void permute_tiled(const __global storage_t *X, __global storage_t *Y,
                   const int Y3, const int Yj, const int Yl,
                   const int is_p, const int isk, const int isl,   /* input strides of the axes   */
                   const int osj, const int osk, const int osl)    /* output strides (os3 = 1)    */
{
    __local float tile[TILE][TILE + 1]; /* tile[output axis 3][output axis j], padded row */
    const int tx = get_local_id(0) % TILE, ty = get_local_id(0) / TILE;
    const int tiles3 = (Y3 + TILE - 1) / TILE, tilesj = (Yj + TILE - 1) / TILE;
    const int g = get_group_id(0);
    const int x0 = (g % tiles3) * TILE, y0 = (g / tiles3 % tilesj) * TILE, b = g / tiles3 / tilesj;
    const int ok = b / Yl, ol = b % Yl;

    const int r3 = x0 + ty, rj = y0 + tx; /* this item's element to read */
    if (r3 < Y3 && rj < Yj)
        tile[ty][tx] = LOAD(X, ok * isk + ol * isl + r3 * is_p + rj);
    barrier(CLK_LOCAL_MEM_FENCE);
    const int w3 = x0 + tx, wj = y0 + ty; /* this item's element to write */
    if (w3 < Y3 && wj < Yj)
        STORE(Y, ok * osk + ol * osl + wj * osj + w3, tile[tx][ty]);
}
