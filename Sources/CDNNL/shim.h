#include <dnnl.h>
#include <dlfcn.h>
#include <stddef.h>

/// Sets the OpenMP thread count used by oneDNN at run time. OMP_NUM_THREADS is read when
/// the library loads, so changing the variable from inside the process is too late.
/// libgomp ships no unversioned .so to link against here, so the symbol is looked up in the
/// copy oneDNN already loaded. Returns 0 on success, -1 when no OpenMP runtime is loaded.
static inline int cdnnl_set_num_threads(int count) {
  void (*set)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
  if (set == NULL) return -1;
  set(count);
  return 0;
}

/// The OpenMP runtime's current maximum thread count, or -1 when none is loaded.
static inline int cdnnl_max_threads(void) {
  int (*get)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "omp_get_max_threads");
  if (get == NULL) return -1;
  return get();
}

/// A loop body run on every thread of an OpenMP team: (context, thread index, team size).
typedef void (*cdnnl_body)(void *context, int thread, int threads);

struct cdnnl_job {
  cdnnl_body body;
  void *context;
  int (*thread_num)(void);
  int (*num_threads)(void);
};

static void cdnnl_trampoline(void *data) {
  struct cdnnl_job *job = (struct cdnnl_job *)data;
  job->body(job->context, job->thread_num(), job->num_threads());
}

/// Runs `body` on a team of `threads` OpenMP threads: the pool oneDNN's GEMMs use, so the
/// harness's own loops never compete with spinning OpenMP workers for the cores.
/// Returns -1 (and runs nothing) when no OpenMP runtime is loaded.
static inline int cdnnl_parallel(cdnnl_body body, void *context, int threads) {
  static void (*gomp_parallel)(void (*)(void *), void *, unsigned, unsigned) = NULL;
  static int (*thread_num)(void) = NULL;
  static int (*num_threads)(void) = NULL;
  if (gomp_parallel == NULL) {
    gomp_parallel = (void (*)(void (*)(void *), void *, unsigned, unsigned))dlsym(RTLD_DEFAULT, "GOMP_parallel");
    thread_num = (int (*)(void))dlsym(RTLD_DEFAULT, "omp_get_thread_num");
    num_threads = (int (*)(void))dlsym(RTLD_DEFAULT, "omp_get_num_threads");
    if (gomp_parallel == NULL || thread_num == NULL || num_threads == NULL) {
      gomp_parallel = NULL;
      return -1;
    }
  }
  struct cdnnl_job job = {body, context, thread_num, num_threads};
  gomp_parallel(cdnnl_trampoline, &job, (unsigned)threads, 0);
  return 0;
}

#include <malloc.h>

/// Keeps large freed blocks in the process (no munmap/trim), so the activation buffers a
/// training step allocates again and again do not page-fault and get cleared every time.
static inline void cdnnl_keep_freed_memory(void) {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 0x7fffffff);
}
