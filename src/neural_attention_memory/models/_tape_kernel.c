/* NAM-TM tape recurrence, forward and hand-written backward (see _tape_scan.py for the math),
 * and the bidirectional GRU of the 2022 controller.
 *
 * Compiled on first use by _tape_kernel.py (cc -O3 -march=native -shared) and called through
 * ctypes on tensor data pointers; the PyTorch paths are the fallback and the tests compare them.
 *
 * Tape: every (batch, tape) pair `bn` is an independent recurrence, so the kernel runs C = 16 of
 * them side by side, one per vector lane (GCC/Clang vector extensions: `V` is C scalars): lane c
 * of every array belongs to pair g * C + c. Each operation of the recurrence (dot products along
 * the tape, rank-1 writes, head moves) is then the same vertical vector operation on all lanes:
 * no horizontal sums, no padding of tape rows. The caller pads BN to G * C (zero lanes stay
 * zero: a zero head has norm 0 < eps and unit head 0).
 *
 * Layouts, in units of V (contiguous, time-major; G groups of lanes):
 *   W [T, G, D] written rows (p_w times; values then keys in "position" mode, D = 2d);
 *   NPE [T, G] (-p_e) or NULL; Q [T, G, d] or NULL; A [T, G, 2, 4] (noop, left, right, jump of the
 *   read then the write head); KK [T, G, d] / PWK [T, G] ("key" mode; PWK may be NULL = 1);
 *   TT [G, D, L]; KT [G, L, d]; H [G, 2, L]; R [T, G, d].  key_mode: 0 none, 1 position, 2 key.
 * Saved by the forward: HS [T, G, 2, L] heads before each step, NR [T, G, 2] their norms,
 * THW [T, G, D] = TT h_w (with erase), SS [T, G, L] = KT k ("key" mode with erase).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-6
#define C 16 /* lanes */

/* Unaligned-safe vectors of C scalars (the compiler splits them into hardware vectors). */
typedef float vf32 __attribute__((vector_size(C * sizeof(float)), aligned(sizeof(float))));
typedef double vf64 __attribute__((vector_size(C * sizeof(double)), aligned(sizeof(double))));

