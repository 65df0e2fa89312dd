/* The matrix core: a register-tiled GEMM; attention's two products on it; and the direct
 * convolution as an implicit GEMM on the same main loop. Host side: ../gemm.py (tiles, the
 * measured tile table, vector widths), ../attention.py and ../winograd.py.
 *
 *   gemm_batched:          C[b, i, j] = alpha * sum_k A[b, i, k] B[b, k, j]  (+ bias[j])
 *   attention_scores:      A[b, n, m] = scale * sum_c Q[b, n, c] K[b, m, c]  (-inf for m > n if CAUSAL)
 *   attention_pv:          O[b, n, :] = sum_m P[b, n, m] V[b, m, :]
 *   attention_pv_softmax:  O[b, n, :] = sum_m exp(A[b, n, m] - L[b, n]) V[b, m, :] / S[b, n]
 *   conv2d_implicit_gemm:  y[n, o, p] = sum_k W[o, k] X_col[k, (n, p)]  + bias[o]
 *
 * gemm_batched reads element (b, i, k) of A at b*sab + i*sam + k*sak (likewise B and C), so a
 * transposed operand is the same array with its strides swapped. The attention kernels are the
 * same loop with their strides fixed (K^T is K read along its rows). The convolution's A is the
 * weight tensor (O, C*KH*KW) as stored (OIHW), and its B is the im2col matrix of the input,
 * X_col[(c, u, v), (n, oy, ox)] = x[n, c, oy*SH + u - ph, ox*SW + v - pw] (0 in the padding),
 * which is never stored: the loader computes each element's address while staging a tile.
 *
 * Tiling (CLBlast's and the CUDA SGEMM literature's register blocking). A work-group of
 * NT = (BM/TM) * (BN/TN) items computes a BM x BN tile of C; each item holds a TM x TN block of
 * accumulators in registers. K is walked BK at a time:
 *
 *   - the BM x BK slab of A and the BK x BN slab of B are staged in __local memory, A transposed
 *     (As[k][m]) so that both are read along their long side;
 *   - double-buffered: while the items multiply out slab t from one buffer, the global loads of
 *     slab t+1 are already in flight into registers, and are stored to the other buffer after
 *     the products; one barrier per slab;
 *   - per k, an item reads TM values of A and TN of B from __local (float4 reads when TM, TN are
 *     multiples of 4) and does TM * TN FMAs on them: (TM + TN) loads for TM * TN FMAs.
 *
 * An item's rows are not contiguous: in groups of VM = min(TM, 4), row i of the item is
 *   (i / VM) * (NT_M * VM) + tm * VM + i % VM
 * so that neighbouring items read neighbouring float4s (no __local bank conflicts) and write
 * neighbouring addresses of C (coalesced stores); columns likewise with VN.
 *
 * Global loads are coalesced whatever the layout: the items of a work-group walk the staged slab
 * along the operand's unit-stride direction, chosen at compile time (A_K_UNIT: A's k stride is 1,
 * else its i stride is; B_N_UNIT: B's j stride is 1, else its k stride is). The flags only
 * choose that order: every stride is still honoured, so any layout is computed correctly.
 * Vector loads (VA, VB = 4 or 2; 1 = scalar): each load of an item then reads VA (VB) adjacent
 * elements along the unit stride at once, a float4 / float2, or with fp16 storage one 8- or 4-byte
 * word of halves (instead of 2-byte loads), converted in registers. The host picks the width only where
 * every vector is aligned and lies wholly inside or wholly outside the matrix (gemm.py
 * ``vector_width``). Ragged M, N and K are handled by zero-filling the slabs outside the matrix
 * and masking the stores. Accumulation is float whatever the storage.
 *
 * Split K (SPLITS > 1): where a shape has too few tiles of C to fill the device (the 2-row
 * linears, the 8 x 8 convolutions, Winograd with few tiles), the grid's third dimension also
 * splits K into SPLITS contiguous ranges (multiples of BK). Each work-group then writes its raw
 * float32 partial sums to `partial` (SPLITS, batch, M, N) instead of C, and a second launch
 * (gemm_splitk_reduce / conv2d_splitk_reduce; or, for Winograd, its output transform) adds the
 * SPLITS partials in a fixed order (deterministic) and applies alpha and the bias.
 *
 * Attention (ATTENTION = SCORES, PV or PV_SOFTMAX; ../attention.py has the three variants): the
 * scores A and probabilities P are float tensors whatever the storage: attention_scores stores
 * its C as float (C_FLOAT), the P V kernels read their A operand as float (A_FLOAT).
 * attention_pv_softmax is the paper's partially fused softmax: the loader turns each staged
 * score into exp(A - L[n]) with the row max L from the (L, S) statistics (scores outside the
 * matrix are read as -inf, so they become 0), and the epilogue divides by the row sum S[n]; P is
 * never stored.
 * CAUSAL: attention_scores writes -inf right of the diagonal and skips tiles that lie wholly
 * right of it; the P V kernels stop K after the last row of their tile (the keys past it have
 * weight 0 for every row of the tile). Attention is never split along K.
 *
 * Compile-time constants (rt.kernel defines; gemm.py's GemmTile): BM BN BK TM TN PAD SPLITS,
 * A_K_UNIT B_N_UNIT VA VB; ATTENTION CAUSAL; for the convolution KH KW SH SW.
 */
