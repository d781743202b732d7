#ifndef CMACHINE_H
#define CMACHINE_H

/// What this CPU's arithmetic units can do at most: a loop of independent fused multiply-adds
/// on registers only (no memory traffic), run on `threads` threads at once, in GFLOP/s (a
/// multiply-add counts 2). `kind` 0: fp32 FMA at the widest vector this CPU has (AVX-512, else
/// AVX2, else scalar); 1: bf16 dot products into fp32 (AVX512_BF16 `vdpbf16ps`, 2 multiply-adds
/// per fp32 lane). Returns a negative number when the CPU lacks the instructions.
double cmachine_peak_gflops(int threads, int kind);

/// The instructions `cmachine_peak_gflops(_, kind)` measures on this CPU, e.g. "avx512 fma".
const char *cmachine_peak_instructions(int kind);

#endif
