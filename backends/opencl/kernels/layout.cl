/* Axis permutation (numpy.transpose, materialized C-contiguous); host side and plan:
 * backends/opencl/layout.py.
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
