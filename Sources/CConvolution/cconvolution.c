#include "cconvolution.h"

#include "internal.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cconv {
  int n, c, h, w, o, k, pad, relu, bf16, policy;
  pthread_mutex_t lock;
  dnnl_primitive_t forward, backward_data, backward_weights;
  // The ReLU's backward on the output (masks by output > 0), when the ReLU is fused.
  dnnl_primitive_t relu_backward;
  // 1 when the backward-weights primitive also sums the bias gradient.
  int weights_bias;
  dnnl_memory_desc_t bias;  // (o) float, plain
  // Layouts chosen by the primitives, and the caller's plain ones.
  const clayout *src, *fwd_weights, *dst, *bwd_diff_dst, *bwd_weights, *diff_src, *bww_src,
      *bww_diff_dst, *diff_weights;
  const clayout *plain_src, *plain_weights, *plain_dst;
  // Where outputs go when the caller keeps oneDNN's layouts: the primitives' own float layouts
  // when they pad no channel, plain NCHW otherwise.
  const clayout *output, *input_gradient;
  char implementation[256];
  // Per direction (forward, backward data, backward weights): 1 when Winograd runs it.
  int winograd[3];
  // How each direction's algorithm was chosen: times measured or why Winograd was not used.
  char choices[512];
  struct cconv *next;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cconv *cache;

#define TRY CDNNL_TRY

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
  cdnnl_md descs[6];
  void *buffers[6] = {0};
  double best = -1;
  int ok = 1;
  for (int i = 0; i < count && ok; i++) {
    descs[i] = dnnl_primitive_desc_query_md(pd, queries[i], indices[i]);
    size_t size = cdnnl_md_size(descs[i]);
    if (posix_memalign(&buffers[i], 64, size > 0 ? size : 64) != 0) {
      buffers[i] = NULL;
      ok = 0;
    } else {
      memset(buffers[i], 0, size);
    }
  }
  for (int rep = 0; rep < 3 && ok; rep++) {
    double start = seconds();
    if (cdnnl_run(prim, count, kinds, descs, buffers) != 0) ok = 0;
    double elapsed = 1000 * (seconds() - start);
    if (rep > 0 && (best < 0 || elapsed < best)) best = elapsed;
  }
  for (int i = 0; i < count; i++) free(buffers[i]);
  dnnl_primitive_destroy(prim);
  return ok ? best : -1;
}

// The largest Winograd scratchpad `auto` accepts for one primitive (see choose).
#define CCONV_WINOGRAD_SCRATCH_LIMIT_MB 512

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
  // Winograd F(4x4, 3x3) transforms every 6x6 input tile of every image and channel into a
  // scratchpad (inputs V and outputs M, plus the weights U): for VGG16's 105x105 layers at 64
  // images that is ~0.9 GB on top of the activations. `auto` keeps such layers direct.
  size_t tiles = (size_t)((cv->h + 2 * cv->pad - cv->k + 1 + 3) / 4) * ((cv->w + 2 * cv->pad - cv->k + 1 + 3) / 4);
  double scratch_mb = 36.0 * 4 * ((double)cv->n * tiles * (cv->c + cv->o) + (double)cv->c * cv->o) / 1048576;
  if (cv->policy == 1 && scratch_mb > CCONV_WINOGRAD_SCRATCH_LIMIT_MB) {
    snprintf(out, room, "%s%s direct (winograd would need ~%.0f MB of scratch, over the %d MB limit)", sep,
             direction_names[direction], scratch_mb, CCONV_WINOGRAD_SCRATCH_LIMIT_MB);
    dnnl_primitive_desc_destroy(winograd);
    return;
  }
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

// Whether a Winograd descriptor of one direction may be tried; when not, `reason` says why:
// Winograd excluded for this handle, or (`needs_hint`) no Winograd forward to pair with.
static int winograd_allowed(const char *excluded, const_dnnl_primitive_desc_t hint, int needs_hint,
                            char *reason, size_t length) {
  if (excluded != NULL) {
    snprintf(reason, length, "%s", excluded);
    return 0;
  }
  if (needs_hint && hint == NULL) {
    snprintf(reason, length, "no winograd forward to pair with");
    return 0;
  }
  return 1;
}

