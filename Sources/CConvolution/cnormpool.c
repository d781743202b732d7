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
  const dnnl_memory_desc_t *data = clayout_md(layout);
  unsigned flags = dnnl_use_scale | dnnl_use_shift | (relu ? dnnl_fuse_norm_relu : 0);
  dnnl_batch_normalization_desc_t desc;
  dnnl_dims_t stat_dims = {data->dims[1]};
  CDNNL_TRY(dnnl_memory_desc_init_by_tag(&bn->stat, 1, stat_dims, dnnl_f32, dnnl_x));
  CDNNL_TRY(dnnl_batch_normalization_forward_desc_init(&desc, dnnl_forward_training, data, epsilon, flags));
  CDNNL_TRY(dnnl_primitive_desc_create(&fpd, &desc, NULL, cdnnl_engine(), NULL));
  CDNNL_TRY(dnnl_primitive_create(&bn->forward, fpd));
  bn->workspace = *dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0);
  bn->workspace_bytes = dnnl_memory_desc_get_size(&bn->workspace);
  CDNNL_TRY(dnnl_batch_normalization_backward_desc_init(&desc, dnnl_backward, data, data, epsilon, flags));
  CDNNL_TRY(dnnl_primitive_desc_create(&bpd, &desc, NULL, cdnnl_engine(), fpd));
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
  const dnnl_memory_desc_t *data = clayout_md(bn->layout);
  int kinds[7] = {DNNL_ARG_SRC, DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_DST,
                  DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_WORKSPACE};
  const dnnl_memory_desc_t *descs[7] = {data, &bn->stat, &bn->stat, data,
                                        &bn->stat, &bn->stat, &bn->workspace};
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
  const dnnl_memory_desc_t *data = clayout_md(bn->layout);
  size_t c = (size_t)data->dims[1];
  int status = 0;
  pthread_mutex_lock(&bn->lock);
  void *g = clayout_convert(dy_layout, dy, bn->layout, &status);
  float *dscale = cdnnl_alloc(2 * c * sizeof(float));
  if (dscale == NULL) status = -1;
  if (status == 0) {
    int kinds[10] = {DNNL_ARG_SRC, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_DIFF_DST,
                     DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_DIFF_SRC, DNNL_ARG_DIFF_SCALE,
                     DNNL_ARG_DIFF_SHIFT, DNNL_ARG_WORKSPACE};
    const dnnl_memory_desc_t *descs[10] = {data, &bn->stat, &bn->stat, data, &bn->stat,
                                           &bn->stat, data, &bn->stat, &bn->stat, &bn->workspace};
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
  const dnnl_memory_desc_t *src = clayout_md(layout);
  dnnl_dims_t dst_dims = {src->dims[0], src->dims[1], src->dims[2] / 2, src->dims[3] / 2};
  dnnl_dims_t strides = {2, 2}, kernel = {2, 2}, dilation = {0, 0}, pad_l = {0, 0};
  // Floor mode: the last row and column of an odd input belong to no window ((105 - 2) / 2 + 1 = 52).
  dnnl_dims_t pad_r = {0, 0};
  dnnl_memory_desc_t any_dst;
  dnnl_pooling_v2_desc_t desc;
  CDNNL_TRY(dnnl_memory_desc_init_by_tag(&any_dst, 4, dst_dims, dnnl_f32, dnnl_format_tag_any));
  CDNNL_TRY(dnnl_pooling_v2_forward_desc_init(&desc, dnnl_forward_training, dnnl_pooling_max, src,
                                              &any_dst, strides, kernel, dilation, pad_l, pad_r));
  CDNNL_TRY(dnnl_primitive_desc_create(&fpd, &desc, NULL, cdnnl_engine(), NULL));
  CDNNL_TRY(dnnl_primitive_create(&pool->forward, fpd));
  pool->output = clayout_intern(dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0));
  pool->workspace = *dnnl_primitive_desc_query_md(fpd, dnnl_query_workspace_md, 0);
  pool->workspace_bytes = dnnl_memory_desc_get_size(&pool->workspace);
  CDNNL_TRY(dnnl_pooling_v2_backward_desc_init(&desc, dnnl_pooling_max, src, clayout_md(pool->output),
                                               strides, kernel, dilation, pad_l, pad_r));
  CDNNL_TRY(dnnl_primitive_desc_create(&bpd, &desc, NULL, cdnnl_engine(), fpd));
  CDNNL_TRY(dnnl_primitive_create(&pool->backward, bpd));
  dnnl_primitive_desc_destroy(fpd);
  dnnl_primitive_desc_destroy(bpd);
  return pool;
fail:
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
  const dnnl_memory_desc_t *descs[3] = {clayout_md(pool->layout), clayout_md(pool->output),
                                        &pool->workspace};
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
    const dnnl_memory_desc_t *descs[3] = {clayout_md(pool->output), &pool->workspace,
                                          clayout_md(pool->layout)};
    void *buffers[3] = {g, (void *)workspace, dx};
    status = cdnnl_run(pool->backward, 3, kinds, descs, buffers);
  }
  clayout_release(dy, g);
  pthread_mutex_unlock(&pool->lock);
  return status;
}
