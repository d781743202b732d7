#include "cconvolution.h"

#include <dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// One reorder between a caller's plain layout and a primitive's chosen one; `prim` is NULL
// when the two layouts are the same and the caller's buffer is used as it is.
struct reorder {
  dnnl_primitive_t prim;
  dnnl_memory_desc_t from, to;
};

struct cconv {
  int n, c, h, w, o, k, pad, relu, bf16, policy;
  pthread_mutex_t lock;
  dnnl_primitive_t forward, backward_data, backward_weights;
  // Layouts chosen by the primitives.
  dnnl_memory_desc_t src, fwd_weights, dst, bias;
  dnnl_memory_desc_t bwd_diff_dst, bwd_weights, diff_src;
  dnnl_memory_desc_t bww_src, bww_diff_dst, diff_weights;
  // Plain layouts of the caller.
  dnnl_memory_desc_t plain_src, plain_weights, plain_dst;
  struct reorder to_src, to_fwd_weights, from_dst, to_bwd_diff_dst, to_bwd_weights, from_diff_src,
      to_bww_src, to_bww_diff_dst, from_diff_weights;
  char implementation[256];
  // Per direction (forward, backward data, backward weights): 1 when Winograd runs it.
  int winograd[3];
  // How each direction's algorithm was chosen: times measured or why Winograd was not used.
  char choices[512];
  struct cconv *next;
};

static dnnl_engine_t engine;
static dnnl_stream_t stream;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cconv *cache;

#define TRY(call)                                                                              \
  do {                                                                                         \
    dnnl_status_t status_ = (call);                                                            \
    if (status_ != dnnl_success) {                                                             \
      snprintf(error, error_length, "%s failed with oneDNN status %d", #call, (int)status_); \
      goto fail;                                                                               \
    }                                                                                          \
  } while (0)

static dnnl_status_t make_reorder(struct reorder *r, const dnnl_memory_desc_t *from,
                                  const dnnl_memory_desc_t *to) {
  r->from = *from;
  r->to = *to;
  r->prim = NULL;
  if (dnnl_memory_desc_equal(from, to)) return dnnl_success;
  dnnl_primitive_desc_t pd;
  dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, NULL);
  if (s != dnnl_success) return s;
  s = dnnl_primitive_create(&r->prim, pd);
  dnnl_primitive_desc_destroy(pd);
  return s;
}

// Runs a primitive on raw buffers: memory objects wrap the caller's pointers, no copies.
static int run(dnnl_primitive_t prim, int count, const int *kinds,
               const dnnl_memory_desc_t *const *descs, void *const *buffers) {
  dnnl_exec_arg_t args[6];
  int status = 0;
  for (int i = 0; i < count; i++) {
    args[i].arg = kinds[i];
    if (dnnl_memory_create(&args[i].memory, descs[i], engine, buffers[i]) != dnnl_success) {
      for (int j = 0; j < i; j++) dnnl_memory_destroy(args[j].memory);
      return -1;
    }
  }
  if (dnnl_primitive_execute(prim, stream, count, args) != dnnl_success) status = -1;
  if (status == 0 && dnnl_stream_wait(stream) != dnnl_success) status = -1;
  for (int i = 0; i < count; i++) dnnl_memory_destroy(args[i].memory);
  return status;
}

// Applies a reorder from `from` into a new buffer (or returns `from` when no reorder is needed).
// The result must be released with release_reordered.
static void *reordered(const struct reorder *r, const void *from, int *status) {
  if (r->prim == NULL) return (void *)from;
  size_t size = dnnl_memory_desc_get_size(&r->to);
  void *to = NULL;
  if (posix_memalign(&to, 64, size > 0 ? size : 64) != 0) {
    *status = -1;
    return NULL;
  }
  int kinds[2] = {DNNL_ARG_FROM, DNNL_ARG_TO};
  const dnnl_memory_desc_t *descs[2] = {&r->from, &r->to};
  void *buffers[2] = {(void *)from, to};
  if (run(r->prim, 2, kinds, descs, buffers) != 0) *status = -1;
  return to;
}

static void release_reordered(const struct reorder *r, void *buffer) {
  if (r->prim != NULL) free(buffer);
}