#ifndef BM
#define BM 64
#endif
#ifndef BN
#define BN 64
#endif
#ifndef BK
#define BK 8
#endif
#ifndef TM
#define TM 4
#endif
#ifndef TN
#define TN 4
#endif
#ifndef PAD
#define PAD 4
#endif
#ifndef SPLITS
#define SPLITS 1
#endif
#ifndef A_K_UNIT
#define A_K_UNIT 1
#endif
#ifndef B_N_UNIT
#define B_N_UNIT 1
#endif
#ifndef VA
#define VA 1
#endif
#ifndef VB
#define VB 1
#endif
#define SCORES 1
#define PV 2
#define PV_SOFTMAX 3
#ifndef ATTENTION
#define ATTENTION 0
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif

#define NT_M (BM / TM)
#define NT_N (BN / TN)
#define NT (NT_M * NT_N)
#define VM (TM < 4 ? TM : 4)
#define VN (TN < 4 ? TN : 4)
#define LDA (BM + PAD)        /* row length of As[k][.] */
#define LDB (BN + PAD)        /* row length of Bs[k][.] */
#define A_PER_ITEM (BM * BK / NT)   /* slab elements each item loads */
#define B_PER_ITEM (BK * BN / NT)

#define CAT(a, b) a##b
#define XCAT(a, b) CAT(a, b)

/* Operand storage: storage_t, except the float score / probability tensors of attention. A
 * vector load reads W adjacent elements at offset i (a multiple of W, the address aligned). */
#define A_FLOAT (ATTENTION == PV || ATTENTION == PV_SOFTMAX)
#define C_FLOAT (ATTENTION == SCORES)
#define LOAD_FLOAT(p, i) ((p)[(i)])
#define STORE_FLOAT(p, i, v) ((p)[(i)] = (v))
#define LOADV_FLOAT(p, i, W) (*(const __global XCAT(float, W) *)((p) + (i)))
#if STORAGE_HALF
/* fp16 vectors are read as raw 32- or 64-bit words and converted here: vloada_half4/2 measured
 * slower than scalar vload_half on NVIDIA's OpenCL (NOTES.md). The float of the IEEE half with
 * bits h: the exponent and mantissa shifted into place and rescaled by 2^(127-15), which also
 * gives the subnormals; exponent 31 (inf, NaN) set to the float's 255; then the sign. */
float half_bits_to_float(const uint h)
{
    const uint magnitude = (h & 0x7fffu) << 13;
    const float f = (h & 0x7c00u) == 0x7c00u ? as_float(magnitude | 0x7f800000u) : as_float(magnitude) * 0x1p112f;
    return as_float(as_uint(f) | ((h & 0x8000u) << 16));
}
float2 load_half2(const __global half *p, const int i)
{
    const uint u = *(const __global uint *)((const __global ushort *)p + i);
    return (float2)(half_bits_to_float(u & 0xffffu), half_bits_to_float(u >> 16));
}
float4 load_half4(const __global half *p, const int i)
{
    const uint2 u = *(const __global uint2 *)((const __global ushort *)p + i);
    return (float4)(half_bits_to_float(u.x & 0xffffu), half_bits_to_float(u.x >> 16),
                    half_bits_to_float(u.y & 0xffffu), half_bits_to_float(u.y >> 16));
}
#define LOADV_STORAGE(p, i, W) XCAT(load_half, W)((p), (i))
#else
#define LOADV_STORAGE(p, i, W) LOADV_FLOAT(p, i, W)
#endif
#if A_FLOAT
typedef float a_t;
#define LOAD_A LOAD_FLOAT
#define LOADV_A LOADV_FLOAT
#else
typedef storage_t a_t;
#define LOAD_A LOAD
#define LOADV_A LOADV_STORAGE
#endif
#if C_FLOAT
typedef float c_t;
#define STORE_C STORE_FLOAT
#else
typedef storage_t c_t;
#define STORE_C STORE
#endif
/* A's value outside the matrix: 0, or -inf for the scores of the fused softmax (exp(-inf) = 0). */
#define A_OUTSIDE (ATTENTION == PV_SOFTMAX ? -INFINITY : 0.0f)

