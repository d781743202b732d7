#ifndef CLAYERS_H
#define CLAYERS_H

#include <stddef.h>

/// A memory layout of a 4-D float tensor (N, C, H, W) as oneDNN describes it: plain NCHW, or a
/// blocked layout a primitive chose (e.g. channels in blocks of 16, nChw16c). Layouts are
/// interned: two equal layouts are the same pointer, kept for the life of the process.
typedef struct clayout clayout;

/// Plain row-major NCHW float.
const clayout *clayout_plain(int n, int c, int h, int w);

/// A float layout with the channels innermost: in blocks of `block` (16 or 8: nChw16c, nChw8c), or
/// all of them (any other value: nhwc). The layouts oneDNN's convolutions leave outputs in.
const clayout *clayout_channels_last(int n, int c, int h, int w, int block);

/// 1 when the layout is plain row-major NCHW float.
int clayout_is_plain(const clayout *layout);

/// Floats a buffer of this layout holds (more than N*C*H*W when channels are padded to a block).
size_t clayout_count(const clayout *layout);

/// oneDNN's short name of the layout, e.g. "nchw", "nChw16c" ("blocked" when it has none).
const char *clayout_name(const clayout *layout);

/// Copies `x` (in `from`) into `y` (in `to`); both describe the same tensor. 0, or -1 on failure.
int clayout_reorder(const clayout *from, const float *x, const clayout *to, float *y);

/// Batch normalisation over (N, H, W) per channel on oneDNN's primitive, in the layout of its
/// input, with scale (gamma) and shift (beta), optionally followed by a fused ReLU; training
/// mode only (batch statistics). One handle per (layout, relu), cached; one thread at a time.
typedef struct cbnorm cbnorm;

/// The handle for `layout`; NULL with a message when oneDNN cannot build it.
cbnorm *cbnorm_get(const clayout *layout, int relu, float epsilon, char *error, size_t error_length);

/// Bytes of the workspace the forward writes and the backward reads (the ReLU mask).
size_t cbnorm_workspace_size(const cbnorm *bn);

/// y = act(gamma * (x - mean) / sqrt(variance + eps) + beta) with the batch's mean and biased
/// variance, which it writes into `mean` and `variance` (C floats each). 0 or -1.
int cbnorm_forward(cbnorm *bn, const float *x, const float *gamma, const float *beta, float *y,
                   float *mean, float *variance, void *workspace);

/// dL/dx into `dx` (the handle's layout) from dy (in `dy_layout`, reordered when it differs);
/// adds dL/dgamma and dL/dbeta into `dgamma` and `dbeta`. 0 or -1.
int cbnorm_backward(cbnorm *bn, const float *x, const clayout *dy_layout, const float *dy,
                    const float *mean, const float *variance, const float *gamma,
                    const float *beta, const void *workspace, float *dx, float *dgamma,
                    float *dbeta);

/// 2x2 max pooling, stride 2, floor mode, on oneDNN's primitive in the layout of its input;
/// training mode (the workspace keeps each window's winner). One handle per input layout.
typedef struct cpool cpool;

/// The handle for inputs in `layout`; NULL with a message when oneDNN cannot build it.
cpool *cpool_get(const clayout *layout, char *error, size_t error_length);

/// The layout of the output.
const clayout *cpool_output_layout(const cpool *pool);

/// Bytes of the workspace.
size_t cpool_workspace_size(const cpool *pool);

/// y = max over each 2x2 window of x. 0 or -1.
int cpool_forward(cpool *pool, const float *x, float *y, void *workspace);

/// dx (input layout) = dy (in `dy_layout`) routed to each window's maximum, zero elsewhere. 0 or -1.
int cpool_backward(cpool *pool, const clayout *dy_layout, const float *dy, const void *workspace,
                   float *dx);

/// Training-mode batch normalisation with a ReLU, then 2x2 max pooling (stride 2, floor mode), as
/// one layer that never writes the normalised full-resolution tensor (cbnpool.c says why). For
/// inputs whose channels sit in contiguous blocks per pixel (nChw16c, nChw8c, nhwc); the output
/// keeps that layout family. The kernels take a range of images [n0, n1), so that the caller
/// spreads the images over its threads; per-image sums are doubles, C per image.
typedef struct cbnpool cbnpool;

/// The handle for inputs in `layout`; NULL with a message when the layout is not one of those.
cbnpool *cbnpool_get(const clayout *layout, char *error, size_t error_length);

/// The instruction set its kernels run ("AVX-512", "AVX2" or "x86-64"): oneDNN's effective one
/// (the CPU's, lowered by ONEDNN_MAX_CPU_ISA).
const char *cbnpool_instruction_set(void);

/// For tests: every handle runs the named kernel set ("AVX-512", "AVX2" or "x86-64") from now on,
/// or each its own again with NULL; -1 (nothing changed) when this CPU cannot run it.
int cbnpool_force_instruction_set(const char *name);

/// The layout of the pooled output, and the floats it holds.
const clayout *cbnpool_output_layout(const cbnpool *p);
size_t cbnpool_output_count(const cbnpool *p);

/// Each image's per-channel sum and sum of squares of x.
void cbnpool_statistics(const cbnpool *p, const float *x, long n0, long n1, double *sum,
                        double *squares);

/// y = 2x2 max of max(scale * x + shift, 0) per channel; winner (one byte per output) = the
/// window position 0-3 of the first maximum, plus 4 when that maximum is positive.
void cbnpool_forward(const cbnpool *p, const float *x, const float *scale, const float *shift,
                     float *y, unsigned char *winner, long n0, long n1);

/// Each image's per-channel sum of g and of g * (x - mean), where g is dy (the pooled output's
/// gradient, in the output layout) at each window's winner when its ReLU passed it, else zero.
void cbnpool_backward_sums(const cbnpool *p, const float *x, const float *dy,
                           const unsigned char *winner, const float *mean, long n0, long n1,
                           double *sum, double *centred);

/// dx = k * (g - a - (x - mean) * s) per channel, g as above (zero outside every window).
void cbnpool_backward(const cbnpool *p, const float *x, const float *dy,
                      const unsigned char *winner, const float *mean, const float *k,
                      const float *a, const float *s, float *dx, long n0, long n1);

#endif
