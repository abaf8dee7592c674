/* LSAM: the per-head work of one recurrence step, forward and hand-written backward (the math of
 * _LSAMScan in lsam.py, whose PyTorch loop is the fallback; the tests compare them).
 *
 * Compiled on first use by _lsam_kernel.py (cc -O3 -march=native -shared) and called through
 * ctypes on tensor data pointers, once per step: the caller runs the step's GEMM (h_{t-1} W^T,
 * and dz W in the backward) in PyTorch, this file everything between two GEMMs. One pass over
 * each head's memory rows does the whole step, so a memory is loaded once per step (PyTorch's
 * batched 1 x d @ d x d products and broadcast rank-1 updates each stream all memories again).
 *
 * Shapes (contiguous; BH = batch * heads, row bh = b * H + n belongs to batch row b):
 *   z [BH, 3d + G] pre-activations [q : k : v : gates] (gates p_r, p_w, and p_e when G = 3);
 *   keep [B] 1 on real tokens, 0 on padding, or NULL; M, dM [BH, d, d] (value rows, key columns);
 *   saved per step: QK [BH, 2, d] unit q and k, NRM [BH, 2] their norms, GR [BH, G] sigmoids,
 *   VV [BH, d] v - M k (tied erase) or v (separate), MK [BH, d] M k (separate only, else NULL),
 *   Y [BH, d] reads; out, hprev, hnext, dout, dh, dpass [BH, d]; dz [BH, 3d + G].
 */
#include <math.h>
#include <stdlib.h>

#define EPS 1e-6