/* The row (within the tile) of an item's accumulator row i, and the column of its column j. */
#define TILE_ROW(tm, i) (((i) / VM) * (NT_M * VM) + (tm) * VM + (i) % VM)
#define TILE_COL(tn, j) (((j) / VN) * (NT_N * VN) + (tn) * VN + (j) % VN)

/* The slab element held in an item's register slot s: its loads are vectors of VA (VB) adjacent
 * elements, the item's first vector at lid, its next one NT vectors further. */
#define A_ELEM(lid, s) (((lid) + ((s) / VA) * NT) * VA + (s) % VA)
#define B_ELEM(lid, s) (((lid) + ((s) / VB) * NT) * VB + (s) % VB)

/* Where slab element e lies, walking the unit-stride direction fastest. */
#if A_K_UNIT
#define A_SLAB_K(e) ((e) % BK)
#define A_SLAB_M(e) ((e) / BK)
#else
#define A_SLAB_K(e) ((e) / BM)
#define A_SLAB_M(e) ((e) % BM)
#endif
#if B_N_UNIT
#define B_SLAB_K(e) ((e) / BN)
#define B_SLAB_N(e) ((e) % BN)
#else
#define B_SLAB_K(e) ((e) % BK)
#define B_SLAB_N(e) ((e) / BK)
#endif

/* The TM x TN products of slab `buf`: acc[i][j] += sum_k As[k][row i] * Bs[k][col j]. */
void multiply_slab(__local const float *As, __local const float *Bs, const int tm, const int tn,
                   float acc[TM][TN])
{
    #pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
        float a[TM], b[TN];
        #pragma unroll
        for (int i = 0; i < TM; i += VM) {
#if VM == 4
            const float4 v = *(__local const float4 *)(As + kk * LDA + TILE_ROW(tm, i));
            a[i] = v.x; a[i + 1] = v.y; a[i + 2] = v.z; a[i + 3] = v.w;
#else
            #pragma unroll
            for (int ii = 0; ii < VM; ++ii)
                a[i + ii] = As[kk * LDA + TILE_ROW(tm, i + ii)];
#endif
        }
        #pragma unroll
        for (int j = 0; j < TN; j += VN) {
#if VN == 4
            const float4 v = *(__local const float4 *)(Bs + kk * LDB + TILE_COL(tn, j));
            b[j] = v.x; b[j + 1] = v.y; b[j + 2] = v.z; b[j + 3] = v.w;
#else
            #pragma unroll
            for (int jj = 0; jj < VN; ++jj)
                b[j + jj] = Bs[kk * LDB + TILE_COL(tn, j + jj)];
#endif
        }
        #pragma unroll
        for (int i = 0; i < TM; ++i) {
            #pragma unroll
            for (int j = 0; j < TN; ++j)
                acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
    }
}

/* Store the registers of one slab into __local buffer As / Bs (A transposed). */
void store_slab(__local float *As, __local float *Bs, const int lid,
                const float ra[A_PER_ITEM], const float rb[B_PER_ITEM])
{
    #pragma unroll
    for (int s = 0; s < A_PER_ITEM; ++s) {
        const int e = A_ELEM(lid, s);
        As[A_SLAB_K(e) * LDA + A_SLAB_M(e)] = ra[s];
    }
    #pragma unroll
    for (int s = 0; s < B_PER_ITEM; ++s) {
        const int e = B_ELEM(lid, s);
        Bs[B_SLAB_K(e) * LDB + B_SLAB_N(e)] = rb[s];
    }
}

/* The A slab (rows row0.., columns k0..) of a strided operand into registers, A_OUTSIDE outside
 * M x K; VA elements per load. */