// A buffer in the primitive's layout `desc` whose contents go to `plain` through `r` afterwards
// (or `plain` itself when the layouts agree).
static void *output_buffer(const struct reorder *r, void *plain, int *status) {
  if (r->prim == NULL) return plain;
  size_t size = dnnl_memory_desc_get_size(&r->from);
  void *buffer = NULL;
  if (posix_memalign(&buffer, 64, size > 0 ? size : 64) != 0) {
    *status = -1;
    return NULL;
  }
  return buffer;
}

static void finish_output(const struct reorder *r, void *buffer, void *plain, int *status) {
  if (r->prim == NULL) return;
  if (*status == 0) {
    int kinds[2] = {DNNL_ARG_FROM, DNNL_ARG_TO};
    const dnnl_memory_desc_t *descs[2] = {&r->from, &r->to};
    void *buffers[2] = {buffer, plain};
    if (run(r->prim, 2, kinds, descs, buffers) != 0) *status = -1;
  }
  free(buffer);
}

static const char *impl_name(const_dnnl_primitive_t prim) {
  const_dnnl_primitive_desc_t pd;
  const char *name = "?";
  if (dnnl_primitive_get_primitive_desc(prim, &pd) == dnnl_success)
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name);
  return name;
}

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Milliseconds of one execution of the primitive of `pd` (the faster of two after a warm-up) on
// zero-filled scratch buffers in its own layouts; negative when it cannot be run.
static double time_primitive(const_dnnl_primitive_desc_t pd, int count, const int *kinds,
                             const dnnl_query_t *queries, const int *indices) {
  dnnl_primitive_t prim = NULL;
  if (dnnl_primitive_create(&prim, pd) != dnnl_success) return -1;
  const dnnl_memory_desc_t *descs[6];
  void *buffers[6] = {0};
  double best = -1;
  int ok = 1;
  for (int i = 0; i < count && ok; i++) {
    descs[i] = dnnl_primitive_desc_query_md(pd, queries[i], indices[i]);
    size_t size = dnnl_memory_desc_get_size(descs[i]);
    if (posix_memalign(&buffers[i], 64, size > 0 ? size : 64) != 0) {
      buffers[i] = NULL;
      ok = 0;
    } else {
      memset(buffers[i], 0, size);
    }
  }
  for (int rep = 0; rep < 3 && ok; rep++) {
    double start = seconds();
    if (run(prim, count, kinds, descs, buffers) != 0) ok = 0;
    double elapsed = 1000 * (seconds() - start);
    if (rep > 0 && (best < 0 || elapsed < best)) best = elapsed;
  }
  for (int i = 0; i < count; i++) free(buffers[i]);
  dnnl_primitive_destroy(prim);
  return ok ? best : -1;
}

static const char *direction_names[3] = {"forward", "backward-data", "backward-weights"};

// Chooses between the direct primitive `*direct` and the Winograd one `winograd` (NULL when
// oneDNN could not build it; `reason` says why) for one direction under `policy`: 0 keeps
// direct, 1 takes the faster of the two by measured time, 2 takes Winograd when it exists.
// The loser is destroyed and `*direct` holds the winner; the decision is appended to `cv->choices`.
static void choose(struct cconv *cv, int direction, dnnl_primitive_desc_t *direct,
                   dnnl_primitive_desc_t winograd, const char *reason, int count, const int *kinds,
                   const dnnl_query_t *queries, const int *indices) {
  size_t used = strlen(cv->choices);
  char *out = cv->choices + used;
  size_t room = sizeof cv->choices - used;
  const char *sep = used > 0 ? "; " : "";
  if (winograd == NULL) {
    snprintf(out, room, "%s%s direct (%s)", sep, direction_names[direction], reason);
    return;
  }
  int take = cv->policy == 2;
  if (cv->policy == 1) {
    double d = time_primitive(*direct, count, kinds, queries, indices);
    double w = time_primitive(winograd, count, kinds, queries, indices);
    take = w > 0 && (d < 0 || w < d);
    snprintf(out, room, "%s%s %s (winograd %.2f ms, direct %.2f ms)", sep, direction_names[direction],
             take ? "winograd" : "direct", w, d);
  } else {
    snprintf(out, room, "%s%s winograd (forced)", sep, direction_names[direction]);
  }
  if (take) {
    dnnl_primitive_desc_destroy(*direct);
    *direct = winograd;
    cv->winograd[direction] = 1;
  } else {
    dnnl_primitive_desc_destroy(winograd);
  }
}

