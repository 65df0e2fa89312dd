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
 * FlashAttention forward, one launch. Compile-time: D, DV (head dims), BQ (query rows per
 * work-group), BK (keys per block), DT (work-items sharing one query row).
 *
 * Work-group (DT, BQ): work-item (t, r) owns query row n = n0 + r and the output columns
 * t, t + DT, t + 2 DT, ... (COLS of them) of that row, whose float accumulator stays in
 * registers. The query block is staged once in __local; then for every block of BK keys:
 *   1. stage K_j and V_j in __local (zeros past M, so ragged blocks add nothing);
 *   2. S = scale * Q K_j^T for the BQ x BK tile, spread over all work-items (-inf past M);
 *   3. each item finds its row's new max m_new = max(m, rowmax S) and writes its share of
 *      P = exp(S - m_new);
 *   4. each item rescales by exp(m - m_new):  l = l c + rowsum P,  acc = acc c + P V_j.
 * Finally O = acc / l. Nothing of size N x M is ever stored.
 * CAUSAL: scores of keys m > n are -inf, and the key loop stops after the block holding the
 * work-group's last row n0 + BQ - 1 (later blocks are masked for all its rows). The first block
 * holds key 0, visible to every row, so m_run is finite from then on; a later block masked for a
 * row leaves m_new = m_run and adds exp(-inf) = 0.
 * Global (DT, ceil(N / BQ) * BQ, BH), local (DT, BQ, 1).
 */
#ifdef D
#define WG (DT * BQ)
#define COLS ((DV + DT - 1) / DT)
#define KSTRIDE (D | 1) /* odd row stride of Ks: items reading column c of different keys hit different banks */

__kernel __attribute__((reqd_work_group_size(DT, BQ, 1)))
void flash_attention(const __global storage_t *Q, const __global storage_t *K, const __global storage_t *V,
                     __global storage_t *O, const int N, const int M, const float scale)
{
    const int t = get_local_id(0), r = get_local_id(1), lid = r * DT + t;
    const int n0 = get_group_id(1) * BQ, n = n0 + r, bh = get_global_id(2);
    const size_t q0 = ((size_t)bh * N + n0) * D;                    /* this work-group's query rows */
    const size_t k0 = (size_t)bh * M * D, v0 = (size_t)bh * M * DV; /* this head's keys and values */
    __local float Qs[BQ * D];        /* the query block, rows past N are zero */
    __local float Ks[BK * KSTRIDE];  /* the current key block */
    __local float Vs[BK * DV];       /* the current value block */
    __local float Ss[BQ * BK];       /* scores of the current block */
    __local float Ps[BQ * BK];       /* exp(S - m_new) of the current block */

    for (int i = lid; i < BQ * D; i += WG)
        Qs[i] = (n0 + i / D < N) ? LOAD(Q, q0 + i) : 0.0f;

    float m_run = -INFINITY; /* running row max */
    float l_run = 0.0f;      /* running row sum of exp(A - m_run) */
    float acc[COLS];         /* running unnormalized output columns t + j*DT */
    for (int j = 0; j < COLS; ++j)
        acc[j] = 0.0f;

    const int m_stop = CAUSAL ? min(M, n0 + BQ) : M; /* the same for the whole work-group */
    for (int j0 = 0; j0 < m_stop; j0 += BK) {
        /* 1. stage the key and value block (contiguous in global memory) */
        for (int i = lid; i < BK * D; i += WG) {
            const int key = i / D;
            Ks[key * KSTRIDE + (i - key * D)] = (j0 + key < M) ? LOAD(K, k0 + (size_t)j0 * D + i) : 0.0f;
        }
        for (int i = lid; i < BK * DV; i += WG)
            Vs[i] = (j0 + i / DV < M) ? LOAD(V, v0 + (size_t)j0 * DV + i) : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);

        /* 2. the BQ x BK score tile, one dot product of length D per entry; -inf past M and,
         *    when causal, right of the diagonal */
        for (int i = lid; i < BQ * BK; i += WG) {
            const int row = i / BK, key = i - row * BK;
            float s = 0.0f;
            for (int c = 0; c < D; ++c)
                s = fma(Qs[row * D + c], Ks[key * KSTRIDE + c], s);
#if CAUSAL
            const int key_stop = min(M, n0 + row + 1); /* keys past the diagonal are masked */
#else
            const int key_stop = M;
#endif
            Ss[i] = (j0 + key < key_stop) ? scale * s : -INFINITY;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* 3. the new row max (finite: the first block holds a real key visible to every row), and
         *    this item's share of the exponentials */
        float m_new = m_run;
        for (int key = 0; key < BK; ++key)
            m_new = fmax(m_new, Ss[r * BK + key]);
        for (int key = t; key < BK; key += DT)
            Ps[r * BK + key] = exp(Ss[r * BK + key] - m_new);
        barrier(CLK_LOCAL_MEM_FENCE);

        /* 4. rescale the running sum and accumulator to the new max, add this block */
        const float correction = exp(m_run - m_new); /* 0 on the first block (m_run = -inf) */
        float l_blk = 0.0f;
        for (int key = 0; key < BK; ++key)
            l_blk += Ps[r * BK + key];
        l_run = l_run * correction + l_blk;
        for (int j = 0; j < COLS; ++j)
            acc[j] *= correction;
        for (int key = 0; key < BK; ++key) {
            const float p = Ps[r * BK + key];
            for (int j = 0; j < COLS; ++j) {
                const int col = t + j * DT;
                if (col < DV)
                    acc[j] = fma(p, Vs[key * DV + col], acc[j]);
            }
        }
        m_run = m_new;
        barrier(CLK_LOCAL_MEM_FENCE); /* before the next block overwrites Ks, Vs, Ss, Ps */
    }

    if (n < N) {
        for (int j = 0; j < COLS; ++j) {
            const int col = t + j * DT;
            if (col < DV)
                STORE(O, ((size_t)bh * N + n) * DV + col, acc[j] / l_run);
        }
    }
}
#endif