#define DEFINE_LSAM(S, SUF, EXP)                                                                   \
    static inline S dot_##SUF(const S *restrict a, const S *restrict b, long n) {                  \
        S s = 0;                                                                                   \
        for (long j = 0; j < n; j++) s += a[j] * b[j];                                             \
        return s;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* q, k = z / max(|z|, eps); M <- M + u k^T with u = p_w (v - M k) (tied) or p_w v - p_e M k; \
     * y = M q; out = p_r y; hnext = out, or hprev on padding. */                                  \
    int lsam_forward_step_##SUF(long BH, long H, long d, long G, const S *restrict z,             \
                                const S *restrict keep, S *restrict M, S *restrict QK,            \
                                S *restrict NRM, S *restrict GR, S *restrict VV,                  \
                                S *restrict MK, S *restrict Y, S *restrict out,                   \
                                const S *restrict hprev, S *restrict hnext) {                     \
        long Sz = 3 * d + G;                                                                       \
        for (long bh = 0; bh < BH; bh++) {                                                         \
            const S *zq = z + bh * Sz, *zk = zq + d, *zv = zq + 2 * d, *zg = zq + 3 * d;           \
            S *q = QK + bh * 2 * d, *k = q + d;                                                    \
            S nq = sqrt(dot_##SUF(zq, zq, d)), nk = sqrt(dot_##SUF(zk, zk, d));                    \
            NRM[2 * bh] = nq;                                                                      \
            NRM[2 * bh + 1] = nk;                                                                  \
            S cq = nq > (S)EPS ? nq : (S)EPS, ck = nk > (S)EPS ? nk : (S)EPS;                      \
            for (long j = 0; j < d; j++) {                                                         \
                q[j] = zq[j] / cq;                                                                 \
                k[j] = zk[j] / ck;                                                                 \
            }                                                                                      \
            S *g = GR + bh * G;                                                                    \
            for (long i = 0; i < G; i++) g[i] = 1 / (1 + EXP(-zg[i]));                             \
            S kp = keep ? keep[bh / H] : 1;                                                        \
            S p_r = g[0] * kp, p_w = g[1] * kp, p_e = G == 3 ? g[2] * kp : 0;                      \
            S *Mb = M + bh * d * d, *vv = VV + bh * d, *y = Y + bh * d;                            \
            S *mk = MK ? MK + bh * d : NULL;                                                       \
            const S *hp = hprev + bh * d;                                                          \
            S *o = out + bh * d, *hn = hnext + bh * d;                                             \
            for (long i = 0; i < d; i++) {                                                         \
                S *Mi = Mb + i * d;                                                                \
                S m = dot_##SUF(Mi, k, d), u;                                                      \
                if (mk) {                                                                          \
                    vv[i] = zv[i];                                                                 \
                    mk[i] = m;                                                                     \
                    u = zv[i] * p_w - m * p_e;                                                     \
                } else {                                                                           \
                    vv[i] = zv[i] - m;                                                             \
                    u = vv[i] * p_w;                                                               \
                }                                                                                  \
                for (long j = 0; j < d; j++) Mi[j] += u * k[j];                                    \
                S yi = dot_##SUF(Mi, q, d);                                                        \
                y[i] = yi;                                                                         \
                o[i] = yi * p_r;                                                                   \
                hn[i] = kp > 0 ? o[i] : hp[i];                                                     \
            }                                                                                      \
        }                                                                                          \
        return 0;                                                                                  \
    }                                                                                              \
                                                                                                   \
    /* Reverse of one step: dout = dL/dout_t, dh = dL/dh_t (carried), M = M_t (rebuilt in place   \
     * to M_{t-1} = M_t - u k^T), dM = dL/dM_t (turned into dL/dM_{t-1} but for the part through  \
     * z, which the caller adds with dz W). Writes dz and, with padding, dpass = dh on padded     \
     * rows (the carried hidden state skips the step), else 0. Returns 1 if out of memory. */     \
    int lsam_backward_step_##SUF(long BH, long H, long d, long G, const S *restrict keep,         \
                                 const S *restrict dout, const S *restrict dh,                    \
                                 const S *restrict QK, const S *restrict NRM,                     \
                                 const S *restrict GR, const S *restrict VV,                      \
                                 const S *restrict MK, const S *restrict Y, S *restrict M,        \
                                 S *restrict dM, S *restrict dz, S *restrict dpass) {             \
        long Sz = 3 * d + G;                                                                       \
        S *buf = malloc(sizeof(S) * 3 * d);                                                        \
        if (!buf) return 1;                                                                        \
        S *restrict dy = buf, *restrict dq = buf + d, *restrict dk = buf + 2 * d;                  \
        for (long bh = 0; bh < BH; bh++) {                                                         \
            S kp = keep ? keep[bh / H] : 1;                                                        \
            const S *q = QK + bh * 2 * d, *k = q + d, *g = GR + bh * G;                            \
            S p_r = g[0] * kp, p_w = g[1] * kp, p_e = G == 3 ? g[2] * kp : 0;                      \
            const S *dob = dout + bh * d, *dhb = dh + bh * d;                                      \
            for (long i = 0; i < d; i++) dy[i] = dob[i] + dhb[i] * kp; /* dL/dh_t */              \
            if (dpass)                                                                             \
                for (long i = 0; i < d; i++) dpass[bh * d + i] = dhb[i] * (1 - kp);                \
            S dpr = dot_##SUF(dy, Y + bh * d, d); /* h_t = p_r y */                                \
            for (long i = 0; i < d; i++) dy[i] *= p_r;                                             \
            for (long j = 0; j < d; j++) dq[j] = dk[j] = 0;                                        \
            S dgw = 0, dge = 0;                                                                    \
            S *Mb = M + bh * d * d, *dMb = dM + bh * d * d, *dzb = dz + bh * Sz;                   \
            const S *vv = VV + bh * d, *mk = MK ? MK + bh * d : NULL;                              \
            for (long i = 0; i < d; i++) {                                                         \
                S *restrict Mi = Mb + i * d, *restrict dMi = dMb + i * d;                          \
                S dyi = dy[i];                                                                     \
                for (long j = 0; j < d; j++) { /* y = M_t q */                                     \
                    dq[j] += dyi * Mi[j];                                                          \
                    dMi[j] += dyi * q[j];                                                          \
                }                                                                                  \
                S u = mk ? vv[i] * p_w - mk[i] * p_e : vv[i] * p_w;                                \
                S du = dot_##SUF(dMi, k, d); /* M_t = M_{t-1} + u k^T */                           \
                for (long j = 0; j < d; j++) {                                                     \
                    dk[j] += u * dMi[j];                                                           \
                    Mi[j] -= u * k[j];                                                             \
                }                                                                                  \
                S dv = du * p_w, dmk;                                                              \
                dzb[2 * d + i] = dv;                                                               \
                dgw += du * vv[i];                                                                 \
                if (mk) {                                                                          \
                    dge -= du * mk[i];                                                             \
                    dmk = -p_e * du;                                                               \
                } else {                                                                           \
                    dmk = -dv;                                                                     \
                }                                                                                  \
                for (long j = 0; j < d; j++) { /* M k, with M = M_{t-1} */                         \
                    dMi[j] += dmk * k[j];                                                          \
                    dk[j] += dmk * Mi[j];                                                          \
                }                                                                                  \
            }                                                                                      \
            /* unit norm: a -> a / max(|a|, eps) */                                                \
            S nq = NRM[2 * bh], nk = NRM[2 * bh + 1];                                              \
            S cq = nq > (S)EPS ? nq : (S)EPS, ck = nk > (S)EPS ? nk : (S)EPS;                      \
            S sq = nq > (S)EPS ? dot_##SUF(dq, q, d) : 0;                                          \
            S sk = nk > (S)EPS ? dot_##SUF(dk, k, d) : 0;                                          \
            for (long j = 0; j < d; j++) {                                                         \
                dzb[j] = (dq[j] - q[j] * sq) / cq;                                                 \
                dzb[d + j] = (dk[j] - k[j] * sk) / ck;                                             \
            }                                                                                      \
            S dg[3] = {dpr, dgw, dge};                                                             \
            for (long i = 0; i < G; i++) dzb[3 * d + i] = dg[i] * kp * (g[i] * (1 - g[i]));        \
        }                                                                                          \
        free(buf);                                                                                 \
        return 0;                                                                                  \
    }

DEFINE_LSAM(float, f32, expf)
DEFINE_LSAM(double, f64, exp)