// The Winograd descriptor of one direction from `desc` (whose initialisation returned `init`),
// hinted by `hint` (the Winograd forward, required for the backward directions), or NULL with
// `reason` saying why: Winograd excluded for this handle, no Winograd forward, or oneDNN has no
// such primitive here.
static dnnl_primitive_desc_t winograd_candidate(const char *excluded, dnnl_status_t init,
                                                const dnnl_convolution_desc_t *desc,
                                                const_dnnl_primitive_attr_t attr,
                                                const_dnnl_primitive_desc_t hint, int needs_hint,
                                                const char *direction, char *reason,
                                                size_t length) {
  dnnl_primitive_desc_t pd = NULL;
  if (excluded != NULL) {
    snprintf(reason, length, "%s", excluded);
    return NULL;
  }
  if (needs_hint && hint == NULL) {
    snprintf(reason, length, "no winograd forward to pair with");
    return NULL;
  }
  dnnl_status_t s = init;
  if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, desc, attr, engine, hint);
  if (s != dnnl_success) {
    snprintf(reason, length, "oneDNN has no winograd %s here: status %d", direction, (int)s);
    return NULL;
  }
  return pd;
}

// Why Winograd is not tried for this handle, or NULL when it is.
static const char *winograd_excluded(const struct cconv *cv) {
  if (cv->policy == 0) return "fixed";
  if (cv->bf16) return "winograd is fp32 only";
  if (cv->k != 3) return "winograd needs a 3x3 kernel";
  return NULL;
}

