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

  /// The thread count oneDNN will use: OpenMP's. A oneDNN on another runtime (PyPI's 3.x runs its
  /// CPU primitives on TBB inside a SYCL device) takes no thread count from the harness and uses
  /// every core; there this is the loops' count.
  public static var current: Int {
    let openMP = Int(cdnnl_max_threads())
    return openMP > 0 ? openMP : parallelThreads
  }

  /// The thread count the harness's own parallel loops use.
  public static var loops: Int { parallelThreads }

  /// Runs `body(range)` over `0..<count` split into contiguous ranges, one per thread of the
  /// loops (`loops`), on the team the layers use: for work outside the network whose items
  /// are independent (a training step's input, image by image).
  public static func forEachRange(_ count: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
    parallelFor(count, minimumPerThread: minimumPerThread, body)
  }
}

/// oneDNN's version, "major.minor.patch".
public var oneDNNVersion: String {
  guard let version = dnnl_version()?.pointee else { return "unknown" }
  return "\(version.major).\(version.minor).\(version.patch)"
}

/// The instruction sets oneDNN's kernels use here: the CPU's, lowered by `ONEDNN_MAX_CPU_ISA`
/// (or `DNNL_MAX_CPU_ISA`) when set, which is how an AVX2-only machine is imitated on a larger one.
public enum KernelISA {
  /// oneDNN's `dnnl_cpu_isa_t` bits: each larger set includes the smaller ones' bits. Which bit
  /// means what changed between oneDNN 2.x and 3.x (AMX is 0x3e7 in 2.6, 0xfef in 3.x, whose
  /// 0x1ef is AVX-512 with fp16 and no AMX), so a set is tested by its own constant's bits.
  static var bits: UInt32 { UInt32(dnnl_get_effective_cpu_isa().rawValue) }
  static func includes(_ isa: dnnl_cpu_isa_t) -> Bool { bits & UInt32(isa.rawValue) == UInt32(isa.rawValue) }

  /// AVX2 with FMA (every machine of this project's kind has it).
  public static var avx2: Bool { includes(dnnl_cpu_isa_avx2) }
  /// AVX-512 (F, CD, BW, DQ, VL).
  public static var avx512: Bool { includes(dnnl_cpu_isa_avx512_core) }
  /// Native bf16 dot products (AVX512_BF16). Without them oneDNN has no fast bf16 convolution:
  /// on AVX2 it falls back to a reference kernel, on plain AVX-512 it converts in software.
  public static var bf16: Bool { includes(dnnl_cpu_isa_avx512_core_bf16) }
  /// AMX tiles.
  public static var amx: Bool { includes(dnnl_cpu_isa_avx512_core_amx) }

  /// "AVX2", "AVX-512", "AVX-512 + bf16" or "AVX-512 + bf16 + AMX": the class a figure was measured on.
  public static var description: String {
    guard avx512 else { return avx2 ? "AVX2" : "no AVX2" }
    return "AVX-512" + (bf16 ? " + bf16" : "") + (amx ? " + AMX" : "")
  }
}
