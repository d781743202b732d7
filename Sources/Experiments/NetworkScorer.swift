import Episodes
import Model

/// Adapts the Siamese network (or an ensemble of them) to the Episodes evaluation protocol:
/// embed each image once with every member's backbone, then score query/support pairs with the
/// heads alone. The similarity is the (mean) logit; for one network, sigmoid is monotonic, so
/// rankings are the same as with probabilities.
package struct SiameseScorer: OneShotScorer {
  package let model: SiameseEnsemble
  /// Images per backbone pass.
  package let batchSize: Int

  package init(model: SiameseEnsemble, batchSize: Int = 64) {
    self.model = model
    self.batchSize = batchSize
  }

  package init(network: SiameseNetwork, batchSize: Int = 64) {
    self.init(model: SiameseEnsemble(members: [network]), batchSize: batchSize)
  }

  /// One image's embedding: the members' feature vectors back to back.
  package func embed(_ pixels: UnsafeBufferPointer<UInt8>, count: Int, size: Int) throws -> [[Float]] {
    precondition(size == model.config.inputSize, "images are \(size)x\(size), the network takes \(model.config.inputSize)")
    let imageSize = size * size
    var out: [[Float]] = []
    out.reserveCapacity(count)
    var start = 0
    while start < count {
      let n = min(batchSize, count - start)
      let features = model.embed(networkInput(UnsafeBufferPointer(rebasing: pixels[(start * imageSize)..<((start + n) * imageSize)]), size: size))
      for i in 0..<n {
        var row: [Float] = []
        row.reserveCapacity(features.count * model.featureCount)
        for member in features {
          let f = member.itemCount
          row.append(contentsOf: member.data[(i * f)..<((i + 1) * f)])
        }
        out.append(row)
      }
      start += n
    }
    return out
  }

  /// The head's mean logit over a class's support images; under Euclidean similarity (a
  /// prototypical network), the negative squared distance to the class's prototype (for an
  /// ensemble, summed over the members, whose embeddings lie back to back in a row).
  package func classScores(queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    guard model.config.similarity == .euclidean else {
      return meanPerClass(try similarities(queries: queries, support: support.flatMap { $0 }), classSizes: support.map(\.count))
    }
    return PrototypicalLoss.scores(queries: queries, support: support)
  }

  package func similarities(queries: [[Float]], support: [[Float]]) throws -> [[Double]] {
    guard !queries.isEmpty, !support.isEmpty else { return queries.map { _ in [] } }
    let f = model.featureCount
    let pairs = queries.count * support.count
    var left: [Tensor] = [], right: [Tensor] = []
    for m in model.members.indices {
      var a = [Float](), b = [Float]()
      a.reserveCapacity(pairs * f)
      b.reserveCapacity(pairs * f)
      let range = (m * f)..<((m + 1) * f)
      for q in queries {
        for s in support {
          a.append(contentsOf: q[range])
          b.append(contentsOf: s[range])
        }
      }
      left.append(Tensor(shape: [pairs, f], data: a))
      right.append(Tensor(shape: [pairs, f], data: b))
    }
    let logits = model.score(left, right)
    return (0..<queries.count).map { q in (0..<support.count).map { Double(logits[q * support.count + $0]) } }
  }
}

/// Images stored back to back as ink intensities (0...255), as a network input batch
/// (N, 1, S, S) with ink = 1.0 and paper = 0.0.
package func networkInput(_ ink: UnsafeBufferPointer<UInt8>, size: Int) -> Tensor {
  let n = ink.count / (size * size)
  precondition(n * size * size == ink.count, "\(ink.count) ink values are not whole \(size)x\(size) images")
  let data = [Float](unsafeUninitializedCapacity: ink.count) { out, initialized in
    GrayImage.scaleInk(ink, into: out)
    initialized = ink.count
  }
  return Tensor(shape: [n, 1, size, size], data: data)
}