void load_a_strided(const __global a_t *A, const int base, const int sam, const int sak,
                    const int M, const int K, const int row0, const int k0, const int lid,
                    float ra[A_PER_ITEM])
{
    #pragma unroll
    for (int s = 0; s < A_PER_ITEM; s += VA) {
        const int e = A_ELEM(lid, s);
        const int row = row0 + A_SLAB_M(e), k = k0 + A_SLAB_K(e);
        const bool inside = row < M && k < K;
#if VA == 1
        ra[s] = inside ? LOAD_A(A, base + row * sam + k * sak) : A_OUTSIDE;
#else
        XCAT(vstore, VA)(inside ? LOADV_A(A, base + row * sam + k * sak, VA) : (XCAT(float, VA))(A_OUTSIDE),
                         0, ra + s);
#endif
    }
}

void zero_acc(float acc[TM][TN])
{
    #pragma unroll
    for (int i = 0; i < TM; ++i) {
        #pragma unroll
        for (int j = 0; j < TN; ++j)
            acc[i][j] = 0.0f;
    }
}

/* This work-group's K range [*kbegin, *kend) for split `split` of SPLITS (the whole K unsplit). */
void split_range(const int K, const int split, int *kbegin, int *kend)
{
    const int span = (K + SPLITS * BK - 1) / (SPLITS * BK) * BK;
    *kbegin = split * span;
    *kend = min(K, *kbegin + span);
}

/* ------------------------------------------------------------------------------------------ */
#ifndef KH   /* the plain GEMM and attention's products */

/* The B slab (rows k0.., columns col0..) of a strided operand into registers, 0 outside K x N;
 * VB elements per load. */
void load_b_strided(const __global storage_t *B, const int base, const int sbk, const int sbn,
                    const int K, const int N, const int k0, const int col0, const int lid,
                    float rb[B_PER_ITEM])
{
    #pragma unroll
    for (int s = 0; s < B_PER_ITEM; s += VB) {
        const int e = B_ELEM(lid, s);
        const int k = k0 + B_SLAB_K(e), col = col0 + B_SLAB_N(e);
        const bool inside = k < K && col < N;
#if VB == 1
        rb[s] = inside ? LOAD(B, base + k * sbk + col * sbn) : 0.0f;
#else
        XCAT(vstore, VB)(inside ? LOADV_STORAGE(B, base + k * sbk + col * sbn, VB) : (XCAT(float, VB))(0.0f),
                         0, rb + s);
#endif
    }
}

/* acc = the tile (row0.., col0..) of A B summed over k in [kbegin, kend): the double-buffered main
 * loop. As and Bs hold two slabs each (BK * LDA and BK * LDB floats apart). PV_SOFTMAX: A holds
 * scores, staged as exp(A - L[row]) with L read from `stats` ((L, S) pairs of rows 0..M-1). */
void strided_product(const __global a_t *A, const int abase, const int sam, const int sak,
                     const __global storage_t *B, const int bbase, const int sbk, const int sbn,
                     const int M, const int N, const int kbegin, const int kend, const int row0,
                     const int col0, const __global float *stats, __local float *As, __local float *Bs,
                     float acc[TM][TN])
{
    const int lid = get_local_id(0), tn = lid % NT_N, tm = lid / NT_N;
#if ATTENTION == PV_SOFTMAX
    float row_max[A_PER_ITEM];  /* L of each staged element's row: the same in every slab */
    #pragma unroll
    for (int s = 0; s < A_PER_ITEM; ++s) {
        const int row = row0 + A_SLAB_M(A_ELEM(lid, s));
        row_max[s] = row < M ? stats[2 * row] : 0.0f;
    }
#endif
    zero_acc(acc);
    float ra[A_PER_ITEM], rb[B_PER_ITEM];
    int buf = 0;
    for (int k0 = kbegin; k0 < kend + BK; k0 += BK) {
        /* iteration t loads slab t (k0) and multiplies slab t-1, already in the other buffer */
        const bool load = k0 < kend, multiply = k0 > kbegin;
        if (load) {
            load_a_strided(A, abase, sam, sak, M, kend, row0, k0, lid, ra);
            load_b_strided(B, bbase, sbk, sbn, kend, N, k0, col0, lid, rb);
#if ATTENTION == PV_SOFTMAX
            #pragma unroll
            for (int s = 0; s < A_PER_ITEM; ++s)
                ra[s] = exp(ra[s] - row_max[s]);  /* the softmax numerator; -inf outside gives 0 */
#endif
        }
        if (multiply)
            multiply_slab(As + (buf ^ 1) * BK * LDA, Bs + (buf ^ 1) * BK * LDB, tm, tn, acc);
        if (load)
            store_slab(As + buf * BK * LDA, Bs + buf * BK * LDB, lid, ra, rb);
        barrier(CLK_LOCAL_MEM_FENCE);
        buf ^= 1;
    }
}

