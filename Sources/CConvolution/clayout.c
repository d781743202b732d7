// Interned memory layouts and cached reorders between them, and the process's engine and stream.

#define _GNU_SOURCE  // dladdr
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct clayout {
  dnnl_memory_desc_t md;
  size_t bytes;
  int plain;
  char name[32];
  struct clayout *next;
};

struct reorder_entry {
  const clayout *from, *to;
  dnnl_primitive_t prim;
  struct reorder_entry *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct clayout *layouts;
static struct reorder_entry *reorders;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;
static dnnl_stream_t stream;

#if defined(DNNL_CPU_RUNTIME) && defined(DNNL_RUNTIME_SYCL) && DNNL_CPU_RUNTIME == DNNL_RUNTIME_SYCL
#include <dlfcn.h>
#include <unistd.h>

// A oneDNN whose CPU engine is a SYCL device (PyPI's onednn) finds no CPU device unless the
// OpenCL loader knows the CPU runtime, and the wheel's registration file names the path it was
// built at. Unless OCL_ICD_FILENAMES is already set, point it at the libintelocl.so installed
// beside libdnnl.so (the loader reads the variable when the engine asks for devices).
static void find_opencl_cpu_runtime(void) {
  Dl_info info;
  void *symbol = dlsym(RTLD_DEFAULT, "dnnl_engine_create");
  if (getenv("OCL_ICD_FILENAMES") != NULL || symbol == NULL || dladdr(symbol, &info) == 0 ||
      info.dli_fname == NULL)
    return;
  char path[4096];
  snprintf(path, sizeof path, "%s", info.dli_fname);
  char *slash = strrchr(path, '/');
  if (slash == NULL) return;
  snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "libintelocl.so");
  if (access(path, R_OK) == 0) setenv("OCL_ICD_FILENAMES", path, 0);
}
#else
static void find_opencl_cpu_runtime(void) {}
#endif

static void make_engine(void) {
  find_opencl_cpu_runtime();
  if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) {
    engine = NULL;
    return;
  }
  if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
    dnnl_engine_destroy(engine);
    engine = NULL;
    stream = NULL;
  }
}

dnnl_engine_t cdnnl_engine(void) {
  pthread_once(&engine_once, make_engine);
  return engine;
}

dnnl_stream_t cdnnl_stream(void) {
  pthread_once(&engine_once, make_engine);
  return stream;
}

void *cdnnl_alloc(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes > 0 ? bytes : 64) != 0) return NULL;
  return p;
}

int cdnnl_run(dnnl_primitive_t prim, int count, const int *kinds, const cdnnl_md *descs,
              void *const *buffers) {
  dnnl_exec_arg_t args[12];
  int status = 0;
  if (count > 12) return -1;
  for (int i = 0; i < count; i++) {
    args[i].arg = kinds[i];
    if (dnnl_memory_create(&args[i].memory, descs[i], cdnnl_engine(), buffers[i]) != dnnl_success) {
      for (int j = 0; j < i; j++) dnnl_memory_destroy(args[j].memory);
      return -1;
    }
  }
  if (dnnl_primitive_execute(prim, cdnnl_stream(), count, args) != dnnl_success) status = -1;
  if (status == 0 && dnnl_stream_wait(cdnnl_stream()) != dnnl_success) status = -1;
  for (int i = 0; i < count; i++) dnnl_memory_destroy(args[i].memory);
  return status;
}

