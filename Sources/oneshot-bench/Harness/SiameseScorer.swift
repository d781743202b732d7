import Episodes
import Model

/// Adapts the Siamese network to the Episodes evaluation protocol: embed each image once with
/// the backbone, then score query/support pairs with the head alone. The similarity is the
/// logit (sigmoid is monotonic, so rankings are the same as with probabilities).
final class SiameseScorer: OneShotScorer {
  private(set) var network: SiameseNetwork
  /// Images per backbone pass.
  let batchSize: Int

  init(network: SiameseNetwork, batchSize: Int = 64) {
    self.network = network
    self.batchSize = batchSize
  }

  func embed(_ pixels: UnsafeBufferPointer<UInt8>, count: Int, size: Int) throws -> [[Float]] {
    precondition(size == network.config.inputSize, "images are \(size)x\(size), the network takes \(network.config.inputSize)")
    let imageSize = size * size
    var out: [[Float]] = []
    out.reserveCapacity(count)
    var start = 0
    while start < count {
      let n = min(batchSize, count - start)
      var input = [Float](repeating: 0, count: n * imageSize)
      for i in 0..<(n * imageSize) { input[i] = Float(pixels[start * imageSize + i]) * (1 / 255) }
      let features = network.embed(Tensor(shape: [n, 1, size, size], data: input))
      let f = features.itemCount
      for i in 0..<n { out.append(Array(features.data[(i * f)..<((i + 1) * f)])) }
      start += n
    }
    return out
  }

  func similarities(queries: [[Float]], support: [[Float]]) throws -> [[Double]] {
    guard let f = queries.first?.count, !support.isEmpty else { return queries.map { _ in [] } }
    var a = [Float](), b = [Float]()
    a.reserveCapacity(queries.count * support.count * f)
    b.reserveCapacity(queries.count * support.count * f)
    for q in queries {
      for s in support {
        a.append(contentsOf: q)
        b.append(contentsOf: s)
      }
    }
    let pairs = queries.count * support.count
    let logits = network.score(Tensor(shape: [pairs, f], data: a), Tensor(shape: [pairs, f], data: b))
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
