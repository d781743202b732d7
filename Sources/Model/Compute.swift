import CDNNL
import Dispatch

// The two primitives every layer is built on: oneDNN's sgemm (row-major) and a parallel loop
// that splits work over the configured number of threads.

/// C = alpha * op(A) * op(B) + beta * C, row-major, on oneDNN (`dnnl_sgemm`).
/// op(A) is M x K, op(B) is K x N, C is M x N; lda/ldb/ldc are row strides.
@inline(__always)
func gemm(
  transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
  _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int, beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
) {
  guard m > 0 && n > 0 else { return }
  if k == 0 {
    for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }
    return
  }
  let status = dnnl_sgemm(
    transposeA ? 84 : 78, transposeB ? 84 : 78, Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc))
  precondition(status == dnnl_success, "dnnl_sgemm failed (status \(status.rawValue)) for M=\(m) N=\(n) K=\(k)")
}

/// The number of threads parallel loops use; set with `ComputeThreads.set`.
nonisolated(unsafe) var parallelThreads = 2

/// Runs `body(range)` over `0..<count` split into contiguous ranges, one per thread, on the
/// OpenMP team oneDNN uses (falling back to Dispatch when no OpenMP runtime is loaded).
@inline(__always)
func parallelFor(_ count: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
  let workers = max(1, min(parallelThreads, count / max(1, minimumPerThread)))
  if workers == 1 {
    body(0..<count)
    return
  }
  withoutActuallyEscaping(body) { body in
    var job = ParallelJob(count: count, body: body)
    let ran = withUnsafeMutablePointer(to: &job) { pointer in
      cdnnl_parallel(
        { context, thread, threads in
          let job = context!.assumingMemoryBound(to: ParallelJob.self).pointee
          let t = Int(thread), n = Int(threads)
          job.body((job.count * t / n)..<(job.count * (t + 1) / n))
        }, pointer, Int32(workers))
    }
    if ran != 0 {
      let box = UncheckedBox(body)
      DispatchQueue.concurrentPerform(iterations: workers) { w in
        box.value((count * w / workers)..<(count * (w + 1) / workers))
      }
    }
  }
}

/// What one parallel loop hands its team.
struct ParallelJob {
  let count: Int
  let body: (Range<Int>) -> Void
}

/// Hands a non-Sendable value to concurrent workers that only read it or write disjoint parts.
struct UncheckedBox<Value>: @unchecked Sendable {
  let value: Value
  init(_ value: Value) { self.value = value }
}

/// Times the GEMM the layers use, for benchmarks.
public enum GEMMBenchmark {
  /// Median seconds of `reps` products C (M x N) = A (M x K) B (K x N).
  public static func time(m: Int, n: Int, k: Int, reps: Int) -> Double {
    var rng = NormalSampler(seed: 1)
    let a = rng.normal(count: m * k, std: 1), b = rng.normal(count: k * n, std: 1)
    var c = [Float](repeating: 0, count: m * n)
    var times: [Double] = []
    for _ in 0...reps {
      let start = DispatchTime.now().uptimeNanoseconds
      a.withUnsafeBufferPointer { ab in
        b.withUnsafeBufferPointer { bb in
          c.withUnsafeMutableBufferPointer { cb in
            gemm(transposeA: false, transposeB: false, m: m, n: n, k: k, ab.baseAddress!, lda: k, bb.baseAddress!, ldb: n, beta: 0, cb.baseAddress!, ldc: n)
          }
        }
      }
      times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return times.dropFirst().sorted()[reps / 2]
  }
}