// The Winograd descriptor `pd` when its creation returned success; otherwise NULL, with
// `reason` saying that oneDNN has no such primitive here.
static dnnl_primitive_desc_t winograd_built(dnnl_status_t s, dnnl_primitive_desc_t pd,
                                            const char *direction, char *reason, size_t length) {
  if (s == dnnl_success) return pd;
  snprintf(reason, length, "oneDNN has no winograd %s here: status %d", direction, (int)s);
  return NULL;
}

// Why Winograd is not tried for this handle, or NULL when it is.
static const char *winograd_excluded(const struct cconv *cv) {
  if (cv->policy == 0) return "fixed";
  if (cv->bf16) return "winograd is fp32 only";
  if (cv->k != 3) return "winograd needs a 3x3 kernel";
  return NULL;
}

// Releases the descriptors `create` makes for its primitives' creation (nothing in oneDNN 2.x).
static void free_descriptors(dnnl_memory_desc_t a, dnnl_memory_desc_t b, dnnl_memory_desc_t c,
                             dnnl_memory_desc_t d, dnnl_memory_desc_t e, dnnl_memory_desc_t f) {
  cdnnl_md_free(a);
  cdnnl_md_free(b);
  cdnnl_md_free(c);
  cdnnl_md_free(d);
  cdnnl_md_free(e);
  cdnnl_md_free(f);
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
  dnnl_status_t s;
  // The descriptors this function makes and releases (3.x) before it returns.
  dnnl_memory_desc_t any_src = {0}, any_weights = {0}, any_dst_f32 = {0}, any_diff_dst = {0},
                     any_diff_weights = {0}, diff_src_f32 = {0};
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
  TRY(cdnnl_md_create(&any_src, 4, src_dims, type, dnnl_format_tag_any));
  TRY(cdnnl_md_create(&any_weights, 4, weight_dims, type, dnnl_format_tag_any));
  TRY(cdnnl_md_create(&any_dst_f32, 4, dst_dims, dnnl_f32, dnnl_format_tag_any));
  TRY(cdnnl_md_create(&any_diff_dst, 4, dst_dims, type, dnnl_format_tag_any));
  TRY(cdnnl_md_create(&any_diff_weights, 4, weight_dims, dnnl_f32, dnnl_format_tag_any));
  // diff_src in float: the gradient flowing into batch norm and pooling stays full precision.
  TRY(cdnnl_md_create(&diff_src_f32, 4, src_dims, dnnl_f32, dnnl_format_tag_any));
  TRY(cdnnl_md_create(&cv->bias, 1, bias_dims, dnnl_f32, dnnl_x));
  cdnnl_md bias = CDNNL_MD(cv->bias);
  cv->plain_src = clayout_plain_tagged(src_dims, dnnl_nchw);
  cv->plain_weights = clayout_plain_tagged(weight_dims, dnnl_oihw);
  cv->plain_dst = clayout_plain_tagged(dst_dims, dnnl_nchw);
  if (cv->plain_src == NULL || cv->plain_weights == NULL || cv->plain_dst == NULL) {
    snprintf(error, error_length, "oneDNN could not describe the plain layouts");
    goto fail;
  }

  // Forward with the bias and the optional ReLU fused.
  TRY(dnnl_primitive_attr_create(&attr));
  if (relu) {
    TRY(dnnl_post_ops_create(&post_ops));
    TRY(cdnnl_append_relu(post_ops));
    TRY(dnnl_primitive_attr_set_post_ops(attr, post_ops));
  }
  TRY(cdnnl_conv_forward_pd(&fpd, dnnl_convolution_direct, CDNNL_MD(any_src), CDNNL_MD(any_weights),
                            bias, CDNNL_MD(any_dst_f32), strides, padding, attr));
  TRY(dnnl_primitive_desc_clone(&direct_fpd, fpd));
  // The Winograd forward stays as the hint of the Winograd backward primitives; its copy is
  // the forward candidate.
  if (winograd_allowed(excluded, NULL, 0, reason, sizeof reason)) {
    s = cdnnl_conv_forward_pd(&wino_fpd, dnnl_convolution_winograd, CDNNL_MD(any_src),
                              CDNNL_MD(any_weights), bias, CDNNL_MD(any_dst_f32), strides, padding, attr);
    wino_fpd = winograd_built(s, wino_fpd, "forward", reason, sizeof reason);
  }
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
  cv->src = clayout_intern(dnnl_primitive_desc_query_md(fpd, dnnl_query_src_md, 0));
  cv->fwd_weights = clayout_intern(dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0));
  cv->dst = clayout_intern(dnnl_primitive_desc_query_md(fpd, dnnl_query_dst_md, 0));
  TRY(dnnl_primitive_create(&cv->forward, fpd));

  // Backward data (dL/dx), only ever used for layers after the first.
  if (cdnnl_conv_backward_data_pd(&bdpd, dnnl_convolution_direct, CDNNL_MD(diff_src_f32),
                                  CDNNL_MD(any_weights), CDNNL_MD(any_diff_dst), strides, padding,
                                  direct_fpd) != dnnl_success) {
    // Some bf16 kernels only produce bf16 diff_src; accept that and convert on the way out.
    bdpd = NULL;
    TRY(cdnnl_conv_backward_data_pd(&bdpd, dnnl_convolution_direct, CDNNL_MD(any_src),
                                    CDNNL_MD(any_weights), CDNNL_MD(any_diff_dst), strides, padding,
                                    direct_fpd));
  }
  if (winograd_allowed(excluded, wino_fpd, 1, reason, sizeof reason)) {
    s = cdnnl_conv_backward_data_pd(&candidate, dnnl_convolution_winograd, CDNNL_MD(diff_src_f32),
                                    CDNNL_MD(any_weights), CDNNL_MD(any_diff_dst), strides, padding,
                                    wino_fpd);
    candidate = winograd_built(s, candidate, "backward-data", reason, sizeof reason);
  }
  {
    int kinds[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
    dnnl_query_t queries[3] = {dnnl_query_diff_dst_md, dnnl_query_weights_md, dnnl_query_diff_src_md};
    int indices[3] = {0, 0, 0};
    choose(cv, 1, &bdpd, candidate, reason, 3, kinds, queries, indices);
    candidate = NULL;
  }
  cv->bwd_diff_dst = clayout_intern(dnnl_primitive_desc_query_md(bdpd, dnnl_query_diff_dst_md, 0));
  cv->bwd_weights = clayout_intern(dnnl_primitive_desc_query_md(bdpd, dnnl_query_weights_md, 0));
  cv->diff_src = clayout_intern(dnnl_primitive_desc_query_md(bdpd, dnnl_query_diff_src_md, 0));
  TRY(dnnl_primitive_create(&cv->backward_data, bdpd));

  // Backward weights (dL/dW, and dL/db where the primitive sums it; otherwise the caller does).
  cv->weights_bias = 1;
  if (cdnnl_conv_backward_weights_pd(&bwpd, dnnl_convolution_direct, CDNNL_MD(any_src),
                                     CDNNL_MD(any_diff_weights), bias, CDNNL_MD(any_diff_dst), strides,
                                     padding, direct_fpd) != dnnl_success) {
    bwpd = NULL;
    cv->weights_bias = 0;
    TRY(cdnnl_conv_backward_weights_pd(&bwpd, dnnl_convolution_direct, CDNNL_MD(any_src),
                                       CDNNL_MD(any_diff_weights), NULL, CDNNL_MD(any_diff_dst),
                                       strides, padding, direct_fpd));
  }
  if (winograd_allowed(excluded, wino_fpd, 1, reason, sizeof reason)) {
    s = cdnnl_conv_backward_weights_pd(&candidate, dnnl_convolution_winograd, CDNNL_MD(any_src),
                                       CDNNL_MD(any_diff_weights), cv->weights_bias ? bias : NULL,
                                       CDNNL_MD(any_diff_dst), strides, padding, wino_fpd);
    candidate = winograd_built(s, candidate, "backward-weights", reason, sizeof reason);
  }
  {
    int kinds[4] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS};
    dnnl_query_t queries[4] = {dnnl_query_src_md, dnnl_query_diff_dst_md,
                               dnnl_query_diff_weights_md, dnnl_query_diff_weights_md};
    int indices[4] = {0, 0, 0, 1};
    choose(cv, 2, &bwpd, candidate, reason, cv->weights_bias ? 4 : 3, kinds, queries, indices);
    candidate = NULL;
  }
  cv->bww_src = clayout_intern(dnnl_primitive_desc_query_md(bwpd, dnnl_query_src_md, 0));
  cv->bww_diff_dst = clayout_intern(dnnl_primitive_desc_query_md(bwpd, dnnl_query_diff_dst_md, 0));
  cv->diff_weights = clayout_intern(dnnl_primitive_desc_query_md(bwpd, dnnl_query_diff_weights_md, 0));
  TRY(dnnl_primitive_create(&cv->backward_weights, bwpd));

  // The fused ReLU's backward, on the output's layout.
  if (relu) {
    dnnl_primitive_desc_t ebpd = NULL;
    s = cdnnl_relu_backward_pd(&ebpd, clayout_md(cv->dst));
    if (s == dnnl_success) s = dnnl_primitive_create(&cv->relu_backward, ebpd);
    if (ebpd) dnnl_primitive_desc_destroy(ebpd);
    TRY(s);
  }

  // Outputs kept in oneDNN's layouts: float and unpadded, else plain.
  {
    size_t dst_floats = (size_t)n * o * ho * wo, src_floats = (size_t)n * c * h * w;
    cv->output = clayout_count(cv->dst) == dst_floats ? cv->dst : cv->plain_dst;
    cv->input_gradient = cdnnl_md_type(clayout_md(cv->diff_src)) == dnnl_f32 &&
                                 clayout_count(cv->diff_src) == src_floats
                             ? cv->diff_src
                             : cv->plain_src;
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
  free_descriptors(any_src, any_weights, any_dst_f32, any_diff_dst, any_diff_weights, diff_src_f32);
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
  free_descriptors(any_src, any_weights, any_dst_f32, any_diff_dst, any_diff_weights, diff_src_f32);
  cdnnl_md_free(cv->bias);
  // Primitives already built are leaked on this (rare, configuration-time) path.
  free(cv);
  return NULL;
}

