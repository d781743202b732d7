import Foundation

/// Multinomial logistic regression fitted to a few rows by full-batch gradient descent: a linear
/// classifier on frozen embeddings, as a method that adapts to each episode fits one to its
/// support set (the fine-tuning baseline). Deterministic: from zero, a fixed number of steps of
/// a step size set by the rows themselves, on oneDNN's sgemm (so a debug build is not 50x slower).
public enum SoftmaxRegression {
  /// The fitted classifier: `weights` (classes, F + 1), each class's F weights, then its bias.
  public struct Classifier: Sendable {
    public let classes: Int
    public let features: Int
    public let weights: [Float]

    /// Each class's logit for each of the rows (n x F, back to back): (n, classes).
    public func logits(_ rows: [Float]) -> [[Double]] {
      let n = rows.count / max(features, 1)
      precondition(n * features == rows.count, "\(rows.count) values are not whole rows of \(features)")
      return (0..<n).map { i in
        (0..<classes).map { c in
          var z = Double(weights[c * (features + 1) + features])
          for j in 0..<features { z += Double(weights[c * (features + 1) + j]) * Double(rows[i * features + j]) }
          return z
        }
      }
    }
  }

  /// Minimises the rows' mean cross-entropy + (weightDecay / 2) |W|^2 (the bias does not decay)
  /// from W = 0 by `steps` full-batch gradient steps of size 1 / (lambda_max / 2 + weightDecay),
  /// where lambda_max is the largest eigenvalue of the mean of x x^T over the rows with a 1
  /// appended (by `powerIterations` power iterations from the all-ones vector). Half of it
  /// bounds the loss's curvature (the softmax's Jacobian has eigenvalues at most 1/2), so each
  /// step lowers the loss.   rows: n x F back to back, labels: n values in 0 ..< classes
  public static func fit(rows: [Float], features: Int, labels: [Int], classes: Int, weightDecay: Double, steps: Int, powerIterations: Int) -> Classifier {
    let n = labels.count, width = features + 1
    precondition(n > 0 && classes > 0 && rows.count == n * features && labels.allSatisfy { (0..<classes).contains($0) }, "SoftmaxRegression: \(n) labels for \(rows.count) values of \(features) features, \(classes) classes")
    var x = [Float](repeating: 1, count: n * width)  // the rows with a 1 appended
    for i in 0..<n { for j in 0..<features { x[i * width + j] = rows[i * features + j] } }
    let step = Float(1 / (largestEigenvalue(x, n: n, width: width, iterations: powerIterations) / 2 + weightDecay))
    var w = [Float](repeating: 0, count: classes * width)
    var z = [Float](repeating: 0, count: n * classes), gradient = w
    for _ in 0..<steps {
      // z = x w^T: (n, classes)
      x.withUnsafeBufferPointer { xb in
        w.withUnsafeBufferPointer { wb in
          z.withUnsafeMutableBufferPointer { zb in
            gemm(transposeA: false, transposeB: true, m: n, n: classes, k: width, xb.baseAddress!, lda: width, wb.baseAddress!, ldb: width, beta: 0, zb.baseAddress!, ldc: classes)
          }
        }
      }
      // z becomes dL/dz = (softmax(z) - onehot) / n, row by row.
      z.withUnsafeMutableBufferPointer { zb in
        for i in 0..<n {
          var top = -Float.infinity
          for c in 0..<classes { top = max(top, zb[i * classes + c]) }
          var total = 0.0
          for c in 0..<classes {
            let e = exp(Double(zb[i * classes + c] - top))
            zb[i * classes + c] = Float(e)
            total += e
          }
          for c in 0..<classes { zb[i * classes + c] = Float(Double(zb[i * classes + c]) / total / Double(n)) }
          zb[i * classes + labels[i]] -= Float(1 / Double(n))
        }
      }
      // gradient = dz^T x: (classes, width)
      z.withUnsafeBufferPointer { zb in
        x.withUnsafeBufferPointer { xb in
          gradient.withUnsafeMutableBufferPointer { gb in
            gemm(transposeA: true, transposeB: false, m: classes, n: width, k: n, zb.baseAddress!, lda: classes, xb.baseAddress!, ldb: width, beta: 0, gb.baseAddress!, ldc: width)
          }
        }
      }
      let decay = Float(weightDecay)
      w.withUnsafeMutableBufferPointer { wb in
        gradient.withUnsafeBufferPointer { gb in
          for c in 0..<classes {
            for j in 0..<width {
              let k = c * width + j
              wb[k] -= step * (gb[k] + (j < features ? decay * wb[k] : 0))
            }
          }
        }
      }
    }
    return Classifier(classes: classes, features: features, weights: w)
  }

  /// The largest eigenvalue of the mean of x x^T over the n rows of `x` (n x width), by power
  /// iteration from the all-ones vector: |A v| with |v| = 1, which approaches it from below.
  /// At least a tiny positive number.
  static func largestEigenvalue(_ x: [Float], n: Int, width: Int, iterations: Int) -> Double {
    var gram = [Float](repeating: 0, count: width * width)
    x.withUnsafeBufferPointer { xb in
      gram.withUnsafeMutableBufferPointer { gb in
        gemm(transposeA: true, transposeB: false, m: width, n: width, k: n, alpha: 1 / Float(n), xb.baseAddress!, lda: width, xb.baseAddress!, ldb: width, beta: 0, gb.baseAddress!, ldc: width)
      }
    }
    var v = [Double](repeating: 1 / Double(width).squareRoot(), count: width)
    var eigenvalue = 0.0
    for _ in 0..<iterations {
      var next = [Double](repeating: 0, count: width)
      gram.withUnsafeBufferPointer { g in
        for r in 0..<width {
          var sum = 0.0
          for c in 0..<width { sum += Double(g[r * width + c]) * v[c] }
          next[r] = sum
        }
      }
      let norm = next.reduce(0) { $0 + $1 * $1 }.squareRoot()
      guard norm > 0 else { break }
      eigenvalue = norm
      v = next.map { $0 / norm }
    }
    return max(eigenvalue, 1e-12)
  }
}
