import Episodes
import Model

/// Adapts the Siamese network (or an ensemble of them) to the Episodes evaluation protocol:
/// embed each image once with every member's backbone, then score query/support pairs with the
/// heads alone. The similarity is the (mean) logit; for one network, sigmoid is monotonic, so
/// rankings are the same as with probabilities.
final class SiameseScorer: OneShotScorer {
  private(set) var model: SiameseEnsemble
  /// Images per backbone pass.
  let batchSize: Int

  init(model: SiameseEnsemble, batchSize: Int = 64) {
    self.model = model
    self.batchSize = batchSize
  }

  convenience init(network: SiameseNetwork, batchSize: Int = 64) {
    self.init(model: SiameseEnsemble(members: [network]), batchSize: batchSize)
  }

  /// One image's embedding: the members' feature vectors back to back.
  func embed(_ pixels: UnsafeBufferPointer<UInt8>, count: Int, size: Int) throws -> [[Float]] {
    precondition(size == model.config.inputSize, "images are \(size)x\(size), the network takes \(model.config.inputSize)")
    let imageSize = size * size
    var out: [[Float]] = []
    out.reserveCapacity(count)
    var start = 0
    while start < count {
      let n = min(batchSize, count - start)
      var input = [Float](repeating: 0, count: n * imageSize)
      for i in 0..<(n * imageSize) { input[i] = Float(pixels[start * imageSize + i]) * (1 / 255) }
      let features = model.embed(Tensor(shape: [n, 1, size, size], data: input))
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

  func similarities(queries: [[Float]], support: [[Float]]) throws -> [[Double]] {
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

/// Images of a split as a network input batch: ink / 255, (N, 1, S, S).
func inputTensor(_ split: ImageSplit, images: [Int]) -> Tensor {
  let n = split.size * split.size
  var data = [Float](repeating: 0, count: images.count * n)
  split.pixels.withUnsafeBufferPointer { pixels in
    for (i, image) in images.enumerated() {
      for j in 0..<n { data[i * n + j] = Float(pixels[image * n + j]) * (1 / 255) }
    }
  }
  return Tensor(shape: [images.count, 1, split.size, split.size], data: data)
}