static struct cconv *create(int n, int c, int h, int w, int o, int k, int pad, int relu, int bf16,
                            int policy, char *error, size_t error_length) {
  struct cconv *cv = calloc(1, sizeof *cv);
  dnnl_primitive_desc_t fpd = NULL, bdpd = NULL, bwpd = NULL, wino_fpd = NULL, candidate = NULL;
  // The direct forward descriptor, the hint of the direct backward primitives whichever
  // algorithm the forward ends up with.
  dnnl_primitive_desc_t direct_fpd = NULL;
  char reason[96];
  dnnl_post_ops_t post_ops = NULL;
  dnnl_primitive_attr_t attr = NULL;
  if (cv == NULL) {
    snprintf(error, error_length, "out of memory");
    return NULL;
  }
  cv->n = n, cv->c = c, cv->h = h, cv->w = w, cv->o = o, cv->k = k, cv->pad = pad;
  cv->relu = relu, cv->bf16 = bf16, cv->policy = policy;
  const char *excluded = winograd_excluded(cv);
  pthread_mutex_init(&cv->lock, NULL);
  int ho = h + 2 * pad - k + 1, wo = w + 2 * pad - k + 1;
  dnnl_dims_t src_dims = {n, c, h, w}, weight_dims = {o, c, k, k}, bias_dims = {o},
              dst_dims = {n, o, ho, wo}, strides = {1, 1}, padding = {pad, pad};
  dnnl_data_type_t type = bf16 ? dnnl_bf16 : dnnl_f32;
  dnnl_memory_desc_t any_src, any_weights, any_dst_f32, any_diff_dst, any_diff_weights;
  TRY(dnnl_memory_desc_init_by_tag(&any_src, 4, src_dims, type, dnnl_format_tag_any));
  TRY(dnnl_memory_desc_init_by_tag(&any_weights, 4, weight_dims, type, dnnl_format_tag_any));
  TRY(dnnl_memory_desc_init_by_tag(&any_dst_f32, 4, dst_dims, dnnl_f32, dnnl_format_tag_any));
  TRY(dnnl_memory_desc_init_by_tag(&any_diff_dst, 4, dst_dims, type, dnnl_format_tag_any));
  TRY(dnnl_memory_desc_init_by_tag(&any_diff_weights, 4, weight_dims, dnnl_f32, dnnl_format_tag_any));
  TRY(dnnl_memory_desc_init_by_tag(&cv->bias, 1, bias_dims, dnnl_f32, dnnl_x));
  TRY(dnnl_memory_desc_init_by_tag(&cv->plain_src, 4, src_dims, dnnl_f32, dnnl_nchw));
  TRY(dnnl_memory_desc_init_by_tag(&cv->plain_weights, 4, weight_dims, dnnl_f32, dnnl_oihw));
  TRY(dnnl_memory_desc_init_by_tag(&cv->plain_dst, 4, dst_dims, dnnl_f32, dnnl_nchw));

  // Forward with the bias and the optional ReLU fused.
  dnnl_convolution_desc_t desc;
  TRY(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct,
                                         &any_src, &any_weights, &cv->bias, &any_dst_f32, strides,
                                         padding, padding));
  TRY(dnnl_primitive_attr_create(&attr));
  if (relu) {
    TRY(dnnl_post_ops_create(&post_ops));
    TRY(dnnl_post_ops_append_eltwise(post_ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    TRY(dnnl_primitive_attr_set_post_ops(attr, post_ops));
  }
  TRY(dnnl_primitive_desc_create(&fpd, &desc, attr, engine, NULL));
  TRY(dnnl_primitive_desc_clone(&direct_fpd, fpd));
  // The Winograd forward stays as the hint of the Winograd backward primitives; its copy is
  // the forward candidate.
  wino_fpd = winograd_candidate(
      excluded,
      dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_winograd,
                                         &any_src, &any_weights, &cv->bias, &any_dst_f32, strides,
                                         padding, padding),
      &desc, attr, NULL, 0, "forward", reason, sizeof reason);
  if (wino_fpd != NULL && dnnl_primitive_desc_clone(&candidate, wino_fpd) != dnnl_success) {
    candidate = NULL;
    snprintf(reason, sizeof reason, "winograd descriptor could not be copied");
  }
  {
    int kinds[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
    dnnl_query_t queries[4] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_weights_md,
                               dnnl_query_dst_md};
    int indices[4] = {0, 0, 1, 0};
    choose(cv, 0, &fpd, candidate, reason, 4, kinds, queries, indices);
    candidate = NULL;
  }
  cv->src = *dnnl_primitive_desc_query_md(fpd, dnnl_query_src_md, 0);
  cv->fwd_weights = *dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0);
  cv->dst = *dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0);
  TRY(dnnl_primitive_create(&cv->forward, fpd));

  // Backward data (dL/dx), only ever used for layers after the first.
  // diff_src in float: the gradient flowing into batch norm and pooling stays full precision.
  {
    dnnl_memory_desc_t diff_src_f32;
    TRY(dnnl_memory_desc_init_by_tag(&diff_src_f32, 4, src_dims, dnnl_f32, dnnl_format_tag_any));
    TRY(dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &diff_src_f32,
                                                 &any_weights, &any_diff_dst, strides, padding,
                                                 padding));
    if (dnnl_primitive_desc_create(&bdpd, &desc, NULL, engine, direct_fpd) != dnnl_success) {
      // Some bf16 kernels only produce bf16 diff_src; accept that and convert on the way out.
      TRY(dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &any_src,
                                                   &any_weights, &any_diff_dst, strides, padding,
                                                   padding));
      TRY(dnnl_primitive_desc_create(&bdpd, &desc, NULL, engine, direct_fpd));
    }
  }
  {
    dnnl_memory_desc_t diff_src_f32;
    TRY(dnnl_memory_desc_init_by_tag(&diff_src_f32, 4, src_dims, dnnl_f32, dnnl_format_tag_any));
    candidate = winograd_candidate(
        excluded,
        dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_winograd, &diff_src_f32,
                                                 &any_weights, &any_diff_dst, strides, padding,
                                                 padding),
        &desc, NULL, wino_fpd, 1, "backward-data", reason, sizeof reason);
  }
  {
    int kinds[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
    dnnl_query_t queries[3] = {dnnl_query_diff_dst_md, dnnl_query_weights_md, dnnl_query_diff_src_md};
    int indices[3] = {0, 0, 0};
    choose(cv, 1, &bdpd, candidate, reason, 3, kinds, queries, indices);
    candidate = NULL;
  }
  cv->bwd_diff_dst = *dnnl_primitive_desc_query_md(bdpd, dnnl_query_diff_dst_md, 0);
  cv->bwd_weights = *dnnl_primitive_desc_query_md(bdpd, dnnl_query_weights_md, 0);
  cv->diff_src = *dnnl_primitive_desc_query_md(bdpd, dnnl_query_diff_src_md, 0);
  TRY(dnnl_primitive_create(&cv->backward_data, bdpd));

  // Backward weights (dL/dW; the bias gradient is summed by the caller with the ReLU mask).
  TRY(dnnl_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &any_src,
                                                  &any_diff_weights, NULL, &any_diff_dst, strides,
                                                  padding, padding));
  TRY(dnnl_primitive_desc_create(&bwpd, &desc, NULL, engine, direct_fpd));
  candidate = winograd_candidate(
      excluded,
      dnnl_convolution_backward_weights_desc_init(&desc, dnnl_convolution_winograd, &any_src,
                                                  &any_diff_weights, NULL, &any_diff_dst, strides,
                                                  padding, padding),
      &desc, NULL, wino_fpd, 1, "backward-weights", reason, sizeof reason);
  {
    int kinds[3] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS};
    dnnl_query_t queries[3] = {dnnl_query_src_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md};
    int indices[3] = {0, 0, 0};
    choose(cv, 2, &bwpd, candidate, reason, 3, kinds, queries, indices);
    candidate = NULL;
  }
  cv->bww_src = *dnnl_primitive_desc_query_md(bwpd, dnnl_query_src_md, 0);
  cv->bww_diff_dst = *dnnl_primitive_desc_query_md(bwpd, dnnl_query_diff_dst_md, 0);
  cv->diff_weights = *dnnl_primitive_desc_query_md(bwpd, dnnl_query_diff_weights_md, 0);
  TRY(dnnl_primitive_create(&cv->backward_weights, bwpd));

  TRY(make_reorder(&cv->to_src, &cv->plain_src, &cv->src));
  TRY(make_reorder(&cv->to_fwd_weights, &cv->plain_weights, &cv->fwd_weights));
  TRY(make_reorder(&cv->from_dst, &cv->dst, &cv->plain_dst));
  TRY(make_reorder(&cv->to_bwd_diff_dst, &cv->plain_dst, &cv->bwd_diff_dst));
  TRY(make_reorder(&cv->to_bwd_weights, &cv->plain_weights, &cv->bwd_weights));
  TRY(make_reorder(&cv->from_diff_src, &cv->diff_src, &cv->plain_src));
  TRY(make_reorder(&cv->to_bww_src, &cv->plain_src, &cv->bww_src));
  TRY(make_reorder(&cv->to_bww_diff_dst, &cv->plain_dst, &cv->bww_diff_dst));
  {
    dnnl_memory_desc_t plain_diff_weights = cv->plain_weights;
    TRY(make_reorder(&cv->from_diff_weights, &cv->diff_weights, &plain_diff_weights));
  }
  snprintf(cv->implementation, sizeof cv->implementation, "%s / %s / %s", impl_name(cv->forward),
           impl_name(cv->backward_data), impl_name(cv->backward_weights));
  dnnl_primitive_desc_destroy(fpd);
  dnnl_primitive_desc_destroy(bdpd);
  dnnl_primitive_desc_destroy(bwpd);
  if (wino_fpd) dnnl_primitive_desc_destroy(wino_fpd);
  dnnl_primitive_desc_destroy(direct_fpd);
  if (post_ops) dnnl_post_ops_destroy(post_ops);
  dnnl_primitive_attr_destroy(attr);
  return cv;

