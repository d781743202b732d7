// Shared by the oneDNN wrappers of this target: the one CPU engine and stream, running a
// primitive on raw buffers, and the interned memory layouts (see clayers.h).
#ifndef CCONVOLUTION_INTERNAL_H
#define CCONVOLUTION_INTERNAL_H

#include <dnnl.h>
#include <stddef.h>

#include "clayers.h"

// oneDNN 2.x (Debian's 2.6) and 3.x (PyPI's onednn-devel) describe memory differently: 2.x hands
// out a struct (`dnnl_memory_desc_t`) whose fields callers read, 3.x an opaque handle that is
// created, cloned, queried and destroyed. `cdnnl_md` is how this target refers to a descriptor in
// either: a pointer to the struct in 2.x, the handle in 3.x. CDNNL_MD(variable) turns a
// `dnnl_memory_desc_t` variable into one; `dnnl_primitive_desc_query_md` returns one in both.
#if DNNL_VERSION_MAJOR >= 3
#define CDNNL_V3 1
typedef const_dnnl_memory_desc_t cdnnl_md;
#define CDNNL_MD(variable) (variable)
#else
#define CDNNL_V3 0
typedef const dnnl_memory_desc_t *cdnnl_md;
#define CDNNL_MD(variable) (&(variable))
#endif

/// A descriptor of `dims` in `type` and `tag` into *md (release it with cdnnl_md_free).
dnnl_status_t cdnnl_md_create(dnnl_memory_desc_t *md, int ndims, const dnnl_dims_t dims,
                              dnnl_data_type_t type, dnnl_format_tag_t tag);
/// A copy of `from` (NULL or empty gives an empty descriptor) into *md.
dnnl_status_t cdnnl_md_copy(dnnl_memory_desc_t *md, cdnnl_md from);
/// Releases a descriptor made by cdnnl_md_create or cdnnl_md_copy (nothing to do in 2.x).
void cdnnl_md_free(dnnl_memory_desc_t md);
int cdnnl_md_ndims(cdnnl_md md);
/// The dimensions (N, C, H, W for activations) into `dims`.
void cdnnl_md_dims(cdnnl_md md, dnnl_dims_t dims);
dnnl_data_type_t cdnnl_md_type(cdnnl_md md);
int cdnnl_md_equal(cdnnl_md a, cdnnl_md b);
/// Bytes a buffer of the descriptor takes; 0 for none (NULL or empty).
size_t cdnnl_md_size(cdnnl_md md);
/// For a blocked layout, its outer strides and inner blocks; 0, or -1 for any other format kind.
int cdnnl_md_blocking(cdnnl_md md, dnnl_dims_t strides, int *blocks, dnnl_dims_t block_sizes,
                      dnnl_dims_t block_dims);

/// Primitive descriptors, whose creation 3.x made one call (2.x: an operation descriptor, then a
/// primitive descriptor). Strides and padding are spatial (2 values), padding symmetric.
dnnl_status_t cdnnl_conv_forward_pd(dnnl_primitive_desc_t *pd, dnnl_alg_kind_t alg, cdnnl_md src,
                                    cdnnl_md weights, cdnnl_md bias, cdnnl_md dst,
                                    const dnnl_dims_t strides, const dnnl_dims_t padding,
                                    const_dnnl_primitive_attr_t attr);
dnnl_status_t cdnnl_conv_backward_data_pd(dnnl_primitive_desc_t *pd, dnnl_alg_kind_t alg,
                                          cdnnl_md diff_src, cdnnl_md weights, cdnnl_md diff_dst,
                                          const dnnl_dims_t strides, const dnnl_dims_t padding,
                                          const_dnnl_primitive_desc_t hint);
