/* Fused block preparation of the chunk-parallel causal NAM attention (functional/chunk.py).
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