fail:
  if (fpd) dnnl_primitive_desc_destroy(fpd);
  if (bdpd) dnnl_primitive_desc_destroy(bdpd);
  if (bwpd) dnnl_primitive_desc_destroy(bwpd);
  if (wino_fpd) dnnl_primitive_desc_destroy(wino_fpd);
  if (direct_fpd) dnnl_primitive_desc_destroy(direct_fpd);
  if (candidate) dnnl_primitive_desc_destroy(candidate);
  if (post_ops) dnnl_post_ops_destroy(post_ops);
  if (attr) dnnl_primitive_attr_destroy(attr);
  // Primitives already built are leaked on this (rare, configuration-time) path.
  free(cv);
  return NULL;
}

cconv *cconv_get(int n, int c, int h, int w, int o, int k, int pad, int relu, int bf16,
                 int policy, char *error, size_t error_length) {
  pthread_mutex_lock(&cache_lock);
  if (engine == NULL) {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
      snprintf(error, error_length, "oneDNN could not create a CPU engine and stream");
      engine = NULL;
      pthread_mutex_unlock(&cache_lock);
      return NULL;
    }
  }
  struct cconv *found = cache;
  while (found && !(found->n == n && found->c == c && found->h == h && found->w == w &&
                    found->o == o && found->k == k && found->pad == pad && found->relu == relu &&
                    found->bf16 == bf16 && found->policy == policy))
    found = found->next;
  if (found == NULL) {
    found = create(n, c, h, w, o, k, pad, relu, bf16, policy, error, error_length);
    if (found) {
      found->next = cache;
      cache = found;
    }
  }
  pthread_mutex_unlock(&cache_lock);
  return found;
}

