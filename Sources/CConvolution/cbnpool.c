// Training-mode batch normalisation + ReLU + 2x2 max pooling as one layer (see clayers.h).
//
// Why: at the first block's resolution these three are memory-bound, and on oneDNN's separate
// primitives each reads and writes the whole full-resolution tensor: batch norm reads it for its
// statistics and again to normalise, writes the normalised copy, pooling reads that and writes the
// pooled one; backward writes a full-resolution gradient only for batch norm to read it twice and
// write another. Here the normalised tensor never exists: forward reads the input twice
// (statistics; normalise, rectify and pool in registers) and writes only the pooled output and
// each window's winner; backward reads the input twice (the gradient's two sums; the input
// gradient) and writes only the input gradient.
//
// Layouts: channels in contiguous blocks of B floats per pixel (nChw16c, nChw8c: B = 16 or 8;
// nhwc: B = C), which is what oneDNN's convolutions leave their outputs in on these machines.
// The kernels work on a range of images, so the caller spreads images over its threads; the
// statistics are per image (double), so their sum is the same whatever the split.

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct cbnpool {
  const clayout *layout, *output;
  long n, c, h, w, ho, wo, block;
  long sn, scb, sh, sw;      // input strides in floats: image, channel block, row, column
  long on, ocb, oh, ow;      // the pooled output's (same layout family)
  struct cbnpool *next;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cbnpool *fused;

// The largest channel block the kernels keep on the stack (nhwc with up to 1,024 channels).
#define MAX_BLOCK 1024

// Strides of a dense (N, C, H, W) tensor in `tag` (one of the three families) into *p.
static void strides_of(dnnl_format_tag_t tag, long c, long h, long w, long *block, long *sn,
                       long *scb, long *sh, long *sw) {
  if (tag == dnnl_nhwc) {
    *block = c, *sw = c, *sh = w * c, *scb = 0, *sn = h * w * c;
  } else {
    long b = tag == dnnl_nChw16c ? 16 : 8;
    *block = b, *sw = b, *sh = w * b, *scb = h * w * b, *sn = c * h * w;
  }
}

static struct cbnpool *create(const clayout *layout, char *error, size_t error_length) {
  cdnnl_md md = clayout_md(layout);
  if (cdnnl_md_ndims(md) != 4 || cdnnl_md_type(md) != dnnl_f32) {
    snprintf(error, error_length, "not a 4-D float tensor");
    return NULL;
  }
  dnnl_dims_t dims;
  cdnnl_md_dims(md, dims);
  const dnnl_format_tag_t tags[3] = {dnnl_nChw16c, dnnl_nChw8c, dnnl_nhwc};
  dnnl_format_tag_t tag = dnnl_format_tag_undef;
  for (int i = 0; i < 3 && tag == dnnl_format_tag_undef; i++) {
    dnnl_memory_desc_t candidate = {0};
    if (cdnnl_md_create(&candidate, 4, dims, dnnl_f32, tags[i]) != dnnl_success) continue;
    if (cdnnl_md_equal(CDNNL_MD(candidate), md)) tag = tags[i];
    cdnnl_md_free(candidate);
  }
  if (tag == dnnl_format_tag_undef) {
    snprintf(error, error_length, "layout %s is not nChw16c, nChw8c or nhwc", clayout_name(layout));
    return NULL;
  }
  struct cbnpool *p = calloc(1, sizeof *p);
  if (p == NULL) {
    snprintf(error, error_length, "out of memory");
    return NULL;
  }
  p->layout = layout;
  p->n = dims[0], p->c = dims[1], p->h = dims[2], p->w = dims[3];
  p->ho = p->h / 2, p->wo = p->w / 2;
  strides_of(tag, p->c, p->h, p->w, &p->block, &p->sn, &p->scb, &p->sh, &p->sw);
  long ob;
  strides_of(tag, p->c, p->ho, p->wo, &ob, &p->on, &p->ocb, &p->oh, &p->ow);
  dnnl_dims_t out_dims = {dims[0], dims[1], p->ho, p->wo};
  if (p->c % p->block != 0 || p->block > MAX_BLOCK || p->ho < 1 || p->wo < 1 ||
      (p->output = clayout_plain_tagged(out_dims, tag)) == NULL) {
    snprintf(error, error_length, "%ld channels in blocks of %ld at %ldx%ld are not supported",
             p->c, p->block, p->h, p->w);
    free(p);
    return NULL;
  }
  return p;
}

cbnpool *cbnpool_get(const clayout *layout, char *error, size_t error_length) {
  pthread_mutex_lock(&cache_lock);
  struct cbnpool *found = fused;
  while (found && found->layout != layout) found = found->next;
  if (found == NULL && (found = create(layout, error, error_length)) != NULL) {
    found->next = fused;
    fused = found;
  }
  pthread_mutex_unlock(&cache_lock);
  return found;
}

const clayout *cbnpool_output_layout(const cbnpool *p) { return p->output; }

size_t cbnpool_output_count(const cbnpool *p) { return (size_t)(p->n * p->c * p->ho * p->wo); }

// Sum and sum of squares of each channel of image `i`, into sum[i * C + c], squares[i * C + c].
__attribute__((target_clones("avx512f", "avx2", "default")))
void cbnpool_statistics(const cbnpool *p, const float *x, long n0, long n1, double *sum,
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
__attribute__((target_clones("avx512f", "avx2", "default")))
void cbnpool_forward(const cbnpool *p, const float *x, const float *scale, const float *shift,
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
__attribute__((target_clones("avx512f", "avx2", "default")))
void cbnpool_backward_sums(const cbnpool *p, const float *x, const float *dy, const unsigned char *winner,
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
__attribute__((target_clones("avx512f", "avx2", "default")))
void cbnpool_backward(const cbnpool *p, const float *x, const float *dy, const unsigned char *winner,
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
