import Episodes
import Foundation
import Model
import ResultsStore
import Support

/// Matching networks (Vinyals et al. 2016, "Matching Networks for One Shot Learning"), as they
/// were run on Omniglot: no head; a query attends over the episode's support images with a
/// softmax of cosine similarities, a(q, s) = exp(c(q, s)) / sum_s' exp(c(q, s')), and its
/// probability of class k is the attention on k's support images, sum over s in k of a(q, s).
/// Training minimises the mean of -log p(true class) over one episode of the training classes a
/// step. Deviation: no full context embeddings (the paper's LSTMs over the support set), which
/// Vinyals et al. used on miniImageNet, not on Omniglot. An episode is scored by the same
/// attention; an ensemble's cosine is its members' mean.
///
/// Settings (`training`): `objective: "matching"`, `episode` as for prototypical networks; the
/// network: `model.similarity: "cosine"` (no head).
///
/// Shapes: N = ways (shots + queries) embeddings of F features, class-major (class c's support
/// rows, then its query rows); S = ways * shots support rows, Q = ways * queries queries.
package enum MatchingNetworks: EpisodicMethod {
  package static let name = "matching"
  package static let similarity = Similarity.cosine

  /// The loss, computed in Double, and dL/d(embeddings).   embeddings: (N, F)
  package static func episodeLoss(embeddings: Tensor, ways: Int, shots: Int, queries: Int) -> (loss: Double, dEmbeddings: Tensor) {
    episodeLoss(embeddings: embeddings, ways: ways, shots: shots, queries: queries, scale: 1)
  }

  /// The loss with the cosines multiplied by `scale` in the softmax (1: Vinyals et al.'s).
  static func episodeLoss(embeddings: Tensor, ways: Int, shots: Int, queries: Int, scale: Double) -> (loss: Double, dEmbeddings: Tensor) {
    let perClass = shots + queries
    precondition(
      ways >= 2 && shots >= 1 && queries >= 1 && embeddings.shape.count == 2 && embeddings.shape[0] == ways * perClass,
      "MatchingNetworks: \(embeddings.shape) embeddings for \(ways) ways x (\(shots) shots + \(queries) queries)")
    let f = embeddings.shape[1], x = embeddings.data, n = ways * perClass
    let support = (0..<ways).flatMap { c in (0..<shots).map { c * perClass + $0 } }
    // Each row's norm; a zero row (a dead network) gets cosine 0 and no gradient.
    let norms = (0..<n).map { r -> Double in
      var sum = 0.0
      for j in 0..<f { sum += Double(x[r * f + j]) * Double(x[r * f + j]) }
      return sum.squareRoot()
    }
    var gradient = [Double](repeating: 0, count: n * f)
    var loss = 0.0
    let queryCount = Double(ways * queries)
    for label in 0..<ways {
      for q in 0..<queries {
        let r = label * perClass + shots + q
        let cosines = support.map { cosine(x, r, $0, f: f, norms: norms) }
        let attention = softmax(cosines.map { scale * $0 })
        let inClass = support.indices.filter { support[$0] / perClass == label }
        let p = inClass.reduce(0.0) { $0 + attention[$1] }
        loss -= log(max(p, 1e-300)) / queryCount
        // dL/dc_s = scale (a_s - [s in label] a_s / p) / Q, then through each cosine to both rows.
        for (i, s) in support.enumerated() {
          let dCosine = scale * (attention[i] - (s / perClass == label ? attention[i] / p : 0)) / queryCount
          addCosineGradient(dCosine, x, r, s, f: f, norms: norms, cosine: cosines[i], into: &gradient)
        }
      }
    }
    return (loss, Tensor(shape: embeddings.shape, data: gradient.map { Float($0) }))
  }

  /// log p(class): the log of the attention on each class's support images, the softmax of the
  /// (members' mean) cosines over all of the episode's support images.
  package static func classScores(model: NetworkEnsemble, queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    classScores(model: model, queries: queries, support: support, scale: 1)
  }

  /// The same with the cosines multiplied by `scale`.
  static func classScores(model: NetworkEnsemble, queries: [[Float]], support: [[[Float]]], scale: Double) -> [[Double]] {
    let cosines = pairScores(model: model, queries: queries, support: support.flatMap { $0 }).map { $0.map { scale * $0 } }
    return cosines.map { row in
      let all = logSumExp(row[...])
      var column = 0
      return support.map { rows in
        defer { column += rows.count }
        return logSumExp(row[column..<(column + rows.count)]) - all
      }
    }
  }

  /// log sum exp of `values`, computed stably.
  static func logSumExp(_ values: ArraySlice<Double>) -> Double {
    let top = values.max() ?? 0
    return top + log(values.reduce(0.0) { $0 + exp($1 - top) })
  }

  /// The cosine of the two embeddings, in [-1, 1] (an ensemble's: the members' mean).
  package static func pairValue(score: Double) -> Double { score }
  package static let pairValueName = (heading: "cosine similarity", higherIsCloser: true)

  /// cos(row a, row b) of the F-wide rows of `x`.
  static func cosine(_ x: [Float], _ a: Int, _ b: Int, f: Int, norms: [Double]) -> Double {
    guard norms[a] > 0 && norms[b] > 0 else { return 0 }
    var dot = 0.0
    for j in 0..<f { dot += Double(x[a * f + j]) * Double(x[b * f + j]) }
    return dot / (norms[a] * norms[b])
  }

  /// Adds d * dcos/d(row a) and d * dcos/d(row b): dcos/du = v / (|u||v|) - cos u / |u|^2.
  static func addCosineGradient(_ d: Double, _ x: [Float], _ a: Int, _ b: Int, f: Int, norms: [Double], cosine: Double, into gradient: inout [Double]) {
    guard norms[a] > 0 && norms[b] > 0 && d != 0 else { return }
    let product = norms[a] * norms[b], aa = norms[a] * norms[a], bb = norms[b] * norms[b]
    for j in 0..<f {
      let (u, v) = (Double(x[a * f + j]), Double(x[b * f + j]))
      gradient[a * f + j] += d * (v / product - cosine * u / aa)
      gradient[b * f + j] += d * (u / product - cosine * v / bb)
    }
  }

  /// A numerically stable softmax.
  static func softmax(_ values: [Double]) -> [Double] {
    let top = values.max() ?? 0
    let exps = values.map { exp($0 - top) }
    let sum = exps.reduce(0, +)
    return exps.map { $0 / sum }
  }
}