int cconv_forward(cconv *cv, const float *x, const float *weight, const float *bias, float *y) {
  int status = 0;
  pthread_mutex_lock(&cv->lock);
  void *src = reordered(&cv->to_src, x, &status);
  void *wei = status == 0 ? reordered(&cv->to_fwd_weights, weight, &status) : NULL;
  void *dst = status == 0 ? output_buffer(&cv->from_dst, y, &status) : NULL;
  if (status == 0) {
    int kinds[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
    const dnnl_memory_desc_t *descs[4] = {&cv->src, &cv->fwd_weights, &cv->bias, &cv->dst};
    void *buffers[4] = {src, wei, (void *)bias, dst};
    status = run(cv->forward, 4, kinds, descs, buffers);
  }
  if (dst) finish_output(&cv->from_dst, dst, y, &status);
  if (wei) release_reordered(&cv->to_fwd_weights, wei);
  if (src) release_reordered(&cv->to_src, src);
  pthread_mutex_unlock(&cv->lock);
  return status;
}

int cconv_backward(cconv *cv, const float *x, const float *weight, const float *dy, float *dx,
                   float *dweight) {
  int status = 0;
  pthread_mutex_lock(&cv->lock);
  // Weights: src and diff_dst in backward-weights layouts, dW in its layout, added to dweight.
  void *src = reordered(&cv->to_bww_src, x, &status);
  void *ddst = status == 0 ? reordered(&cv->to_bww_diff_dst, dy, &status) : NULL;
  size_t count = (size_t)cv->o * cv->c * cv->k * cv->k;
  float *plain_dw = NULL;
  if (status == 0 && posix_memalign((void **)&plain_dw, 64, count * sizeof(float)) != 0) status = -1;
  void *dw = status == 0 ? output_buffer(&cv->from_diff_weights, plain_dw, &status) : NULL;
  if (status == 0) {
    int kinds[3] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS};
    const dnnl_memory_desc_t *descs[3] = {&cv->bww_src, &cv->bww_diff_dst, &cv->diff_weights};
    void *buffers[3] = {src, ddst, dw};
    status = run(cv->backward_weights, 3, kinds, descs, buffers);
  }
  if (dw) finish_output(&cv->from_diff_weights, dw, plain_dw, &status);
  if (status == 0)
    for (size_t i = 0; i < count; i++) dweight[i] += plain_dw[i];
  free(plain_dw);
  if (src) release_reordered(&cv->to_bww_src, src);

  // Data: dx from diff_dst (reused when both primitives chose one layout) and the weights.
  if (status == 0 && dx != NULL) {
    int same = dnnl_memory_desc_equal(&cv->bwd_diff_dst, &cv->bww_diff_dst);
    void *bdd = same ? ddst : reordered(&cv->to_bwd_diff_dst, dy, &status);
    void *wei = status == 0 ? reordered(&cv->to_bwd_weights, weight, &status) : NULL;
    void *dsrc = status == 0 ? output_buffer(&cv->from_diff_src, dx, &status) : NULL;
    if (status == 0) {
      int kinds[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
      const dnnl_memory_desc_t *descs[3] = {&cv->bwd_diff_dst, &cv->bwd_weights, &cv->diff_src};
      void *buffers[3] = {bdd, wei, dsrc};
      status = run(cv->backward_data, 3, kinds, descs, buffers);
    }
    if (dsrc) finish_output(&cv->from_diff_src, dsrc, dx, &status);
    if (wei) release_reordered(&cv->to_bwd_weights, wei);
    if (!same && bdd) release_reordered(&cv->to_bwd_diff_dst, bdd);
  }
  if (ddst) release_reordered(&cv->to_bww_diff_dst, ddst);
  pthread_mutex_unlock(&cv->lock);
  return status;
}

const char *cconv_implementation(const cconv *cv) { return cv->implementation; }

const char *cconv_choices(const cconv *cv) { return cv->choices; }

int cconv_uses_winograd(const cconv *cv, int direction) {
  return direction >= 0 && direction < 3 ? cv->winograd[direction] : 0;
}
