// Batch normalisation and 2x2 max pooling on oneDNN's primitives, in the layout of their input.

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct cbnorm {
  const clayout *layout;
  int relu;
  float epsilon;
  size_t channels;
  pthread_mutex_t lock;
  dnnl_primitive_t forward, backward;
  dnnl_memory_desc_t stat, workspace;
  size_t workspace_bytes;
  struct cbnorm *next;
};

struct cpool {
  const clayout *layout, *output;
  pthread_mutex_t lock;
  dnnl_primitive_t forward, backward;
  dnnl_memory_desc_t workspace;
  size_t workspace_bytes;
  struct cpool *next;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cbnorm *norms;
static struct cpool *pools;

static struct cbnorm *bnorm_create(const clayout *layout, int relu, float epsilon, char *error,
                                   size_t error_length) {
  struct cbnorm *bn = calloc(1, sizeof *bn);
  dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
  if (bn == NULL) {
    snprintf(error, error_length, "out of memory");
    return NULL;
  }
  bn->layout = layout, bn->relu = relu, bn->epsilon = epsilon;
  pthread_mutex_init(&bn->lock, NULL);
  cdnnl_md data = clayout_md(layout);
  unsigned flags = dnnl_use_scale | dnnl_use_shift | (relu ? dnnl_fuse_norm_relu : 0);
  dnnl_dims_t dims;
  cdnnl_md_dims(data, dims);
  bn->channels = (size_t)dims[1];
  dnnl_dims_t stat_dims = {dims[1]};
  CDNNL_TRY(cdnnl_md_create(&bn->stat, 1, stat_dims, dnnl_f32, dnnl_x));
  CDNNL_TRY(cdnnl_bnorm_pds(&fpd, &bpd, data, epsilon, flags));
  CDNNL_TRY(dnnl_primitive_create(&bn->forward, fpd));
  CDNNL_TRY(cdnnl_md_copy(&bn->workspace, dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0)));
  bn->workspace_bytes = cdnnl_md_size(CDNNL_MD(bn->workspace));
  CDNNL_TRY(dnnl_primitive_create(&bn->backward, bpd));
  dnnl_primitive_desc_destroy(fpd);
  dnnl_primitive_desc_destroy(bpd);
  return bn;
fail:
  if (fpd) dnnl_primitive_desc_destroy(fpd);
  if (bpd) dnnl_primitive_desc_destroy(bpd);
  if (bn->forward) dnnl_primitive_destroy(bn->forward);
  free(bn);
  return NULL;
}

cbnorm *cbnorm_get(const clayout *layout, int relu, float epsilon, char *error, size_t error_length) {
  if (cdnnl_engine() == NULL) {
    snprintf(error, error_length, "oneDNN could not create a CPU engine and stream");
    return NULL;
  }
  pthread_mutex_lock(&cache_lock);
  struct cbnorm *found = norms;
  while (found && !(found->layout == layout && found->relu == relu && found->epsilon == epsilon))
    found = found->next;
  if (found == NULL && (found = bnorm_create(layout, relu, epsilon, error, error_length)) != NULL) {
    found->next = norms;
    norms = found;
  }
  pthread_mutex_unlock(&cache_lock);
  return found;
}

size_t cbnorm_workspace_size(const cbnorm *bn) { return bn->workspace_bytes; }

int cbnorm_forward(cbnorm *bn, const float *x, const float *gamma, const float *beta, float *y,
                   float *mean, float *variance, void *workspace) {
  cdnnl_md data = clayout_md(bn->layout), stat = CDNNL_MD(bn->stat);
  int kinds[7] = {DNNL_ARG_SRC, DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_DST,
                  DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_WORKSPACE};
  cdnnl_md descs[7] = {data, stat, stat, data, stat, stat, CDNNL_MD(bn->workspace)};
  void *buffers[7] = {(void *)x, (void *)gamma, (void *)beta, y, mean, variance, workspace};
  pthread_mutex_lock(&bn->lock);
  int status = cdnnl_run(bn->forward, bn->workspace_bytes > 0 ? 7 : 6, kinds, descs, buffers);
  pthread_mutex_unlock(&bn->lock);
  return status;
}

int cbnorm_backward(cbnorm *bn, const float *x, const clayout *dy_layout, const float *dy,
                    const float *mean, const float *variance, const float *gamma,
                    const float *beta, const void *workspace, float *dx, float *dgamma,
                    float *dbeta) {
  cdnnl_md data = clayout_md(bn->layout), stat = CDNNL_MD(bn->stat);
  size_t c = bn->channels;
  int status = 0;
  pthread_mutex_lock(&bn->lock);
  void *g = clayout_convert(dy_layout, dy, bn->layout, &status);
  float *dscale = cdnnl_alloc(2 * c * sizeof(float));
  if (dscale == NULL) status = -1;
  if (status == 0) {
    int kinds[10] = {DNNL_ARG_SRC, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_DIFF_DST,
                     DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_DIFF_SRC, DNNL_ARG_DIFF_SCALE,
                     DNNL_ARG_DIFF_SHIFT, DNNL_ARG_WORKSPACE};
    cdnnl_md descs[10] = {data, stat, stat, data, stat, stat, data, stat, stat, CDNNL_MD(bn->workspace)};
    void *buffers[10] = {(void *)x, (void *)mean, (void *)variance, g, (void *)gamma,
                         (void *)beta, dx, dscale, dscale + c, (void *)workspace};
    status = cdnnl_run(bn->backward, bn->workspace_bytes > 0 ? 10 : 9, kinds, descs, buffers);
  }
  if (status == 0)
    for (size_t i = 0; i < c; i++) {
      dgamma[i] += dscale[i];
      dbeta[i] += dscale[c + i];
    }
  free(dscale);
  clayout_release(dy, g);
  pthread_mutex_unlock(&bn->lock);
  return status;
}

