#ifndef CCONVOLUTION_H
#define CCONVOLUTION_H

#include <stddef.h>

#include "clayers.h"

/// oneDNN's convolution primitives (forward, backward data, backward weights) for one shape,
/// each direct or Winograd F(4x4, 3x3) (fp32, 3x3 kernels, where oneDNN implements it). Weights
/// and biases are plain OIHW and (O) float arrays; activations and their gradients come and go in
/// layouts the caller names (clayers.h): plain NCHW, or the primitives' own blocked layouts so that
/// consecutive oneDNN layers never reorder. Each call converts only what differs from the layout
/// (and, for bf16, the data type) a primitive chose.
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

/// y (n, o, ho, wo) = act(conv(x (n, c, h, w), weight (o, c, k, k)) + bias (o)), with x read in
/// `x_layout` and y written in `y_layout` (reordered where they differ from the primitive's
/// own; weights and bias plain OIHW and (o)). With `kept_input` (a buffer of
/// `cconv_kept_input_bytes` bytes), the input as the primitive reads it (e.g. converted to bf16)
/// is kept there, and backward reads it instead of converting x again. Returns 0, or -1 on failure.
int cconv_forward(cconv *conv, const clayout *x_layout, const float *x, const float *weight,
                  const float *bias, const clayout *y_layout, float *y, void *kept_input);

/// Bytes of the buffer that keeps an input in `x_layout` converted for the primitives, or 0
/// when nothing is worth keeping (no conversion, or backward reads another layout).
size_t cconv_kept_input_bytes(const cconv *conv, const clayout *x_layout);

/// Given dy (in `dy_layout`) at the output: when `y` is not NULL and the ReLU is fused, masks dy
/// by y > 0 (y in `y_layout`; with y NULL, dy is already the gradient before the ReLU); adds
/// dL/dweight into `dweight` (o, c, k, k) and, when `dbias` is not NULL, dL/dbias into `dbias`;
/// when `dx` is not NULL, writes dL/dx into it in `dx_layout`. `kept_input` is the forward's
/// (or NULL). Returns 0, or -1 on failure.
int cconv_backward(cconv *conv, const clayout *x_layout, const float *x, const clayout *dy_layout,
                   const float *dy, const clayout *y_layout, const float *y, const float *weight,
                   const clayout *dx_layout, float *dx, float *dweight, float *dbias,
                   const void *kept_input);

/// The layout the output stays in between oneDNN layers: the forward primitive's own when it
/// pads no channel, plain NCHW otherwise.
const clayout *cconv_output_layout(const cconv *conv);

/// The layout dL/dx stays in between oneDNN layers (the backward-data primitive's when it is
/// float and unpadded, plain otherwise).
const clayout *cconv_input_gradient_layout(const cconv *conv);

/// Plain NCHW layouts of the input and the output.
const clayout *cconv_plain_input_layout(const cconv *conv);
const clayout *cconv_plain_output_layout(const cconv *conv);

/// The implementations oneDNN chose, e.g. "jit:avx512_core / jit:avx512_core / jit:avx512_core".
const char *cconv_implementation(const cconv *conv);

/// How each direction's algorithm was chosen, e.g. "forward winograd (winograd 1.10 ms, direct
/// 2.02 ms); backward-data direct (fixed); ...".
const char *cconv_choices(const cconv *conv);

/// 1 when `direction` (0 forward, 1 backward data, 2 backward weights) runs Winograd.
int cconv_uses_winograd(const cconv *conv, int direction);

#endif
