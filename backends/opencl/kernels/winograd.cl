/* Convolution, the paper's fourth idea: Winograd F(m x m, 3 x 3)'s transform kernels. Its GEMMs,
 * and the direct convolution it is compared with (an implicit GEMM), run on the matrix core in
 * gemm.cl. Host side: ../winograd.py.
 *
 *   Y = A^T [ (G g G^T) * (B^T d B) ] A     per alpha x alpha input tile d, alpha = m + 2
 *
 * The TFLite GPU plan, in three launches per call (plus one per new weight tensor):
 *   winograd_filter_transform  U[p, o, c] = (G g_oc G^T)[p]     (alpha^2, O, C), cached by the host
 *   winograd_input_transform   V[p, c, t] = (B^T d_ct B)[p]     (alpha^2, C, T), a temporary
 *   (gemm_batched)             M[p]       = U[p] @ V[p]         (alpha^2, O, T), a temporary
 *   winograd_output_transform  y[n, o, tile t] = (A^T M_ot A) + b[o], cropped to Ho x Wo
 * with p = xi * alpha + nu the position inside the transformed tile and t = (n * tiles_h + ty) *
 * tiles_w + tx the tile index. The planes are indexed with t fastest, so neighbouring work-items
 * (neighbouring tiles) read and write neighbouring addresses.
 *
 * Compile-time constants (rt.kernel defines):
 *   WINO_M                      the output tile m (alpha = m + 2)
 *   WINO_AT, WINO_G, WINO_BT    the transforms A^T (m x alpha), G (alpha x 3), B^T (alpha x alpha),
 *                               row-major, as comma-separated float literals: the float32 rounding
 *                               of reference.winograd.winograd_matrices(m)
 *   WG                          work-group size along the first grid dimension
 * Baking the matrices in (rather than passing a buffer) lets the compiler see every entry: the
 * loops are fully unrolled and the `!= 0.0f` tests below drop the zero terms at compile time
 * (IEEE rules forbid the compiler from dropping x * 0.0f by itself without fast-math).
 *
 * Storage vs arithmetic: U, V and M are stored in storage_t (fp16 when STORAGE_HALF), all
 * arithmetic is float: exactly the reference's emulation (reference/winograd.py conv2d_winograd).
 */
#define ALPHA (WINO_M + 2)
#ifndef WG
#define WG 64
#endif

__constant float wino_AT[WINO_M * ALPHA] = { WINO_AT };
__constant float wino_G[ALPHA * 3] = { WINO_G };
__constant float wino_BT[ALPHA * ALPHA] = { WINO_BT };

#define AT(i, j) wino_AT[(i) * ALPHA + (j)]
#define G(i, j) wino_G[(i) * 3 + (j)]
#define BT(i, j) wino_BT[(i) * ALPHA + (j)]

/* One work-item per (output channel o, input channel c): U[:, o, c] = G g G^T. Grid (C, O). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void winograd_filter_transform(const __global storage_t *w, __global storage_t *U,
                               const int O, const int C)
{
    const int c = get_global_id(0), o = get_global_id(1);
    if (c >= C || o >= O)
        return;  /* no barriers in this kernel */
    float g[3][3];
    #pragma unroll
    for (int k = 0; k < 9; ++k)
        g[k / 3][k % 3] = LOAD(w, (o * C + c) * 9 + k);

    /* Gg = G g (alpha x 3) */
    float Gg[ALPHA][3];
    #pragma unroll
    for (int xi = 0; xi < ALPHA; ++xi) {
        #pragma unroll
        for (int v = 0; v < 3; ++v) {
            float s = 0.0f;
            #pragma unroll
            for (int u = 0; u < 3; ++u) {
                if (G(xi, u) != 0.0f)
                    s = fma(G(xi, u), g[u][v], s);
            }
            Gg[xi][v] = s;
        }
    }
    /* U = (G g) G^T (alpha x alpha), entry p = xi * alpha + nu goes to plane p */
    #pragma unroll
    for (int xi = 0; xi < ALPHA; ++xi) {
        #pragma unroll
        for (int nu = 0; nu < ALPHA; ++nu) {
            float s = 0.0f;
            #pragma unroll
            for (int v = 0; v < 3; ++v) {
                if (G(nu, v) != 0.0f)
                    s = fma(Gg[xi][v], G(nu, v), s);
            }
            STORE(U, ((xi * ALPHA + nu) * O + o) * C + c, s);
        }
    }
}

