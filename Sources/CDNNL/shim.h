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