cconv *cconv_get(int n, int c, int h, int w, int o, int k, int pad, int relu, int bf16,
                 int policy, char *error, size_t error_length) {
  pthread_mutex_lock(&cache_lock);
  if (cdnnl_engine() == NULL) {
    snprintf(error, error_length, "oneDNN could not create a CPU engine and stream");
    pthread_mutex_unlock(&cache_lock);
    return NULL;
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

const clayout *cconv_output_layout(const cconv *cv) { return cv->output; }

const clayout *cconv_input_gradient_layout(const cconv *cv) { return cv->input_gradient; }

const clayout *cconv_plain_input_layout(const cconv *cv) { return cv->plain_src; }

const clayout *cconv_plain_output_layout(const cconv *cv) { return cv->plain_dst; }

// A buffer for an output in the primitive's layout `own`: the caller's `y` when the caller wants
// that layout, otherwise a new one that `finish` reorders into `y` (in `wanted`) and frees.
static void *output_buffer(const clayout *own, const clayout *wanted, void *y, int *status) {
  if (own == wanted) return y;
  void *buffer = cdnnl_alloc(clayout_bytes(own));
  if (buffer == NULL) *status = -1;
  return buffer;
}

static void finish(const clayout *own, void *buffer, const clayout *wanted, void *y, int *status) {
  if (buffer == y || buffer == NULL) return;
  if (*status == 0 && clayout_reorder_into(own, buffer, wanted, y) != 0) *status = -1;
  free(buffer);
}

size_t cconv_kept_input_bytes(const cconv *cv, const clayout *x_layout) {
  return x_layout != cv->src && cv->src == cv->bww_src ? clayout_bytes(cv->src) : 0;
}

int cconv_forward(cconv *cv, const clayout *x_layout, const float *x, const float *weight,
                  const float *bias, const clayout *y_layout, float *y, void *kept_input) {
  int status = 0;
  pthread_mutex_lock(&cv->lock);
  void *src = (void *)x;
  if (kept_input != NULL && x_layout != cv->src) {
    src = kept_input;
    status = clayout_reorder_into(x_layout, x, cv->src, kept_input);
  } else {
    src = clayout_convert(x_layout, x, cv->src, &status);
  }
  void *wei = status == 0 ? clayout_convert(cv->plain_weights, weight, cv->fwd_weights, &status) : NULL;
  void *dst = status == 0 ? output_buffer(cv->dst, y_layout, y, &status) : NULL;
  if (status == 0) {
    int kinds[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
    cdnnl_md descs[4] = {clayout_md(cv->src), clayout_md(cv->fwd_weights), CDNNL_MD(cv->bias),
                         clayout_md(cv->dst)};
    void *buffers[4] = {src, wei, (void *)bias, dst};
    status = cdnnl_run(cv->forward, 4, kinds, descs, buffers);
  }
  finish(cv->dst, dst, y_layout, y, &status);
  clayout_release(weight, wei);
  if (src != kept_input) clayout_release(x, src);
  pthread_mutex_unlock(&cv->lock);
  return status;
}

// The per-channel sums of `g` (in `layout`) added into `dbias`: the bias gradient where the
// backward-weights primitive does not compute it.
static int add_channel_sums(const struct cconv *cv, const clayout *layout, const void *g,
                            float *dbias) {
  int status = 0;
  float *plain = clayout_convert(layout, g, cv->plain_dst, &status);
  if (status == 0) {
    size_t hw = (size_t)(cv->h + 2 * cv->pad - cv->k + 1) * (cv->w + 2 * cv->pad - cv->k + 1);
    for (int i = 0; i < cv->n; i++)
      for (int oc = 0; oc < cv->o; oc++) {
        const float *p = plain + ((size_t)i * cv->o + oc) * hw;
        float sum = 0;
        for (size_t q = 0; q < hw; q++) sum += p[q];
        dbias[oc] += sum;
      }
  }
  clayout_release(g, plain);
  return status;
}

int cconv_backward(cconv *cv, const clayout *x_layout, const float *x, const clayout *dy_layout,
                   const float *dy, const clayout *y_layout, const float *y, const float *weight,
                   const clayout *dx_layout, float *dx, float *dweight, float *dbias,
                   const void *kept_input) {
  int status = 0;
  pthread_mutex_lock(&cv->lock);
  // The gradient at the pre-activation output: dy masked by y > 0 behind a fused ReLU (in y's
  // layout, the primitive's own), dy itself otherwise.
  const clayout *g_layout = dy_layout;
  void *g = (void *)dy;
  if (y != NULL && cv->relu) {
    void *in = clayout_convert(dy_layout, dy, cv->dst, &status);
    void *out = status == 0 ? cdnnl_alloc(clayout_bytes(cv->dst)) : NULL;
    const void *dst = y;
    void *converted_y = NULL;
    if (status == 0 && y_layout != cv->dst) dst = converted_y = clayout_convert(y_layout, y, cv->dst, &status);
    if (out == NULL) status = -1;
    if (status == 0) {
      int kinds[3] = {DNNL_ARG_DST, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC};
      cdnnl_md descs[3] = {clayout_md(cv->dst), clayout_md(cv->dst), clayout_md(cv->dst)};
      void *buffers[3] = {(void *)dst, in, out};
      status = cdnnl_run(cv->relu_backward, 3, kinds, descs, buffers);
    }
    free(converted_y);
    clayout_release(dy, in);
    g = out;
    g_layout = cv->dst;
  }
  // Weights: src and the gradient in backward-weights layouts, dW (and db) added to the caller's.
  void *src = kept_input != NULL && cv->src == cv->bww_src
                  ? (void *)kept_input
                  : status == 0 ? clayout_convert(x_layout, x, cv->bww_src, &status) : NULL;
  void *ddst = status == 0 ? clayout_convert(g_layout, g, cv->bww_diff_dst, &status) : NULL;
  size_t count = (size_t)cv->o * cv->c * cv->k * cv->k;
  float *plain_dw = status == 0 ? cdnnl_alloc(count * sizeof(float)) : NULL;
  float *db = status == 0 ? cdnnl_alloc((size_t)cv->o * sizeof(float)) : NULL;
  if (status == 0 && (plain_dw == NULL || db == NULL)) status = -1;
  void *dw = status == 0 ? output_buffer(cv->diff_weights, cv->plain_weights, plain_dw, &status) : NULL;
  if (status == 0) {
    int kinds[4] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS};
    cdnnl_md descs[4] = {clayout_md(cv->bww_src), clayout_md(cv->bww_diff_dst),
                         clayout_md(cv->diff_weights), CDNNL_MD(cv->bias)};
    void *buffers[4] = {src, ddst, dw, db};
    status = cdnnl_run(cv->backward_weights, cv->weights_bias ? 4 : 3, kinds, descs, buffers);
  }
  finish(cv->diff_weights, dw, cv->plain_weights, plain_dw, &status);
  if (status == 0)
    for (size_t i = 0; i < count; i++) dweight[i] += plain_dw[i];
  if (status == 0 && dbias != NULL) {
    if (cv->weights_bias)
      for (int i = 0; i < cv->o; i++) dbias[i] += db[i];
    else
      status = add_channel_sums(cv, g_layout, g, dbias);
  }
  free(plain_dw);
  free(db);
  if (src != kept_input) clayout_release(x, src);

  // Data: dx from the gradient (reused when both primitives chose one layout) and the weights.
  if (status == 0 && dx != NULL) {
    void *bdd = cv->bwd_diff_dst == cv->bww_diff_dst
                    ? ddst
                    : clayout_convert(g_layout, g, cv->bwd_diff_dst, &status);
    void *wei = status == 0 ? clayout_convert(cv->plain_weights, weight, cv->bwd_weights, &status) : NULL;
    void *dsrc = status == 0 ? output_buffer(cv->diff_src, dx_layout, dx, &status) : NULL;
    if (status == 0) {
      int kinds[3] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
      cdnnl_md descs[3] = {clayout_md(cv->bwd_diff_dst), clayout_md(cv->bwd_weights),
                           clayout_md(cv->diff_src)};
      void *buffers[3] = {bdd, wei, dsrc};
      status = cdnnl_run(cv->backward_data, 3, kinds, descs, buffers);
    }
    finish(cv->diff_src, dsrc, dx_layout, dx, &status);
    clayout_release(weight, wei);
    if (bdd != ddst) clayout_release(g, bdd);
  }
  clayout_release(g, ddst);
  if (g != dy) free(g);
  pthread_mutex_unlock(&cv->lock);
  return status;
}

const char *cconv_implementation(const cconv *cv) { return cv->implementation; }

const char *cconv_choices(const cconv *cv) { return cv->choices; }

int cconv_uses_winograd(const cconv *cv, int direction) {
  return direction >= 0 && direction < 3 ? cv->winograd[direction] : 0;
}
