#ifndef CCONVOLUTION_H
#define CCONVOLUTION_H

#include <stddef.h>

/// oneDNN's convolution primitives (forward, backward data, backward weights) for one shape,
/// each direct or Winograd F(4x4, 3x3) (fp32, 3x3 kernels, where oneDNN implements it), wrapped so that the caller only ever sees plain NCHW / OIHW float arrays: every call
/// reorders into the layouts (and, for bf16, the data type) the primitives chose and back.
/// Stride 1, square kernel, symmetric zero padding. A handle is cached per shape and may be
/// used from one thread at a time (a mutex inside enforces it).
typedef struct cconv cconv;

/// The handle for this shape, created on first use and cached for the life of the process.
/// `bf16` runs the arithmetic on bfloat16 inputs with float accumulation and float outputs.
/// `policy` chooses the algorithm of each direction: 0 direct (one fixed arithmetic), 1 direct or
/// Winograd, whichever runs faster when the handle is created (timed on scratch buffers), 2
/// Winograd wherever oneDNN builds it. Where Winograd cannot be built the direction stays direct
/// and `cconv_choices` says why. Returns NULL and writes a message into `error` when oneDNN
/// cannot build the direct primitives.
cconv *cconv_get(int n, int c, int h, int w, int o, int k, int pad, int relu, int bf16,
                 int policy, char *error, size_t error_length);

/// y (n, o, ho, wo) = act(conv(x (n, c, h, w), weight (o, c, k, k)) + bias (o)). Returns 0.
int cconv_forward(cconv *conv, const float *x, const float *weight, const float *bias, float *y);

/// Given dy (the gradient at the pre-activation output, ReLU mask already applied): adds
/// dL/dweight into `dweight` (o, c, k, k) and, when `dx` is not NULL, writes dL/dx into it.
int cconv_backward(cconv *conv, const float *x, const float *weight, const float *dy, float *dx,
                   float *dweight);

/// The implementations oneDNN chose, e.g. "jit:avx512_core / jit:avx512_core / jit:avx512_core".
const char *cconv_implementation(const cconv *conv);

/// How each direction's algorithm was chosen, e.g. "forward winograd (winograd 1.10 ms, direct
/// 2.02 ms); backward-data direct (fixed); ...".
const char *cconv_choices(const cconv *conv);

/// 1 when `direction` (0 forward, 1 backward data, 2 backward weights) runs Winograd.
int cconv_uses_winograd(const cconv *conv, int direction);

#endif
