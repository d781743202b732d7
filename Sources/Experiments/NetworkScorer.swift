import Episodes
import Model

/// Adapts a trained network (or an ensemble of them) to the evaluator's `OneShotScorer`: each
/// image is embedded once with every member's backbone; each episode is then scored by the
/// network's few-shot method (`FewShotMethod.classScores`: a head's mean logit, the distance to
/// prototypes, or whatever a method does with the support set).
package struct NetworkScorer: OneShotScorer {
  package let model: NetworkEnsemble
  /// How an episode is scored.
  package let method: any FewShotMethod.Type
  /// Images per backbone pass.
  package let batchSize: Int
  /// Test-time averaging: each image's features are the mean over the image and this many
  /// distorted copies of it (`ProtocolConfig.augmentedCopies`; 0: the image alone).
  package let augmentedCopies: Int
  /// What the method reads of how each member was trained (MAML's adaptation), one per member.
  package let settings: [ScoringSettings]

  package init(model: NetworkEnsemble, method: any FewShotMethod.Type, settings: [ScoringSettings]? = nil, batchSize: Int = 64, augmentedCopies: Int = 0) {
    precondition(augmentedCopies == 0 || !method.scoresImages, "\(method.name) scores images, not averaged embeddings")
    precondition(settings == nil || settings?.count == model.members.count, "one scoring setting per member")
    self.model = model
    self.method = method
    self.settings = settings ?? Array(repeating: ScoringSettings(), count: model.members.count)
    self.batchSize = batchSize
    self.augmentedCopies = augmentedCopies
  }

  package init(network: EmbeddingNetwork, method: any FewShotMethod.Type, settings: ScoringSettings = ScoringSettings(), batchSize: Int = 64) {
    self.init(model: NetworkEnsemble(members: [network]), method: method, settings: [settings], batchSize: batchSize)
  }

  /// One image's embedding: the members' feature vectors back to back (and, for a method that
  /// `scoresImages`, the image's network input after them).
  package func embed(_ pixels: UnsafeBufferPointer<UInt8>, count: Int, size: Int) throws -> [[Float]] {
    precondition(size == model.config.inputSize, "images are \(size)x\(size), the network takes \(model.config.inputSize)")
    let imageSize = size * size
    var out: [[Float]] = []
    out.reserveCapacity(count)
    var start = 0
    while start < count {
      let n = min(batchSize, count - start)
      let batch = UnsafeBufferPointer(rebasing: pixels[(start * imageSize)..<((start + n) * imageSize)])
      let input = networkInput(batch, size: size)
      var features = model.embed(input)
      if augmentedCopies > 0 {
        for copy in 1...augmentedCopies {
          let more = model.embed(distortedInput(batch, size: size, copy: copy))
          for m in features.indices { for j in features[m].data.indices { features[m].data[j] += more[m].data[j] } }
        }
        let mean = 1 / Float(augmentedCopies + 1)
        for m in features.indices { for j in features[m].data.indices { features[m].data[j] *= mean } }
      }
      for i in 0..<n {
        var row: [Float] = []
        row.reserveCapacity(features.count * model.featureCount + (method.scoresImages ? imageSize : 0))
        for member in features {
          let f = member.itemCount
          row.append(contentsOf: member.data[(i * f)..<((i + 1) * f)])
        }
        // A method that adapts the network to each episode gets the image itself too; pair
        // scores read the members' embeddings by position and never reach it.
        if method.scoresImages { row.append(contentsOf: input.data[(i * imageSize)..<((i + 1) * imageSize)]) }
        out.append(row)
      }
      start += n
    }
    return out
  }

  /// The method's class scores for the episode.
  package func classScores(queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    try method.classScores(model: model, settings: settings, queries: queries, support: support)
  }

  /// The ensemble's pair scores (`NetworkEnsemble.score`) of every query against every support image.
  package func similarities(queries: [[Float]], support: [[Float]]) throws -> [[Double]] {
    pairScores(model: model, queries: queries, support: support)
  }
}

/// The key of test-time copies' random streams.
private let copyKey = stableHash("test-time copies")

/// Copy number `copy` of each image of `ink` as a network input: Koch et al.'s affine distortion
/// drawn from a stream keyed by the image's own pixels and the copy number, so an image's copies
/// are the same wherever and in whatever batch or episode it is scored.
package func distortedInput(_ ink: UnsafeBufferPointer<UInt8>, size: Int, copy: Int) -> Tensor {
  let imageSize = size * size
  let n = ink.count / imageSize
  var data = [Float](repeating: 0, count: ink.count)
  data.withUnsafeMutableBufferPointer { out in
    for i in 0..<n {
      let image = UnsafeBufferPointer(rebasing: ink[(i * imageSize)..<((i + 1) * imageSize)])
      var rng = SplitMix64(seed: stableHash(bytes: image), key: copyKey, index: UInt64(copy))
      AffineAugmentation.koch.apply(image, size: size, into: UnsafeMutableBufferPointer(rebasing: out[(i * imageSize)..<((i + 1) * imageSize)]), rng: &rng)
    }
  }
  return Tensor(shape: [n, 1, size, size], data: data)
}

/// `result[q][s]`: the ensemble's score of query q against support image s, from embedding rows
/// that hold the members' feature vectors back to back.
package func pairScores(model: NetworkEnsemble, queries: [[Float]], support: [[Float]]) -> [[Double]] {
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
  let scores = model.score(left, right)
  return (0..<queries.count).map { q in (0..<support.count).map { Double(scores[q * support.count + $0]) } }
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
