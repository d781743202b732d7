// The fused layer's four kernels (see cbnpool.c), included once per instruction set: cbnpool.c
// defines ISA (the suffix of each function's name) and the target attribute around each
// inclusion. No include guard, on purpose.

#define KERNEL_PASTE(name, isa) name##_##isa
#define KERNEL_NAME(name, isa) KERNEL_PASTE(name, isa)
#define KERNEL(name) KERNEL_NAME(name, ISA)

// Sum and sum of squares of each channel of image `i`, into sum[i * C + c], squares[i * C + c].
static void KERNEL(statistics)(const cbnpool *p, const float *x, long n0, long n1, double *sum,
                        double *squares) {
  const long b = p->block;
  float s[MAX_BLOCK], q[MAX_BLOCK];
  for (long i = n0; i < n1; i++) {
    double *si = sum + i * p->c, *qi = squares + i * p->c;
    for (long ch = 0; ch < p->c; ch++) si[ch] = 0, qi[ch] = 0;
    for (long cb = 0; cb < p->c / b; cb++) {
      for (long r = 0; r < p->h; r++) {
        const float *row = x + i * p->sn + cb * p->scb + r * p->sh;
        for (long k = 0; k < b; k++) s[k] = 0, q[k] = 0;
        for (long col = 0; col < p->w; col++) {
          const float *v = row + col * p->sw;
          _Pragma("clang loop interleave_count(1)") for (long k = 0; k < b; k++) {
            s[k] += v[k];
            q[k] += v[k] * v[k];
          }
        }
        for (long k = 0; k < b; k++) si[cb * b + k] += s[k], qi[cb * b + k] += q[k];
      }
    }
  }
}

// y = max over each window of max(scale * x + shift, 0); winner = the window position (0-3, the
// first maximum in row-major order) plus 4 when the maximum is positive (the ReLU passed it).
static void KERNEL(forward)(const cbnpool *p, const float *x, const float *scale, const float *shift,
                     float *y, unsigned char *winner, long n0, long n1) {
  const long b = p->block;
  for (long i = n0; i < n1; i++)
    for (long cb = 0; cb < p->c / b; cb++) {
      const float *sc = scale + cb * b, *sf = shift + cb * b;
      for (long r = 0; r < p->ho; r++)
        for (long col = 0; col < p->wo; col++) {
          const float *x0 = x + i * p->sn + cb * p->scb + 2 * r * p->sh + 2 * col * p->sw;
          const float *x1 = x0 + p->sw, *x2 = x0 + p->sh, *x3 = x2 + p->sw;
          long o = i * p->on + cb * p->ocb + r * p->oh + col * p->ow;
          float *out = y + o;
          uint8_t *win = winner + o;
          _Pragma("clang loop interleave_count(1)") for (long k = 0; k < b; k++) {
            float best = x0[k] * sc[k] + sf[k];
            uint8_t at = 0;
            float z = x1[k] * sc[k] + sf[k];
            at = z > best ? 1 : at;
            best = z > best ? z : best;
            z = x2[k] * sc[k] + sf[k];
            at = z > best ? 2 : at;
            best = z > best ? z : best;
            z = x3[k] * sc[k] + sf[k];
            at = z > best ? 3 : at;
            best = z > best ? z : best;
            out[k] = best > 0 ? best : 0;
            win[k] = (uint8_t)(at | (best > 0 ? 4 : 0));
          }
        }
    }
}