/// `diff_bias` NULL: the primitive computes no bias gradient.
dnnl_status_t cdnnl_conv_backward_weights_pd(dnnl_primitive_desc_t *pd, dnnl_alg_kind_t alg,
                                             cdnnl_md src, cdnnl_md diff_weights,
                                             cdnnl_md diff_bias, cdnnl_md diff_dst,
                                             const dnnl_dims_t strides, const dnnl_dims_t padding,
                                             const_dnnl_primitive_desc_t hint);
/// The backward of a ReLU that keeps its output (masks a gradient by output > 0) on `data`.
dnnl_status_t cdnnl_relu_backward_pd(dnnl_primitive_desc_t *pd, cdnnl_md data);
/// Appends a ReLU to `post_ops`.
dnnl_status_t cdnnl_append_relu(dnnl_post_ops_t post_ops);
/// Training-mode batch normalisation on `data`, forward and backward.
dnnl_status_t cdnnl_bnorm_pds(dnnl_primitive_desc_t *forward, dnnl_primitive_desc_t *backward,
                              cdnnl_md data, float epsilon, unsigned flags);
/// Training-mode max pooling from `src` into `dst` (format `any` allowed): the forward, then
/// the backward on the forward's output layout.
dnnl_status_t cdnnl_max_pool_forward_pd(dnnl_primitive_desc_t *pd, cdnnl_md src, cdnnl_md dst,
                                        const dnnl_dims_t strides, const dnnl_dims_t kernel,
                                        const dnnl_dims_t pad_l, const dnnl_dims_t pad_r);
dnnl_status_t cdnnl_max_pool_backward_pd(dnnl_primitive_desc_t *pd, cdnnl_md diff_src,
                                         cdnnl_md diff_dst, const dnnl_dims_t strides,
                                         const dnnl_dims_t kernel, const dnnl_dims_t pad_l,
                                         const dnnl_dims_t pad_r, const_dnnl_primitive_desc_t hint);

/// The process's CPU engine and stream, created on first use; NULL when oneDNN cannot make them.
dnnl_engine_t cdnnl_engine(void);
dnnl_stream_t cdnnl_stream(void);

/// Runs `prim` with `count` arguments wrapping the caller's buffers (no copies); 0 or -1.
int cdnnl_run(dnnl_primitive_t prim, int count, const int *kinds, const cdnnl_md *descs,
              void *const *buffers);

/// The interned layout equal to `md` (one object per distinct descriptor, kept for the life of
/// the process, so layouts compare by pointer).
const clayout *clayout_intern(cdnnl_md md);

/// The interned plain float layout of a 4-D tensor of `dims` in `tag` (NCHW, or OIHW for
/// weights); NULL when oneDNN cannot describe it.
const clayout *clayout_plain_tagged(const dnnl_dims_t dims, dnnl_format_tag_t tag);

/// The descriptor behind a layout.
cdnnl_md clayout_md(const clayout *layout);

/// Bytes a buffer of this layout takes.
size_t clayout_bytes(const clayout *layout);

/// A 64-byte-aligned buffer of `bytes` (at least 64); NULL when out of memory.
void *cdnnl_alloc(size_t bytes);

/// `x` (in layout `from`) in layout `to`: `x` itself when the layouts are the same, otherwise a
/// new buffer the caller releases with `clayout_release(x, result)`. Sets *status to -1 on failure.
void *clayout_convert(const clayout *from, const void *x, const clayout *to, int *status);

/// Frees `converted` when it is not `original`.
void clayout_release(const void *original, void *converted);

/// Reorders `x` in `from` into the caller's buffer `y` in `to`; 0 or -1.
int clayout_reorder_into(const clayout *from, const void *x, const clayout *to, void *y);

#define CDNNL_TRY(call)                                                                      \
  do {                                                                                       \
    dnnl_status_t status_ = (call);                                                          \
    if (status_ != dnnl_success) {                                                           \
      snprintf(error, error_length, "%s failed with oneDNN status %d", #call, (int)status_); \
      goto fail;                                                                             \
    }                                                                                        \
  } while (0)

#endif