#if ATTENTION == 0
/* Grid (ceil(N / BN) * NT, ceil(M / BM), batch * SPLITS), work-groups of (NT, 1, 1). */
__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))
void gemm_batched(const __global storage_t *A, const __global storage_t *B, __global storage_t *C,
                  const __global storage_t *bias, const int has_bias,
                  const int M, const int N, const int K,
                  const int sab, const int sam, const int sak,
                  const int sbb, const int sbk, const int sbn,
                  const int scb, const int scm, const int scn,
                  const float alpha, __global float *partial)
{
    __local float As[2 * BK * LDA] __attribute__((aligned(16)));
    __local float Bs[2 * BK * LDB] __attribute__((aligned(16)));
    const int lid = get_local_id(0), tn = lid % NT_N, tm = lid / NT_N;
    const int col0 = get_group_id(0) * BN, row0 = get_group_id(1) * BM;
    const int b = get_group_id(2) / SPLITS, split = get_group_id(2) % SPLITS;
    int kbegin, kend;
    split_range(K, split, &kbegin, &kend);
    float acc[TM][TN];
    strided_product(A, b * sab, sam, sak, B, b * sbb, sbk, sbn, M, N, kbegin, kend, row0, col0, 0, As, Bs, acc);

    #pragma unroll
    for (int j = 0; j < TN; ++j) {
        const int col = col0 + TILE_COL(tn, j);
        if (col >= N)
            continue;
#if SPLITS > 1
        const int batches = get_num_groups(2) / SPLITS;
        #pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int row = row0 + TILE_ROW(tm, i);
            if (row < M)
                partial[((split * batches + b) * M + row) * N + col] = acc[i][j];
        }
#else
        const float bj = has_bias ? LOAD(bias, col) : 0.0f;
        #pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int row = row0 + TILE_ROW(tm, i);
            if (row < M)
                STORE(C, b * scb + row * scm + col * scn, alpha * acc[i][j] + bj);
        }
#endif
    }
}

/* C[b, i, j] = alpha * sum_s partial[s, b, i, j] + bias[j]. Grid (N, M, batch). */
__kernel void gemm_splitk_reduce(const __global float *partial, __global storage_t *C,
                                 const __global storage_t *bias, const int has_bias,
                                 const int M, const int N, const int scb, const int scm, const int scn,
                                 const float alpha)
{
    const int col = get_global_id(0), row = get_global_id(1), b = get_global_id(2);
    if (col >= N)
        return;
    const int batches = get_global_size(2), plane = batches * M * N;
    float sum = 0.0f;
    for (int s = 0; s < SPLITS; ++s)
        sum += partial[s * plane + (b * M + row) * N + col];
    STORE(C, b * scb + row * scm + col * scn, alpha * sum + (has_bias ? LOAD(bias, col) : 0.0f));
}
#endif /* ATTENTION == 0 */

#if ATTENTION == SCORES
/* A[b] = scale Q[b] K[b]^T: the GEMM's A is Q (N x d, row-major), its B is K^T (d x M: K's rows,
 * B_N_UNIT = 0), its C the float scores.
 * Grid (ceil(M / BN) * NT, ceil(N / BM), BH), work-groups of (NT, 1, 1). */
__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))
void attention_scores(const __global storage_t *Q, const __global storage_t *K, __global float *A,
                      const int N, const int M, const int d, const float scale)
{
    __local float As[2 * BK * LDA] __attribute__((aligned(16)));
    __local float Bs[2 * BK * LDB] __attribute__((aligned(16)));
    const int lid = get_local_id(0), tn = lid % NT_N, tm = lid / NT_N;
    const int col0 = get_group_id(0) * BN, row0 = get_group_id(1) * BM, b = get_group_id(2);
    /* causal: a tile wholly right of the diagonal (its first key past its last row) is all -inf */
    const int kend = (CAUSAL && col0 > row0 + BM - 1) ? 0 : d;
    float acc[TM][TN];
    strided_product(Q, b * N * d, d, 1, K, b * M * d, 1, d, N, M, 0, kend, row0, col0, 0, As, Bs, acc);

    #pragma unroll
    for (int j = 0; j < TN; ++j) {
        const int m = col0 + TILE_COL(tn, j);
        #pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int n = row0 + TILE_ROW(tm, i);
            if (n < N && m < M)
                A[(b * N + n) * M + m] = (CAUSAL && m > n) ? -INFINITY : scale * acc[i][j];
        }
    }
}
#endif

