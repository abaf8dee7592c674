/* C kernels of NAM attention: the chunk form's fused block preparation (here), block forward and
 * block backward (functional/chunk.py), and the non-causal forward (functional/attention.py),
 * each described where it is defined below.
 *
 * Fused block preparation of the chunk-parallel causal NAM attention (functional/chunk.py).
 *
 * One pass over the rows of a block of chunks replaces the PyTorch fast path's separate passes
 * (two norm reductions, two scalings, the right-hand side [diag(w) V | diag(e) K] and the
 * finiteness check): each row of q, k, v is read once, its norm computed and its outputs
 * written while it is in L1. The numbers are those of _normalize_into and _Block._rhs up to
 * the summation order of the norms (float32 accumulation in both).
 *
 * Layout. q, k: [B, T, H, dk], v: [B, T, H, dv] with element strides (sB, sT, sH) and a unit
 * last stride; gates w, e, r: [B, T, H] with strides (sB, sT, sH), or NULL. Outputs, chunk-major
 * and contiguous, for chunks n0 .. n0 + L - 1 of C tokens: Q, K [L, B, H, C, dk];
 * X [L, B, H, C, dv (+ dk when e)]; gq, bq, gk, bk [L, B, H, C] (g = 1 / max(n, eps),
 * b = (n >= eps) as 0/1); W, E, R [L, B, H, C] (copies of the gates, when given). Rows past T
 * (the ragged last chunk) are zero, as the zero-padded gather gives them (g = 1 / eps, b = 0).
 *
 * Returns 0, or 1 when a norm of q or k, or the squared norm of a row of diag(w) V, is not
 * finite (non-finite input or overflow): the caller then takes the sanitising path, which is
 * exact for such rows; the outputs are then partly written and must be discarded.
 */
#include <math.h>

static inline float sumsq(const float *x, long d) {
    float s = 0.0f;
    for (long i = 0; i < d; i++) s += x[i] * x[i];
    return s;
}

int nam_chunk_prep_f32(long B, long H, long C, long L, long n0, long T, long dk, long dv,
                       float eps, const long *qs, const long *ks, const long *vs,
                       const long *gs, const float *q, const float *k, const float *v,
                       const float *w, const float *e, const float *r, float *Q, float *K,
                       float *X, float *gq, float *bq, float *gk, float *bk, float *W,
                       float *E, float *R) {
    const long dx = dv + (e ? dk : 0);
    int bad = 0;
    for (long l = 0; l < L; l++) {
        for (long b = 0; b < B; b++) {
            for (long h = 0; h < H; h++) {
                for (long c = 0; c < C; c++) {
                    const long row = ((l * B + b) * H + h) * C + c; /* [L, B, H, C] */
                    const long t = (n0 + l) * C + c;
                    float *Qr = Q + row * dk, *Kr = K + row * dk, *Xr = X + row * dx;
                    if (t >= T) { /* past the end: a zero row */
                        for (long i = 0; i < dk; i++) Qr[i] = Kr[i] = 0.0f;
                        for (long i = 0; i < dx; i++) Xr[i] = 0.0f;
                        gq[row] = gk[row] = 1.0f / eps;
                        bq[row] = bk[row] = 0.0f;
                        if (W) W[row] = 0.0f;
                        if (E) E[row] = 0.0f;
                        if (R) R[row] = 0.0f;
                        continue;
                    }
                    const float *qr = q + b * qs[0] + t * qs[1] + h * qs[2];
                    const float *kr = k + b * ks[0] + t * ks[1] + h * ks[2];
                    const float *vr = v + b * vs[0] + t * vs[1] + h * vs[2];
                    const long gi = b * gs[0] + t * gs[1] + h * gs[2];
                    const float nq = sqrtf(sumsq(qr, dk)), nk = sqrtf(sumsq(kr, dk));
                    const float fq = 1.0f / (nq > eps ? nq : eps);
                    const float fk = 1.0f / (nk > eps ? nk : eps);
                    gq[row] = fq;
                    gk[row] = fk;
                    bq[row] = nq >= eps ? 1.0f : 0.0f;
                    bk[row] = nk >= eps ? 1.0f : 0.0f;
                    for (long i = 0; i < dk; i++) Qr[i] = qr[i] * fq;
                    for (long i = 0; i < dk; i++) Kr[i] = kr[i] * fk;
                    const float wt = w ? w[gi] : 1.0f;
                    float vv = 0.0f;
                    for (long i = 0; i < dv; i++) {
                        const float x = vr[i] * wt;
                        Xr[i] = x;
                        vv += x * x;
                    }
                    if (e) {
                        const float et = e[gi];
                        for (long i = 0; i < dk; i++) Xr[dv + i] = Kr[i] * et;
                        E[row] = et;
                    }
                    if (W) W[row] = wt;
                    if (R) R[row] = r[gi];
                    bad |= !isfinite(nq) || !isfinite(nk) || !isfinite(vv);
                }
            }
        }
    }
    return bad;
}

/* ------------------------------------------------------------------------------------------
 * Fused block forward (nam_chunk_fwd_f32): every chunk of one block, head by head, with the
 * chunk's temporaries (K^T, K K^T, A^{-1} X, U, tril(Q K^T)) in a small workspace that stays
 * in L1/L2, instead of block-sized PyTorch temporaries passed between batched products. The
 * products are register-blocked 4 x 64 (or 4 x 16) tiles over GCC vector extensions (16
 * floats; any target), so every dimension must be a multiple of 16 (the caller checks). A^{-1} X
 * is a forward substitution (A = I + diag(e) strict_lower(K K^T) is unit lower triangular)
 * instead of the explicit inverse times X: half the multiply-adds. Same numbers as the PyTorch
 * block (functional/chunk.py) up to the summation order.
 */
#include <stdlib.h>
#include <string.h>

typedef float vf __attribute__((vector_size(64), aligned(4))); /* 16 floats, unaligned ok */
#define VL 16

/* Rows r0..r0+3 of C (+)= alpha * A B over k < K, columns n .. n + 16 * NV; A's element
 * (r, k) at A[r * sr + k * sk] (so a transposed A costs nothing: it is only broadcast). */
#define MM_TILE(NAME, NV)                                                                     \
    static inline void NAME(long K, const float *A, long sr, long sk, const float *B,         \
                            long ldb, float *Cm, long ldc, float alpha, int beta) {           \
        vf acc[4][NV];                                                                        \
        for (int r = 0; r < 4; r++)                                                           \
            for (int v = 0; v < NV; v++) acc[r][v] = (vf){0};                                 \
        for (long k = 0; k < K; k++) {                                                        \
            vf b[NV];                                                                         \
            for (int v = 0; v < NV; v++) b[v] = *(const vf *)(B + k * ldb + v * VL);          \
            for (int r = 0; r < 4; r++) {                                                     \
                const float a = A[r * sr + k * sk];                                           \
                for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];                           \
            }                                                                                 \
        }                                                                                     \
        for (int r = 0; r < 4; r++)                                                           \
            for (int v = 0; v < NV; v++) {                                                    \
                vf *c = (vf *)(Cm + r * ldc + v * VL);                                        \
                *c = beta ? *c + alpha * acc[r][v] : alpha * acc[r][v];                       \
            }                                                                                 \
    }
