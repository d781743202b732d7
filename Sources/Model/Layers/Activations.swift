import Foundation

/// Element-wise max(x, 0). Backward masks by output > 0 (PyTorch's convention at 0).
public struct ReLU: Layer {
  /// A ReLU.
  public init() {}

  /// y = max(x, 0).
  public func forward(_ x: Tensor, store: ParameterStore, context: ForwardContext) -> (output: Tensor, cache: LayerCache) {
    var y = x
    y.data.withUnsafeMutableBufferPointer { b in for i in b.indices { b[i] = max(b[i], 0) } }
    return (y, LayerCache(input: x, output: y))
  }

  /// dx = dy where y > 0.
  public func backward(_ dOutput: Tensor, cache: LayerCache, store: inout ParameterStore, needInputGradient: Bool) -> Tensor {
    var dx = dOutput
    dx.data.withUnsafeMutableBufferPointer { d in
      cache.output.data.withUnsafeBufferPointer { y in for i in d.indices where y[i] <= 0 { d[i] = 0 } }
    }
    return dx
  }
}

/// Element-wise logistic sigmoid (Koch's feature layer).
public struct Sigmoid: Layer {
  /// A sigmoid.
  public init() {}

  /// y = 1 / (1 + e^-x).
  public func forward(_ x: Tensor, store: ParameterStore, context: ForwardContext) -> (output: Tensor, cache: LayerCache) {
    var y = x
    y.data.withUnsafeMutableBufferPointer { b in for i in b.indices { b[i] = sigmoid(b[i]) } }
    return (y, LayerCache(input: x, output: y))
  }

  /// dx = dy * y (1 - y).
  public func backward(_ dOutput: Tensor, cache: LayerCache, store: inout ParameterStore, needInputGradient: Bool) -> Tensor {
    var dx = dOutput
    dx.data.withUnsafeMutableBufferPointer { d in
      cache.output.data.withUnsafeBufferPointer { y in for i in d.indices { d[i] *= y[i] * (1 - y[i]) } }
    }
    return dx
  }
}

/// (N, C, H, W) -> (N, C * H * W), between the convolutions and the first linear layer.
public struct Flatten: Layer {
  /// A flatten.
  public init() {}

  /// The same values, one row per item (the backbone's oneDNN layouts end here).
  public func forward(_ x: Tensor, store: ParameterStore, context: ForwardContext) -> (output: Tensor, cache: LayerCache) {
    let y = x.plain().reshaped([x.batch, x.itemCount])
    return (y, LayerCache(input: x, output: y))
  }

  /// The gradient in the input's shape, plain (the layer below reorders it where it needs to).
  public func backward(_ dOutput: Tensor, cache: LayerCache, store: inout ParameterStore, needInputGradient: Bool) -> Tensor {
    dOutput.reshaped(cache.input.shape)
  }
}

/// Rows of C * S * S values back into (N, C, S, S) maps: the convolutional relation module's
/// first step, whose joined input [f1, f2] is two flattened maps one after the other, that is
/// 2C channels of the same side.
public struct Unflatten: Layer {
  let channels: Int
  let side: Int

  /// An unflatten to `channels` maps of `side` x `side`.
  public init(channels: Int, side: Int) {
    self.channels = channels
    self.side = side
  }

  public func forward(_ x: Tensor, store: ParameterStore, context: ForwardContext) -> (output: Tensor, cache: LayerCache) {
    precondition(x.itemCount == channels * side * side, "Unflatten: \(x.shape) has not \(channels) x \(side) x \(side) values a row")
    let y = x.plain().reshaped([x.batch, channels, side, side])
    return (y, LayerCache(input: x, output: y))
  }

  /// The gradient as rows (a convolution's may arrive in its own layout).
  public func backward(_ dOutput: Tensor, cache: LayerCache, store: inout ParameterStore, needInputGradient: Bool) -> Tensor {
    dOutput.plain().reshaped(cache.input.shape)
  }
}

/// The logistic function, stable for large |x|.
@inline(__always) public func sigmoid(_ x: Float) -> Float {
  x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x))
}

/// Element-wise L1 distance of two feature batches, |a - b|, the Siamese join.
///   a, b: (B, F) -> d: (B, F)
public enum L1Distance {
  /// d = |a - b|.
  public static func forward(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.shape == b.shape, "L1Distance: shapes \(a.shape) and \(b.shape) differ")
    var d = a
    d.data.withUnsafeMutableBufferPointer { dd in
      b.data.withUnsafeBufferPointer { bb in for i in dd.indices { dd[i] = abs(dd[i] - bb[i]) } }
    }
    return d
  }

  /// (dL/da, dL/db) = (dd * sign(a - b), -dd * sign(a - b)); sign(0) = 0, as PyTorch's abs.
  public static func backward(_ dDistance: Tensor, _ a: Tensor, _ b: Tensor) -> (Tensor, Tensor) {
    var da = dDistance, db = dDistance
    da.data.withUnsafeMutableBufferPointer { ga in
      db.data.withUnsafeMutableBufferPointer { gb in
        a.data.withUnsafeBufferPointer { av in
          b.data.withUnsafeBufferPointer { bv in
            for i in ga.indices {
              let diff = av[i] - bv[i]
              let s: Float = diff > 0 ? 1 : (diff < 0 ? -1 : 0)
              ga[i] *= s
              gb[i] *= -s
            }
          }
        }
      }
    }
    return (da, db)
  }
}