#if ATTENTION == PV || ATTENTION == PV_SOFTMAX
/* O[b] = W[b] V[b] with W = P (PV) or exp(A - L) / S (PV_SOFTMAX): the GEMM's A is the float
 * (N x M) W, its B is V (M x dv, row-major); `stats` the (L, S) row statistics (PV_SOFTMAX only); As, Bs the
 * kernel's __local slabs. Grid (ceil(dv / BN) * NT, ceil(N / BM), BH), work-groups of (NT, 1, 1). */
void pv_tile(const __global float *W, const __global float *stats, const __global storage_t *V,
             __global storage_t *O, const int N, const int M, const int dv, __local float *As, __local float *Bs)
{
    const int lid = get_local_id(0), tn = lid % NT_N, tm = lid / NT_N;
    const int col0 = get_group_id(0) * BN, row0 = get_group_id(1) * BM, b = get_group_id(2);
    /* causal: the keys past the tile's last row have weight 0 in every row of the tile */
    const int kend = CAUSAL ? min(M, row0 + BM) : M;
    const __global float *row_stats = ATTENTION == PV_SOFTMAX ? stats + 2 * b * N : stats;
    float acc[TM][TN];
    strided_product(W, b * N * M, M, 1, V, b * M * dv, dv, 1, N, dv, 0, kend, row0, col0, row_stats, As, Bs, acc);

    #pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int n = row0 + TILE_ROW(tm, i);
        if (n >= N)
            continue;
        const float sum = ATTENTION == PV_SOFTMAX ? row_stats[2 * n + 1] : 1.0f;  /* the row sum S[n] */
        #pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int c = col0 + TILE_COL(tn, j);
            if (c < dv)
                STORE(O, (b * N + n) * dv + c, acc[i][j] / sum);
        }
    }
}

#if ATTENTION == PV
/* Naive: O = P V with P read from the second N x M buffer. */
__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))
void attention_pv(const __global float *P, const __global storage_t *V, __global storage_t *O,
                  const int N, const int M, const int dv)
{
    __local float As[2 * BK * LDA] __attribute__((aligned(16)));
    __local float Bs[2 * BK * LDB] __attribute__((aligned(16)));
    pv_tile(P, 0, V, O, N, M, dv, As, Bs);
}
#else
/* Partially fused softmax: O = sum_m exp(A[n, m] - L[n]) V[m, :] / S[n], P never stored. */
__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))
void attention_pv_softmax(const __global float *A, const __global float *stats, const __global storage_t *V,
                          __global storage_t *O, const int N, const int M, const int dv)
{
    __local float As[2 * BK * LDA] __attribute__((aligned(16)));
    __local float Bs[2 * BK * LDB] __attribute__((aligned(16)));
    pv_tile(A, stats, V, O, N, M, dv, As, Bs);
}
#endif
#endif /* PV, PV_SOFTMAX */

/* ------------------------------------------------------------------------------------------ */
#else        /* KH defined: the direct convolution as an implicit GEMM (scalar B loads: VB = 1) */

#define KK (KH * KW)

/* The B slab (rows k0.. of X_col, zero from kend on) into registers; xbase, iy0, ix0: each
 * load's output pixel (its image's offset, and the top-left input row and column of its window). */
void load_b_im2col(const __global storage_t *x, const int xbase[B_PER_ITEM], const int iy0[B_PER_ITEM],
                   const int ix0[B_PER_ITEM], const int kend, const int H, const int W, const int k0,
                   const int lid, float rb[B_PER_ITEM])
{
    #pragma unroll
    for (int r = 0; r < B_PER_ITEM; ++r) {
        const int k = k0 + B_SLAB_K(B_ELEM(lid, r));
        const int c = k / KK, uv = k - c * KK, u = uv / KW, v = uv - u * KW;
        const int iy = iy0[r] + u, ix = ix0[r] + v;
        rb[r] = (k < kend && iy >= 0 && iy < H && ix >= 0 && ix < W) ? LOAD(x, xbase[r] + (c * H + iy) * W + ix) : 0.0f;
    }
}