// "nChw16c": outer dimensions by falling stride (upper case when also blocked), then the blocks.
static void describe(cdnnl_md md, char *out, size_t length) {
  const char letters[] = "nchw";
  dnnl_dims_t strides, block_sizes, block_dims;
  int blocks = 0;
  int blocked_kind = cdnnl_md_blocking(md, strides, &blocks, block_sizes, block_dims) == 0;
  if (!blocked_kind || cdnnl_md_ndims(md) != 4) {
    snprintf(out, length, "%s", blocked_kind ? "blocked" : "special");
    return;
  }
  int order[4] = {0, 1, 2, 3};
  for (int i = 0; i < 4; i++)
    for (int j = i + 1; j < 4; j++)
      if (strides[order[j]] > strides[order[i]] ||
          (strides[order[j]] == strides[order[i]] && order[j] < order[i])) {
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
  size_t used = 0;
  for (int i = 0; i < 4 && used + 1 < length; i++) {
    int blocked = 0;
    for (int k = 0; k < blocks; k++) blocked |= block_dims[k] == order[i];
    char letter = letters[order[i]];
    out[used++] = blocked ? (char)(letter - 'a' + 'A') : letter;
  }
  out[used] = 0;
  for (int k = 0; k < blocks && used + 8 < length; k++)
    used += (size_t)snprintf(out + used, length - used, "%d%c", (int)block_sizes[k],
                             letters[block_dims[k]]);
  if (cdnnl_md_type(md) == dnnl_bf16 && used + 6 < length) snprintf(out + used, length - used, ":bf16");
}

const clayout *clayout_intern(cdnnl_md md) {
  pthread_mutex_lock(&lock);
  struct clayout *found = layouts;
  while (found && !cdnnl_md_equal(CDNNL_MD(found->md), md)) found = found->next;
  if (found == NULL && (found = calloc(1, sizeof *found)) != NULL) {
    if (cdnnl_md_copy(&found->md, md) != dnnl_success) {
      free(found);
      pthread_mutex_unlock(&lock);
      return NULL;
    }
    found->bytes = cdnnl_md_size(md);
    dnnl_memory_desc_t plain = {0};
    dnnl_dims_t dims;
    cdnnl_md_dims(md, dims);
    found->plain = cdnnl_md_ndims(md) == 4 && cdnnl_md_type(md) == dnnl_f32 &&
                   cdnnl_md_create(&plain, 4, dims, dnnl_f32, dnnl_nchw) == dnnl_success &&
                   cdnnl_md_equal(CDNNL_MD(plain), md);
    cdnnl_md_free(plain);
    describe(md, found->name, sizeof found->name);
    found->next = layouts;
    layouts = found;
  }
  pthread_mutex_unlock(&lock);
  return found;
}

const clayout *clayout_plain_tagged(const dnnl_dims_t dims, dnnl_format_tag_t tag) {
  dnnl_memory_desc_t md = {0};
  if (cdnnl_md_create(&md, 4, dims, dnnl_f32, tag) != dnnl_success) return NULL;
  const clayout *layout = clayout_intern(CDNNL_MD(md));
  cdnnl_md_free(md);
  return layout;
}

const clayout *clayout_plain(int n, int c, int h, int w) {
  dnnl_dims_t dims = {n, c, h, w};
  return clayout_plain_tagged(dims, dnnl_nchw);
}

const clayout *clayout_channels_last(int n, int c, int h, int w, int block) {
  dnnl_dims_t dims = {n, c, h, w};
  return clayout_plain_tagged(dims, block == 16 ? dnnl_nChw16c : block == 8 ? dnnl_nChw8c : dnnl_nhwc);
}

cdnnl_md clayout_md(const clayout *layout) { return CDNNL_MD(layout->md); }

size_t clayout_bytes(const clayout *layout) { return layout->bytes; }

int clayout_is_plain(const clayout *layout) { return layout->plain; }

size_t clayout_count(const clayout *layout) { return layout->bytes / sizeof(float); }

const char *clayout_name(const clayout *layout) { return layout->name; }

static dnnl_primitive_t reorder_primitive(const clayout *from, const clayout *to) {
  pthread_mutex_lock(&lock);
  struct reorder_entry *e = reorders;
  while (e && !(e->from == from && e->to == to)) e = e->next;
  if (e == NULL) {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim = NULL;
    if (dnnl_reorder_primitive_desc_create(&pd, CDNNL_MD(from->md), cdnnl_engine(), CDNNL_MD(to->md),
                                           cdnnl_engine(), NULL) == dnnl_success) {
      if (dnnl_primitive_create(&prim, pd) != dnnl_success) prim = NULL;
      dnnl_primitive_desc_destroy(pd);
    }
    if (prim != NULL && (e = calloc(1, sizeof *e)) != NULL) {
      e->from = from, e->to = to, e->prim = prim;
      e->next = reorders;
      reorders = e;
    }
  }
  pthread_mutex_unlock(&lock);
  return e ? e->prim : NULL;
}

int clayout_reorder_into(const clayout *from, const void *x, const clayout *to, void *y) {
  if (from == to) {
    memcpy(y, x, from->bytes);
    return 0;
  }
  dnnl_primitive_t prim = reorder_primitive(from, to);
  if (prim == NULL) return -1;
  int kinds[2] = {DNNL_ARG_FROM, DNNL_ARG_TO};
  cdnnl_md descs[2] = {CDNNL_MD(from->md), CDNNL_MD(to->md)};
  void *buffers[2] = {(void *)x, y};
  return cdnnl_run(prim, 2, kinds, descs, buffers);
}

int clayout_reorder(const clayout *from, const float *x, const clayout *to, float *y) {
  if (cdnnl_engine() == NULL) return -1;
  return clayout_reorder_into(from, x, to, y);
}

void *clayout_convert(const clayout *from, const void *x, const clayout *to, int *status) {
  if (from == to) return (void *)x;
  void *y = cdnnl_alloc(to->bytes);
  if (y == NULL || clayout_reorder_into(from, x, to, y) != 0) *status = -1;
  return y;
}

void clayout_release(const void *original, void *converted) {
  if (converted != original) free(converted);
}