static struct cpool *pool_create(const clayout *layout, char *error, size_t error_length) {
  struct cpool *pool = calloc(1, sizeof *pool);
  dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
  if (pool == NULL) {
    snprintf(error, error_length, "out of memory");
    return NULL;
  }
  pool->layout = layout;
  pthread_mutex_init(&pool->lock, NULL);
  cdnnl_md src = clayout_md(layout);
  dnnl_dims_t src_dims;
  cdnnl_md_dims(src, src_dims);
  dnnl_dims_t dst_dims = {src_dims[0], src_dims[1], src_dims[2] / 2, src_dims[3] / 2};
  dnnl_dims_t strides = {2, 2}, kernel = {2, 2}, pad_l = {0, 0};
  // Floor mode: the last row and column of an odd input belong to no window ((105 - 2) / 2 + 1 = 52).
  dnnl_dims_t pad_r = {0, 0};
  dnnl_memory_desc_t any_dst = {0};
  CDNNL_TRY(cdnnl_md_create(&any_dst, 4, dst_dims, dnnl_f32, dnnl_format_tag_any));
  CDNNL_TRY(cdnnl_max_pool_forward_pd(&fpd, src, CDNNL_MD(any_dst), strides, kernel, pad_l, pad_r));
  CDNNL_TRY(dnnl_primitive_create(&pool->forward, fpd));
  pool->output = clayout_intern(dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0));
  CDNNL_TRY(cdnnl_md_copy(&pool->workspace, dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0)));
  pool->workspace_bytes = cdnnl_md_size(CDNNL_MD(pool->workspace));
  CDNNL_TRY(cdnnl_max_pool_backward_pd(&bpd, src, clayout_md(pool->output), strides, kernel, pad_l,
                                       pad_r, fpd));
  CDNNL_TRY(dnnl_primitive_create(&pool->backward, bpd));
  dnnl_primitive_desc_destroy(fpd);
  dnnl_primitive_desc_destroy(bpd);
  cdnnl_md_free(any_dst);
  return pool;
fail:
  cdnnl_md_free(any_dst);
  if (fpd) dnnl_primitive_desc_destroy(fpd);
  if (bpd) dnnl_primitive_desc_destroy(bpd);
  if (pool->forward) dnnl_primitive_destroy(pool->forward);
  free(pool);
  return NULL;
}

cpool *cpool_get(const clayout *layout, char *error, size_t error_length) {
  if (cdnnl_engine() == NULL) {
    snprintf(error, error_length, "oneDNN could not create a CPU engine and stream");
    return NULL;
  }
  pthread_mutex_lock(&cache_lock);
  struct cpool *found = pools;
  while (found && found->layout != layout) found = found->next;
  if (found == NULL && (found = pool_create(layout, error, error_length)) != NULL) {
    found->next = pools;
    pools = found;
  }
  pthread_mutex_unlock(&cache_lock);
  return found;
}

const clayout *cpool_output_layout(const cpool *pool) { return pool->output; }

size_t cpool_workspace_size(const cpool *pool) { return pool->workspace_bytes; }

int cpool_forward(cpool *pool, const float *x, float *y, void *workspace) {
  int kinds[3] = {DNNL_ARG_SRC, DNNL_ARG_DST, DNNL_ARG_WORKSPACE};
  cdnnl_md descs[3] = {clayout_md(pool->layout), clayout_md(pool->output), CDNNL_MD(pool->workspace)};
  void *buffers[3] = {(void *)x, y, workspace};
  pthread_mutex_lock(&pool->lock);
  int status = cdnnl_run(pool->forward, 3, kinds, descs, buffers);
  pthread_mutex_unlock(&pool->lock);
  return status;
}

int cpool_backward(cpool *pool, const clayout *dy_layout, const float *dy, const void *workspace,
                   float *dx) {
  int status = 0;
  pthread_mutex_lock(&pool->lock);
  void *g = clayout_convert(dy_layout, dy, pool->output, &status);
  if (status == 0) {
    int kinds[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WORKSPACE, DNNL_ARG_DIFF_SRC};
    cdnnl_md descs[3] = {clayout_md(pool->output), CDNNL_MD(pool->workspace), clayout_md(pool->layout)};
    void *buffers[3] = {g, (void *)workspace, dx};
    status = cdnnl_run(pool->backward, 3, kinds, descs, buffers);
  }
  clayout_release(dy, g);
  pthread_mutex_unlock(&pool->lock);
  return status;
}
