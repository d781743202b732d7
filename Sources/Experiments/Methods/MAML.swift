import Episodes
import Foundation
import Model
import ResultsStore
import Support

/// First-order MAML (Finn et al. 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
/// Networks", their first-order approximation; Nichol et al. 2018 name it FOMAML): the network is
/// fine-tuned on each episode's support set by a few steps of gradient descent, and the queries
/// are scored by the adapted network. Training learns weights from which those few steps go far:
/// a step adapts a copy of the network to one episode of the training classes and takes the
/// gradient of the queries' cross-entropy at the adapted weights as the gradient at the meta
/// weights (first order: the adaptation's own Jacobian is dropped).
///
/// The recipe, fixed before any result (issue #42):
/// - the classifier of an episode is a linear layer on the embedding, N x F weights and N biases,
///   started at zero for every episode (not meta-learned: Finn et al. meta-learn an N-way output
///   layer, whose rows are tied to label positions; a zero start scores every permutation of the
///   classes alike and any N on one network, as in Ye and Chao 2022's "UnicornMAML");
/// - adaptation: plain gradient descent on the support rows' mean cross-entropy over every
///   parameter of the backbone and that classifier; by default step size 0.1, 5 steps in
///   training and 10 when scoring (Finn et al.'s 20-way Omniglot step size and training steps;
///   more steps when scoring, as their reference code does), set by `training.adaptation`
///   (`AdaptationSettings`: Finn et al.'s 5-way Omniglot recipe is step 0.4, one step);
/// - batch norm: the backbone runs in training mode over the support set (its batch statistics)
///   in every adaptation step and over the queries in the training step's query pass, as Finn et
///   al. When scoring, the queries are normalised with the running estimates of the trained
///   network: inductive (no query's statistics reach another query), where Finn et al.'s
///   published figures normalise each query batch with its own statistics (transductive);
/// - one episode per step (the meta-batch is the episode: Finn et al. average 16 episodes of
///   20-way); the meta-optimiser is the training section's.
///
/// Settings (`training`): `objective: "maml"`, `episode` (the training episode: ways, shots,
/// queries), `adaptation` (optional), the network with `model.similarity: "euclidean"` (no
/// head). Scoring needs each episode's images, so `NetworkScorer` hands this method the pixels
/// beside the embeddings (`scoresImages`), and the adaptation each member was trained with
/// (`ScoringSettings`, read from its checkpoint's `experiment_config`: an eval-only run adapts a
/// checkpoint as its training run did, whatever its own file says). An ensemble's score for a
/// class is its members' mean log-probability.
package enum MAML: TrainsOnEpisodes {
  package static let name = "maml"
  package static let similarity = Similarity.euclidean
  package static let scoresImages = true

  /// The episode's settings, and the adaptation's.
  package static func problems(_ training: TrainingConfig) -> [ConfigProblem] {
    episodeProblems(training) + nested("adaptation", training.adaptationOrDefaults.problems())
  }

  /// Image passes (forward and backward) of one training step: each adaptation step over the
  /// support set, then the queries.
  package static func imagesPerStep(_ training: TrainingConfig) -> Int {
    guard let episode = training.episode else { return 0 }
    let (support, o1) = episode.ways.multipliedReportingOverflow(by: episode.shots)
    let (passes, o2) = support.multipliedReportingOverflow(by: training.adaptationOrDefaults.steps)
    let (queries, o3) = episode.ways.multipliedReportingOverflow(by: episode.queries)
    let (total, o4) = passes.addingReportingOverflow(queries)
    return o1 || o2 || o3 || o4 ? Int.max : total
  }

  package static func lossAndGradients(step: Int, network: inout EmbeddingNetwork, draws: TrainingDraws) -> Double {
    let episode = draws.episode(step)
    return lossAndGradients(
      network: &network, images: episode.images, ways: episode.ways, shots: episode.shots, queries: episode.queries, adaptation: draws.training.adaptationOrDefaults)
  }

  /// An episode of N/2 classes, one support and one query image each.
  package static func probeStep(network: inout EmbeddingNetwork, images: Tensor) {
    _ = lossAndGradients(network: &network, images: images, ways: images.batch / 2, shots: 1, queries: 1)
  }

  /// The gradient is taken at the adapted weights: the check moves those, the adaptation held.
  package static func loss(step: Int, network: EmbeddingNetwork, draws: TrainingDraws, movedBy t: Double, along direction: [[Double]]) -> Double {
    let episode = draws.episode(step)
    let (support, queries) = split(episode.images, ways: episode.ways, shots: episode.shots, queries: episode.queries)
    let adaptation = draws.training.adaptationOrDefaults
    var adapted = adapt(network, support: support.images, labels: support.labels, ways: episode.ways, steps: adaptation.steps, rate: adaptation.rate)
    adapted.network.store.move(by: t, along: direction)
    return adapted.lossAndGradients(images: queries.images, labels: queries.labels).loss
  }

  /// One training step on an episode whose images come class-major (each class's `shots`
  /// support images, then its `queries`): adapts a copy of the network to the support set, then
  /// sets the network's gradients to those of the queries' mean cross-entropy at the adapted
  /// weights, and its batch-norm running estimates to the copy's; returns that loss.
  ///   images: (ways (shots + queries), 1, S, S)
  package static func lossAndGradients(
    network: inout EmbeddingNetwork, images: Tensor, ways: Int, shots: Int, queries: Int, adaptation: AdaptationSettings = AdaptationSettings()
  ) -> Double {
    let (support, query) = split(images, ways: ways, shots: shots, queries: queries)
    var adapted = adapt(network, support: support.images, labels: support.labels, ways: ways, steps: adaptation.steps, rate: adaptation.rate)
    let loss = adapted.lossAndGradients(images: query.images, labels: query.labels).loss
    for p in network.store.parameters.indices { network.store.parameters[p].gradient = adapted.network.store.parameters[p].gradient }
    network.store.buffers = adapted.network.store.buffers
    return loss
  }

  /// The support and query images of a class-major episode, each with its class (0 ..< ways).
  static func split(_ images: Tensor, ways: Int, shots: Int, queries: Int) -> (support: (images: Tensor, labels: [Int]), queries: (images: Tensor, labels: [Int])) {
    let perClass = shots + queries
    precondition(ways >= 1 && shots >= 1 && queries >= 1 && images.batch == ways * perClass, "MAML: \(images.batch) images for \(ways) ways x (\(shots) shots + \(queries) queries)")
    let plain = images.plain()
    let supportRows = (0..<ways).flatMap { c in (0..<shots).map { c * perClass + $0 } }
    let queryRows = (0..<ways).flatMap { c in (0..<queries).map { c * perClass + shots + $0 } }
    return ((plain.rows(supportRows), supportRows.map { $0 / perClass }), (plain.rows(queryRows), queryRows.map { $0 / perClass }))
  }

  /// A copy of `network` with a zero classifier over `ways` classes, adapted by `steps` steps of
  /// gradient descent of step size `rate` on the support images' mean cross-entropy.
  ///   support: (n, 1, S, S)
  package static func adapt(_ network: EmbeddingNetwork, support: Tensor, labels: [Int], ways: Int, steps: Int, rate: Float = AdaptationSettings().rate) -> Adapted {
    var adapted = Adapted(network: network, ways: ways)
    for _ in 0..<steps { adapted.descend(images: support, labels: labels, rate: rate) }
    return adapted
  }

  /// A network adapted to one episode: its backbone and the episode's linear classifier.
  package struct Adapted {
    /// The backbone, its weights moved by the adaptation.
    package var network: EmbeddingNetwork
    /// The classifier's weights, (ways, F) row-major, and its biases (ways).
    package var weight: [Float]
    package var bias: [Float]
    /// dL/d(weight) and dL/d(bias) of the last `lossAndGradients`.
    package var weightGradient: [Float]
    package var biasGradient: [Float]
    let ways: Int

    /// `network` with a zero classifier over `ways` classes.
    init(network: EmbeddingNetwork, ways: Int) {
      self.network = network
      self.ways = ways
      weight = [Float](repeating: 0, count: ways * network.featureCount)
      bias = [Float](repeating: 0, count: ways)
      weightGradient = weight
      biasGradient = bias
    }

    /// The classifier's logits of embeddings.   features: (n, F) -> (n, ways)
    func logits(_ features: Tensor) -> Tensor {
      let (n, f) = (features.batch, features.itemCount)
      var out = Tensor(zeros: [n, ways])
      features.data.withUnsafeBufferPointer { x in
        for i in 0..<n {
          for c in 0..<ways {
            var z = bias[c]
            for k in 0..<f { z += x[i * f + k] * weight[c * f + k] }
            out.data[i * ways + c] = z
          }
        }
      }
      return out
    }

    /// Zeroes every gradient, then accumulates those of the images' mean cross-entropy (the
    /// backbone in training mode) into the backbone's store and the classifier's gradients;
    /// returns the loss and how many images the classifier gets right.   images: (n, 1, S, S)
    package mutating func lossAndGradients(images: Tensor, labels: [Int]) -> (loss: Double, correct: Int) {
      var correct = 0
      var dWeight = [Float](repeating: 0, count: weight.count), dBias = [Float](repeating: 0, count: bias.count)
      let classifier = self
      let loss = network.embeddingLossAndGradients(images: images) { embedded in
        let features = embedded.plain()
        let result = SoftmaxCrossEntropy.lossAndGradient(logits: classifier.logits(features), labels: labels)
        correct = result.correct
        let (n, f, ways) = (features.batch, features.itemCount, classifier.ways)
        var dFeatures = Tensor(zeros: [n, f])
        let x = features.data, dz = result.dLogits.data
        for i in 0..<n {
          for c in 0..<ways {
            let g = dz[i * ways + c]
            guard g != 0 else { continue }
            dBias[c] += g
            for k in 0..<f {
              dWeight[c * f + k] += g * x[i * f + k]
              dFeatures.data[i * f + k] += g * classifier.weight[c * f + k]
            }
          }
        }
        return (result.loss, dFeatures)
      }
      weightGradient = dWeight
      biasGradient = dBias
      return (loss, correct)
    }

    /// One step of gradient descent on the images' mean cross-entropy, every parameter of the
    /// backbone and the classifier.
    mutating func descend(images: Tensor, labels: [Int], rate: Float) {
      _ = lossAndGradients(images: images, labels: labels)
      for p in network.store.parameters.indices {
        let g = network.store.parameters[p].gradient
        network.store.parameters[p].value.withUnsafeMutableBufferPointer { v in
          for i in v.indices { v[i] -= rate * g[i] }
        }
      }
      for i in weight.indices { weight[i] -= rate * weightGradient[i] }
      for i in bias.indices { bias[i] -= rate * biasGradient[i] }
    }

    /// The queries' log-probabilities of each class, the backbone in inference mode (batch norm
    /// on its running estimates).   queries: (n, 1, S, S) -> n rows of `ways`
    package func logProbabilities(_ queries: Tensor) -> [[Double]] {
      let z = logits(network.embed(queries))
      return (0..<queries.batch).map { i in
        let row = (0..<ways).map { Double(z.data[i * ways + $0]) }
        let top = row.max() ?? 0
        let logSum = top + log(row.reduce(0) { $0 + exp($1 - top) })
        return row.map { $0 - logSum }
      }
    }
  }

  /// Each query's mean log-probability of each class over the ensemble's members, each member
  /// adapted to the support set as it was trained to be (`settings`, one per member: its
  /// `scoringSteps` steps of its `learningRate`); the queries are normalised with the member's
  /// own running estimates (inductive). The rows carry each image's pixels after the members'
  /// embeddings (`scoresImages`).
  package static func classScores(model: NetworkEnsemble, settings: [ScoringSettings], queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    precondition(settings.count == model.members.count, "\(settings.count) scoring settings for \(model.members.count) members")
    guard !queries.isEmpty else { return [] }
    let size = model.config.inputSize, pixels = size * size
    func images(_ rows: [[Float]]) -> Tensor {
      Tensor(shape: [rows.count, 1, size, size], data: rows.flatMap { row -> ArraySlice<Float> in
        precondition(row.count >= pixels, "MAML scores images: a row of \(row.count) values has no \(size)x\(size) pixels (NetworkScorer puts them after the embeddings)")
        return row[(row.count - pixels)...]
      })
    }
    let supportImages = images(Array(support.joined()))
    let labels = support.enumerated().flatMap { c, items in [Int](repeating: c, count: items.count) }
    let queryImages = images(queries)
    var total = [[Double]](repeating: [Double](repeating: 0, count: support.count), count: queries.count)
    for (member, adaptation) in zip(model.members, settings.map(\.adaptation)) {
      var adapted = adapt(member, support: supportImages, labels: labels, ways: support.count, steps: adaptation.scoringSteps, rate: adaptation.rate)
      adapted.network.store.buffers = member.store.buffers
      for (q, row) in adapted.logProbabilities(queryImages).enumerated() {
        for c in row.indices { total[q][c] += row[c] / Double(model.members.count) }
      }
    }
    return total
  }

  /// Scored with the default adaptation (a network trained without `training.adaptation`).
  package static func classScores(model: NetworkEnsemble, queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    try classScores(model: model, settings: Array(repeating: ScoringSettings(), count: model.members.count), queries: queries, support: support)
  }

  /// The squared Euclidean distance of the two (meta-trained, unadapted) embeddings.
  package static func pairValue(score: Double) -> Double { -score }
  package static let pairValueName = (heading: "squared distance", higherIsCloser: false)
}

