/* NAM-TM tape recurrence, forward and hand-written backward (see _tape_scan.py for the math).
 *
 * Compiled on first use by _tape_kernel.py (cc -O3 -march=native -shared) and called through
 * ctypes on tensor data pointers; the PyTorch loop in _tape_scan.py is the fallback and the
 * tests compare the two. Every (batch, tape) pair `bn` is independent: its whole time loop runs
 * with its tape in L1 cache, and each step is one fused pass over the tape rows (write, read and
 * jump look-up of a row while it is in registers) instead of several batched ops.
 *
 * Layouts (contiguous, time-major). Tape rows and heads are zero-padded from L to Lp cells, keys
 * and queries from d to dp entries (multiples of VW), so every row operation is whole vectors;
 * padding stays exactly zero (it is multiplied by zero head / key entries) and head moves only
 * touch the L real cells. W [T, BN, D]; NPE (-p_e) [T, BN] or NULL; Q [T, BN, dp] or NULL;
 * A [T, BN, 2, 4] (noop, left, right, jump); KK [T, BN, dp] / PWK [T, BN] ("key" mode, PWK may be
 * NULL = 1); TT [BN, D, Lp]; KT [BN, L, dp]; H [BN, 2, Lp]; R [T, BN, d].
 * key_mode: 0 none, 1 position, 2 key.
 * Saved by the forward: HS [T, BN, 2, Lp] heads before each step, NR [T, BN, 2] their norms,
 * THW [T, BN, D] = TT h_w (with erase), SS [T, BN, L] = KT k ("key" mode with erase).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-6
#define VW 16 /* padding unit of tape rows and keys */

