/* Scaled dot-product attention three ways, the paper's third idea, and the row softmax (host side
 * and plan: ../attention.py). The two products of the naive and partially fused variants,
 * attention_scores and attention_pv / attention_pv_softmax, run on the matrix core (gemm.cl).
 *
 *   A = scale * Q K^T   (N x M per batch*head),   P = softmax(A) along M,   O = P V
 *
 * Q (BH, N, d), K (BH, M, d), V (BH, M, dv) and O (BH, N, dv) are storage_t tensors (float or
 * half storage); the score tensor A, the probabilities P and the row statistics are float
 * buffers whatever the storage (a kernel reading them is built with STORAGE_HALF=0, or takes
 * them as `float *`). All arithmetic is float. Offsets into per-head slabs are size_t here;
 * storage_t tensors are addressed by offset, never by pointer arithmetic (half is only a pointer
 * type without cl_khr_fp16). (The matrix core's products index with int: attention.py refuses
 * score matrices of 2^31 elements or more.)
 *
 *   naive:           attention_scores -> softmax_rows (A -> P)   -> attention_pv
 *   partial softmax: attention_scores -> softmax_stats (A -> L,S) -> attention_pv_softmax
 *   flash:           flash_attention (one kernel, A never stored)
 *
 * Causal attention (CLIP's text encoder; compile-time CAUSAL = 0 or 1, so the usual build carries
 * no mask at all): query row n sees keys m <= n only, A[n, m] = -inf for m > n (top-left
 * aligned, any N and M). Column 0 is visible to every row, so every row max is finite; the
 * masked entries become exp(-inf) = 0 in P, and the statistics skip them (stats_add), so no NaN
 * arises from -inf - -inf. The kernels (and the matrix core's products) also skip work-group
 * tiles that are masked as a whole (a condition uniform over the work-group, so the barriers
 * stay in uniform control flow).
 */
#ifndef ROW_WG
#define ROW_WG 64 /* work-items per row in the row reductions (a power of two) */
#endif
#ifndef CAUSAL
#define CAUSAL 0 /* 1: query row n sees keys m <= n only */
#endif

/* ---------------------------------------------------------------------------------------------
 * Row statistics (L, S): L = max_m a[m], S = sum_m exp(a[m] - L). Two partial statistics of
 * disjoint column sets merge as (reference/attention.py merge_stats)
 *     L = max(La, Lb),   S = Sa exp(La - L) + Sb exp(Lb - L).
 * The empty set is (-inf, 0); merging two empty sets must not compute exp(-inf - -inf) = NaN.
 */
float2 merge_stats(const float2 a, const float2 b)
{
    const float L = fmax(a.x, b.x);
    if (L == -INFINITY)
        return a;
    return (float2)(L, a.y * exp(a.x - L) + b.y * exp(b.x - L));
}

/* merge_stats(s, (x, 1)) for one more value x, with one exp instead of two. A masked score
 * x = -inf adds nothing (and must not: with s still empty, exp(x - s.x) would be NaN). */
float2 stats_add(const float2 s, const float x)
{
    if (x == -INFINITY)
        return s;
    return x > s.x ? (float2)(x, s.y * exp(s.x - x) + 1.0f) : (float2)(s.x, s.y + exp(x - s.x));
}

/* The (L, S) of the M values A[row_start ...], block-wise: work-item i reduces its own block of columns
 * {i, i + ROW_WG, i + 2 ROW_WG, ...} (strided, so neighbouring items read neighbouring addresses)
 * with an online (max, sum); the ROW_WG partial pairs are then merged in __local memory by a
 * tree reduction. Every work-item of the group returns the row's statistics. Must be called by
 * the whole work-group (it contains barriers). */
