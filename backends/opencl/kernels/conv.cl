/* Direct 2-D convolution (cross-correlation), NCHW input, OIHW weights, any kernel size and stride.
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
