// The parts of oneDNN's C API that changed between 2.x (Debian's 2.6) and 3.x (PyPI's
// onednn-devel), behind one set of functions (internal.h): memory descriptors and the creation of
// primitive descriptors. Everything else this target calls is the same in both.

#include <string.h>

#include "internal.h"

// The same call in both versions: a pointer to the struct in 2.x, the handle in 3.x.
int cdnnl_md_equal(cdnnl_md a, cdnnl_md b) {
  if (a == NULL || b == NULL) return a == b;
  return dnnl_memory_desc_equal(a, b);
}

size_t cdnnl_md_size(cdnnl_md md) { return md == NULL ? 0 : dnnl_memory_desc_get_size(md); }

// Convolutions and pooling here are never dilated (0 in both APIs).
static const dnnl_dims_t no_dilation = {0, 0};

#if CDNNL_V3

dnnl_status_t cdnnl_md_create(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims,
                              dnnl_data_type_t type, dnnl_format_tag_t tag) {
  return dnnl_memory_desc_create_with_tag(md, ndims, dims, type, tag);
}

dnnl_status_t cdnnl_md_copy(dnnl_memory_desc_t *md, cdnnl_md from) {
  *md = NULL;
  if (from == NULL) return dnnl_success;
  return dnnl_memory_desc_clone(md, from);
}

void cdnnl_md_free(dnnl_memory_desc_t md) {
  if (md != NULL) dnnl_memory_desc_destroy(md);
}

int cdnnl_md_ndims(cdnnl_md md) {
  int ndims = 0;
  if (md == NULL || dnnl_memory_desc_query(md, dnnl_query_ndims_s32, &ndims) != dnnl_success) return 0;
  return ndims;
}

void cdnnl_md_dims(cdnnl_md md, dnnl_dims_t dims) {
  const dnnl_dims_t *found = NULL;
  memset(dims, 0, sizeof(dnnl_dims_t));
  if (md != NULL && dnnl_memory_desc_query(md, dnnl_query_dims, &found) == dnnl_success && found != NULL)
    memcpy(dims, *found, sizeof(dnnl_dims_t));
}

dnnl_data_type_t cdnnl_md_type(cdnnl_md md) {
  dnnl_data_type_t type = dnnl_data_type_undef;
  if (md != NULL) dnnl_memory_desc_query(md, dnnl_query_data_type, &type);
  return type;
}

int cdnnl_md_blocking(cdnnl_md md, dnnl_dims_t strides, int *blocks, dnnl_dims_t block_sizes,
                      dnnl_dims_t block_dims) {
  dnnl_format_kind_t kind = dnnl_format_kind_undef;
  const dnnl_dims_t *s = NULL, *sizes = NULL, *idxs = NULL;
  if (md == NULL || dnnl_memory_desc_query(md, dnnl_query_format_kind, &kind) != dnnl_success ||
      kind != dnnl_blocked)
    return -1;
  *blocks = 0;
  if (dnnl_memory_desc_query(md, dnnl_query_strides, &s) != dnnl_success ||
      dnnl_memory_desc_query(md, dnnl_query_inner_nblks_s32, blocks) != dnnl_success ||
      dnnl_memory_desc_query(md, dnnl_query_inner_blks, &sizes) != dnnl_success ||
      dnnl_memory_desc_query(md, dnnl_query_inner_idxs, &idxs) != dnnl_success)
    return -1;
  memcpy(strides, *s, sizeof(dnnl_dims_t));
  memcpy(block_sizes, *sizes, sizeof(dnnl_dims_t));
  memcpy(block_dims, *idxs, sizeof(dnnl_dims_t));
  return 0;
}