MM_TILE(mm_tile4, 4)
MM_TILE(mm_tile3, 3)
MM_TILE(mm_tile2, 2)
MM_TILE(mm_tile1, 1)

/* C[M, N] = (beta ? C : 0) + alpha * op(A)[M, K] B[K, N], row-major with leading dimensions;
 * op(A) = A, or A^T when ta (A then [K, M] with leading dimension lda). M % 4 == 0,
 * N % 16 == 0. tri = LOW_A: op(A) is zero above its diagonal, so rows r0..r0+3 stop at
 * k < r0 + 4; UP_A: op(A) is zero below its diagonal, so they start at k = r0; LOW_C: only the
 * lower triangle of C is wanted: rows r0..r0+3 compute the columns below round_up(r0 + 4, 16)
 * (the rest of C is left as it is). */
enum { FULL = 0, LOW_A = 1, UP_A = 2, LOW_C = 3 };
static void mmt(long M, long N, long K, const float *A, long lda, int ta, const float *B,
                long ldb, float *Cm, long ldc, float alpha, int beta, int tri) {
    const long sr = ta ? 1 : lda, sk = ta ? lda : 1;
    for (long i = 0; i < M; i += 4) {
        long k0 = 0, ke = K, ne = N;
        if (tri == LOW_A && i + 4 < K) ke = i + 4;
        if (tri == UP_A) k0 = i < K ? i : K;
        if (tri == LOW_C) {
            ne = (i + 4 + VL - 1) / VL * VL;
            if (ne > N) ne = N;
        }
        const float *a = A + i * sr + k0 * sk, *b = B + k0 * ldb;
        float *c = Cm + i * ldc;
        long n = 0;
        for (; n + 4 * VL <= ne; n += 4 * VL)
            mm_tile4(ke - k0, a, sr, sk, b + n, ldb, c + n, ldc, alpha, beta);
        /* the rest in one tile: A's rows are broadcast once for all of its columns */
        if (ne - n == 3 * VL) mm_tile3(ke - k0, a, sr, sk, b + n, ldb, c + n, ldc, alpha, beta);
        if (ne - n == 2 * VL) mm_tile2(ke - k0, a, sr, sk, b + n, ldb, c + n, ldc, alpha, beta);
        if (ne - n == VL) mm_tile1(ke - k0, a, sr, sk, b + n, ldb, c + n, ldc, alpha, beta);
    }
}

static inline void mm(long M, long N, long K, const float *A, long lda, const float *B, long ldb,
                      float *Cm, long ldc, float alpha, int beta, int tri) {
    mmt(M, N, K, A, lda, 0, B, ldb, Cm, ldc, alpha, beta, tri);
}

/* Two-input shuffles of 16-float vectors (one vpermt2ps on AVX-512). */
#if defined(__clang__)
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
typedef int vi __attribute__((vector_size(64)));
#define SHUF(a, b, ...) __builtin_shuffle(a, b, (vi){__VA_ARGS__})
#endif

/* y[16 x 16] (leading dimension ldy) = x[16 x 16]^T (leading dimension ldx), in registers:
 * stage h swaps the off-diagonal h x h blocks of every 2h x 2h block (the stages commute). */
