import CDNNL

/// Keeps freed activation buffers in the process instead of returning them to the kernel:
/// each training step allocates the same large tensors again, and fresh pages cost a page
/// fault and a clear each (7% of a VGG step before this).
func configureAllocator() { cdnnl_keep_freed_memory() }

/// The number of threads the compute kernels use (oneDNN's OpenMP pool and the parallel loops).
public enum ComputeThreads {
  /// Sets the thread count for oneDNN's GEMMs and convolutions. OMP_NUM_THREADS is read only
  /// when the library loads, so this calls the OpenMP runtime directly.
  public static func set(_ count: Int) {
    precondition(count >= 1, "thread count must be at least 1, not \(count)")
    _ = cdnnl_set_num_threads(Int32(count))
    parallelThreads = count
    configureAllocator()
  }

  /// The thread count oneDNN will use.
  public static var current: Int { Int(cdnnl_max_threads()) }

  /// The thread count the harness's own parallel loops use.
  public static var loops: Int { parallelThreads }
}

/// oneDNN's version, "major.minor.patch".
public var oneDNNVersion: String {
  guard let version = dnnl_version()?.pointee else { return "unknown" }
  return "\(version.major).\(version.minor).\(version.patch)"
}