dnnl_status_t cdnnl_conv_forward_pd(dnnl_primitive_desc_t *pd, dnnl_alg_kind_t alg, cdnnl_md src,
                                    cdnnl_md weights, cdnnl_md bias, cdnnl_md dst,
                                    const dnnl_dims_t strides, const dnnl_dims_t padding,
                                    const_dnnl_primitive_attr_t attr) {
  return dnnl_convolution_forward_primitive_desc_create(pd, cdnnl_engine(), dnnl_forward_training, alg,
                                                        src, weights, bias, dst, strides, no_dilation,
                                                        padding, padding, attr);
}

dnnl_status_t cdnnl_conv_backward_data_pd(dnnl_primitive_desc_t *pd, dnnl_alg_kind_t alg,
                                          cdnnl_md diff_src, cdnnl_md weights, cdnnl_md diff_dst,
                                          const dnnl_dims_t strides, const dnnl_dims_t padding,
                                          const_dnnl_primitive_desc_t hint) {
  return dnnl_convolution_backward_data_primitive_desc_create(pd, cdnnl_engine(), alg, diff_src, weights,
                                                              diff_dst, strides, no_dilation, padding,
                                                              padding, hint, NULL);
}

dnnl_status_t cdnnl_conv_backward_weights_pd(dnnl_primitive_desc_t *pd, dnnl_alg_kind_t alg,
                                             cdnnl_md src, cdnnl_md diff_weights,
                                             cdnnl_md diff_bias, cdnnl_md diff_dst,
                                             const dnnl_dims_t strides, const dnnl_dims_t padding,
                                             const_dnnl_primitive_desc_t hint) {
  return dnnl_convolution_backward_weights_primitive_desc_create(
      pd, cdnnl_engine(), alg, src, diff_weights, diff_bias, diff_dst, strides, no_dilation, padding,
      padding, hint, NULL);
}

dnnl_status_t cdnnl_relu_backward_pd(dnnl_primitive_desc_t *pd, cdnnl_md data) {
  dnnl_primitive_desc_t forward = NULL;
  dnnl_status_t s = dnnl_eltwise_forward_primitive_desc_create(
      &forward, cdnnl_engine(), dnnl_forward_training, dnnl_eltwise_relu_use_dst_for_bwd, data, data,
      0.0f, 0.0f, NULL);
  if (s == dnnl_success)
    s = dnnl_eltwise_backward_primitive_desc_create(pd, cdnnl_engine(), dnnl_eltwise_relu_use_dst_for_bwd,
                                                    data, data, data, 0.0f, 0.0f, forward, NULL);
  if (forward) dnnl_primitive_desc_destroy(forward);
  return s;
}

dnnl_status_t cdnnl_append_relu(dnnl_post_ops_t post_ops) {
  return dnnl_post_ops_append_eltwise(post_ops, dnnl_eltwise_relu, 0.0f, 0.0f);
}

dnnl_status_t cdnnl_bnorm_pds(dnnl_primitive_desc_t *forward, dnnl_primitive_desc_t *backward,
                              cdnnl_md data, float epsilon, unsigned flags) {
  dnnl_status_t s = dnnl_batch_normalization_forward_primitive_desc_create(
      forward, cdnnl_engine(), dnnl_forward_training, data, data, epsilon, flags, NULL);
  if (s == dnnl_success)
    s = dnnl_batch_normalization_backward_primitive_desc_create(backward, cdnnl_engine(), dnnl_backward,
                                                                data, data, data, epsilon, flags,
                                                                *forward, NULL);
  return s;
}

dnnl_status_t cdnnl_max_pool_forward_pd(dnnl_primitive_desc_t *pd, cdnnl_md src, cdnnl_md dst,
                                        const dnnl_dims_t strides, const dnnl_dims_t kernel,
                                        const dnnl_dims_t pad_l, const dnnl_dims_t pad_r) {
  return dnnl_pooling_forward_primitive_desc_create(pd, cdnnl_engine(), dnnl_forward_training,
                                                    dnnl_pooling_max, src, dst, strides, kernel,
                                                    no_dilation, pad_l, pad_r, NULL);
}