static inline void transpose16(const float *x, long ldx, float *y, long ldy) {
    vf r[16];
    for (int i = 0; i < 16; i++) r[i] = *(const vf *)(x + i * ldx);
    for (int i = 0; i < 8; i++) {
        const vf a = r[i], b = r[i + 8];
        r[i] = SHUF(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        r[i + 8] = SHUF(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    }
    for (int i = 0; i < 16; i++) {
        if (i & 4) continue;
        const vf a = r[i], b = r[i + 4];
        r[i] = SHUF(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        r[i + 4] = SHUF(a, b, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    }
    for (int i = 0; i < 16; i++) {
        if (i & 2) continue;
        const vf a = r[i], b = r[i + 2];
        r[i] = SHUF(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        r[i + 2] = SHUF(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
    for (int i = 0; i < 16; i += 2) {
        const vf a = r[i], b = r[i + 1];
        r[i] = SHUF(a, b, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
        r[i + 1] = SHUF(a, b, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    }
    for (int i = 0; i < 16; i++) *(vf *)(y + i * ldy) = r[i];
}

/* y [Cn, R] = x [R, Cn]^T (x with leading dimension ld); R, Cn multiples of 16. */
static void transpose_ld(long R, long Cn, const float *x, long ld, float *y) {
    for (long i = 0; i < R; i += VL)
        for (long j = 0; j < Cn; j += VL) transpose16(x + i * ld + j, ld, y + j * R + i, R);
}

static void transpose(long R, long Cn, const float *x, float *y) { transpose_ld(R, Cn, x, Cn, y); }

/* Rows of a substitution are done in blocks of SB: the part that couples a block to the
 * blocks already solved is one product (mm, register-blocked), only the SB x SB triangle
 * inside the block runs row by row. */
#define SB 16

/* One row of a substitution, columns n .. n + 16 NV: out = x - f (z + sum_{j0 <= j < j1}
 * c_j y_j) with c_j = c[j * cs] (z NULL: 0). The NV columns are independent chains, and even
 * and odd j go to separate accumulators: the row is bound by the FMA rate, not its latency. */
#define SUBST_ROW(NAME, NV)                                                                   \
    static inline void NAME(long j0, long j1, const float *c, long cs, const float *y,        \
                            long ldy, const float *z, const float *x, float f, float *out) {  \
        vf a0[NV], a1[NV];                                                                    \
        for (int v = 0; v < NV; v++) {                                                        \
            a0[v] = z ? *(const vf *)(z + v * VL) : (vf){0};                                  \
            a1[v] = (vf){0};                                                                  \
        }                                                                                     \
        long j = j0;                                                                          \
        for (; j + 1 < j1; j += 2) {                                                          \
            const float c0 = c[j * cs], c1 = c[(j + 1) * cs];                                 \
            for (int v = 0; v < NV; v++) {                                                    \
                a0[v] += c0 * *(const vf *)(y + j * ldy + v * VL);                            \
                a1[v] += c1 * *(const vf *)(y + (j + 1) * ldy + v * VL);                      \
            }                                                                                 \
        }                                                                                     \
        if (j < j1)                                                                           \
            for (int v = 0; v < NV; v++) a0[v] += c[j * cs] * *(const vf *)(y + j * ldy + v * VL); \
        for (int v = 0; v < NV; v++)                                                          \
            *(vf *)(out + v * VL) = *(const vf *)(x + v * VL) - f * (a0[v] + a1[v]);          \
    }
SUBST_ROW(subst_row8, 8)
SUBST_ROW(subst_row4, 4)
SUBST_ROW(subst_row1, 1)

/* subst_row over all dx columns (a multiple of 16) of row y + i * ldy. */
static inline void subst_row(long dx, long j0, long j1, const float *c, long cs, const float *y,
                             long ldy, const float *z, const float *x, float f, float *out) {
    long n = 0;
    for (; n + 8 * VL <= dx; n += 8 * VL)
        subst_row8(j0, j1, c, cs, y + n, ldy, z ? z + n : NULL, x + n, f, out + n);
    for (; n + 4 * VL <= dx; n += 4 * VL)
        subst_row4(j0, j1, c, cs, y + n, ldy, z ? z + n : NULL, x + n, f, out + n);
    for (; n < dx; n += VL)
        subst_row1(j0, j1, c, cs, y + n, ldy, z ? z + n : NULL, x + n, f, out + n);
}

/* y = A^{-1} x for A = I + diag(e) strict_lower(KK): y_i = x_i - e_i sum_{j<i} KK_ij y_j.
 * Z: workspace [SB, dx]. */
static void forward_subst(long C, long dx, const float *KK, const float *e, const float *x,
                          float *y, float *Z) {
    for (long I = 0; I < C; I += SB) {
        if (I) mm(SB, dx, I, KK + I * C, C, y, dx, Z, dx, 1.0f, 0, FULL);
        for (long i = I; i < I + SB; i++)
            subst_row(dx, I, i, KK + i * C, 1, y, dx, I ? Z + (i - I) * dx : NULL, x + i * dx,
                      e[i], y + i * dx);
    }
}

/* y = A^{-T} x for the same A: y_i = x_i - sum_{j>i} e_j KK_ji y_j (back substitution).
 * E2: workspace [C, C] (e_j KK_ji), Z: workspace [SB, dx]. */
static void backward_subst(long C, long dx, const float *KK, const float *e, const float *x,
                           float *y, float *E2, float *Z) {
    for (long j = 0; j < C; j++)
        for (long i = 0; i < j; i++) E2[j * C + i] = e[j] * KK[j * C + i];
    for (long I = C - SB; I >= 0; I -= SB) {
        const long J = I + SB; /* rows J.. are solved: Z = sum_{j >= J} E2[j, I + r] y_j */
        if (J < C) mmt(SB, dx, C - J, E2 + J * C + I, C, 1, y + J * dx, dx, Z, dx, 1.0f, 0, FULL);
        for (long i = J - 1; i >= I; i--)
            subst_row(dx, i + 1, J, E2 + i, C, y, dx, J < C ? Z + (i - I) * dx : NULL,
                      x + i * dx, 1.0f, y + i * dx);
    }
}

static float dot(const float *a, const float *b, long d) {
    float s = 0.0f;
    for (long i = 0; i < d; i++) s += a[i] * b[i];
    return s;
}

/* Zero P's entries above the diagonal inside its diagonal 4 x 4 blocks: the only ones above
 * the diagonal that the triangular products read (LOW_A reads rows r0..r0+3 up to column
 * r0 + 3, UP_A of P^T reads rows from r0 on); the rest above the diagonal is never read. */
static void zero_diag_blocks(long C, float *P) {
    for (long i = 0; i < C; i++)
        for (long t = i + 1; t < (i | 3) + 1; t++) P[i * C + t] = 0.0f;
}

/* One chunk of one head. In: q, k [C, dk]; xv = diag(w) V [C, dv] (rows ldv apart), and with
 * erase ke = diag(e) K [C, dk] (rows ldk apart) and e [C] (else both NULL); s = S^T [dk, dv].
 * Out: u = U = A^{-1} (xv - ke S^T) [C, dv] (u may be xv when ldv == dv: solved in place;
 * without erase U = xv, copied unless u == xv), s1 = S^T + K^T U (s1 may be s), o = Q S^T + P U
 * [C, dv] (rows ldo apart; skipped when o is NULL; s1 NULL: not wanted), KT = K^T [dk, C], P = tril(Q K^T) [C, C]
 * (see zero_diag_blocks), KK: the lower part of K K^T [C, C] (with erase). Z: [SB, dv].
 * Solving for U directly (rather than A^{-1} [diag(w) V | diag(e) K], independent of S) takes
 * half the substitution; the backward never needs A^{-1} diag(e) K either. */
static void chunk_fwd(long C, long dk, long dv, const float *q, const float *k,
                      const float *xv, long ldv, const float *ke, long ldk, const float *e,
                      const float *s, float *s1, float *o, long ldo, float *u, float *KT,
                      float *KK, float *P, float *Z) {
    transpose(C, dk, k, KT);
    if (u != xv)
        for (long i = 0; i < C; i++) memcpy(u + i * dv, xv + i * ldv, sizeof(float) * dv);
    if (e) {
        mm(C, C, dk, k, dk, KT, C, KK, C, 1.0f, 0, LOW_C);       /* K K^T, lower part */
        mm(C, dv, dk, ke, ldk, s, dv, u, dv, -1.0f, 1, FULL);    /* xv - diag(e) K S^T */
        forward_subst(C, dv, KK, e, u, u, Z);                    /* U = A^{-1} (...) */
    }
    mm(C, C, dk, q, dk, KT, C, P, C, 1.0f, 0, LOW_C); /* tril(Q K^T) */
    zero_diag_blocks(C, P);
    if (o) {
        mm(C, dv, dk, q, dk, s, dv, o, ldo, 1.0f, 0, FULL); /* Q S^T */
        mm(C, dv, C, P, C, u, dv, o, ldo, 1.0f, 1, LOW_A);  /* + P U */
    }
    if (!s1) return; /* (the state after the chunk is not wanted) */
    if (s1 != s) memcpy(s1, s, sizeof(float) * dk * dv);
    mm(dk, dv, C, KT, C, u, dv, s1, dv, 1.0f, 1, FULL); /* S^T += K^T U */
}

static int dims_ok(long C, long dk, long dv) { return !(C % VL || dk % VL || dv % VL); }

/* Where the block forward writes its outputs straight into the caller's [B, T, H, dv] output
 * (element strides os; times the read gate R [L, G, C] when given), instead of a chunk-major
 * block buffer. */
typedef struct {
    long H, T, n0; /* heads, sequence length, the block's first chunk */
    const float *R;
    float *O;
    long os[3];
} Out;

/* One block of L chunks of C tokens, G = B * H heads, chunk-major contiguous inputs as the
 * preparation writes them: Q, K [L, G, C, dk] (unit-normalised), X [L, G, C, dx] with
 * X = [diag(w) V | diag(e) K] (dx = dv + dk) when E [L, G, C] is given, else diag(w) V
 * (dx = dv). ST [L + 1, G, dk, dv]: the transposed chunk-start states, ST[0] given; the
 * others are written. Out: O [L, G, C, dv] = Q S^T + tril(Q K^T) U (before the read gate),
 * or, with out, the caller's output (see Out; O unused).
 * Returns 0, 2 when a dimension is not a multiple of 16 (nothing written) or 3 when out of
 * memory. */
int nam_chunk_fwd_f32(long L, long G, long C, long dk, long dv, const float *Q, const float *K,
                      const float *X, const float *E, float *ST, float *O, const Out *out) {
    if (!dims_ok(C, dk, dv)) return 2;
    const long dx = dv + (E ? dk : 0), sd = dk * dv;
    float *ws = malloc(sizeof(float) * (dk * C + 2 * C * C + 2 * C * dv + SB * dv));
    if (!ws) return 3;
    float *KT = ws, *KK = KT + dk * C, *P = KK + C * C, *U = P + C * C;
    float *Z = U + C * dv, *Ob = Z + SB * dv;
    for (long g = 0; g < G; g++) {
        for (long j = 0; j < L; j++) {
            const long row = (j * G + g) * C;
            float *o = out ? Ob : O + row * dv;
            const float *x = X + row * dx;
            chunk_fwd(C, dk, dv, Q + row * dk, K + row * dk, x, dx, E ? x + dv : NULL, dx,
                      E ? E + row : NULL, ST + (j * G + g) * sd, ST + ((j + 1) * G + g) * sd, o,
                      dv, E ? U : (float *)x, KT, KK, P, Z);
            if (!out) continue;
            const long b = g / out->H, h = g % out->H;
            for (long i = 0; i < C; i++) {
                const long tt = (out->n0 + j) * C + i;
                if (tt >= out->T) break;
                float *dst = out->O + b * out->os[0] + tt * out->os[1] + h * out->os[2];
                const float r = out->R ? out->R[row + i] : 1.0f;
                for (long a = 0; a < dv; a++) dst[a] = r * o[i * dv + a];
            }
        }
    }
    free(ws);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Fused preparation and forward of one block (nam_chunk_fwd_raw_f32), straight from the
 * caller's tensors: per head and chunk, the chunk's rows of q, k, v and the gates are
 * normalised into a small workspace (as nam_chunk_prep_f32 does, with the read gate folded
 * into the query: diag(r) (Q S^T + tril(Q K^T) U) = Q_r S^T + tril(Q_r K^T) U for
 * Q_r = diag(r) Q), used at once while they are in cache, and the gated outputs go straight
 * into the caller's output. No block-sized buffers are written or read again.
 *
 * The prepared rows of one chunk, from the caller's [B, T, H, d] tensors (q, k, v at the chunk's
 * first token of head h of batch b, rows st* apart; gates likewise, or NULL). Rows past T are
 * zero. Qr = r q / max(|q|, eps), Kn = k / max(|k|, eps) [C, dk], Xv = w v [C, dv], and with
 * e: Ke = e Kn [C, dk], ec = e. Returns 1 when a norm of q or k or the squared norm of a row of
 * w v is not finite. */
static int prep_chunk(long C, long n, long dk, long dv, float eps, const float *q, long sq,
                      const float *k, long sk, const float *v, long sv, const float *w,
                      const float *e, const float *r, long sg, float *Qr, float *Kn, float *Xv,
                      float *Ke, float *ec, float *rows) {
    int bad = 0;
    /* rows (the backward's): NULL, or [6, C]: gq, bq, gk, bk (as nam_chunk_prep_f32 writes
     * them), w, r; Qr is then the unit-normalised q, without the read gate. */
    float *gq = rows, *bq = rows + C, *gk = rows + 2 * C, *bk = rows + 3 * C;
    float *wc = rows + 4 * C, *rc = rows + 5 * C;
    for (long i = 0; i < C; i++) {
        float *Qi = Qr + i * dk, *Ki = Kn + i * dk, *Xi = Xv + i * dv;
        if (i >= n) { /* past the end: a zero row */
            memset(Qi, 0, sizeof(float) * dk);
            memset(Ki, 0, sizeof(float) * dk);
            memset(Xi, 0, sizeof(float) * dv);
            if (e) {
                memset(Ke + i * dk, 0, sizeof(float) * dk);
                ec[i] = 0.0f;
            }
            if (rows) {
                gq[i] = gk[i] = 1.0f / eps;
                bq[i] = bk[i] = wc[i] = rc[i] = 0.0f;
            }
            continue;
        }
        const float *qi = q + i * sq, *ki = k + i * sk, *vi = v + i * sv;
        const float nq = sqrtf(sumsq(qi, dk)), nk = sqrtf(sumsq(ki, dk));
        const float fq = (r && !rows ? r[i * sg] : 1.0f) / (nq > eps ? nq : eps);
        const float fk = 1.0f / (nk > eps ? nk : eps);
        if (rows) {
            gq[i] = fq;
            gk[i] = fk;
            bq[i] = nq >= eps ? 1.0f : 0.0f;
            bk[i] = nk >= eps ? 1.0f : 0.0f;
            wc[i] = w ? w[i * sg] : 1.0f;
            rc[i] = r ? r[i * sg] : 1.0f;
        }
        for (long a = 0; a < dk; a++) Qi[a] = qi[a] * fq;
        for (long a = 0; a < dk; a++) Ki[a] = ki[a] * fk;
        const float wt = w ? w[i * sg] : 1.0f;
        float vv = 0.0f;
        for (long a = 0; a < dv; a++) {
            const float x = vi[a] * wt;
            Xi[a] = x;
            vv += x * x;
        }
        if (e) {
            const float et = e[i * sg];
            for (long a = 0; a < dk; a++) Ke[i * dk + a] = Ki[a] * et;
            ec[i] = et;
        }
        bad |= !isfinite(nq) || !isfinite(nk) || !isfinite(vv);
    }
    return bad;
}

/* q, k: [B, T, H, dk], v: [B, T, H, dv], O: [B, T, H, dv] (element strides qs, ks, vs, os;
 * unit last strides); gates w, e, r [B, T, H] (strides gs) or NULL. Chunks n0 .. n0 + L - 1 of
 * C tokens (the last may run past T). S0, S1 [B * H, dk, dv]: the transposed state before the
 * block (read) and after it (written). Returns 0; 1 when a row is not finite (S1 and O are
 * then partly written: the caller redoes the block on its exact path), 2 when a dimension is
 * not a multiple of 16, 3 when out of memory. */
int nam_chunk_fwd_raw_f32(long B, long H, long C, long L, long n0, long T, long dk, long dv,
                          float eps, const long *qs, const long *ks, const long *vs,
                          const long *gs, const long *os, const float *q, const float *k,
                          const float *v, const float *w, const float *e, const float *r,
                          const float *S0, float *S1, float *O) {
    if (!dims_ok(C, dk, dv)) return 2;
    const long sd = dk * dv;
    float *ws = malloc(sizeof(float) * (4 * C * dk + C * C + 2 * C * dv + SB * dv + C));
    if (!ws) return 3;
    float *Qr = ws, *Kn = Qr + C * dk, *Ke = Kn + C * dk, *KT = Ke + C * dk, *KP = KT + dk * C;
    float *Xv = KP + C * C, *Ob = Xv + C * dv, *Z = Ob + C * dv, *ec = Z + SB * dv;
    for (long b = 0; b < B; b++) {
        for (long h = 0; h < H; h++) {
            const long g = b * H + h;
            float *s = S1 + g * sd; /* the running state S^T [dk, dv] */
            memcpy(s, S0 + g * sd, sizeof(float) * sd);
            for (long j = 0; j < L; j++) {
                const long t0 = (n0 + j) * C, n = T - t0 < C ? T - t0 : C;
                const long go = b * gs[0] + t0 * gs[1] + h * gs[2];
                if (prep_chunk(C, n, dk, dv, eps, q + b * qs[0] + t0 * qs[1] + h * qs[2], qs[1],
                               k + b * ks[0] + t0 * ks[1] + h * ks[2], ks[1],
                               v + b * vs[0] + t0 * vs[1] + h * vs[2], vs[1],
                               w ? w + go : NULL, e ? e + go : NULL, r ? r + go : NULL, gs[1],
                               Qr, Kn, Xv, Ke, ec, NULL)) {
                    free(ws);
                    return 1;
                }
                /* the ragged last chunk goes through Ob: only its valid rows are copied out */
                float *o = n < C ? Ob : O + b * os[0] + t0 * os[1] + h * os[2];
                /* (K K^T is dead before tril(Q K^T) is formed: they share KP) */
                chunk_fwd(C, dk, dv, Qr, Kn, Xv, dv, e ? Ke : NULL, dk, e ? ec : NULL, s, s,
                          o, n < C ? dv : os[1], Xv, KT, KP, KP, Z);
                for (long i = 0; i < n && n < C; i++)
                    memcpy(O + b * os[0] + (t0 + i) * os[1] + h * os[2], Ob + i * dv,
                           sizeof(float) * dv);
            }
        }
    }
    free(ws);
    return 0;
}

/* Where a block backward writes the raw inputs' gradients [B, T, H, *] (the normalisation
 * backward included): element strides (sB, sT, sH); dw, de, dr may be NULL (no such gate). */
typedef struct {
    float *dq, *dk, *dv;
    long qs[3], ks[3], dvs[3];
    float *dw, *de, *dr;
    long gs[3];
} Grads;

/* Where the block backward writes its gradients straight into the caller's tensors (the
 * normalisation backward included), instead of chunk-major block buffers: for blocks prepared
 * by nam_chunk_prep_f32 with no non-finite values. Element strides (sB, sT, sH) of [B, T, H, *]
 * tensors; dw, de, dr may be NULL (no such gate). */
typedef struct {
    long H, T, n0;                 /* heads, sequence length, the block's first chunk */
    const float *gq, *bq, *gk, *bk; /* [L, G, C] normalisation terms (from the preparation) */
    const float *w;                /* [L, G, C] write gate (block copy) or NULL */
    const float *v;                /* raw values [B, T, H, dv] */
    long vs[3];
    Grads out;                     /* the gradients */
    const float *O;                /* the forward's output [B, T, H, dv] (strides os) or NULL */
    long os[3];
    float rmin;                    /* chunks whose read gates all exceed it take dr from O / r */
} Tail;

/* Whether chunk `row` takes dr from the saved output: every read gate above tl->rmin (then
 * O / r is the output before the gate to rounding), so its recompute skips the output. */
static int from_saved(const float *R, const Tail *tl, long row, long C) {
    if (!R || !tl || !tl->O) return 0;
    for (long i = 0; i < C; i++)
        if (!(R[row + i] > tl->rmin)) return 0;
    return 1;
}

/* Back through mu(.) for one row: out = (du - big u (u . du)) g. */
static inline void norm_back(long d, const float *du, const float *u, float g, float big,
                             float *out) {
    const float c = big * dot(u, du, d);
    for (long a = 0; a < d; a++) out[a] = (du[a] - c * u[a]) * g;
}

/* Scratch of chunk_bwd: S, UT, DtT, dU, dP, dBk, eKK [m2 = max(C, dk, dv)^2 each], Z [SB, dv]. */
typedef struct {
    float *S, *UT, *DtT, *dU, *dP, *dBk, *eKK, *Z;
} BwdTmp;

/* Gradients of one chunk of one head, the chunks walked in reverse. In: q, k [C, dk]
 * (unit-normalised), ke = diag(e) K (rows ldke apart) and e [C] with erase (else NULL),
 * st = S^T at the chunk's start, u = U, kk and p as chunk_fwd left them, dOh [C, dv] the
 * gradient of the output before the read gate. Dg [dk, dv]: in, the gradient w.r.t. S^T after
 * the chunk; out, before it. Out: dq, dk_ [C, dk] (w.r.t. the normalised q, k), dvw [C, dv]
 * (w.r.t. diag(w) V), deb [C] (w.r.t. e; with erase). */
static void chunk_bwd(long C, long dk, long dv, const float *q, const float *k, const float *ke,
                      long ldke, const float *e, const float *st, const float *u,
                      const float *kk, const float *p, const float *dOh, float *Dg, float *dq,
                      float *dk_, float *dvw, float *deb, const BwdTmp *t) {
    float *S = t->S, *UT = t->UT, *DtT = t->DtT, *dU = t->dU, *dP = t->dP;
    transpose(dk, dv, st, S);   /* S [dv, dk] */
    transpose(C, dv, u, UT);    /* U^T [dv, C] */
    transpose(dk, dv, Dg, DtT); /* D^T [dv, dk] = dS after the chunk */
    /* dU = K D + P^T dOh */
    mm(C, dv, dk, k, dk, Dg, dv, dU, dv, 1.0f, 0, FULL);
    mmt(C, dv, C, p, C, 1, dOh, dv, dU, dv, 1.0f, 1, UP_A);
    /* dP = tril(dOh U^T) */
    mm(C, C, dv, dOh, dv, UT, C, dP, C, 1.0f, 0, LOW_C);
    zero_diag_blocks(C, dP);
    /* dq = dOh S + dP K;  dk = U D^T + dP^T Q */
    mm(C, dk, dv, dOh, dv, S, dk, dq, dk, 1.0f, 0, FULL);
    mm(C, dk, C, dP, C, k, dk, dq, dk, 1.0f, 1, LOW_A);
    mm(C, dk, dv, u, dv, DtT, dk, dk_, dk, 1.0f, 0, FULL);
    mmt(C, dk, C, dP, C, 1, q, dk, dk_, dk, 1.0f, 1, UP_A);
    /* D before the chunk: D + Q^T dOh (- (diag(e) K)^T A^{-T} dU with erase) */
    mmt(dk, dv, C, q, dk, 1, dOh, dv, Dg, dv, 1.0f, 1, FULL);
    if (!e) {
        memcpy(dvw, dU, sizeof(float) * C * dv);
        return;
    }
    float *dA = dP, *dBk = t->dBk, *eKK = t->eKK; /* dP is dead from here */
    backward_subst(C, dv, kk, e, dU, dvw, eKK, t->Z); /* dvw = A^{-T} dU */
    mmt(dk, dv, C, ke, ldke, 1, dvw, dv, Dg, dv, -1.0f, 1, FULL);
    /* dBk = -dvw S  [C, dk];  dA = -dvw U^T (strictly lower part used) */
    mm(C, dk, dv, dvw, dv, S, dk, dBk, dk, -1.0f, 0, FULL);
    mm(C, C, dv, dvw, dv, UT, C, dA, C, -1.0f, 0, LOW_C);
    for (long i = 0; i < C; i++) {
        float s = dot(dBk + i * dk, k + i * dk, dk);
        const float *da = dA + i * C, *kr = kk + i * C;
        float *dl = eKK + i * C;
        for (long jj = 0; jj < i; jj++) s += da[jj] * kr[jj];
        deb[i] = s;
        const float ei = e[i];
        for (long a = 0; a < dk; a++) dk_[i * dk + a] += ei * dBk[i * dk + a];
        /* dL = diag(e) strict_lower(dA), zero elsewhere */
        for (long jj = 0; jj < i; jj++) dl[jj] = ei * da[jj];
        for (long jj = i; jj < C; jj++) dl[jj] = 0.0f;
    }
    /* dk += (dL + dL^T) K */
    mm(C, dk, C, eKK, C, k, dk, dk_, dk, 1.0f, 1, LOW_A);
    mmt(C, dk, C, eKK, C, 1, k, dk, dk_, dk, 1.0f, 1, UP_A);
}

/* One chunk's rows of head h of batch b from token t0 on (n of them) into the caller's
 * gradients: dq, dk_ [C, dk] w.r.t. the normalised q, k (q, k), with their normalisation terms
 * gq, bq, gk, bk [C]; dvw [C, dv] w.r.t. diag(w) V, w [C] or NULL, v the raw values at the
 * chunk's first row (rows sv apart); deb, drb [C] or NULL. */
static void tail_rows(long n, long dk, long dv, long b, long h, long t0, const Grads *o,
                      const float *q, const float *k, const float *dq, const float *dk_,
                      const float *gq, const float *bq, const float *gk, const float *bk,
                      const float *dvw, const float *w, const float *v, long sv,
                      const float *deb, const float *drb) {
    for (long i = 0; i < n; i++) {
        const long tt = t0 + i;
        const long off = b * o->gs[0] + tt * o->gs[1] + h * o->gs[2];
        norm_back(dk, dq + i * dk, q + i * dk, gq[i], bq[i],
                  o->dq + b * o->qs[0] + tt * o->qs[1] + h * o->qs[2]);
        norm_back(dk, dk_ + i * dk, k + i * dk, gk[i], bk[i],
                  o->dk + b * o->ks[0] + tt * o->ks[1] + h * o->ks[2]);
        float *dvo = o->dv + b * o->dvs[0] + tt * o->dvs[1] + h * o->dvs[2];
        const float wt = w ? w[i] : 1.0f;
        for (long a = 0; a < dv; a++) dvo[a] = wt * dvw[i * dv + a];
        if (o->dw) o->dw[off] = dot(dvw + i * dv, v + i * sv, dv);
        if (o->de) o->de[off] = deb[i];
        if (o->dr) o->dr[off] = drb[i];
    }
}

/* Backward of one block (the same inputs as nam_chunk_fwd_f32, ST0 = the block's first state
 * S^T [G, dk, dv]). Per head, the block's chunks are recomputed forward (states, U, K K^T,
 * tril(Q K^T) and the output before the read gate kept per chunk in a workspace), then
 * walked in reverse. dO [L, G, C, dv]: the output's gradient; R [L, G, C] the read gate or
 * NULL. D [G, dk, dv]: in, the gradient w.r.t. S^T after the block; out, before it.
 * Without tail, written chunk-major (before the normalisation backward): dQ, dK [L, G, C, dk]
 * (w.r.t. the unit-normalised q, k), dV [L, G, C, dv] (w.r.t. diag(w) V), dE [L, G, C] (with
 * E) and dR [L, G, C] (with R: the output before the gate dotted with dO). With tail, the
 * gradients of the raw inputs go into the tail's tensors instead (dQ .. dR unused). */
int nam_chunk_bwd_f32(long L, long G, long C, long dk, long dv, const float *Q, const float *K,
                      const float *X, const float *E, const float *R, const float *ST0,
                      const float *dO, float *D, float *dQ, float *dK, float *dV, float *dE,
                      float *dR, const Tail *tl) {
    if (!dims_ok(C, dk, dv)) return 2;
    const long dx = dv + (E ? dk : 0), sd = dk * dv, m = dk > dv ? dk : dv;
    const long m2 = (C > m ? C : m) * (C > m ? C : m);
    /* per chunk: S^T, U, O, KK, P; shared: KT, and the backward's temporaries */
    const long per = sd + C * dv + C * dv + 2 * C * C;
    float *ws = malloc(sizeof(float) * (L * per + 13 * m2 + 2 * C + SB * dv));
    if (!ws) return 3;
    float *t = ws + L * per;
    float *KT = t, *dOh = t + 4 * m2, *tq = t + 8 * m2, *tk = t + 9 * m2, *tv = t + 10 * m2;
    float *te = t + 12 * m2, *tr = te + C, *Z = tr + C;
    const BwdTmp tmp = {t + m2, t + 2 * m2, t + 3 * m2, t + 5 * m2, t + 6 * m2, t + 7 * m2,
                        t + 11 * m2, Z};
    for (long g = 0; g < G; g++) {
        /* forward over the block, keeping what the backward needs */
        for (long j = 0; j < L; j++) {
            const long row = (j * G + g) * C;
            float *w = ws + j * per;
            float *s1 = (j + 1 < L) ? ws + (j + 1) * per : NULL; /* the last state is not needed */
            if (j == 0) memcpy(w, ST0 + g * sd, sizeof(float) * sd);
            float *u = w + sd, *o = u + C * dv, *kk = o + C * dv, *p = kk + C * C;
            const float *x = X + row * dx;
            chunk_fwd(C, dk, dv, Q + row * dk, K + row * dk, x, dx, E ? x + dv : NULL, dx,
                      E ? E + row : NULL, w, s1, from_saved(R, tl, row, C) || !R ? NULL : o, dv,
                      u, KT, kk, p, Z);
        }
        float *Dg = D + g * sd;
        for (long j = L - 1; j >= 0; j--) {
            const long row = (j * G + g) * C;
            const float *w = ws + j * per;
            const float *u = w + sd, *o = u + C * dv, *kk = o + C * dv;
            const float *p = kk + C * C;
            const float *q = Q + row * dk, *k = K + row * dk, *e = E ? E + row : NULL;
            const float *dout = dO + row * dv;
            float *dq = tl ? tq : dQ + row * dk, *dk_ = tl ? tk : dK + row * dk;
            float *dvw = tl ? tv : dV + row * dv;
            float *deb = tl ? te : (E ? dE + row : NULL), *drb = tl ? tr : (R ? dR + row : NULL);
            if (R && from_saved(R, tl, row, C)) { /* dr = O . dO / r, O saved by the forward */
                const long b = g / tl->H, h = g % tl->H;
                for (long i = 0; i < C; i++) {
                    const long tt = (tl->n0 + j) * C + i;
                    const float ri = R[row + i];
                    drb[i] = tt < tl->T ? dot(tl->O + b * tl->os[0] + tt * tl->os[1] +
                                                  h * tl->os[2], dout + i * dv, dv) / ri
                                        : 0.0f;
                    for (long a = 0; a < dv; a++) dOh[i * dv + a] = ri * dout[i * dv + a];
                }
            } else if (R) {
                for (long i = 0; i < C; i++) {
                    drb[i] = dot(o + i * dv, dout + i * dv, dv);
                    const float ri = R[row + i];
                    for (long a = 0; a < dv; a++) dOh[i * dv + a] = ri * dout[i * dv + a];
                }
            } else {
                memcpy(dOh, dout, sizeof(float) * C * dv);
            }
            chunk_bwd(C, dk, dv, q, k, E ? X + row * dx + dv : NULL, dx, e, w, u, kk, p, dOh, Dg,
                      dq, dk_, dvw, deb, &tmp);
            if (!tl) continue;
            /* the tail: back through mu(.) and the gates, into the caller's tensors */
            const long H = tl->H, b = g / H, h = g % H, t0 = (tl->n0 + j) * C;
            const long n = tl->T - t0 < C ? tl->T - t0 : C;
            tail_rows(n, dk, dv, b, h, t0, &tl->out, q, k, dq, dk_, tl->gq + row, tl->bq + row,
                      tl->gk + row, tl->bk + row, dvw, tl->w ? tl->w + row : NULL,
                      tl->v + b * tl->vs[0] + t0 * tl->vs[1] + h * tl->vs[2], tl->vs[1], deb,
                      drb);
        }
    }
    free(ws);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Fused preparation and backward of one block (nam_chunk_bwd_raw_f32), straight from the
 * caller's tensors, for blocks with no padding: per head, the block's chunks are prepared from
 * the raw q, k, v and gates (as the fused forward does, keeping the normalisation terms) and
 * recomputed forward, then walked in reverse reading the output's gradient (and the saved
 * output) in place, the raw inputs' gradients written as the tail above writes them. */
typedef struct {
    long H, T, n0;
    float eps, rmin;                   /* unit_norm's guard; see Tail.rmin */
    const float *q, *k, *v, *w, *e, *r; /* [B, T, H, d] and [B, T, H] (gates may be NULL) */
    long qs[3], ks[3], vs[3], gs[3];
    const float *O, *dO;               /* the forward's output (or NULL) and its gradient */
    long os[3], dos[3];
    Grads out;
} Raw;

/* Returns 0; 1 when a row is not finite (D and the gradients are then partly written: the
 * caller restores D and redoes the block on its exact path), 2 when a dimension is not a
 * multiple of 16, 3 when out of memory. S0 [B * H, dk, dv]: the transposed state at the
 * block's start; D as in nam_chunk_bwd_f32. */
int nam_chunk_bwd_raw_f32(long B, long L, long C, long dk, long dv, const Raw *a,
                          const float *S0, float *D) {
    if (!dims_ok(C, dk, dv) || L < 1) return 2;
    const long sd = dk * dv, m = dk > dv ? dk : dv, H = a->H;
    const long m2 = (C > m ? C : m) * (C > m ? C : m);
    /* per chunk: S^T, U, O, KK, P, q, k, diag(e) K, and the rows e, gq, bq, gk, bk, w, r */
    const long per = sd + 2 * C * dv + 2 * C * C + 3 * C * dk + 7 * C;
    float *ws = malloc(sizeof(float) * (L * per + 7 * m2 + 3 * C * dk + 2 * C * dv + 2 * C +
                                        SB * dv) + sizeof(int) * L);
    if (!ws) return 3;
    float *t = ws + L * per;
    const BwdTmp tmp = {t, t + m2, t + 2 * m2, t + 3 * m2, t + 4 * m2, t + 5 * m2, t + 6 * m2,
                        t + 7 * m2};
    float *KT = tmp.Z + SB * dv, *tq = KT + C * dk, *tk = tq + C * dk, *Xv = tk + C * dk;
    float *dOh = Xv + C * dv, *te = dOh + C * dv, *tr = te + C;
    int *saved = (int *)(tr + C); /* per chunk: the output before the gate is O / r */
    for (long b = 0; b < B; b++) {
        for (long h = 0; h < H; h++) {
            const long g = b * H + h;
            for (long j = 0; j < L; j++) { /* prepare and recompute forward */
                float *w = ws + j * per, *u = w + sd, *o = u + C * dv, *kk = o + C * dv;
                float *p = kk + C * C, *qn = p + C * C, *kn = qn + C * dk, *ke = kn + C * dk;
                float *ec = ke + C * dk, *rows = ec + C;
                float *s1 = (j + 1 < L) ? ws + (j + 1) * per : NULL;
                if (j == 0) memcpy(w, S0 + g * sd, sizeof(float) * sd);
                const long t0 = (a->n0 + j) * C, n = a->T - t0 < C ? a->T - t0 : C;
                const long go = b * a->gs[0] + t0 * a->gs[1] + h * a->gs[2];
                if (prep_chunk(C, n, dk, dv, a->eps,
                               a->q + b * a->qs[0] + t0 * a->qs[1] + h * a->qs[2], a->qs[1],
                               a->k + b * a->ks[0] + t0 * a->ks[1] + h * a->ks[2], a->ks[1],
                               a->v + b * a->vs[0] + t0 * a->vs[1] + h * a->vs[2], a->vs[1],
                               a->w ? a->w + go : NULL, a->e ? a->e + go : NULL,
                               a->r ? a->r + go : NULL, a->gs[1], qn, kn, Xv, ke, ec, rows)) {
                    free(ws);
                    return 1;
                }
                /* the output before the read gate: O / r from the saved output where every
                 * read gate of the chunk exceeds rmin, else recomputed (o) */
                int sv = a->r && a->O;
                for (long i = 0; i < n && sv; i++) sv = rows[5 * C + i] > a->rmin;
                saved[j] = sv;
                chunk_fwd(C, dk, dv, qn, kn, Xv, dv, a->e ? ke : NULL, dk, a->e ? ec : NULL, w, s1,
                          a->r && !sv ? o : NULL, dv, u, KT, kk, p, tmp.Z);
            }
            float *Dg = D + g * sd;
            for (long j = L - 1; j >= 0; j--) {
                const float *w = ws + j * per, *u = w + sd, *o = u + C * dv, *kk = o + C * dv;
                const float *p = kk + C * C, *qn = p + C * C, *kn = qn + C * dk;
                const float *ke = kn + C * dk, *ec = ke + C * dk, *rows = ec + C;
                const float *rc = rows + 5 * C;
                const long t0 = (a->n0 + j) * C, n = a->T - t0 < C ? a->T - t0 : C;
                const float *dout = a->dO + b * a->dos[0] + t0 * a->dos[1] + h * a->dos[2];
                const float *ob = a->O ? a->O + b * a->os[0] + t0 * a->os[1] + h * a->os[2] : NULL;
                for (long i = 0; i < C; i++) { /* dOh = r dO, dr = (output before r) . dO */
                    float *dh = dOh + i * dv;
                    if (i >= n) { /* past the end */
                        memset(dh, 0, sizeof(float) * dv);
                        tr[i] = 0.0f;
                        continue;
                    }
                    const float *di = dout + i * a->dos[1];
                    if (!a->r) {
                        memcpy(dh, di, sizeof(float) * dv);
                        continue;
                    }
                    const float ri = rc[i];
                    tr[i] = saved[j] ? dot(ob + i * a->os[1], di, dv) / ri : dot(o + i * dv, di, dv);
                    for (long c = 0; c < dv; c++) dh[c] = ri * di[c];
                }
                chunk_bwd(C, dk, dv, qn, kn, a->e ? ke : NULL, dk, a->e ? ec : NULL, w, u, kk, p,
                          dOh, Dg, tq, tk, Xv, te, &tmp);
                tail_rows(n, dk, dv, b, h, t0, &a->out, qn, kn, tq, tk, rows, rows + C,
                          rows + 2 * C, rows + 3 * C, Xv, a->w ? rows + 4 * C : NULL,
                          a->v + b * a->vs[0] + t0 * a->vs[1] + h * a->vs[2], a->vs[1], te, tr);
            }
        }
    }
    free(ws);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Non-causal NAM attention without padding (functional/attention.py's CPU fast path), per
 * head: M^T = sum_t (w_t / max(|k_t|, eps)) k_t v_t^T [dk, dv], then
 * out_t = (r_t / max(|q_t|, eps)) q_t^T M^T, in tiles of NT tokens whose scaled keys and
 * outputs stay in L1. q, k: [B, T, H, dk], v: [B, T, H, dv], O: [B, T, H, dv] with element
 * strides (sB, sT, sH) and unit last strides; gates w, r: [B, T, H] (strides gs) or NULL.
 * Returns 0, 1 when a norm of q or k is not finite (O then partly written: the caller takes
 * its exact path), 2 when dk or dv is not a multiple of 16, 3 when out of memory. */
#define NT 64
int nam_noncausal_fwd_f32(long B, long T, long H, long dk, long dv, float eps, const long *qs,
                          const long *ks, const long *vs, const long *gs, const long *os,
                          const float *q, const float *k, const float *v, const float *w,
                          const float *r, float *O) {
    if (dk % VL || dv % VL) return 2;
    float *ws = malloc(sizeof(float) * (dk * dv + NT * dk + NT));
    if (!ws) return 3;
    float *MT = ws, *Ks = MT + dk * dv, *f = Ks + NT * dk;
    int bad = 0;
    for (long b = 0; b < B && !bad; b++) {
        for (long h = 0; h < H && !bad; h++) {
            const float *qb = q + b * qs[0] + h * qs[2], *kb = k + b * ks[0] + h * ks[2];
            const float *vb = v + b * vs[0] + h * vs[2];
            const float *wb = w ? w + b * gs[0] + h * gs[2] : NULL;
            const float *rb = r ? r + b * gs[0] + h * gs[2] : NULL;
            float *ob = O + b * os[0] + h * os[2];
            memset(MT, 0, sizeof(float) * dk * dv);
            for (long t0 = 0; t0 < T; t0 += NT) { /* M^T += Ks^T V over the tile */
                const long n = T - t0 < NT ? T - t0 : NT;
                for (long i = 0; i < n; i++) {
                    const float *kr = kb + (t0 + i) * ks[1];
                    const float nk = sqrtf(sumsq(kr, dk));
                    bad |= !isfinite(nk);
                    const float fk = (wb ? wb[(t0 + i) * gs[1]] : 1.0f) / (nk > eps ? nk : eps);
                    for (long a = 0; a < dk; a++) Ks[i * dk + a] = fk * kr[a];
                }
                mmt(dk, dv, n, Ks, dk, 1, vb + t0 * vs[1], vs[1], MT, dv, 1.0f, 1, FULL);
            }
            for (long t0 = 0; t0 < T; t0 += NT) { /* out = diag(f) Q M^T over the tile */
                const long n = T - t0 < NT ? T - t0 : NT, n4 = n / 4 * 4;
                for (long i = 0; i < n; i++) {
                    const float nq = sqrtf(sumsq(qb + (t0 + i) * qs[1], dk));
                    bad |= !isfinite(nq);
                    f[i] = (rb ? rb[(t0 + i) * gs[1]] : 1.0f) / (nq > eps ? nq : eps);
                }
                float *o0 = ob + t0 * os[1];
                if (n4) mm(n4, dv, dk, qb + t0 * qs[1], qs[1], MT, dv, o0, os[1], 1.0f, 0, FULL);
                for (long i = n4; i < n; i++) { /* the last rows of a ragged tile */
                    const float *qr = qb + (t0 + i) * qs[1];
                    float *orow = o0 + i * os[1];
                    for (long c = 0; c < dv; c++) orow[c] = 0.0f;
                    for (long a = 0; a < dk; a++)
                        for (long c = 0; c < dv; c++) orow[c] += qr[a] * MT[a * dv + c];
                }
                for (long i = 0; i < n; i++) {
                    float *orow = o0 + i * os[1];
                    for (long c = 0; c < dv; c++) orow[c] *= f[i];
                }
            }
        }
    }
    free(ws);
    return bad;
}