/* One work-item per (tile t, input channel c): V[:, c, t] = B^T d B for the alpha x alpha input
 * tile d whose top-left corner is (ty*m - ph, tx*m - pw); d is zero outside the image (the
 * padding, and the ragged bottom/right tiles). Grid (T, C). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void winograd_input_transform(const __global storage_t *x, __global storage_t *V,
                              const int C, const int H, const int W, const int ph, const int pw,
                              const int tiles_h, const int tiles_w, const int T)
{
    const int t = get_global_id(0), c = get_global_id(1);
    if (t >= T || c >= C)
        return;  /* no barriers in this kernel */
    const int tx = t % tiles_w, ty = (t / tiles_w) % tiles_h, n = t / (tiles_w * tiles_h);
    const int y0 = ty * WINO_M - ph, x0 = tx * WINO_M - pw;
    const int plane = (n * C + c) * H * W;

    float d[ALPHA][ALPHA];
    #pragma unroll
    for (int u = 0; u < ALPHA; ++u) {
        #pragma unroll
        for (int v = 0; v < ALPHA; ++v) {
            const int iy = y0 + u, ix = x0 + v;
            d[u][v] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? LOAD(x, plane + iy * W + ix) : 0.0f;
        }
    }
    /* Bd = B^T d */
    float Bd[ALPHA][ALPHA];
    #pragma unroll
    for (int xi = 0; xi < ALPHA; ++xi) {
        #pragma unroll
        for (int v = 0; v < ALPHA; ++v) {
            float s = 0.0f;
            #pragma unroll
            for (int u = 0; u < ALPHA; ++u) {
                if (BT(xi, u) != 0.0f)
                    s = fma(BT(xi, u), d[u][v], s);
            }
            Bd[xi][v] = s;
        }
    }
    /* V = (B^T d) B, entry p = xi * alpha + nu goes to plane p */
    #pragma unroll
    for (int xi = 0; xi < ALPHA; ++xi) {
        #pragma unroll
        for (int nu = 0; nu < ALPHA; ++nu) {
            float s = 0.0f;
            #pragma unroll
            for (int v = 0; v < ALPHA; ++v) {
                if (BT(nu, v) != 0.0f)
                    s = fma(Bd[xi][v], BT(nu, v), s);
            }
            STORE(V, ((xi * ALPHA + nu) * C + c) * T + t, s);
        }
    }
}

/* The products M[p, o, t]: stored in storage_t, or with a split-K GEMM (SPLITS > 1) as SPLITS
 * float32 partial sums (SPLITS, alpha^2, O, T), added here in a fixed order. */
#ifndef SPLITS
#define SPLITS 1
#endif
#if SPLITS > 1
typedef float products_t;
float load_products(const __global float *Mt, const int i, const int plane)
{
    float s = 0.0f;
    for (int k = 0; k < SPLITS; ++k)
        s += Mt[k * plane + i];
    return s;
}
#else
typedef storage_t products_t;
#define load_products(Mt, i, plane) LOAD(Mt, i)
#endif

/* One work-item per (tile t, output channel o): y = A^T M A + b[o] for the m x m output tile at
 * (ty*m, tx*m), written in NCHW where it lies inside Ho x Wo. Grid (T, O). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void winograd_output_transform(const __global products_t *Mt, const __global storage_t *bias,
                               const int has_bias, __global storage_t *y,
                               const int O, const int Ho, const int Wo,
                               const int tiles_h, const int tiles_w, const int T)
{
    const int t = get_global_id(0), o = get_global_id(1);
    if (t >= T || o >= O)
        return;  /* no barriers in this kernel */
    const int tx = t % tiles_w, ty = (t / tiles_w) % tiles_h, n = t / (tiles_w * tiles_h);

    float mt[ALPHA][ALPHA];
    #pragma unroll
    for (int xi = 0; xi < ALPHA; ++xi) {
        #pragma unroll
        for (int nu = 0; nu < ALPHA; ++nu)
            mt[xi][nu] = load_products(Mt, ((xi * ALPHA + nu) * O + o) * T + t, ALPHA * ALPHA * O * T);
    }
    /* Am = A^T M (m x alpha) */
    float Am[WINO_M][ALPHA];
    #pragma unroll
    for (int i = 0; i < WINO_M; ++i) {
        #pragma unroll
        for (int nu = 0; nu < ALPHA; ++nu) {
            float s = 0.0f;
            #pragma unroll
            for (int xi = 0; xi < ALPHA; ++xi) {
                if (AT(i, xi) != 0.0f)
                    s = fma(AT(i, xi), mt[xi][nu], s);
            }
            Am[i][nu] = s;
        }
    }
    /* Y = (A^T M) A + b, cropped to the output */
    const float b = has_bias ? LOAD(bias, o) : 0.0f;
    #pragma unroll
    for (int i = 0; i < WINO_M; ++i) {
        #pragma unroll
        for (int j = 0; j < WINO_M; ++j) {
            float s = 0.0f;
            #pragma unroll
            for (int nu = 0; nu < ALPHA; ++nu) {
                if (AT(j, nu) != 0.0f)
                    s = fma(Am[i][nu], AT(j, nu), s);
            }
            const int oy = ty * WINO_M + i, ox = tx * WINO_M + j;
            if (oy < Ho && ox < Wo)
                STORE(y, ((n * O + o) * Ho + oy) * Wo + ox, s + b);
        }
    }
}