dnnl_status_t cdnnl_max_pool_backward_pd(dnnl_primitive_desc_t *pd, cdnnl_md diff_src,
                                         cdnnl_md diff_dst, const dnnl_dims_t strides,
                                         const dnnl_dims_t kernel, const dnnl_dims_t pad_l,
                                         const dnnl_dims_t pad_r, const_dnnl_primitive_desc_t hint) {
  return dnnl_pooling_backward_primitive_desc_create(pd, cdnnl_engine(), dnnl_pooling_max, diff_src,
                                                     diff_dst, strides, kernel, no_dilation, pad_l,
                                                     pad_r, hint, NULL);
}

#else

dnnl_status_t cdnnl_md_create(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims,
                              dnnl_data_type_t type, dnnl_format_tag_t tag) {
  return dnnl_memory_desc_init_by_tag(md, ndims, dims, type, tag);
}

dnnl_status_t cdnnl_md_copy(dnnl_memory_desc_t *md, cdnnl_md from) {
  if (from == NULL)
    memset(md, 0, sizeof *md);
  else
    *md = *from;
  return dnnl_success;
}

void cdnnl_md_free(dnnl_memory_desc_t md) { (void)md; }

int cdnnl_md_ndims(cdnnl_md md) { return md == NULL ? 0 : md->ndims; }

void cdnnl_md_dims(cdnnl_md md, dnnl_dims_t dims) {
  memset(dims, 0, sizeof(dnnl_dims_t));
  if (md != NULL) memcpy(dims, md->dims, sizeof(dnnl_dims_t));
}

dnnl_data_type_t cdnnl_md_type(cdnnl_md md) { return md == NULL ? dnnl_data_type_undef : md->data_type; }

int cdnnl_md_blocking(cdnnl_md md, dnnl_dims_t strides, int *blocks, dnnl_dims_t block_sizes,
                      dnnl_dims_t block_dims) {
  if (md == NULL || md->format_kind != dnnl_blocked) return -1;
  const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
  memcpy(strides, b->strides, sizeof(dnnl_dims_t));
  *blocks = b->inner_nblks;
  memcpy(block_sizes, b->inner_blks, sizeof(dnnl_dims_t));
  memcpy(block_dims, b->inner_idxs, sizeof(dnnl_dims_t));
  return 0;
}

dnnl_status_t cdnnl_conv_forward_pd(dnnl_primitive_desc_t *pd, dnnl_alg_kind_t alg, cdnnl_md src,
                                    cdnnl_md weights, cdnnl_md bias, cdnnl_md dst,
                                    const dnnl_dims_t strides, const dnnl_dims_t padding,
                                    const_dnnl_primitive_attr_t attr) {
  dnnl_convolution_desc_t desc;
  dnnl_status_t s = dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, alg, src, weights,
                                                       bias, dst, strides, padding, padding);
  return s == dnnl_success ? dnnl_primitive_desc_create(pd, &desc, attr, cdnnl_engine(), NULL) : s;
}

dnnl_status_t cdnnl_conv_backward_data_pd(dnnl_primitive_desc_t *pd, dnnl_alg_kind_t alg,
                                          cdnnl_md diff_src, cdnnl_md weights, cdnnl_md diff_dst,
                                          const dnnl_dims_t strides, const dnnl_dims_t padding,
                                          const_dnnl_primitive_desc_t hint) {
  dnnl_convolution_desc_t desc;
  dnnl_status_t s = dnnl_convolution_backward_data_desc_init(&desc, alg, diff_src, weights, diff_dst,
                                                             strides, padding, padding);
  return s == dnnl_success ? dnnl_primitive_desc_create(pd, &desc, NULL, cdnnl_engine(), hint) : s;
}

