// Shared by the oneDNN wrappers of this target: the one CPU engine and stream, running a
// primitive on raw buffers, and the interned memory layouts (see clayers.h).
#ifndef CCONVOLUTION_INTERNAL_H
#define CCONVOLUTION_INTERNAL_H

#include <dnnl.h>
#include <stddef.h>

#include "clayers.h"

/// The process's CPU engine and stream, created on first use; NULL when oneDNN cannot make them.
dnnl_engine_t cdnnl_engine(void);
dnnl_stream_t cdnnl_stream(void);

/// Runs `prim` with `count` arguments wrapping the caller's buffers (no copies); 0 or -1.
int cdnnl_run(dnnl_primitive_t prim, int count, const int *kinds,
              const dnnl_memory_desc_t *const *descs, void *const *buffers);

/// The interned layout equal to `md` (one object per distinct descriptor, kept for the life of
/// the process, so layouts compare by pointer).
const clayout *clayout_intern(const dnnl_memory_desc_t *md);

/// The descriptor behind a layout.
const dnnl_memory_desc_t *clayout_md(const clayout *layout);

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
