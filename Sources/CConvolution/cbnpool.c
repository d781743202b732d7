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

struct kernels;

struct cbnpool {
  const clayout *layout, *output;
  const struct kernels *kernels;
  long n, c, h, w, ho, wo, block;
  long sn, scb, sh, sw;      // input strides in floats: image, channel block, row, column
  long on, ocb, oh, ow;      // the pooled output's (same layout family)
  char refused[160];         // why the kernels cannot take the layout ("" when they can)
  struct cbnpool *next;
};

static const struct kernels *kernels_for_this_cpu(const char **name);

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

// The handle for `layout`, or one whose `refused` says why the kernels cannot take it: refusals are
// cached too, so that a layout is examined once, not at every training step.
static struct cbnpool *create(const clayout *layout) {
  struct cbnpool *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->layout = layout;
  cdnnl_md md = clayout_md(layout);
  if (cdnnl_md_ndims(md) != 4 || cdnnl_md_type(md) != dnnl_f32) {
    snprintf(p->refused, sizeof p->refused, "not a 4-D float tensor");
    return p;
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
    snprintf(p->refused, sizeof p->refused, "layout %s is not nChw16c, nChw8c or nhwc", clayout_name(layout));
    return p;
  }
  p->kernels = kernels_for_this_cpu(NULL);
  p->n = dims[0], p->c = dims[1], p->h = dims[2], p->w = dims[3];
  p->ho = p->h / 2, p->wo = p->w / 2;
  strides_of(tag, p->c, p->h, p->w, &p->block, &p->sn, &p->scb, &p->sh, &p->sw);
  long ob;
  strides_of(tag, p->c, p->ho, p->wo, &ob, &p->on, &p->ocb, &p->oh, &p->ow);
  dnnl_dims_t out_dims = {dims[0], dims[1], p->ho, p->wo};
  if (p->c % p->block != 0 || p->block > MAX_BLOCK || p->ho < 1 || p->wo < 1 ||
      (p->output = clayout_plain_tagged(out_dims, tag)) == NULL)
    snprintf(p->refused, sizeof p->refused, "%ld channels in blocks of %ld at %ldx%ld are not supported",
             p->c, p->block, p->h, p->w);
  return p;
}

cbnpool *cbnpool_get(const clayout *layout, char *error, size_t error_length) {
  pthread_mutex_lock(&cache_lock);
  struct cbnpool *found = fused;
  while (found && found->layout != layout) found = found->next;
  if (found == NULL && (found = create(layout)) != NULL) {
    found->next = fused;
    fused = found;
  }
  pthread_mutex_unlock(&cache_lock);
  if (found == NULL) {
    snprintf(error, error_length, "out of memory");
    return NULL;
  }
  if (found->refused[0]) {
    snprintf(error, error_length, "%s", found->refused);
    return NULL;
  }
  return found;
}

const clayout *cbnpool_output_layout(const cbnpool *p) { return p->output; }

size_t cbnpool_output_count(const cbnpool *p) { return (size_t)(p->n * p->c * p->ho * p->wo); }

// The kernels, compiled three times: for AVX-512, for AVX2 with FMA, and for plain x86-64. The
// set a layer uses follows oneDNN's effective instruction set (the CPU's, lowered by
// ONEDNN_MAX_CPU_ISA), so that imitating an AVX2-only machine on a larger one runs these kernels'
// AVX2 code too, and the tests can run every set this CPU has.
struct kernels {
  void (*statistics)(const cbnpool *, const float *, long, long, double *, double *);
  void (*forward)(const cbnpool *, const float *, const float *, const float *, float *,
                  unsigned char *, long, long);
  void (*backward_sums)(const cbnpool *, const float *, const float *, const unsigned char *,
                        const float *, long, long, double *, double *);
  void (*backward)(const cbnpool *, const float *, const float *, const unsigned char *,
                   const float *, const float *, const float *, const float *, float *, long,
                   long);
};

#define ISA avx512
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))), apply_to = function)
#include "cbnpool_kernels.h"
#pragma clang attribute pop
#undef ISA

#define ISA avx2
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#include "cbnpool_kernels.h"
#pragma clang attribute pop
#undef ISA

#define ISA plain
#include "cbnpool_kernels.h"
#undef ISA

static int has_isa(dnnl_cpu_isa_t isa) {
  unsigned bits = (unsigned)dnnl_get_effective_cpu_isa();
  return (bits & (unsigned)isa) == (unsigned)isa;
}

// The set oneDNN's instruction set calls for, and its name into *name unless `name` is NULL.
static const struct kernels *kernels_for_this_cpu(const char **name) {
  const char *ignored;
  if (name == NULL) name = &ignored;
  if (has_isa(dnnl_cpu_isa_avx512_core)) return *name = "AVX-512", &kernels_avx512;
  if (has_isa(dnnl_cpu_isa_avx2)) return *name = "AVX2", &kernels_avx2;
  return *name = "x86-64", &kernels_plain;
}

// The tests' choice of kernel set (NULL: each handle's own).
static const struct kernels *forced;
static const char *forced_name;

const char *cbnpool_instruction_set(void) {
  const char *name;
  kernels_for_this_cpu(&name);
  return forced ? forced_name : name;
}

int cbnpool_force_instruction_set(const char *name) {
  if (name == NULL) {
    forced = NULL;
    return 0;
  }
  __builtin_cpu_init();
  if (strcmp(name, "AVX-512") == 0 && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    forced = &kernels_avx512, forced_name = "AVX-512";
  else if (strcmp(name, "AVX2") == 0 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    forced = &kernels_avx2, forced_name = "AVX2";
  else if (strcmp(name, "x86-64") == 0)
    forced = &kernels_plain, forced_name = "x86-64";
  else
    return -1;
  return 0;
}

static const struct kernels *use(const cbnpool *p) { return forced ? forced : p->kernels; }

void cbnpool_statistics(const cbnpool *p, const float *x, long n0, long n1, double *sum,
                        double *squares) {
  use(p)->statistics(p, x, n0, n1, sum, squares);
}

void cbnpool_forward(const cbnpool *p, const float *x, const float *scale, const float *shift,
                     float *y, unsigned char *winner, long n0, long n1) {
  use(p)->forward(p, x, scale, shift, y, winner, n0, n1);
}

void cbnpool_backward_sums(const cbnpool *p, const float *x, const float *dy,
                           const unsigned char *winner, const float *mean, long n0, long n1,
                           double *sum, double *centred) {
  use(p)->backward_sums(p, x, dy, winner, mean, n0, n1, sum, centred);
}

void cbnpool_backward(const cbnpool *p, const float *x, const float *dy,
                      const unsigned char *winner, const float *mean, const float *k,
                      const float *a, const float *s, float *dx, long n0, long n1) {
  use(p)->backward(p, x, dy, winner, mean, k, a, s, dx, n0, n1);
}
