/* Convolution, the paper's fourth idea: Winograd F(m x m, 3 x 3)'s transform kernels (its GEMMs
 * run in gemm.cl), and below them the direct convolution, the baseline. Host side: ../winograd.py.
 * A build defines either WINO_M (the Winograd kernels) or KH (the direct kernel).
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
#ifdef WINO_M
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

/* One work-item per (tile t, output channel o): y = A^T M A + b[o] for the m x m output tile at
 * (ty*m, tx*m), written in NCHW where it lies inside Ho x Wo. Grid (T, O). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void winograd_output_transform(const __global storage_t *Mt, const __global storage_t *bias,
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
            mt[xi][nu] = LOAD(Mt, ((xi * ALPHA + nu) * O + o) * T + t);
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
#endif /* WINO_M */

/* ---------------------------------------------------------------------------------------------
 * Direct 2-D convolution (cross-correlation), NCHW input, OIHW weights, any kernel size and stride.
 *
 *   y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * x[n, c, i*SH + u - ph, j*SW + v - pw]
 *
 * (x is zero outside the image.) Compile-time constants (rt.kernel defines):
 *   KH, KW   kernel size             SH, SW   stride
 *   TW, TH   work-group = TW x TH output pixels of one image
 *   OB       output channels per work-item (each work-item accumulates OB outputs of one pixel)
 *   CB       input channels staged in local memory per step
 *
 * Tiling. A work-group owns a TH x TW block of output pixels and OB output channels. It walks
 * the input channels CB at a time; per step it stages in __local
 *   - the input patch the block needs: CB x PH x PW with PH = (TH-1)*SH + KH, PW = (TW-1)*SW + KW
 *     (zero-filled outside the image, so the inner loop has no bounds checks), and
 *   - the weights w[o0 .. o0+OB, c0 .. c0+CB, :, :],
 * so every input pixel is read from global memory once per work-group instead of up to KH*KW*OB
 * times. Accumulation is float whatever the storage. One launch, no temporaries.
 *
 * Grid: (Wo rounded up to TW, Ho rounded up to TH, N * ceil(O / OB)); items outside the output
 * still help staging and reach every barrier (barriers stay in uniform control flow).
 */
#ifdef KH
#ifndef TW
#define TW 8
#endif
#ifndef TH
#define TH 8
#endif
#ifndef OB
#define OB 4
#endif
#ifndef CB
#define CB 4
#endif

#define PH ((TH - 1) * SH + KH)   /* input patch rows of one work-group */
#define PW ((TW - 1) * SW + KW)   /* input patch columns */
#define KK (KH * KW)

__kernel __attribute__((reqd_work_group_size(TW, TH, 1)))
void conv2d_direct(const __global storage_t *x, const __global storage_t *w,
                   const __global storage_t *bias, const int has_bias, __global storage_t *y,
                   const int C, const int H, const int W,
                   const int O, const int Ho, const int Wo,
                   const int ph, const int pw)
{
    const int lx = get_local_id(0), ly = get_local_id(1);
    const int lid = ly * TW + lx;
    const int ox = get_global_id(0), oy = get_global_id(1);
    const int oblocks = (O + OB - 1) / OB;
    const int n = get_group_id(2) / oblocks;
    const int o0 = (get_group_id(2) % oblocks) * OB;
    /* top-left input pixel of the work-group's patch (may lie in the padding) */
    const int iy0 = get_group_id(1) * TH * SH - ph;
    const int ix0 = get_group_id(0) * TW * SW - pw;

    __local float patch[CB][PH][PW];
    __local float wloc[CB][OB][KK];

    float acc[OB];
    for (int ob = 0; ob < OB; ++ob)
        acc[ob] = 0.0f;

    for (int c0 = 0; c0 < C; c0 += CB) {
        /* stage CB input channels of the patch, zero outside the image and past C */
        for (int i = lid; i < CB * PH * PW; i += TW * TH) {
            const int cc = i / (PH * PW), py = (i / PW) % PH, px = i % PW;
            const int c = c0 + cc, iy = iy0 + py, ix = ix0 + px;
            const bool inside = c < C && iy >= 0 && iy < H && ix >= 0 && ix < W;
            patch[cc][py][px] = inside ? LOAD(x, ((n * C + c) * H + iy) * W + ix) : 0.0f;
        }
        /* stage the matching weights, zero past O and C */
        for (int i = lid; i < CB * OB * KK; i += TW * TH) {
            const int cc = i / (OB * KK), ob = (i / KK) % OB, k = i % KK;
            const int c = c0 + cc, o = o0 + ob;
            wloc[cc][ob][k] = (c < C && o < O) ? LOAD(w, (o * C + c) * KK + k) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* this work-item's window starts at (ly*SH, lx*SW) in the patch */
        for (int cc = 0; cc < CB; ++cc)
            for (int u = 0; u < KH; ++u)
                for (int v = 0; v < KW; ++v) {
                    const float xv = patch[cc][ly * SH + u][lx * SW + v];
                    for (int ob = 0; ob < OB; ++ob)
                        acc[ob] = fma(xv, wloc[cc][ob][u * KW + v], acc[ob]);
                }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    if (ox < Wo && oy < Ho) {
        for (int ob = 0; ob < OB; ++ob) {
            const int o = o0 + ob;
            if (o < O) {
                const float b = has_bias ? LOAD(bias, o) : 0.0f;
                STORE(y, ((n * O + o) * Ho + oy) * Wo + ox, acc[ob] + b);
            }
        }
    }
}
#endif /* KH */