float2 row_stats(const __global storage_t *A, const size_t row_start, const int M, __local float2 *partial)
{
    const int lid = get_local_id(0);
    float2 s = (float2)(-INFINITY, 0.0f);
    for (int m = lid; m < M; m += ROW_WG)
        s = stats_add(s, LOAD(A, row_start + m));
    partial[lid] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int half_size = ROW_WG / 2; half_size > 0; half_size /= 2) {
        if (lid < half_size)
            partial[lid] = merge_stats(partial[lid], partial[lid + half_size]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return partial[0];
}

/* The paper's reduction kernel: one work-group per row of A (rows, M) writes stats[row] = (L, S).
 * Global size (rows * ROW_WG), local (ROW_WG): rows go along dimension 0, whose group count is
 * not limited to 65535 on NVIDIA (B*H*N = 2*8*4096 rows in SD's self-attention). */
__kernel __attribute__((reqd_work_group_size(ROW_WG, 1, 1)))
void softmax_stats(const __global storage_t *A, __global float *stats, const int M)
{
    __local float2 partial[ROW_WG];
    const size_t row = get_group_id(0);
    const float2 s = row_stats(A, row * M, M, partial);
    if (get_local_id(0) == 0) {
        stats[2 * row] = s.x;
        stats[2 * row + 1] = s.y;
    }
}

/* The softmax of each row: the same reduction, then P = exp(A - L) / S written out. In the naive
 * attention it turns A into a second N x M buffer P (built with float storage: A and P are
 * float); as the op ``softmax`` it runs in the tensor's storage. Global size (rows * ROW_WG),
 * local (ROW_WG). */
__kernel __attribute__((reqd_work_group_size(ROW_WG, 1, 1)))
void softmax_rows(const __global storage_t *A, __global storage_t *P, const int M)
{
    __local float2 partial[ROW_WG];
    const size_t row = get_group_id(0);
    const float2 s = row_stats(A, row * M, M, partial);
    for (int m = get_local_id(0); m < M; m += ROW_WG)
        STORE(P, row * M + m, exp(LOAD(A, row * M + m) - s.x) / s.y);
}

/* ---------------------------------------------------------------------------------------------
 * FlashAttention forward, one launch, register-tiled (FlashAttention-2's loop order on scalar
 * float units). Compile-time: D, DV (head dims), RQ (query rows per work-item), BK (keys per
 * block), DC (the head dim is consumed in chunks of DC), KC (value rows staged at a time).
 *
 * A work-group of 256 items, item (tr, tc) = (lid / 16, lid % 16), owns BQ = 16 RQ query rows.
 * Item (tr, tc) holds, in registers,
 *   - the scores of its rows tr + 16 i (i < RQ) with the keys tc + 16 j (j < RK = BK / 16) of
 *     the current block: an RQ x RK tile of S = scale Q K^T;
 *   - the output accumulator of the same rows for the columns tc + 16 c (c < CV = ceil(DV/16));
 *   - per row, the running max m (the same in the 16 items of a row) and its own partial row sum.
 * For every block of BK keys:
 *   1. S: Q and K go through __local memory DC head columns at a time (one chunk when D <= 64,
 *      and then Q is staged once for all blocks); each item reads float4s of Q rows and K rows;
 *   2. the block's row max: each item's max over its RQ x RK tile, merged over the 16 items of
 *      the row through __local memory; m_new = max(m, block max);
 *   3. P = exp(S - m_new) in registers, written to __local Ps; correction = exp(m - m_new)
 *      rescales the accumulator and the partial sums;
 *   4. O += P V: V through __local memory KC keys at a time; each item multiplies its rows'
 *      P values (float4 reads along the keys) with its value columns.
 * At the end the 16 partial sums of a row are added through __local memory and O = acc / l.
 * Keys past M are -inf (and their K and V rows zero), so ragged blocks add nothing; query rows
 * past N compute on zero queries and are not stored. CAUSAL: keys m > n are -inf, and the key
 * loop stops after the block holding the work-group's last row. The first block holds key 0,
 * visible to every row, so every running max is finite from then on.
 * Global (256 * ceil(N / BQ), BH), local (256, 1).
 */
#ifdef D
#define TC TILE                  /* items along a row's keys and output columns (16) */
#define TR TILE                  /* item rows (16) */
#define BQ (TR * RQ)
#define RK (BK / TC)
#define CV ((DV + TC - 1) / TC)
#define DCP (DC + 4)             /* __local row stride of the Q and K chunks: float4-aligned, */
#define PSP (BK + 4)             /* and staggered across banks */
#define NCHUNK ((D + DC - 1) / DC)

/* Stage rows [row0, row0 + rows) x head columns [c0, c0 + DC) of X (rows of D values, `limit`
 * rows in all) into dst (rows x DCP floats); zeros outside. */
void stage_chunk(__local float *dst, const __global storage_t *X, const size_t base, const int row0,
                 const int rows, const int limit, const int c0)
{
    for (int i = get_local_id(0); i < rows * DC; i += TR * TC) {
        const int row = i / DC, c = i - row * DC;
        dst[row * DCP + c] = (row0 + row < limit && c0 + c < D) ? LOAD(X, base + (size_t)(row0 + row) * D + c0 + c)
                                                                 : 0.0f;
    }
}

__kernel __attribute__((reqd_work_group_size(TR * TC, 1, 1)))
void flash_attention(const __global storage_t *Q, const __global storage_t *K, const __global storage_t *V,
                     __global storage_t *O, const int N, const int M, const float scale)
{
    const int lid = get_local_id(0), tr = lid / TC, tc = lid - tr * TC;
    const int n0 = get_group_id(0) * BQ, bh = get_group_id(1);
    const size_t q0 = (size_t)bh * N * D, k0 = (size_t)bh * M * D, v0 = (size_t)bh * M * DV;
    /* (declared float4 for their 16-byte alignment: the float4 reads below) */
    __local float4 Qc4[BQ * DCP / 4], Kc4[BK * DCP / 4], Ps4[BQ * PSP / 4];
    __local float *Qc = (__local float *)Qc4;   /* a chunk of the query block */
    __local float *Kc = (__local float *)Kc4;   /* a chunk of the key block */
    __local float *Ps = (__local float *)Ps4;   /* exp(S - m_new) of the block */
    __local float Vc[KC * DV];    /* KC value rows */
    __local float red[BQ * TC];   /* per-row merges over the 16 items of a row */

    float m_run[RQ], l_part[RQ], acc[RQ][CV];
    for (int i = 0; i < RQ; ++i) {
        m_run[i] = -INFINITY;
        l_part[i] = 0.0f;
        for (int c = 0; c < CV; ++c)
            acc[i][c] = 0.0f;
    }
#if NCHUNK == 1
    stage_chunk(Qc, Q, q0, n0, BQ, N, 0);
#endif

    const int m_stop = CAUSAL ? min(M, n0 + BQ) : M; /* the same for the whole work-group */
    for (int j0 = 0; j0 < m_stop; j0 += BK) {
        /* 1. S = Q K^T for the BQ x BK block, in registers */
        float s[RQ][RK];
        for (int i = 0; i < RQ; ++i)
            for (int j = 0; j < RK; ++j)
                s[i][j] = 0.0f;
        for (int c0 = 0; c0 < D; c0 += DC) {
#if NCHUNK > 1
            stage_chunk(Qc, Q, q0, n0, BQ, N, c0);
#endif
            stage_chunk(Kc, K, k0, j0, BK, M, c0);
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int c = 0; c < DC; c += 4) {
                float4 q[RQ], k[RK];
                for (int i = 0; i < RQ; ++i)
                    q[i] = Qc4[((tr + TR * i) * DCP + c) / 4];
                for (int j = 0; j < RK; ++j)
                    k[j] = Kc4[((tc + TC * j) * DCP + c) / 4];
                for (int i = 0; i < RQ; ++i)
                    for (int j = 0; j < RK; ++j)
                        s[i][j] += dot(q[i], k[j]);
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }

        /* 2. scale and mask; the block's row max over the 16 items of each row */
        for (int i = 0; i < RQ; ++i) {
            float mx = -INFINITY;
            for (int j = 0; j < RK; ++j) {
                const int key = j0 + tc + TC * j;
#if CAUSAL
                const bool visible = key < M && key <= n0 + tr + TR * i;
#else
                const bool visible = key < M;
#endif
                s[i][j] = visible ? scale * s[i][j] : -INFINITY;
                mx = fmax(mx, s[i][j]);
            }
            red[(tr + TR * i) * TC + tc] = mx;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        float correction[RQ];
        for (int i = 0; i < RQ; ++i) {
            float m_new = m_run[i];
            for (int t = 0; t < TC; ++t)
                m_new = fmax(m_new, red[(tr + TR * i) * TC + t]);
            correction[i] = exp(m_run[i] - m_new); /* 0 on the first block (m_run = -inf) */
            m_run[i] = m_new;
            /* 3. P = exp(S - m_new): to __local for the product, into this item's partial sum */
            float l_blk = 0.0f;
            for (int j = 0; j < RK; ++j) {
                const float p = exp(s[i][j] - m_new);
                Ps[(tr + TR * i) * PSP + tc + TC * j] = p;
                l_blk += p;
            }
            l_part[i] = fma(l_part[i], correction[i], l_blk);
            for (int c = 0; c < CV; ++c)
                acc[i][c] *= correction[i];
        }

        /* 4. O += P V, KC value rows at a time */
        for (int kc0 = 0; kc0 < BK; kc0 += KC) {
            barrier(CLK_LOCAL_MEM_FENCE); /* Ps written; the previous Vc (and red) read */
            for (int e = lid; e < KC * DV; e += TR * TC) {
                const int key = e / DV;
                Vc[e] = (j0 + kc0 + key < M) ? LOAD(V, v0 + (size_t)(j0 + kc0) * DV + e) : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int k = 0; k < KC; k += 4) {
                float4 p[RQ];
                for (int i = 0; i < RQ; ++i)
                    p[i] = Ps4[((tr + TR * i) * PSP + kc0 + k) / 4];
                for (int c = 0; c < CV; ++c) {
                    const int col = tc + TC * c;
                    if (col < DV) {
                        const float4 vk = (float4)(Vc[k * DV + col], Vc[(k + 1) * DV + col],
                                                   Vc[(k + 2) * DV + col], Vc[(k + 3) * DV + col]);
                        for (int i = 0; i < RQ; ++i)
                            acc[i][c] += dot(p[i], vk);
                    }
                }
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* before the next block overwrites Kc, Ps, Vc */
    }

    /* the row sums: the 16 partial sums of each row */
    for (int i = 0; i < RQ; ++i)
        red[(tr + TR * i) * TC + tc] = l_part[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int i = 0; i < RQ; ++i) {
        const int n = n0 + tr + TR * i;
        float l = 0.0f;
        for (int t = 0; t < TC; ++t)
            l += red[(tr + TR * i) * TC + t];
        if (n < N)
            for (int c = 0; c < CV; ++c) {
                const int col = tc + TC * c;
                if (col < DV)
                    STORE(O, ((size_t)bh * N + n) * DV + col, acc[i][c] / l);
            }
    }
}
#endif
