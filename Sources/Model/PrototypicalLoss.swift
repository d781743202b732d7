import Foundation

/// The loss of prototypical networks (Snell et al. 2017) on one episode of N classes, each
/// with K support and Q query embeddings: a class's prototype is the mean of its support
/// embeddings, a query's logit for class c is the negative squared Euclidean distance to
/// prototype c, and the loss is the mean cross-entropy of the queries' softmax over the N
/// classes. Computed in Double, as PyTorch's reference fixture is checked in float32 within
/// 1e-5 of it.
///
/// Embeddings come class-major: class c's K support rows, then its Q query rows, then class c+1.
public enum PrototypicalLoss {
  /// The loss, dL/d(embeddings) (same shape) and how many queries the nearest prototype gets right.
  ///   features: (N (K + Q), F)
  public static func lossAndGradient(features: Tensor, ways: Int, shots: Int, queries: Int) -> (loss: Double, dFeatures: Tensor, correct: Int) {
    let perClass = shots + queries
    precondition(ways >= 2 && shots >= 1 && queries >= 1 && features.shape.count == 2 && features.shape[0] == ways * perClass,
      "PrototypicalLoss: \(features.shape) embeddings for \(ways) ways x (\(shots) shots + \(queries) queries)")
    let f = features.shape[1], x = features.data
    let row = { (c: Int, i: Int) in (c * perClass + i) * f }
    // Prototypes: mean of each class's support rows.
    var prototypes = [Double](repeating: 0, count: ways * f)
    for c in 0..<ways {
      for s in 0..<shots {
        let r = row(c, s)
        for j in 0..<f { prototypes[c * f + j] += Double(x[r + j]) }
      }
      for j in 0..<f { prototypes[c * f + j] /= Double(shots) }
    }
    var gradient = [Double](repeating: 0, count: ways * perClass * f)
    var dPrototypes = [Double](repeating: 0, count: ways * f)
    var loss = 0.0, correct = 0
    let queryCount = Double(ways * queries)
    var logits = [Double](repeating: 0, count: ways)
    for label in 0..<ways {
      for q in 0..<queries {
        let r = row(label, shots + q)
        for c in 0..<ways {
          var d = 0.0
          for j in 0..<f {
            let diff = Double(x[r + j]) - prototypes[c * f + j]
            d += diff * diff
          }
          logits[c] = -d
        }
        let top = logits.max()!
        let sum = logits.reduce(0) { $0 + exp($1 - top) }
        loss += (top + log(sum) - logits[label]) / queryCount
        // The first of equal logits wins, as argmax does in the evaluator.
        if logits.firstIndex(of: top) == label { correct += 1 }
        for c in 0..<ways {
          // dL/dlogit_c = (softmax_c - [c = label]) / queries; dlogit/dquery = -2 (query - p_c).
          let g = (exp(logits[c] - top) / sum - (c == label ? 1 : 0)) / queryCount
          guard g != 0 else { continue }
          for j in 0..<f {
            let diff = Double(x[r + j]) - prototypes[c * f + j]
            gradient[r + j] -= 2 * g * diff
            dPrototypes[c * f + j] += 2 * g * diff
          }
        }
      }
    }
    for c in 0..<ways {
      for s in 0..<shots {
        let r = row(c, s)
        for j in 0..<f { gradient[r + j] += dPrototypes[c * f + j] / Double(shots) }
      }
    }
    return (loss, Tensor(shape: features.shape, data: gradient.map { Float($0) }), correct)
  }

  /// The negative squared Euclidean distance of each query row to each prototype (the mean of a
  /// class's rows in `support`): `result[q][c]`.
  public static func scores(queries: [[Float]], support: [[[Float]]]) -> [[Double]] {
    let prototypes = support.map { rows -> [Double] in
      var mean = [Double](repeating: 0, count: rows.first?.count ?? 0)
      for row in rows { for j in row.indices { mean[j] += Double(row[j]) } }
      return mean.map { $0 / Double(max(rows.count, 1)) }
    }
    return queries.map { query in
      prototypes.map { prototype in
        var d = 0.0
        for j in prototype.indices {
          let diff = Double(query[j]) - prototype[j]
          d += diff * diff
        }
        return -d
      }
    }
  }
}