/// Side-by-side concatenation of two embeddings: row i of the output is [a_i, b_i], the input
/// of a relation module (Sung et al. 2018).
public enum Concatenation {
  /// (P, F) and (P, F) -> (P, 2F).
  public static func forward(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.shape.count == 2 && a.shape == b.shape, "Concatenation: shapes \(a.shape) and \(b.shape) must be equal (P, F)")
    let (p, f) = (a.shape[0], a.shape[1])
    var out = [Float](repeating: 0, count: 2 * p * f)
    out.withUnsafeMutableBufferPointer { o in
      a.data.withUnsafeBufferPointer { av in
        b.data.withUnsafeBufferPointer { bv in
          for r in 0..<p {
            (o.baseAddress! + 2 * r * f).update(from: av.baseAddress! + r * f, count: f)
            (o.baseAddress! + (2 * r + 1) * f).update(from: bv.baseAddress! + r * f, count: f)
          }
        }
      }
    }
    return Tensor(shape: [p, 2 * f], data: out)
  }

  /// (dL/da, dL/db): the two halves of each row of dL/d(output).   dJoined: (P, 2F)
  public static func backward(_ dJoined: Tensor) -> (Tensor, Tensor) {
    precondition(dJoined.shape.count == 2 && dJoined.shape[1] % 2 == 0, "Concatenation: a gradient of shape \(dJoined.shape)")
    let (p, f) = (dJoined.shape[0], dJoined.shape[1] / 2)
    var da = [Float](repeating: 0, count: p * f), db = da
    dJoined.data.withUnsafeBufferPointer { d in
      for r in 0..<p {
        for j in 0..<f {
          da[r * f + j] = d[2 * r * f + j]
          db[r * f + j] = d[(2 * r + 1) * f + j]
        }
      }
    }
    return (Tensor(shape: [p, f], data: da), Tensor(shape: [p, f], data: db))
  }
}

/// Binary cross-entropy on logits, mean over the batch, in the stable form
/// max(z, 0) - z y + log(1 + e^-|z|). Sigmoid and loss are one op: dz = (sigmoid(z) - y) / B.
public enum BinaryCrossEntropy {
  /// The mean loss (accumulated in Double) and dL/dlogits.
  public static func lossAndGradient(logits: [Float], labels: [Float]) -> (loss: Double, dLogits: [Float]) {
    precondition(logits.count == labels.count && !logits.isEmpty, "BinaryCrossEntropy: \(logits.count) logits, \(labels.count) labels")
    let n = Float(logits.count)
    var total = 0.0
    var grad = [Float](repeating: 0, count: logits.count)
    for i in logits.indices {
      let z = Double(logits[i]), y = Double(labels[i])
      total += max(z, 0) - z * y + log1p(exp(-abs(z)))
      grad[i] = (sigmoid(logits[i]) - labels[i]) / n
    }
    return (total / Double(logits.count), grad)
  }
}

/// Softmax cross-entropy of rows of logits against class labels, mean over the rows, computed in
/// Double: L = mean_i (logsumexp(z_i) - z_i[y_i]), dz_i = (softmax(z_i) - onehot(y_i)) / N.
public enum SoftmaxCrossEntropy {
  /// The mean loss, dL/dlogits (same shape) and how many rows have their label's logit highest.
  ///   logits: (N, C), labels: N values in 0 ..< C
  public static func lossAndGradient(logits: Tensor, labels: [Int]) -> (loss: Double, dLogits: Tensor, correct: Int) {
    precondition(logits.shape.count == 2 && logits.shape[0] == labels.count && !labels.isEmpty, "SoftmaxCrossEntropy: logits \(logits.shape), \(labels.count) labels")
    let (n, c) = (logits.shape[0], logits.shape[1])
    precondition(labels.allSatisfy { (0..<c).contains($0) }, "SoftmaxCrossEntropy: labels must lie in 0..<\(c)")
    var gradient = Tensor(zeros: logits.shape)
    var total = 0.0, correct = 0
    logits.data.withUnsafeBufferPointer { z in
      gradient.data.withUnsafeMutableBufferPointer { dz in
        for i in 0..<n {
          let row = i * c
          var top = z[row], best = 0
          for j in 1..<c where z[row + j] > top {
            top = z[row + j]
            best = j
          }
          if best == labels[i] { correct += 1 }
          var sum = 0.0
          for j in 0..<c { sum += exp(Double(z[row + j] - top)) }
          total += Double(top) + log(sum) - Double(z[row + labels[i]])
          for j in 0..<c { dz[row + j] = Float(exp(Double(z[row + j] - top)) / sum / Double(n)) }
          dz[row + labels[i]] -= Float(1 / Double(n))
        }
      }
    }
    return (total / Double(n), gradient, correct)
  }
}
