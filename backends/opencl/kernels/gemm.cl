/* Batched matrix product with general strides (the linear layers, and the Winograd GEMMs).
 *
 *   C[b, i, j] = alpha * sum_k A[b, i, k] * B[b, k, j]  (+ bias[j] if has_bias)
 *
 * Element (b, i, k) of A lives at b*sab + i*sam + k*sak (likewise B, C), so transposed
 * operands are just other strides. Tiling: each work-group computes a TS x TS tile of C; the
 * K dimension is walked in TS-wide slabs staged in local memory (one load per element per
 * work-group instead of TS). Accumulation is float whatever the storage.
 */
#ifndef TS
#define TS 16
#endif

__kernel __attribute__((reqd_work_group_size(TS, TS, 1)))
void gemm_batched(const __global storage_t *A, const __global storage_t *B, __global storage_t *C,
                  const __global storage_t *bias, const int has_bias,
                  const int M, const int N, const int K,
                  const int sab, const int sam, const int sak,
                  const int sbb, const int sbk, const int sbn,
                  const int scb, const int scm, const int scn,
                  const float alpha)
{
    const int col = get_global_id(0), row = get_global_id(1), b = get_global_id(2);
    const int lc = get_local_id(0), lr = get_local_id(1);
    __local float As[TS][TS + 1];
    __local float Bs[TS][TS + 1];
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TS) {
        const int ka = k0 + lc, kb = k0 + lr;
        As[lr][lc] = (row < M && ka < K) ? LOAD(A, b * sab + row * sam + ka * sak) : 0.0f;
        Bs[lr][lc] = (kb < K && col < N) ? LOAD(B, b * sbb + kb * sbk + col * sbn) : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TS; ++kk)
            acc = fma(As[lr][kk], Bs[kk][lc], acc);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (row < M && col < N) {
        float v = alpha * acc;
        if (has_bias)
            v += LOAD(bias, col);
        STORE(C, b * scb + row * scm + col * scn, v);
    }
}