#define DEFINE_KERNELS(S, SUF, V)                                                                  \
    /* 1 / max(|x|, eps) per lane of the squared norms n2; the norms go to nr */                   \
    static inline V inv_norm_##SUF(V n2, V *nr) {                                                  \
        V out;                                                                                     \
        for (int c = 0; c < C; c++) {                                                              \
            S n = sqrt(n2[c]);                                                                     \
            (*nr)[c] = n;                                                                          \
            out[c] = 1 / (n > EPS ? n : (S)EPS);                                                   \
        }                                                                                          \
        return out;                                                                                \
    }                                                                                              \
                                                                                                   \
    /* sum_l a[l] b[l], four independent chains (the FMA latency, not throughput, bounds one) */  \
    static inline V dot_##SUF(const V *restrict a, const V *restrict b, long n) {                  \
        V s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};                                                  \
        long l = 0;                                                                                \
        for (; l + 4 <= n; l += 4) {                                                               \
            s0 += a[l] * b[l];                                                                     \
            s1 += a[l + 1] * b[l + 1];                                                             \
            s2 += a[l + 2] * b[l + 2];                                                             \
            s3 += a[l + 3] * b[l + 3];                                                             \
        }                                                                                          \
        for (; l < n; l++) s0 += a[l] * b[l];                                                      \
        return (s0 + s1) + (s2 + s3);                                                              \
    }                                                                                              \
                                                                                                   \
    int namtm_forward_##SUF(long T, long G, long d, long D, long L, int key_mode,                  \
                            const S *W_, const S *NPE_, const S *Q_, const S *A_, const S *KK_,    \
                            const S *PWK_, S *TT_, S *KT_, S *H_, S *R_, S *HS_, S *NR_, S *THW_,  \
                            S *SS_) {                                                              \
        const V *W = (const V *)W_, *NPE = (const V *)NPE_, *Q = (const V *)Q_;                    \
        const V *A = (const V *)A_, *KK = (const V *)KK_, *PWK = (const V *)PWK_;                  \
        V *TT = (V *)TT_, *KT = (V *)KT_, *H = (V *)H_, *R = (V *)R_, *HS = (V *)HS_;              \
        V *NR = (V *)NR_, *THW = (V *)THW_, *SS = (V *)SS_;                                        \
        V *buf = (V *)malloc(sizeof(V) * 5 * L);                                                   \
        if (!buf) return 1;                                                                        \
        V *restrict hn = buf, *restrict j = buf + 2 * L, *restrict hnew = buf + 3 * L;             \
        const V zero = {0}, one = zero + 1;                                                        \
        for (long g = 0; g < G; g++) {                                                             \
            V *restrict tt = TT + g * D * L, *restrict h = H + g * 2 * L;                          \
            V *restrict kt = KT ? KT + g * L * d : NULL;                                           \
            for (long t = 0; t < T; t++) {                                                         \
                long tg = t * G + g;                                                               \
                const V *restrict w = W + tg * D;                                                  \
                const V npe = NPE ? NPE[tg] : zero;                                                \
                const V *restrict q = Q ? Q + tg * d : NULL;                                       \
                memcpy(HS + tg * 2 * L, h, sizeof(V) * 2 * L);                                     \
                for (int hd = 0; hd < 2; hd++) {                                                   \
                    const V *restrict x = h + hd * L;                                              \
                    V inv = inv_norm_##SUF(dot_##SUF(x, x, L), NR + tg * 2 + hd);                  \
                    for (long l = 0; l < L; l++) hn[hd * L + l] = x[l] * inv;                      \
                }                                                                                  \
                const V *restrict hr = hn, *restrict hw = hn + L;                                  \
                if (key_mode == 1)                                                                 \
                    for (long l = 0; l < L; l++) j[l] = zero;                                      \
                for (long i = 0; i < D; i++) {                                                     \
                    V *restrict row = tt + i * L;                                                  \
                    V u = w[i];                                                                    \
                    if (NPE) { /* erase: u = w - p_e <row, h_w> */                                 \
                        V thw = dot_##SUF(row, hw, L);                                             \
                        THW[tg * D + i] = thw;                                                     \
                        u += npe * thw;                                                            \
                    }                                                                              \
                    if (i < d) { /* value row: write, then read at the read head */                \
                        V r0 = zero, r1 = zero;                                                    \
                        long l = 0;                                                                \
                        for (; l + 2 <= L; l += 2) {                                               \
                            V v0 = row[l] + u * hw[l], v1 = row[l + 1] + u * hw[l + 1];            \
                            row[l] = v0, row[l + 1] = v1;                                          \
                            r0 += v0 * hr[l], r1 += v1 * hr[l + 1];                                \
                        }                                                                          \
                        for (; l < L; l++) {                                                       \
                            V v = row[l] + u * hw[l];                                              \
                            row[l] = v;                                                            \
                            r0 += v * hr[l];                                                       \
                        }                                                                          \
                        R[tg * d + i] = r0 + r1;                                                   \
                    } else if (key_mode == 1) { /* key row: write, then j += q_i row */            \
                        const V qi = q[i - d];                                                     \
                        for (long l = 0; l < L; l++) {                                             \
                            V v = row[l] + u * hw[l];                                              \
                            row[l] = v;                                                            \
                            j[l] += qi * v;                                                        \
                        }                                                                          \
                    } else {                                                                       \
                        for (long l = 0; l < L; l++) row[l] += u * hw[l];                          \
                    }                                                                              \
                }                                                                                  \
                if (key_mode == 2) { /* KT += (p_w H_w - p_e KT k) k^T; j = KT q */                \
                    const V *restrict k = KK + tg * d, *restrict wr = h + L;                       \
                    const V pw = PWK ? PWK[tg] : one;                                              \
                    for (long l = 0; l < L; l++) {                                                 \
                        V *restrict krow = kt + l * d;                                             \
                        V s = zero, jj = zero;                                                     \
                        if (NPE) {                                                                 \
                            s = dot_##SUF(krow, k, d);                                             \
                            SS[tg * L + l] = s;                                                    \
                        }                                                                          \
                        V u2 = pw * wr[l] + npe * s;                                               \
                        for (long i = 0; i < d; i++) {                                             \
                            V v = krow[i] + u2 * k[i];                                             \
                            krow[i] = v;                                                           \
                            jj += v * q[i];                                                        \
                        }                                                                          \
                        j[l] = jj;                                                                 \
                    }                                                                              \
                }                                                                                  \
                const V *restrict a = A + tg * 8;                                                  \
                for (int hd = 0; hd < 2; hd++) { /* H' = a0 H + a1 H[l+1] + a2 H[l-1] + a3 j */    \
                    const V *restrict x = h + hd * L, *restrict ah = a + hd * 4;                   \
                    V *restrict y = hnew + hd * L;                                                 \
                    for (long l = 0; l < L; l++) {                                                 \
                        long lp = l + 1 == L ? 0 : l + 1, lm = l == 0 ? L - 1 : l - 1;             \
                        V v = ah[0] * x[l] + ah[1] * x[lp] + ah[2] * x[lm];                        \
                        y[l] = key_mode ? v + ah[3] * j[l] : v;                                    \
                    }                                                                              \
                }                                                                                  \
                memcpy(h, hnew, sizeof(V) * 2 * L);                                                \
            }                                                                                      \
        }                                                                                          \
        free(buf);                                                                                 \
        return 0;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* TT, KT: final tapes (rebuilt in place back to the initial ones); dTT, dKT, dH: gradients   \
     * w.r.t. the final state (turned in place into those w.r.t. the initial state). */            \
    int namtm_backward_##SUF(long T, long G, long d, long D, long L, int key_mode, const S *W_,    \
                             const S *NPE_, const S *Q_, const S *A_, const S *KK_,                \
                             const S *PWK_, const S *HS_, const S *NR_, const S *THW_,             \
                             const S *SS_, S *TT_, S *KT_, const S *dR_, S *dTT_, S *dKT_,         \
                             S *dH_, S *dW_, S *dNPE_, S *dQ_, S *dA_, S *dKK_, S *dPWK_) {        \
        const V *W = (const V *)W_, *NPE = (const V *)NPE_, *Q = (const V *)Q_;                    \
        const V *A = (const V *)A_, *KK = (const V *)KK_, *PWK = (const V *)PWK_;                  \
        const V *HS = (const V *)HS_, *NR = (const V *)NR_, *THW = (const V *)THW_;                \
        const V *SS = (const V *)SS_, *dR = (const V *)dR_;                                        \
        V *TT = (V *)TT_, *KT = (V *)KT_, *dTT = (V *)dTT_, *dKT = (V *)dKT_, *dH = (V *)dH_;      \
        V *dW = (V *)dW_, *dNPE = (V *)dNPE_, *dQ = (V *)dQ_, *dA = (V *)dA_, *dKK = (V *)dKK_;    \
        V *dPWK = (V *)dPWK_;                                                                      \
        V *buf = (V *)malloc(sizeof(V) * (9 * L + 2 * d));                                         \
        if (!buf) return 1;                                                                        \
        V *restrict hn = buf, *restrict j = buf + 2 * L, *restrict dj = buf + 3 * L;               \
        V *restrict dhp = buf + 4 * L, *restrict dhn = buf + 6 * L;                                \
        V *restrict dq = buf + 8 * L, *restrict dk = dq + d;                                       \
        const V zero = {0}, one = zero + 1;                                                        \
        for (long g = 0; g < G; g++) {                                                             \
            V *restrict tt = TT + g * D * L, *restrict dtt = dTT + g * D * L;                      \
            V *restrict dh = dH + g * 2 * L;                                                       \
            V *restrict kt = KT ? KT + g * L * d : NULL;                                           \
            V *restrict dkt = dKT ? dKT + g * L * d : NULL;                                        \
            for (long t = T - 1; t >= 0; t--) {                                                    \
                long tg = t * G + g;                                                               \
                const V *restrict hp = HS + tg * 2 * L, *restrict a = A + tg * 8;                  \
                const V npe = NPE ? NPE[tg] : zero;                                                \
                const V *restrict q = Q ? Q + tg * d : NULL;                                       \
                const V *restrict w = W + tg * D;                                                  \
                V inv[2], live[2];                                                                 \
                for (int hd = 0; hd < 2; hd++) {                                                   \
                    V nr = NR[tg * 2 + hd];                                                        \
                    for (int c = 0; c < C; c++) {                                                  \
                        inv[hd][c] = 1 / (nr[c] > EPS ? nr[c] : (S)EPS);                           \
                        live[hd][c] = nr[c] > EPS; /* the norm's gradient only above eps */        \
                    }                                                                              \
                    for (long l = 0; l < L; l++) hn[hd * L + l] = hp[hd * L + l] * inv[hd];        \
                }                                                                                  \
                const V *restrict hr = hn, *restrict hw = hn + L;                                  \
                /* the jump target of this step, from the tapes after its write */                 \
                if (key_mode == 1) {                                                               \
                    for (long l = 0; l < L; l++) j[l] = zero;                                      \
                    for (long i = 0; i < d; i++) {                                                 \
                        const V *restrict row = tt + (d + i) * L;                                  \
                        const V qi = q[i];                                                         \
                        for (long l = 0; l < L; l++) j[l] += qi * row[l];                          \
                    }                                                                              \
                } else if (key_mode == 2) {                                                        \
                    for (long l = 0; l < L; l++) {                                                 \
                        const V *restrict krow = kt + l * d;                                       \
                        V jj = zero;                                                               \
                        jj = dot_##SUF(krow, q, d);                                                \
                        j[l] = jj;                                                                 \
                    }                                                                              \
                }                                                                                  \
                /* H' = a0 H + a1 H[l+1] + a2 H[l-1] + a3 j */                                     \
                if (key_mode)                                                                      \
                    for (long l = 0; l < L; l++) dj[l] = zero;                                     \
                for (int hd = 0; hd < 2; hd++) {                                                   \
                    const V *restrict x = hp + hd * L, *restrict gr = dh + hd * L;                 \
                    const V *restrict ah = a + hd * 4;                                             \
                    V *restrict gp = dhp + hd * L, *restrict da = dA + tg * 8 + hd * 4;            \
                    V d0 = zero, d1 = zero, d2 = zero, d3 = zero;                                  \
                    for (long l = 0; l < L; l++) {                                                 \
                        long lp = l + 1 == L ? 0 : l + 1, lm = l == 0 ? L - 1 : l - 1;             \
                        V gl = gr[l];                                                              \
                        d0 += gl * x[l];                                                           \
                        d1 += gl * x[lp];                                                          \
                        d2 += gl * x[lm];                                                          \
                        gp[l] = ah[0] * gl + ah[1] * gr[lm] + ah[2] * gr[lp];                      \
                        if (key_mode) {                                                            \
                            d3 += gl * j[l];                                                       \
                            dj[l] += ah[3] * gl;                                                   \
                        }                                                                          \
                    }                                                                              \
                    da[0] = d0, da[1] = d1, da[2] = d2, da[3] = d3;                                \
                }                                                                                  \
                V dnpe = zero;                                                                     \
                if (key_mode == 2) {                                                               \
                    const V *restrict k = KK + tg * d, *restrict wr = hp + L;                      \
                    const V pw = PWK ? PWK[tg] : one;                                              \
                    V dpw = zero;                                                                  \
                    for (long i = 0; i < 2 * d; i++) dq[i] = zero; /* dq and dk */                 \
                    for (long l = 0; l < L; l++) {                                                 \
                        V *restrict krow = kt + l * d, *restrict dkrow = dkt + l * d;              \
                        const V djl = dj[l];                                                       \
                        V s = NPE ? SS[tg * L + l] : zero;                                         \
                        V u2 = pw * wr[l] + npe * s, du2 = zero;                                   \
                        for (long i = 0; i < d; i++) {                                             \
                            dq[i] += djl * krow[i];                                                \
                            V dkv = dkrow[i] + djl * q[i];                                         \
                            dkrow[i] = dkv;                                                        \
                            du2 += dkv * k[i];                                                     \
                            dk[i] += u2 * dkv;                                                     \
                            krow[i] -= u2 * k[i]; /* rebuild KT_{t-1} */                           \
                        }                                                                          \
                        dpw += du2 * wr[l];                                                        \
                        dhp[L + l] += du2 * pw;                                                    \
                        if (NPE) {                                                                 \
                            V ds = npe * du2;                                                      \
                            dnpe += du2 * s;                                                       \
                            for (long i = 0; i < d; i++) {                                         \
                                dkrow[i] += ds * k[i];                                             \
                                dk[i] += ds * krow[i];                                             \
                            }                                                                      \
                        }                                                                          \
                    }                                                                              \
                    memcpy(dQ + tg * d, dq, sizeof(V) * d);                                        \
                    memcpy(dKK + tg * d, dk, sizeof(V) * d);                                       \
                    if (PWK) dPWK[tg] = dpw;                                                       \
                }                                                                                  \
                for (long l = 0; l < 2 * L; l++) dhn[l] = zero;                                    \
                V *restrict dhr = dhn, *restrict dhw = dhn + L;                                    \
                for (long i = 0; i < D; i++) {                                                     \
                    V *restrict row = tt + i * L, *restrict drow = dtt + i * L;                    \
                    V du = zero;                                                                   \
                    if (i < d) { /* r_i = <row, h_r> */                                            \
                        const V gi = dR[tg * d + i];                                               \
                        V du1 = zero;                                                              \
                        long l = 0;                                                                \
                        for (; l + 2 <= L; l += 2) {                                               \
                            dhr[l] += gi * row[l], dhr[l + 1] += gi * row[l + 1];                  \
                            V dv0 = drow[l] + gi * hr[l], dv1 = drow[l + 1] + gi * hr[l + 1];      \
                            drow[l] = dv0, drow[l + 1] = dv1;                                      \
                            du += dv0 * hw[l], du1 += dv1 * hw[l + 1];                             \
                        }                                                                          \
                        for (; l < L; l++) {                                                       \
                            dhr[l] += gi * row[l];                                                 \
                            V dv = drow[l] + gi * hr[l];                                           \
                            drow[l] = dv;                                                          \
                            du += dv * hw[l];                                                      \
                        }                                                                          \
                        du += du1;                                                                 \
                    } else if (key_mode == 1) { /* j = sum_i q_i row_i */                          \
                        const V qi = q[i - d];                                                     \
                        V dqi = zero;                                                              \
                        for (long l = 0; l < L; l++) {                                             \
                            dqi += dj[l] * row[l];                                                 \
                            V dv = drow[l] + qi * dj[l];                                           \
                            drow[l] = dv;                                                          \
                            du += dv * hw[l];                                                      \
                        }                                                                          \
                        dQ[tg * d + i - d] = dqi;                                                  \
                    } else {                                                                       \
                        du = dot_##SUF(drow, hw, L);                                               \
                    }                                                                              \
                    /* row = row_prev + u h_w, u = w_i + npe <row_prev, h_w> */                    \
                    const V thw = NPE ? THW[tg * D + i] : zero;                                    \
                    const V u = w[i] + npe * thw;                                                  \
                    dW[tg * D + i] = du;                                                           \
                    if (NPE) {                                                                     \
                        const V dthw = du * npe;                                                   \
                        dnpe += du * thw;                                                          \
                        for (long l = 0; l < L; l++) {                                             \
                            V prev = row[l] - u * hw[l];                                           \
                            row[l] = prev; /* rebuild TT_{t-1} */                                  \
                            dhw[l] += u * drow[l] + dthw * prev;                                   \
                            drow[l] += dthw * hw[l];                                               \
                        }                                                                          \
                    } else {                                                                       \
                        for (long l = 0; l < L; l++) {                                             \
                            dhw[l] += u * drow[l];                                                 \
                            row[l] -= u * hw[l];                                                   \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
                if (NPE) dNPE[tg] = dnpe;                                                          \
                /* unit heads: h = H / max(|H|, eps) */                                            \
                for (int hd = 0; hd < 2; hd++) {                                                   \
                    const V *restrict gh = dhn + hd * L, *restrict x = hn + hd * L;                \
                    const V *restrict gp = dhp + hd * L;                                           \
                    V dt = zero;                                                                   \
                    dt = dot_##SUF(gh, x, L);                                                      \
                    dt *= live[hd];                                                                \
                    for (long l = 0; l < L; l++)                                                   \
                        dh[hd * L + l] = gp[l] + (gh[l] - x[l] * dt) * inv[hd];                    \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        free(buf);                                                                                 \
        return 0;                                                                                  \
    }

DEFINE_KERNELS(float, f32, vf32)
DEFINE_KERNELS(double, f64, vf64)

/* Bidirectional GRU (one layer, zero initial states; PyTorch's gate order r, z, n), the 2022
 * NAM-TM's controller, with batch rows in vector lanes (lane c of group g = row g * C + c). The
 * input projections are one GEMM outside (GI = x W_ih^T + b_ih, both directions). Row b has
 * n_b = lengths[b] real tokens (right padding; NULL: all T): the forward direction runs
 * t = 0..n_b-1 and the backward one t = n_b-1..0, i.e. step s of a direction is at time
 * t_b(s) = s, or n_b-1-s for the backward direction. Every lane runs all T steps (steps s >= n_b
 * come after the row's real ones and never reach them; their outputs are not written back and
 * their output gradients are taken as zero). Lanes are gathered from / scattered to the callers'
 * row layouts, so no layout copies are needed outside.
 * Scalars: GI [B, T, 2, 3H]; W [2, 3H, H] (W_hh); BH [2, 3H] (b_hh); OUT [B, T, 2H] (zero at
 * padded positions); DOUT [B, T, 2H]; DGI, DGH [B, T, 2, 3H] (gradients of GI and of
 * gh = h W_hh^T + b_hh; zero at padded positions).
 * Lanes (units of V): HL [2, T, G, H] outputs per step, GT [2, T, G, 4H] saved (r, z, n, gh_n). */
#define RB 8 /* rows of W_hh per block: independent accumulation chains */
#define DEFINE_GRU(S, SUF, V, VEXP)                                                                \
    /* time of step s of direction dir in row b, or -1 past the row's real tokens */               \
    static inline long gru_time_##SUF(const long *lengths, long b, long T, long s, int dir) {      \
        long n = lengths ? lengths[b] : T;                                                         \
        return s >= n ? -1 : (dir ? n - 1 - s : s);                                                \
    }                                                                                              \
                                                                                                   \
    int bigru_forward_##SUF(long T, long B, long H, const long *lengths, const S *GI,              \
                            const S *W, const S *BH, S *OUT, S *HL_, S *GT_) {                     \
        long G = (B + C - 1) / C;                                                                  \
        V *HL = (V *)HL_, *GT = (V *)GT_;                                                          \
        V *gh = (V *)malloc(sizeof(V) * 6 * H);                                                    \
        if (!gh) return 1;                                                                         \
        V *gi = gh + 3 * H;                                                                        \
        const V zero = {0};                                                                        \
        for (long i = 0; i < B * T * 2 * H; i++) OUT[i] = 0;                                       \
        for (int dir = 0; dir < 2; dir++) {                                                        \
            const S *w = W + dir * 3 * H * H, *bh = BH + dir * 3 * H;                              \
            for (long g = 0; g < G; g++) {                                                         \
                const V *restrict hp = NULL; /* previous output (NULL: zero initial state) */      \
                for (long s = 0; s < T; s++) {                                                     \
                    long sg = (dir * T + s) * G + g;                                               \
                    V *restrict h = HL + sg * H, *restrict gt = GT + sg * 4 * H;                   \
                    for (int c = 0; c < C; c++) { /* gather this step's input projections */      \
                        long b = g * C + c, t = b < B ? gru_time_##SUF(lengths, b, T, s, dir) : -1; \
                        const S *src = t < 0 ? NULL : GI + ((b * T + t) * 2 + dir) * 3 * H;       \
                        for (long j = 0; j < 3 * H; j++) /* past the real tokens: zero inputs */   \
                            gi[j][c] = src ? src[j] : 0;                                           \
                    }                                                                              \
                    long j = 0; /* gh = b_hh + W_hh h_prev */                                      \
                    for (; j + RB <= 3 * H; j += RB) {                                             \
                        V acc[RB];                                                                 \
                        for (int m = 0; m < RB; m++) acc[m] = zero + bh[j + m];                    \
                        if (hp)                                                                    \
                            for (long k = 0; k < H; k++) {                                         \
                                const V hk = hp[k];                                                \
                                for (int m = 0; m < RB; m++) acc[m] += w[(j + m) * H + k] * hk;    \
                            }                                                                      \
                        for (int m = 0; m < RB; m++) gh[j + m] = acc[m];                           \
                    }                                                                              \
                    for (; j < 3 * H; j++) {                                                       \
                        V acc = zero + bh[j];                                                      \
                        if (hp)                                                                    \
                            for (long k = 0; k < H; k++) acc += w[j * H + k] * hp[k];              \
                        gh[j] = acc;                                                               \
                    }                                                                              \
                    for (long i = 0; i < H; i++) {                                                 \
                        V r = 1 / (1 + VEXP(-(gi[i] + gh[i])));                                    \
                        V z = 1 / (1 + VEXP(-(gi[H + i] + gh[H + i])));                            \
                        V nn = 1 - 2 / (VEXP(2 * (gi[2 * H + i] + r * gh[2 * H + i])) + 1);        \
                        gt[i] = r, gt[H + i] = z, gt[2 * H + i] = nn, gt[3 * H + i] = gh[2 * H + i]; \
                        h[i] = (1 - z) * nn + (hp ? z * hp[i] : zero);                             \
                    }                                                                              \
                    for (int c = 0; c < C; c++) { /* scatter the real steps' outputs */            \
                        long b = g * C + c, t = b < B ? gru_time_##SUF(lengths, b, T, s, dir) : -1; \
                        if (t < 0) continue;                                                       \
                        S *dst = OUT + (b * T + t) * 2 * H + dir * H;                              \
                        for (long i = 0; i < H; i++) dst[i] = h[i][c];                             \
                    }                                                                              \
                    hp = h;                                                                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        free(gh);                                                                                  \
        return 0;                                                                                  \
    }                                                                                              \
                                                                                                   \
    int bigru_backward_##SUF(long T, long B, long H, const long *lengths, const S *W,              \
                             const S *HL_, const S *GT_, const S *DOUT, S *DGI, S *DGH) {          \
        long G = (B + C - 1) / C;                                                                  \
        const V *HL = (const V *)HL_, *GT = (const V *)GT_;                                        \
        V *carry = (V *)malloc(sizeof(V) * 8 * H);                                                 \
        if (!carry) return 1;                                                                      \
        V *dout = carry + H, *dgh = carry + 2 * H, *dgi = carry + 5 * H;                           \
        const V zero = {0};                                                                        \
        for (long i = 0; i < B * T * 6 * H; i++) DGI[i] = 0, DGH[i] = 0;                           \
        for (int dir = 0; dir < 2; dir++) {                                                        \
            const S *w = W + dir * 3 * H * H;                                                      \
            for (long g = 0; g < G; g++) {                                                         \
                for (long i = 0; i < H; i++) carry[i] = zero;                                      \
                for (long s = T - 1; s >= 0; s--) {                                                \
                    long sg = (dir * T + s) * G + g;                                               \
                    const V *restrict gt = GT + sg * 4 * H;                                        \
                    const V *restrict hp = s ? HL + (sg - G) * H : NULL;                           \
                    for (int c = 0; c < C; c++) { /* gather; zero past the real tokens */          \
                        long b = g * C + c, t = b < B ? gru_time_##SUF(lengths, b, T, s, dir) : -1; \
                        const S *src = t < 0 ? NULL : DOUT + (b * T + t) * 2 * H + dir * H;        \
                        for (long i = 0; i < H; i++) dout[i][c] = src ? src[i] : 0;                \
                    }                                                                              \
                    for (long i = 0; i < H; i++) {                                                 \
                        V r = gt[i], z = gt[H + i], nn = gt[2 * H + i], ghn = gt[3 * H + i];       \
                        V gr = dout[i] + carry[i], h0 = hp ? hp[i] : zero;                         \
                        V dn = gr * (1 - z) * (1 - nn * nn);                                       \
                        V dr = dn * ghn * r * (1 - r);                                             \
                        V dz = gr * (h0 - nn) * z * (1 - z);                                       \
                        dgi[i] = dr, dgi[H + i] = dz, dgi[2 * H + i] = dn;                         \
                        dgh[i] = dr, dgh[H + i] = dz, dgh[2 * H + i] = dn * r;                     \
                        carry[i] = gr * z;                                                         \
                    }                                                                              \
                    for (int c = 0; c < C; c++) { /* scatter the real steps' gradients */          \
                        long b = g * C + c, t = b < B ? gru_time_##SUF(lengths, b, T, s, dir) : -1; \
                        if (t < 0) continue;                                                       \
                        S *di = DGI + ((b * T + t) * 2 + dir) * 3 * H;                             \
                        S *dh = DGH + ((b * T + t) * 2 + dir) * 3 * H;                             \
                        for (long j = 0; j < 3 * H; j++) di[j] = dgi[j][c], dh[j] = dgh[j][c];     \
                    }                                                                              \
                    long k = 0; /* carry += W_hh^T dgh */                                          \
                    for (; k + RB <= H; k += RB) {                                                 \
                        V acc[RB];                                                                 \
                        for (int m = 0; m < RB; m++) acc[m] = carry[k + m];                        \
                        for (long j = 0; j < 3 * H; j++) {                                         \
                            const V a = dgh[j];                                                    \
                            for (int m = 0; m < RB; m++) acc[m] += w[j * H + k + m] * a;           \
                        }                                                                          \
                        for (int m = 0; m < RB; m++) carry[k + m] = acc[m];                        \
                    }                                                                              \
                    for (; k < H; k++) {                                                           \
                        V acc = carry[k];                                                          \
                        for (long j = 0; j < 3 * H; j++) acc += w[j * H + k] * dgh[j];             \
                        carry[k] = acc;                                                            \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        free(carry);                                                                               \
        return 0;                                                                                  \
    }

/* float32 exp by range reduction and a degree-9 Taylor polynomial on |r| < ln 2 (relative error
 * about 1e-7), in vector operations (libm's expf is a scalar call). Inputs are clamped to
 * [-87, 88], so the result stays finite and normal; NaN propagates. */
typedef int vi32 __attribute__((vector_size(C * sizeof(int)), aligned(sizeof(int))));
static inline vf32 vexp_f32(vf32 x) {
    const vf32 zero = {0};
    vi32 lo = x < -87.0f, hi = x > 88.0f;
    x = (vf32)(((vi32)x & ~lo) | ((vi32)(zero - 87.0f) & lo));
    x = (vf32)(((vi32)x & ~hi) | ((vi32)(zero + 88.0f) & hi));
    vi32 n = __builtin_convertvector(x * 1.44269504088896341f, vi32); /* truncation */
    vf32 nf = __builtin_convertvector(n, vf32);
    vf32 r = x - nf * 0.693359375f; /* ln 2 in two parts (Cody-Waite) */
    r = r + nf * 2.12194440e-4f;
    vf32 p = zero + 1.0f / 362880;
    p = p * r + 1.0f / 40320;
    p = p * r + 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * (vf32)((n + 127) << 23);
}
static inline vf64 vexp_f64(vf64 x) {
    for (int c = 0; c < C; c++) x[c] = exp(x[c]);
    return x;
}

DEFINE_GRU(float, f32, vf32, vexp_f32)
DEFINE_GRU(double, f64, vf64, vexp_f64)

/* The per-step plan of a layer (everything that does not depend on the tape) and the output
 * scaling, fused around the tape kernel so that the caller does only the projections: rows of
 * Z [B, T, N, Cs] (controller logits: gates, read-head actions, write-head actions, jump query)
 * and VK [B, T, VKW] (values [N, d], then raw keys [N, d] with JUMP) become the tape kernel's
 * lane inputs, and its reads R become rows RP [B, T, N, d] = p_r * r. cfg (longs): G gates,
 * rw, erase, tied, nA actions, slot[4] (canonical slot of each action), jump, key_mode.
 * Padded steps (PAD[b, t] != 0): p_r = p_w = p_e = 0 and NO-OP moves. Lanes past B * N get
 * zeros. Backward: the same rows recomputed, gradients of Z and VK written as rows. */
#define DEFINE_PLAN(S, SUF, EXPS)                                                                  \
    static inline S sig_##SUF(S x) { return 1 / (1 + EXPS(-x)); }                                  \
    static inline S inv_unit_##SUF(const S *x, long n, S *nrm) {                                  \
        S s = 0;                                                                                   \
        for (long i = 0; i < n; i++) s += x[i] * x[i];                                             \
        *nrm = sqrt(s);                                                                            \
        return 1 / (*nrm > EPS ? *nrm : (S)EPS);                                                   \
    }                                                                                              \
                                                                                                   \
    int namtm_plan_##SUF(long B, long T, long N, long d, long Cs, const long *cfg, const S *Z,     \
                         const S *VK, const unsigned char *PAD, S *W, S *NPE, S *Q, S *A, S *KK,   \
                         S *PWK, S *PR) {                                                          \
        long G = cfg[0], nA = cfg[4], jump = cfg[9], key_mode = cfg[10];                           \
        int rw = cfg[1], erase = cfg[2], tied = cfg[3];                                            \
        const long *slot = cfg + 5;                                                                \
        long BN = B * N, Gr = (BN + C - 1) / C, D = key_mode == 1 ? 2 * d : d;                     \
        long VKW = (jump ? 2 : 1) * N * d;                                                         \
        for (long bn = BN; bn < Gr * C; bn++) { /* unused lanes */                                 \
            long g = bn / C, c = bn % C;                                                           \
            for (long t = 0; t < T; t++) {                                                         \
                long tg = t * Gr + g;                                                              \
                for (long i = 0; i < D; i++) W[(tg * D + i) * C + c] = 0;                          \
                for (long i = 0; i < 8; i++) A[(tg * 8 + i) * C + c] = 0;                          \
                if (NPE) NPE[tg * C + c] = 0;                                                      \
                if (PWK) PWK[tg * C + c] = 0;                                                      \
                PR[tg * C + c] = 0;                                                                \
                for (long i = 0; Q && i < d; i++) Q[(tg * d + i) * C + c] = 0;                     \
                for (long i = 0; KK && i < d; i++) KK[(tg * d + i) * C + c] = 0;                   \
            }                                                                                      \
        }                                                                                          \
        for (long t = 0; t < T; t++) /* lane order: a step's lane blocks stay in L1 */            \
                for (long bn = 0; bn < BN; bn++) {                                                 \
                    long b = bn / N, n = bn % N, g = bn / C, c = bn % C, tg = t * Gr + g;          \
                    const S *z = Z + ((b * T + t) * N + n) * Cs;                                   \
                    const S *v = VK + (b * T + t) * VKW + n * d;                                   \
                    int pad = PAD ? PAD[b * T + t] != 0 : 0;                                       \
                    S pr = 1, pw = 1, pe = 0;                                                      \
                    if (rw) pr = sig_##SUF(z[0]), pw = sig_##SUF(z[1]);                            \
                    if (erase) pe = tied ? pw : sig_##SUF(z[G - 1]);                               \
                    if (pad) pr = 0, pw = 0, pe = 0;                                               \
                    PR[tg * C + c] = pr;                                                           \
                    if (NPE) NPE[tg * C + c] = -pe;                                                \
                    if (PWK) PWK[tg * C + c] = pw;                                                 \
                    for (int hd = 0; hd < 2; hd++) {                                               \
                        S *a = A + (tg * 8 + hd * 4) * C + c;                                      \
                        for (int m = 0; m < 4; m++) a[m * C] = 0;                                  \
                        if (pad) {                                                                 \
                            a[0] = 1; /* NO-OP */                                                  \
                            continue;                                                              \
                        }                                                                          \
                        const S *lg = z + G + hd * nA;                                             \
                        S mx = lg[0], sum = 0, e[4];                                               \
                        for (long i = 1; i < nA; i++) mx = lg[i] > mx ? lg[i] : mx;                \
                        for (long i = 0; i < nA; i++) sum += e[i] = EXPS(lg[i] - mx);              \
                        for (long i = 0; i < nA; i++) a[slot[i] * C] = e[i] / sum;                 \
                    }                                                                              \
                    if (jump) {                                                                    \
                        const S *qr = z + G + 2 * nA;                                              \
                        S nrm, inv = inv_unit_##SUF(qr, d, &nrm);                                  \
                        for (long i = 0; i < d; i++) Q[(tg * d + i) * C + c] = qr[i] * inv;        \
                    }                                                                              \
                    for (long i = 0; i < d; i++) W[(tg * D + i) * C + c] = v[i] * pw;              \
                    if (jump) {                                                                    \
                        const S *kr = VK + (b * T + t) * VKW + N * d + n * d;                      \
                        S nrm, inv = inv_unit_##SUF(kr, d, &nrm);                                  \
                        for (long i = 0; i < d; i++) {                                             \
                            if (key_mode == 1) W[(tg * D + d + i) * C + c] = kr[i] * inv * pw;     \
                            else KK[(tg * d + i) * C + c] = kr[i] * inv;                           \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
        return 0;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* RP [B, T, N, d] = p_r * R (R, PR in lanes); backward: dR = p_r dRP, dPR = <dRP, R> */      \
    int namtm_post_##SUF(long B, long T, long N, long d, const S *R, const S *PR, S *RP) {         \
        long BN = B * N, Gr = (BN + C - 1) / C;                                                    \
        for (long t = 0; t < T; t++) /* lane order: a step's lane blocks stay in L1 */            \
                for (long bn = 0; bn < BN; bn++) {                                                 \
                    long b = bn / N, n = bn % N, g = bn / C, c = bn % C, tg = t * Gr + g;          \
                    S *rp = RP + ((b * T + t) * N + n) * d, pr = PR[tg * C + c];                   \
                    for (long i = 0; i < d; i++) rp[i] = R[(tg * d + i) * C + c] * pr;             \
                }                                                                                  \
        return 0;                                                                                  \
    }                                                                                              \
    int namtm_post_backward_##SUF(long B, long T, long N, long d, const S *R, const S *PR,         \
                                  const S *dRP, S *dR, S *dPR) {                                   \
        long BN = B * N, Gr = (BN + C - 1) / C;                                                    \
        for (long i = 0; i < T * Gr * d * C; i++) dR[i] = 0;                                       \
        for (long i = 0; i < T * Gr * C; i++) dPR[i] = 0;                                          \
        for (long t = 0; t < T; t++) /* lane order: a step's lane blocks stay in L1 */            \
                for (long bn = 0; bn < BN; bn++) {                                                 \
                    long b = bn / N, n = bn % N, g = bn / C, c = bn % C, tg = t * Gr + g;          \
                    const S *drp = dRP + ((b * T + t) * N + n) * d;                                \
                    S pr = PR[tg * C + c], s = 0;                                                  \
                    for (long i = 0; i < d; i++) {                                                 \
                        dR[(tg * d + i) * C + c] = drp[i] * pr;                                    \
                        s += drp[i] * R[(tg * d + i) * C + c];                                     \
                    }                                                                              \
                    dPR[tg * C + c] = s;                                                           \
                }                                                                                  \
        return 0;                                                                                  \
    }                                                                                              \
                                                                                                   \
    int namtm_plan_backward_##SUF(long B, long T, long N, long d, long Cs, const long *cfg,        \
                                  const S *Z, const S *VK, const unsigned char *PAD, const S *dW,  \
                                  const S *dNPE, const S *dQ, const S *dA, const S *dKK,           \
                                  const S *dPWK, const S *dPR, S *dZ, S *dVK) {                    \
        long G = cfg[0], nA = cfg[4], jump = cfg[9], key_mode = cfg[10];                           \
        int rw = cfg[1], erase = cfg[2], tied = cfg[3];                                            \
        const long *slot = cfg + 5;                                                                \
        long BN = B * N, Gr = (BN + C - 1) / C, D = key_mode == 1 ? 2 * d : d;                     \
        long VKW = (jump ? 2 : 1) * N * d;                                                         \
        for (long t = 0; t < T; t++) /* lane order: a step's lane blocks stay in L1 */            \
                for (long bn = 0; bn < BN; bn++) {                                                 \
                    long b = bn / N, n = bn % N, g = bn / C, c = bn % C, tg = t * Gr + g;          \
                    const S *z = Z + ((b * T + t) * N + n) * Cs;                                   \
                    S *dz = dZ + ((b * T + t) * N + n) * Cs;                                       \
                    const S *v = VK + (b * T + t) * VKW + n * d;                                   \
                    S *dv = dVK + (b * T + t) * VKW + n * d;                                       \
                    int pad = PAD ? PAD[b * T + t] != 0 : 0;                                       \
                    S sr = rw ? sig_##SUF(z[0]) : 1, sw = rw ? sig_##SUF(z[1]) : 1;                \
                    S se = erase && !tied ? sig_##SUF(z[G - 1]) : 0;                               \
                    S pw = pad ? 0 : sw;                                                           \
                    for (long i = 0; i < Cs; i++) dz[i] = 0;                                       \
                    S dpw = PWK_GRAD(dPWK, tg, c), dpe = dNPE ? -dNPE[tg * C + c] : 0;             \
                    for (long i = 0; i < d; i++) {                                                 \
                        S gw = dW[(tg * D + i) * C + c];                                           \
                        dpw += gw * v[i];                                                          \
                        dv[i] = gw * pw;                                                           \
                    }                                                                              \
                    if (jump) { /* keys: k = mu(raw) (times p_w in position mode) */               \
                        const S *kr = VK + (b * T + t) * VKW + N * d + n * d;                      \
                        S *dkr = dVK + (b * T + t) * VKW + N * d + n * d;                          \
                        S nrm, inv = inv_unit_##SUF(kr, d, &nrm), dot = 0;                         \
                        for (long i = 0; i < d; i++) {                                             \
                            S gk;                                                                  \
                            if (key_mode == 1) {                                                   \
                                S gw = dW[(tg * D + d + i) * C + c];                               \
                                dpw += gw * kr[i] * inv;                                           \
                                gk = gw * pw;                                                      \
                            } else {                                                               \
                                gk = dKK[(tg * d + i) * C + c];                                    \
                            }                                                                      \
                            dkr[i] = gk;                                                           \
                            dot += gk * kr[i] * inv;                                               \
                        }                                                                          \
                        if (nrm <= EPS) dot = 0;                                                   \
                        for (long i = 0; i < d; i++) dkr[i] = (dkr[i] - kr[i] * inv * dot) * inv;  \
                        const S *qr = z + G + 2 * nA;                                              \
                        S *dqr = dz + G + 2 * nA;                                                  \
                        inv = inv_unit_##SUF(qr, d, &nrm), dot = 0;                                \
                        for (long i = 0; i < d; i++) dot += dQ[(tg * d + i) * C + c] * qr[i] * inv; \
                        if (nrm <= EPS) dot = 0;                                                   \
                        for (long i = 0; i < d; i++)                                               \
                            dqr[i] = (dQ[(tg * d + i) * C + c] - qr[i] * inv * dot) * inv;         \
                    }                                                                              \
                    if (pad) continue; /* gates and moves are overridden: no gradient */           \
                    if (erase && tied) dpw += dpe;                                                 \
                    if (rw) {                                                                      \
                        dz[0] = dPR[tg * C + c] * sr * (1 - sr);                                   \
                        dz[1] = dpw * sw * (1 - sw);                                               \
                    }                                                                              \
                    if (erase && !tied) dz[G - 1] = dpe * se * (1 - se);                           \
                    for (int hd = 0; hd < 2; hd++) {                                               \
                        const S *lg = z + G + hd * nA;                                             \
                        const S *da = dA + (tg * 8 + hd * 4) * C + c;                              \
                        S mx = lg[0], sum = 0, s = 0, a[4];                                        \
                        for (long i = 1; i < nA; i++) mx = lg[i] > mx ? lg[i] : mx;                \
                        for (long i = 0; i < nA; i++) sum += a[i] = EXPS(lg[i] - mx);              \
                        for (long i = 0; i < nA; i++) a[i] /= sum, s += a[i] * da[slot[i] * C];    \
                        for (long i = 0; i < nA; i++) dz[G + hd * nA + i] = a[i] * (da[slot[i] * C] - s); \
                    }                                                                              \
                }                                                                                  \
        return 0;                                                                                  \
    }

#define PWK_GRAD(dPWK, tg, c) ((dPWK) ? (dPWK)[(tg) * C + (c)] : 0)
DEFINE_PLAN(float, f32, expf)
DEFINE_PLAN(double, f64, exp)

/* A state's rows X [BN, R] (contiguous) <-> the kernel's lanes Y [G, R, C] (lane c of group g =
 * row g * C + c; lanes past BN are zeros). X = NULL packs zeros. */
#define DEFINE_LANES(S, SUF)                                                                       \
    int lanes_pack_##SUF(long BN, long R, const S *X, S *Y) {                                      \
        long G = (BN + C - 1) / C;                                                                 \
        if (!X) {                                                                                  \
            memset(Y, 0, sizeof(S) * G * R * C);                                                   \
            return 0;                                                                              \
        }                                                                                          \
        for (long g = 0; g < G; g++) {                                                             \
            const S *x[C]; /* the group's rows (NULL: a missing pair, zeros) */                    \
            for (long c = 0; c < C; c++) x[c] = g * C + c < BN ? X + (g * C + c) * R : NULL;       \
            S *y = Y + g * R * C;                                                                  \
            for (long r = 0; r < R; r++)                                                           \
                for (long c = 0; c < C; c++) y[r * C + c] = x[c] ? x[c][r] : 0;                    \
        }                                                                                          \
        return 0;                                                                                  \
    }                                                                                              \
    int lanes_unpack_##SUF(long BN, long R, const S *Y, S *X) {                                    \
        long G = (BN + C - 1) / C;                                                                 \
        for (long g = 0; g < G; g++) {                                                             \
            long n = BN - g * C < C ? BN - g * C : C;                                              \
            const S *y = Y + g * R * C;                                                            \
            S *x = X + g * C * R;                                                                  \
            for (long r = 0; r < R; r++)                                                           \
                for (long c = 0; c < n; c++) x[c * R + r] = y[r * C + c];                          \
        }                                                                                          \
        return 0;                                                                                  \
    }

DEFINE_LANES(float, f32)
DEFINE_LANES(double, f64)