/// MAML's adaptation (`training.adaptation`; absent: the defaults): the step size of the gradient
/// descent on an episode's support set, its steps in a training step, and its steps when an
/// episode is scored. Learn2learn's `MAML(lr=...)` and `adaptation_steps`.
package struct AdaptationSettings: Codable, Equatable, Sendable {
  /// Step size of each adaptation step.
  package var learningRate: Double = 0.1
  /// Adaptation steps of a training step (each a forward and backward pass over the support set).
  package var steps = 5
  /// Adaptation steps when an episode is scored (validation, evaluation; `predict` compares the
  /// unadapted embeddings).
  package var scoringSteps = 10

  package enum CodingKeys: String, CodingKey, CaseIterable { case learningRate, steps, scoringSteps }

  package init() {}
  package init(learningRate: Double, steps: Int, scoringSteps: Int) {
    (self.learningRate, self.steps, self.scoringSteps) = (learningRate, steps, scoringSteps)
  }

  package init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let defaults = AdaptationSettings()
    learningRate = try c.decodeIfPresent(Double.self, forKey: .learningRate) ?? defaults.learningRate
    steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? defaults.steps
    scoringSteps = try c.decodeIfPresent(Int.self, forKey: .scoringSteps) ?? defaults.scoringSteps
  }

  /// The step size as the arithmetic uses it.
  package var rate: Float { Float(learningRate) }

  /// How an episode is adapted when scored, as a run's record states it ("step 0.4, 10 steps").
  package var scoringDescription: String { String(format: "step %g, %d steps", learningRate, scoringSteps) }

  package func problems() -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    if !(learningRate > 0 && learningRate <= 10) { out.append(("learningRate", "the adaptation's step size, in (0, 10], e.g. 0.1 (Finn et al.'s 20-way) or 0.4 (their 5-way); got \(learningRate)")) }
    if !(1...100).contains(steps) { out.append(("steps", "adaptation steps of a training step, 1 to 100 (Finn et al.: 1 for 5-way, 5 for 20-way); got \(steps)")) }
    if !(1...1000).contains(scoringSteps) { out.append(("scoringSteps", "adaptation steps when an episode is scored, 1 to 1000 (default 10); got \(scoringSteps)")) }
    return out
  }
}

extension TrainingConfig {
  /// The adaptation a run of this training section uses: its `adaptation`, or the defaults
  /// (every MAML run before the key existed).
  package var adaptationOrDefaults: AdaptationSettings { adaptation ?? AdaptationSettings() }
}