/* Grid (ceil(Nimg*Ho*Wo / BN) * NT, ceil(O / BM), 1), work-groups of (NT, 1, 1).
 * M = O output channels, N = Nimg * Ho * Wo output pixels, K = C * KH * KW. */
__kernel __attribute__((reqd_work_group_size(NT, 1, 1)))
void conv2d_implicit_gemm(const __global storage_t *x, const __global storage_t *w,
                          const __global storage_t *bias, const int has_bias, __global storage_t *y,
                          const int Nimg, const int C, const int H, const int W,
                          const int O, const int Ho, const int Wo, const int ph, const int pw,
                          __global float *partial)
{
    __local float As[2 * BK * LDA] __attribute__((aligned(16)));
    __local float Bs[2 * BK * LDB] __attribute__((aligned(16)));
    const int lid = get_local_id(0), tn = lid % NT_N, tm = lid / NT_N;
    const int col0 = get_group_id(0) * BN, row0 = get_group_id(1) * BM;
    const int HoWo = Ho * Wo, P = Nimg * HoWo, K = C * KK, HW = H * W;
    const int split = get_group_id(2);
    int kbegin, kend;
    split_range(K, split, &kbegin, &kend);

    /* The output pixel of each of this item's B loads is the same in every slab: decompose it
     * once (the only runtime divisions of the kernel). */
    int xbase[B_PER_ITEM], iy0[B_PER_ITEM], ix0[B_PER_ITEM];
    #pragma unroll
    for (int r = 0; r < B_PER_ITEM; ++r) {
        const int p = col0 + B_SLAB_N(B_ELEM(lid, r));
        const int img = p / HoWo, pix = p - img * HoWo, oy = pix / Wo, ox = pix - oy * Wo;
        xbase[r] = img * C * HW;
        iy0[r] = p < P ? oy * SH - ph : -(1 << 20);   /* a pixel past the end reads as padding */
        ix0[r] = ox * SW - pw;
    }

    float acc[TM][TN];
    zero_acc(acc);
    float ra[A_PER_ITEM], rb[B_PER_ITEM];
    int buf = 0;
    for (int k0 = kbegin; k0 < kend + BK; k0 += BK) {  /* as strided_product: load slab t, multiply t-1 */
        const bool load = k0 < kend, multiply = k0 > kbegin;
        if (load) {
            load_a_strided(w, 0, K, 1, O, kend, row0, k0, lid, ra);
            load_b_im2col(x, xbase, iy0, ix0, kend, H, W, k0, lid, rb);
        }
        if (multiply)
            multiply_slab(As + (buf ^ 1) * BK * LDA, Bs + (buf ^ 1) * BK * LDB, tm, tn, acc);
        if (load)
            store_slab(As + buf * BK * LDA, Bs + buf * BK * LDB, lid, ra, rb);
        barrier(CLK_LOCAL_MEM_FENCE);
        buf ^= 1;
    }

    #pragma unroll
    for (int j = 0; j < TN; ++j) {
        const int p = col0 + TILE_COL(tn, j);
        if (p >= P)
            continue;
        const int img = p / HoWo, pix = p - img * HoWo;
        #pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int o = row0 + TILE_ROW(tm, i);
            if (o >= O)
                continue;
#if SPLITS > 1
            partial[(split * O + o) * P + p] = acc[i][j];
#else
            STORE(y, (img * O + o) * HoWo + pix, acc[i][j] + (has_bias ? LOAD(bias, o) : 0.0f));
#endif
        }
    }
}

/* y[n, o, pixel] = sum_s partial[s, o, (n, pixel)] + bias[o]. Grid (Nimg * Ho * Wo, O). */
__kernel void conv2d_splitk_reduce(const __global float *partial, const __global storage_t *bias,
                                   const int has_bias, __global storage_t *y, const int O, const int HoWo,
                                   const int P)
{
    const int p = get_global_id(0), o = get_global_id(1);
    if (p >= P)
        return;
    float sum = has_bias ? LOAD(bias, o) : 0.0f;
    for (int s = 0; s < SPLITS; ++s)
        sum += partial[(s * O + o) * P + p];
    const int img = p / HoWo;
    STORE(y, (img * O + o) * HoWo + p - img * HoWo, sum);
}
#endif /* KH */