#define DEFINE_KERNELS(S, SUF)                                                                     \
    /* n is a multiple of VW (rows are zero-padded): fixed-width chunks vectorise without tails */ \
    static inline S dot_##SUF(const S *restrict a, const S *restrict b, long n) {                                    \
        S acc[VW] = {0};                                                                           \
        for (long i = 0; i < n; i += VW)                                                           \
            for (int c = 0; c < VW; c++) acc[c] += a[i + c] * b[i + c];                            \
        S s = 0;                                                                                   \
        for (int c = 0; c < VW; c++) s += acc[c];                                                  \
        return s;                                                                                  \
    }                                                                                              \
    static inline void axpy_##SUF(S *restrict y, S a, const S *restrict x, long n) {                                 \
        for (long i = 0; i < n; i += VW)                                                           \
            for (int c = 0; c < VW; c++) y[i + c] += a * x[i + c];                                 \
    }                                                                                              \
                                                                                                   \
    int namtm_forward_##SUF(long T, long BN, long d, long dp, long D, long L, long Lp, int key_mode, \
                            const S *W, const S *NPE, const S *Q, const S *A, const S *KK,         \
                            const S *PWK, S *TT, S *KT, S *H, S *R, S *HS, S *NR, S *THW, S *SS) { \
        S *buf = (S *)calloc(5 * Lp, sizeof(S));                                                   \
        if (!buf) return 1;                                                                        \
        S *hn = buf, *j = buf + 2 * Lp, *hnew = buf + 3 * Lp;                                      \
        for (long bn = 0; bn < BN; bn++) {                                                         \
            S *tt = TT + bn * D * Lp, *h = H + bn * 2 * Lp;                                        \
            S *kt = KT ? KT + bn * L * dp : NULL;                                                  \
            for (long t = 0; t < T; t++) {                                                         \
                long tb = t * BN + bn;                                                             \
                const S *w = W + tb * D;                                                           \
                const S npe = NPE ? NPE[tb] : 0;                                                   \
                memcpy(HS + tb * 2 * Lp, h, sizeof(S) * 2 * Lp);                                   \
                for (int hd = 0; hd < 2; hd++) {                                                   \
                    S nrm = sqrt(dot_##SUF(h + hd * Lp, h + hd * Lp, Lp));                         \
                    NR[tb * 2 + hd] = nrm;                                                         \
                    S den = nrm > EPS ? nrm : (S)EPS;                                              \
                    for (long l = 0; l < Lp; l++) hn[hd * Lp + l] = h[hd * Lp + l] / den;          \
                }                                                                                  \
                const S *hr = hn, *hw = hn + Lp;                                                   \
                if (key_mode) memset(j, 0, sizeof(S) * Lp);                                        \
                const S *q = Q ? Q + tb * dp : NULL;                                               \
                for (long i = 0; i < D; i++) {                                                     \
                    S *row = tt + i * Lp;                                                          \
                    S u = w[i];                                                                    \
                    if (NPE) {                                                                     \
                        S thw = dot_##SUF(row, hw, Lp);                                            \
                        THW[tb * D + i] = thw;                                                     \
                        u += npe * thw;                                                            \
                    }                                                                              \
                    axpy_##SUF(row, u, hw, Lp);                                                    \
                    if (i < d)                                                                     \
                        R[tb * d + i] = dot_##SUF(row, hr, Lp);                                    \
                    else if (key_mode == 1)                                                        \
                        axpy_##SUF(j, q[i - d], row, Lp);                                          \
                }                                                                                  \
                if (key_mode == 2) {                                                               \
                    const S *k = KK + tb * dp, *wr = h + Lp;                                       \
                    const S pw = PWK ? PWK[tb] : 1;                                                \
                    for (long l = 0; l < L; l++) {                                                 \
                        S *krow = kt + l * dp;                                                     \
                        S u2 = pw * wr[l];                                                         \
                        if (NPE) {                                                                 \
                            S s = dot_##SUF(krow, k, dp);                                          \
                            SS[tb * L + l] = s;                                                    \
                            u2 += npe * s;                                                         \
                        }                                                                          \
                        axpy_##SUF(krow, u2, k, dp);                                               \
                        j[l] = dot_##SUF(krow, q, dp);                                             \
                    }                                                                              \
                }                                                                                  \
                const S *a = A + tb * 8;                                                           \
                for (int hd = 0; hd < 2; hd++) {                                                   \
                    const S *hp = h + hd * Lp, *ah = a + hd * 4;                                   \
                    S *hq = hnew + hd * Lp;                                                        \
                    for (long l = 0; l < L; l++) {                                                 \
                        long lp = l + 1 == L ? 0 : l + 1, lm = l == 0 ? L - 1 : l - 1;             \
                        S v = ah[0] * hp[l] + ah[1] * hp[lp] + ah[2] * hp[lm];                     \
                        if (key_mode) v += ah[3] * j[l];                                           \
                        hq[l] = v;                                                                 \
                    }                                                                              \
                }                                                                                  \
                memcpy(h, hnew, sizeof(S) * 2 * Lp); /* padding cells stay 0 */                    \
            }                                                                                      \
        }                                                                                          \
        free(buf);                                                                                 \
        return 0;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* TT, KT: final tapes (rebuilt in place back to the initial ones); dTT, dKT, dH: gradients   \
     * w.r.t. the final state (turned in place into those w.r.t. the initial state). */            \
    int namtm_backward_##SUF(long T, long BN, long d, long dp, long D, long L, long Lp,            \
                             int key_mode, const S *W, const S *NPE, const S *Q, const S *A,       \
                             const S *KK, const S *PWK, const S *HS, const S *NR, const S *THW,    \
                             const S *SS, S *TT, S *KT, const S *dR, S *dTT, S *dKT, S *dH, S *dW, \
                             S *dNPE, S *dQ, S *dA, S *dKK, S *dPWK) {                             \
        S *buf = (S *)calloc(9 * Lp + 2 * dp, sizeof(S));                                          \
        if (!buf) return 1;                                                                        \
        S *hn = buf, *j = buf + 2 * Lp, *dj = buf + 3 * Lp, *dhp = buf + 4 * Lp;                   \
        S *dhn = buf + 6 * Lp, *dq = buf + 9 * Lp, *dk = buf + 9 * Lp + dp;                        \
        for (long bn = 0; bn < BN; bn++) {                                                         \
            S *tt = TT + bn * D * Lp, *dtt = dTT + bn * D * Lp, *dh = dH + bn * 2 * Lp;            \
            S *kt = KT ? KT + bn * L * dp : NULL, *dkt = dKT ? dKT + bn * L * dp : NULL;           \
            for (long t = T - 1; t >= 0; t--) {                                                    \
                long tb = t * BN + bn;                                                             \
                const S *hp = HS + tb * 2 * Lp, *a = A + tb * 8;                                   \
                const S npe = NPE ? NPE[tb] : 0;                                                   \
                const S *q = Q ? Q + tb * dp : NULL;                                               \
                S den[2];                                                                          \
                for (int hd = 0; hd < 2; hd++) {                                                   \
                    S nrm = NR[tb * 2 + hd];                                                       \
                    den[hd] = nrm > EPS ? nrm : (S)EPS;                                            \
                    for (long l = 0; l < Lp; l++) hn[hd * Lp + l] = hp[hd * Lp + l] / den[hd];     \
                }                                                                                  \
                const S *hr = hn, *hw = hn + Lp;                                                   \
                /* the jump target of this step, from the tape after its write */                  \
                if (key_mode == 1) {                                                               \
                    memset(j, 0, sizeof(S) * Lp);                                                  \
                    for (long i = 0; i < d; i++) axpy_##SUF(j, q[i], tt + (d + i) * Lp, Lp);       \
                } else if (key_mode == 2) {                                                        \
                    for (long l = 0; l < L; l++) j[l] = dot_##SUF(kt + l * dp, q, dp);             \
                }                                                                                  \
                /* H' = a0 H + a1 roll(H, -1) + a2 roll(H, 1) + a3 j */                            \
                if (key_mode) memset(dj, 0, sizeof(S) * Lp);                                       \
                for (int hd = 0; hd < 2; hd++) {                                                   \
                    const S *x = hp + hd * Lp, *g = dh + hd * Lp, *ah = a + hd * 4;                \
                    S *gp = dhp + hd * Lp, *da = dA + tb * 8 + hd * 4;                             \
                    S d0 = 0, d1 = 0, d2 = 0, d3 = 0;                                              \
                    for (long l = 0; l < L; l++) {                                                 \
                        long lp = l + 1 == L ? 0 : l + 1, lm = l == 0 ? L - 1 : l - 1;             \
                        d0 += g[l] * x[l];                                                         \
                        d1 += g[l] * x[lp];                                                        \
                        d2 += g[l] * x[lm];                                                        \
                        gp[l] = ah[0] * g[l] + ah[1] * g[lm] + ah[2] * g[lp];                      \
                    }                                                                              \
                    if (key_mode) {                                                                \
                        d3 = dot_##SUF(g, j, Lp);                                                  \
                        axpy_##SUF(dj, ah[3], g, Lp);                                              \
                    }                                                                              \
                    da[0] = d0, da[1] = d1, da[2] = d2, da[3] = d3;                                \
                }                                                                                  \
                S dnpe = 0;                                                                        \
                if (key_mode == 2) {                                                               \
                    const S *k = KK + tb * dp, *wr = hp + Lp;                                      \
                    const S pw = PWK ? PWK[tb] : 1;                                                \
                    S dpw = 0;                                                                     \
                    memset(dq, 0, sizeof(S) * 2 * dp);                                             \
                    for (long l = 0; l < L; l++) {                                                 \
                        S *krow = kt + l * dp, *dkrow = dkt + l * dp;                              \
                        axpy_##SUF(dq, dj[l], krow, dp);                                           \
                        axpy_##SUF(dkrow, dj[l], q, dp);                                           \
                        S s = NPE ? SS[tb * L + l] : 0;                                            \
                        S u2 = pw * wr[l] + npe * s;                                               \
                        S du2 = dot_##SUF(dkrow, k, dp);                                           \
                        axpy_##SUF(dk, u2, dkrow, dp);                                             \
                        axpy_##SUF(krow, -u2, k, dp); /* rebuild KT_{t-1} */                       \
                        dpw += du2 * wr[l];                                                        \
                        dhp[Lp + l] += du2 * pw;                                                   \
                        if (NPE) {                                                                 \
                            dnpe += du2 * s;                                                       \
                            S ds = npe * du2;                                                      \
                            axpy_##SUF(dkrow, ds, k, dp);                                          \
                            axpy_##SUF(dk, ds, krow, dp);                                          \
                        }                                                                          \
                    }                                                                              \
                    memcpy(dQ + tb * dp, dq, sizeof(S) * dp);                                      \
                    memcpy(dKK + tb * dp, dk, sizeof(S) * dp);                                     \
                    if (PWK) dPWK[tb] = dpw;                                                       \
                }                                                                                  \
                memset(dhn, 0, sizeof(S) * 2 * Lp);                                                \
                S *dhr = dhn, *dhw = dhn + Lp;                                                     \
                const S *w = W + tb * D;                                                           \
                for (long i = 0; i < D; i++) {                                                     \
                    S *row = tt + i * Lp, *drow = dtt + i * Lp;                                    \
                    if (i < d) { /* r_i = <row, h_r> */                                            \
                        S g = dR[tb * d + i];                                                      \
                        axpy_##SUF(dhr, g, row, Lp);                                               \
                        axpy_##SUF(drow, g, hr, Lp);                                               \
                    } else if (key_mode == 1) { /* j = sum_i q_i row_i */                          \
                        dQ[tb * dp + i - d] = dot_##SUF(dj, row, Lp);                              \
                        axpy_##SUF(drow, q[i - d], dj, Lp);                                        \
                    }                                                                              \
                    /* row = row_prev + u h_w, u = w_i + npe <row_prev, h_w> */                    \
                    S thw = NPE ? THW[tb * D + i] : 0;                                             \
                    S u = w[i] + npe * thw;                                                        \
                    S du = dot_##SUF(drow, hw, Lp);                                                \
                    axpy_##SUF(dhw, u, drow, Lp);                                                  \
                    axpy_##SUF(row, -u, hw, Lp); /* rebuild TT_{t-1} */                            \
                    dW[tb * D + i] = du;                                                           \
                    if (NPE) {                                                                     \
                        dnpe += du * thw;                                                          \
                        S dthw = du * npe;                                                         \
                        axpy_##SUF(dhw, dthw, row, Lp);                                            \
                        axpy_##SUF(drow, dthw, hw, Lp);                                            \
                    }                                                                              \
                }                                                                                  \
                if (NPE) dNPE[tb] = dnpe;                                                          \
                /* unit heads: h = H / max(|H|, eps); padding cells stay 0 */                      \
                for (int hd = 0; hd < 2; hd++) {                                                   \
                    const S *g = dhn + hd * Lp, *x = hn + hd * Lp;                                 \
                    S dt = NR[tb * 2 + hd] > EPS ? dot_##SUF(g, x, Lp) : 0;                        \
                    for (long l = 0; l < Lp; l++)                                                  \
                        dh[hd * Lp + l] = dhp[hd * Lp + l] + (g[l] - x[l] * dt) / den[hd];         \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        free(buf);                                                                                 \
        return 0;                                                                                  \
    }

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)

/* Bidirectional GRU (one layer, zero initial states; PyTorch's gate order r, z, n), the 2022
 * NAM-TM's controller. The input projections are one GEMM outside (GI = x W_ih^T + b_ih, both
 * directions); here only the recurrence, both directions of every row in one call. Row b has
 * n_b = lengths[b] real tokens (right padding): the forward direction runs t = 0..n_b-1, the
 * backward one t = n_b-1..0; padded positions get zero outputs and zero gradients.
 * Layouts: GI [B, T, 2, 3H]; WT [2, H, 3H] (W_hh transposed, for the forward's row-vector
 * products); WH [2, 3H, H] (W_hh, for the backward's); BH [2, 3H]; OUT [B, T, 2, H];
 * G [B, T, 2, 4H] saved per step: r, z, n and gh_n = h W_hn + b_hn. */
#define DEFINE_GRU(S, SUF, EXP, TANH)                                                              \
    int bigru_forward_##SUF(long B, long T, long H, const long *lengths, const S *GI,              \
                            const S *WT, const S *BH, S *OUT, S *G) {                              \
        S *restrict gh = (S *)malloc(sizeof(S) * 3 * H);                                           \
        if (!gh) return 1;                                                                         \
        for (long b = 0; b < B; b++) {                                                             \
            long n = lengths ? lengths[b] : T;                                                     \
            for (long t = n; t < T; t++) {                                                         \
                memset(OUT + (b * T + t) * 2 * H, 0, sizeof(S) * 2 * H);                           \
                memset(G + (b * T + t) * 8 * H, 0, sizeof(S) * 8 * H);                             \
            }                                                                                      \
            for (int dir = 0; dir < 2; dir++) {                                                    \
                const S *wt = WT + dir * H * 3 * H, *bh = BH + dir * 3 * H;                        \
                const S *restrict hp = NULL; /* previous output (NULL: zero initial state) */      \
                for (long s = 0; s < n; s++) {                                                     \
                    long t = dir ? n - 1 - s : s;                                                  \
                    long bt = (b * T + t) * 2 + dir;                                               \
                    const S *restrict gi = GI + bt * 3 * H;                                        \
                    S *restrict h = OUT + bt * H, *restrict g = G + bt * 4 * H;                    \
                    memcpy(gh, bh, sizeof(S) * 3 * H);                                             \
                    if (hp)                                                                        \
                        for (long k = 0; k < H; k++) {                                             \
                            const S hk = hp[k], *restrict w = wt + k * 3 * H;                      \
                            for (long i = 0; i < 3 * H; i++) gh[i] += hk * w[i];                   \
                        }                                                                          \
                    for (long i = 0; i < H; i++) {                                                 \
                        S r = 1 / (1 + EXP(-(gi[i] + gh[i])));                                     \
                        S z = 1 / (1 + EXP(-(gi[H + i] + gh[H + i])));                             \
                        S nn = TANH(gi[2 * H + i] + r * gh[2 * H + i]);                            \
                        g[i] = r, g[H + i] = z, g[2 * H + i] = nn, g[3 * H + i] = gh[2 * H + i];   \
                        h[i] = (1 - z) * nn + (hp ? z * hp[i] : 0);                                \
                    }                                                                              \
                    hp = h;                                                                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        free(gh);                                                                                  \
        return 0;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* DOUT [B, T, 2, H] -> DGI [B, T, 2, 3H] (gradient of GI) and DGH [B, T, 2, 3H] (of gh). */   \
    int bigru_backward_##SUF(long B, long T, long H, const long *lengths, const S *WH,             \
                             const S *OUT, const S *G, const S *DOUT, S *DGI, S *DGH) {            \
        S *carry = (S *)malloc(sizeof(S) * H);                                                     \
        if (!carry) return 1;                                                                      \
        for (long b = 0; b < B; b++) {                                                             \
            long n = lengths ? lengths[b] : T;                                                     \
            for (long t = n; t < T; t++) {                                                         \
                memset(DGI + (b * T + t) * 6 * H, 0, sizeof(S) * 6 * H);                           \
                memset(DGH + (b * T + t) * 6 * H, 0, sizeof(S) * 6 * H);                           \
            }                                                                                      \
            for (int dir = 0; dir < 2; dir++) {                                                    \
                const S *wh = WH + dir * 3 * H * H;                                                \
                memset(carry, 0, sizeof(S) * H);                                                   \
                for (long s = n - 1; s >= 0; s--) {                                                \
                    long t = dir ? n - 1 - s : s;                                                  \
                    long bt = (b * T + t) * 2 + dir;                                               \
                    const S *g = G + bt * 4 * H, *dout = DOUT + bt * H;                            \
                    const S *hp = s ? OUT + ((b * T + (dir ? t + 1 : t - 1)) * 2 + dir) * H : NULL; \
                    S *dgi = DGI + bt * 3 * H, *dgh = DGH + bt * 3 * H;                            \
                    for (long i = 0; i < H; i++) {                                                 \
                        S r = g[i], z = g[H + i], nn = g[2 * H + i], ghn = g[3 * H + i];           \
                        S gr = dout[i] + carry[i], h0 = hp ? hp[i] : 0;                            \
                        S dn = gr * (1 - z) * (1 - nn * nn);                                       \
                        S dr = dn * ghn * r * (1 - r);                                             \
                        S dz = gr * (h0 - nn) * z * (1 - z);                                       \
                        dgi[i] = dr, dgi[H + i] = dz, dgi[2 * H + i] = dn;                         \
                        dgh[i] = dr, dgh[H + i] = dz, dgh[2 * H + i] = dn * r;                     \
                        carry[i] = gr * z;                                                         \
                    }                                                                              \
                    for (long j = 0; j < 3 * H; j++) {                                             \
                        const S a = dgh[j], *w = wh + j * H;                                       \
                        for (long i = 0; i < H; i++) carry[i] += a * w[i];                         \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        free(carry);                                                                               \
        return 0;                                                                                  \
    }

/* float32: exp by range reduction and a degree-7 Taylor polynomial (relative error < 1e-7),
 * written so that the compiler vectorises the gate loops (libm's expf is a scalar call).
 * Inputs are clamped to [-87, 88] (the result stays finite and normal); NaN propagates. */
static inline float exp_f32(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f; /* ln 2 in two parts (Cody-Waite) */
    r = r + n * 2.12194440e-4f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int e = ((int)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}
static inline float tanh_f32(float x) { return 1.0f - 2.0f / (exp_f32(2.0f * x) + 1.0f); }

DEFINE_GRU(float, f32, exp_f32, tanh_f32)
DEFINE_GRU(double, f64, exp, tanh)