dnnl_status_t cdnnl_conv_backward_weights_pd(dnnl_primitive_desc_t *pd, dnnl_alg_kind_t alg,
                                             cdnnl_md src, cdnnl_md diff_weights,
                                             cdnnl_md diff_bias, cdnnl_md diff_dst,
                                             const dnnl_dims_t strides, const dnnl_dims_t padding,
                                             const_dnnl_primitive_desc_t hint) {
  dnnl_convolution_desc_t desc;
  dnnl_status_t s = dnnl_convolution_backward_weights_desc_init(&desc, alg, src, diff_weights, diff_bias,
                                                                diff_dst, strides, padding, padding);
  return s == dnnl_success ? dnnl_primitive_desc_create(pd, &desc, NULL, cdnnl_engine(), hint) : s;
}

dnnl_status_t cdnnl_relu_backward_pd(dnnl_primitive_desc_t *pd, cdnnl_md data) {
  dnnl_eltwise_desc_t desc;
  dnnl_primitive_desc_t forward = NULL;
  dnnl_status_t s = dnnl_eltwise_forward_desc_init(&desc, dnnl_forward_training,
                                                   dnnl_eltwise_relu_use_dst_for_bwd, data, 0.0f, 0.0f);
  if (s == dnnl_success) s = dnnl_primitive_desc_create(&forward, &desc, NULL, cdnnl_engine(), NULL);
  if (s == dnnl_success)
    s = dnnl_eltwise_backward_desc_init(&desc, dnnl_eltwise_relu_use_dst_for_bwd, data, data, 0.0f, 0.0f);
  if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, &desc, NULL, cdnnl_engine(), forward);
  if (forward) dnnl_primitive_desc_destroy(forward);
  return s;
}

dnnl_status_t cdnnl_append_relu(dnnl_post_ops_t post_ops) {
  return dnnl_post_ops_append_eltwise(post_ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
}

dnnl_status_t cdnnl_bnorm_pds(dnnl_primitive_desc_t *forward, dnnl_primitive_desc_t *backward,
                              cdnnl_md data, float epsilon, unsigned flags) {
  dnnl_batch_normalization_desc_t desc;
  dnnl_status_t s = dnnl_batch_normalization_forward_desc_init(&desc, dnnl_forward_training, data,
                                                               epsilon, flags);
  if (s == dnnl_success) s = dnnl_primitive_desc_create(forward, &desc, NULL, cdnnl_engine(), NULL);
  if (s == dnnl_success)
    s = dnnl_batch_normalization_backward_desc_init(&desc, dnnl_backward, data, data, epsilon, flags);
  if (s == dnnl_success) s = dnnl_primitive_desc_create(backward, &desc, NULL, cdnnl_engine(), *forward);
  return s;
}

dnnl_status_t cdnnl_max_pool_forward_pd(dnnl_primitive_desc_t *pd, cdnnl_md src, cdnnl_md dst,
                                        const dnnl_dims_t strides, const dnnl_dims_t kernel,
                                        const dnnl_dims_t pad_l, const dnnl_dims_t pad_r) {
  dnnl_pooling_v2_desc_t desc;
  dnnl_status_t s = dnnl_pooling_v2_forward_desc_init(&desc, dnnl_forward_training, dnnl_pooling_max, src,
                                                      dst, strides, kernel, no_dilation, pad_l, pad_r);
  return s == dnnl_success ? dnnl_primitive_desc_create(pd, &desc, NULL, cdnnl_engine(), NULL) : s;
}

dnnl_status_t cdnnl_max_pool_backward_pd(dnnl_primitive_desc_t *pd, cdnnl_md diff_src,
                                         cdnnl_md diff_dst, const dnnl_dims_t strides,
                                         const dnnl_dims_t kernel, const dnnl_dims_t pad_l,
                                         const dnnl_dims_t pad_r, const_dnnl_primitive_desc_t hint) {
  dnnl_pooling_v2_desc_t desc;
  dnnl_status_t s = dnnl_pooling_v2_backward_desc_init(&desc, dnnl_pooling_max, diff_src, diff_dst,
                                                       strides, kernel, no_dilation, pad_l, pad_r);
  return s == dnnl_success ? dnnl_primitive_desc_create(pd, &desc, NULL, cdnnl_engine(), hint) : s;
}

#endif
