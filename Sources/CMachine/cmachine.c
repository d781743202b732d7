#include "cmachine.h"

#include <immintrin.h>
#include <pthread.h>
#include <time.h>

// Iterations of the inner loop per thread: ~0.2-0.5 s at the figures these CPUs reach.
#define ITERATIONS 20000000L
#define LANES_512 16

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Twelve independent accumulators hide the FMA latency (4-5 cycles x 2 ports).
__attribute__((target("avx512f"))) static float fma512(long iterations) {
  __m512 a0 = _mm512_set1_ps(0.f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
         a8 = a0, a9 = a0, a10 = a0, a11 = a0;
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-7f);
  for (long i = 0; i < iterations; i++) {
    a0 = _mm512_fmadd_ps(a0, x, y), a1 = _mm512_fmadd_ps(a1, x, y), a2 = _mm512_fmadd_ps(a2, x, y);
    a3 = _mm512_fmadd_ps(a3, x, y), a4 = _mm512_fmadd_ps(a4, x, y), a5 = _mm512_fmadd_ps(a5, x, y);
    a6 = _mm512_fmadd_ps(a6, x, y), a7 = _mm512_fmadd_ps(a7, x, y), a8 = _mm512_fmadd_ps(a8, x, y);
    a9 = _mm512_fmadd_ps(a9, x, y), a10 = _mm512_fmadd_ps(a10, x, y), a11 = _mm512_fmadd_ps(a11, x, y);
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma256(long iterations) {
  __m256 a0 = _mm256_set1_ps(0.f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
         a8 = a0, a9 = a0, a10 = a0, a11 = a0;
  const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-7f);
  for (long i = 0; i < iterations; i++) {
    a0 = _mm256_fmadd_ps(a0, x, y), a1 = _mm256_fmadd_ps(a1, x, y), a2 = _mm256_fmadd_ps(a2, x, y);
    a3 = _mm256_fmadd_ps(a3, x, y), a4 = _mm256_fmadd_ps(a4, x, y), a5 = _mm256_fmadd_ps(a5, x, y);
    a6 = _mm256_fmadd_ps(a6, x, y), a7 = _mm256_fmadd_ps(a7, x, y), a8 = _mm256_fmadd_ps(a8, x, y);
    a9 = _mm256_fmadd_ps(a9, x, y), a10 = _mm256_fmadd_ps(a10, x, y), a11 = _mm256_fmadd_ps(a11, x, y);
    __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[7];
}

__attribute__((target("avx512f,avx512bf16"))) static float dpbf16(long iterations) {
  __m512 a0 = _mm512_set1_ps(0.f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0,
         a8 = a0, a9 = a0, a10 = a0, a11 = a0;
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3380);
  for (long i = 0; i < iterations; i++) {
    a0 = _mm512_dpbf16_ps(a0, x, y), a1 = _mm512_dpbf16_ps(a1, x, y), a2 = _mm512_dpbf16_ps(a2, x, y);
    a3 = _mm512_dpbf16_ps(a3, x, y), a4 = _mm512_dpbf16_ps(a4, x, y), a5 = _mm512_dpbf16_ps(a5, x, y);
    a6 = _mm512_dpbf16_ps(a6, x, y), a7 = _mm512_dpbf16_ps(a7, x, y), a8 = _mm512_dpbf16_ps(a8, x, y);
    a9 = _mm512_dpbf16_ps(a9, x, y), a10 = _mm512_dpbf16_ps(a10, x, y), a11 = _mm512_dpbf16_ps(a11, x, y);
    __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  return _mm512_reduce_add_ps(s);
}

static float scalar(long iterations) {
  volatile float x = 0.999f, y = 1e-7f;
  float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  float fx = x, fy = y;
  for (long i = 0; i < iterations; i++)
    a0 = a0 * fx + fy, a1 = a1 * fx + fy, a2 = a2 * fx + fy, a3 = a3 * fx + fy;
  return a0 + a1 + a2 + a3;
}

struct job {
  int kind;
  float sink;
};

// FLOPs one iteration of each loop performs.
static double flops_per_iteration(int kind) {
  switch (kind) {
  case 0: return 12.0 * 2 * LANES_512;      // avx512 fma
  case 1: return 12.0 * 2 * 8;              // avx2 fma
  case 2: return 12.0 * 2 * 2 * LANES_512;  // vdpbf16ps: 2 multiply-adds per fp32 lane
  default: return 4.0 * 2;                  // scalar
  }
}

static void *work(void *argument) {
  struct job *j = argument;
  switch (j->kind) {
  case 0: j->sink = fma512(ITERATIONS); break;
  case 1: j->sink = fma256(ITERATIONS); break;
  case 2: j->sink = dpbf16(ITERATIONS); break;
  default: j->sink = scalar(ITERATIONS / 4); break;
  }
  return NULL;
}

// The loop this CPU runs for `kind` (see the header): 0-3 as in flops_per_iteration, -1 none.
static int loop_for(int kind) {
  __builtin_cpu_init();
  if (kind == 1) return __builtin_cpu_supports("avx512bf16") ? 2 : -1;
  if (__builtin_cpu_supports("avx512f")) return 0;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
  return 3;
}

const char *cmachine_peak_instructions(int kind) {
  switch (loop_for(kind)) {
  case 0: return "avx512 fma (vfmadd231ps zmm)";
  case 1: return "avx2 fma (vfmadd231ps ymm)";
  case 2: return "avx512_bf16 dot products (vdpbf16ps zmm)";
  case 3: return "scalar multiply-add";
  default: return "not available on this CPU";
  }
}

double cmachine_peak_gflops(int threads, int kind) {
  int loop = loop_for(kind);
  if (loop < 0) return -1;
  if (threads < 1) threads = 1;
  if (threads > 256) threads = 256;
  pthread_t ids[256];
  struct job jobs[256];
  double start = now();
  int started = 0;
  for (int t = 0; t < threads; t++) {
    jobs[t].kind = loop;
    if (pthread_create(&ids[t], NULL, work, &jobs[t]) == 0) started++;
    else break;
  }
  for (int t = 0; t < started; t++) pthread_join(ids[t], NULL);
  double elapsed = now() - start;
  double iterations = loop == 3 ? ITERATIONS / 4 : ITERATIONS;
  return started * iterations * flops_per_iteration(loop) / elapsed / 1e9;
}