// Per image: the sum of the gradient behind pooling and ReLU (dy, in the output's layout) and of
// its product with (x - mean), into sum[i * C + c] and centred[i * C + c].
static void KERNEL(backward_sums)(const cbnpool *p, const float *x, const float *dy, const unsigned char *winner,
                           const float *mean, long n0, long n1, double *sum, double *centred) {
  const long b = p->block;
  float s[MAX_BLOCK], t[MAX_BLOCK];
  for (long i = n0; i < n1; i++) {
    double *si = sum + i * p->c, *ti = centred + i * p->c;
    for (long ch = 0; ch < p->c; ch++) si[ch] = 0, ti[ch] = 0;
    for (long cb = 0; cb < p->c / b; cb++) {
      const float *mu = mean + cb * b;
      for (long r = 0; r < p->ho; r++) {
        for (long k = 0; k < b; k++) s[k] = 0, t[k] = 0;
        for (long col = 0; col < p->wo; col++) {
          const float *x0 = x + i * p->sn + cb * p->scb + 2 * r * p->sh + 2 * col * p->sw;
          const float *x1 = x0 + p->sw, *x2 = x0 + p->sh, *x3 = x2 + p->sw;
          long o = i * p->on + cb * p->ocb + r * p->oh + col * p->ow;
          const float *g = dy + o;
          const uint8_t *win = winner + o;
          // Every value is loaded and then selected (no loads behind a condition), so that the
          // loop vectorises.
          _Pragma("clang loop interleave_count(1)") for (long k = 0; k < b; k++) {
            unsigned w = win[k];
            float v0 = x0[k], v1 = x1[k], v2 = x2[k], v3 = x3[k], gv = g[k];
            float v = (w & 3) == 0 ? v0 : (w & 3) == 1 ? v1 : (w & 3) == 2 ? v2 : v3;
            float gk = (w & 4) ? gv : 0.0f;
            s[k] += gk;
            t[k] += gk * (v - mu[k]);
          }
        }
        for (long k = 0; k < b; k++) si[cb * b + k] += s[k], ti[cb * b + k] += t[k];
      }
    }
  }
}

// dx = k * (dy - a - (x - mean) * s) per channel, where dy is the pooled gradient at each
// window's winner when the ReLU passed it and zero elsewhere (rows and columns outside every
// window included).
static void KERNEL(backward)(const cbnpool *p, const float *x, const float *dy, const unsigned char *winner,
                      const float *mean, const float *k_, const float *a_, const float *s_,
                      float *dx, long n0, long n1) {
  const long b = p->block;
  for (long i = n0; i < n1; i++)
    for (long cb = 0; cb < p->c / b; cb++) {
      const float *mu = mean + cb * b, *kk = k_ + cb * b, *aa = a_ + cb * b, *ss = s_ + cb * b;
      for (long r = 0; r < p->ho; r++)
        for (long col = 0; col < p->wo; col++) {
          long at0 = i * p->sn + cb * p->scb + 2 * r * p->sh + 2 * col * p->sw;
          const float *x0 = x + at0, *x1 = x0 + p->sw, *x2 = x0 + p->sh, *x3 = x2 + p->sw;
          float *d0 = dx + at0, *d1 = d0 + p->sw, *d2 = d0 + p->sh, *d3 = d2 + p->sw;
          long o = i * p->on + cb * p->ocb + r * p->oh + col * p->ow;
          const float *g = dy + o;
          const uint8_t *win = winner + o;
          _Pragma("clang loop interleave_count(1)") for (long k = 0; k < b; k++) {
            unsigned w = win[k], at = w & 3;
            float gv = g[k];
            float gk = (w & 4) ? gv : 0.0f;
            float base = -aa[k] + mu[k] * ss[k];
            d0[k] = kk[k] * ((at == 0 ? gk : 0.0f) + base - x0[k] * ss[k]);
            d1[k] = kk[k] * ((at == 1 ? gk : 0.0f) + base - x1[k] * ss[k]);
            d2[k] = kk[k] * ((at == 2 ? gk : 0.0f) + base - x2[k] * ss[k]);
            d3[k] = kk[k] * ((at == 3 ? gk : 0.0f) + base - x3[k] * ss[k]);
          }
        }
      // An odd last row or column belongs to no window: only the mean terms reach it.
      for (long r = 0; r < p->h; r++)
        for (long col = (r < 2 * p->ho ? 2 * p->wo : 0); col < p->w; col++) {
          long at = i * p->sn + cb * p->scb + r * p->sh + col * p->sw;
          _Pragma("clang loop interleave_count(1)") for (long k = 0; k < b; k++)
            dx[at + k] = kk[k] * (-aa[k] - (x[at + k] - mu[k]) * ss[k]);
        }
    }
}

static const struct kernels KERNEL(kernels) = {KERNEL(statistics), KERNEL(forward), KERNEL(backward_sums), KERNEL(backward)};

#undef KERNEL
#undef KERNEL_NAME
#undef KERNEL_PASTE
