import Episodes
import Model
import ResultsStore
import Support

/// Siamese pairs (the reference PyTorch project; Koch et al. 2015): a learned head scores a pair
/// from |f1 - f2| of the two embeddings, trained with binary cross-entropy on same/different
/// pairs, half of them same. An episode's query is scored against each class by the head's mean
/// logit over the class's support images.
///
/// Settings (`training`): `pairsPerStep` and `pairing`, how a step draws its pairs:
/// `independent` (two images of its own per pair), `groups` (2 characters x 2 drawers, each image
/// in two pairs) or `batch` (2 characters x 4 drawers, 24 pairs from 8 images, scored within the
/// batch). Objective name `pairs`, the default.
package enum SiamesePairs: FewShotMethod {
  package static let name = "pairs"
  package static let similarity = Similarity.head
  package static let trainsOnEpisodes = false
  package static let unusedTrainingKeys: [String] = []
  package static let throughputUnit = ThroughputUnit.pairs

  package static func problems(_ training: TrainingConfig) -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    let pairsPerStep = training.pairsPerStep
    if training.episode != nil {
      let episodic = FewShotMethods.all.filter { $0.trainsOnEpisodes }.map { "\"\($0.name)\"" }.joined(separator: ", ")
      out.append(("episode", "the pairs objective draws pairs, not episodes: remove it, or set \"objective\" to one that trains on episodes (\(episodic))"))
    }
    if pairsPerStep > Limits.pairsPerStep { out.append(("pairsPerStep", "at most \(Limits.pairsPerStep); got \(pairsPerStep)")) }
    if pairsPerStep < 2 || pairsPerStep % 2 != 0 { out.append(("pairsPerStep", "an even number >= 2 (half same, half different); got \(pairsPerStep)")) }
    if training.pairing == .groups && pairsPerStep % 4 != 0 { out.append(("pairsPerStep", "a multiple of 4 with pairing groups (4 pairs per group); got \(pairsPerStep)")) }
    if training.pairing == .batch && pairsPerStep % 24 != 0 {
      out.append(("pairsPerStep", "a multiple of 24 with pairing batch (24 pairs from each group of 8 images); got \(pairsPerStep)"))
    }
    return out
  }

  package static func imagesPerStep(_ training: TrainingConfig) -> Int {
    switch training.pairing {
    case .independent: return 2 * training.pairsPerStep
    case .groups: return training.pairsPerStep
    case .batch: return training.pairsPerStep / 3
    }
  }

  package static func pairsPerStep(_ training: TrainingConfig) -> Int { training.pairsPerStep }

  package static func lossAndGradients(step: Int, network: inout EmbeddingNetwork, draws: TrainingDraws) -> Double {
    let (images, pairs) = batch(step, draws: draws)
    return network.lossAndGradients(images: draws.input(images, step), pairs: pairs.map { ($0.left, $0.right) }, labels: pairs.map { $0.same ? 1 : 0 }).loss
  }

  /// The images of step `step` (indices into the training split) and the pairs among them.
  package static func batch(_ step: Int, draws: TrainingDraws) -> (images: [Int], pairs: [TrainingPair]) {
    let count = draws.training.pairsPerStep
    switch draws.training.pairing {
    case .independent:
      let items = draws.pairs.batch(step, pairs: count)
      return (items.map(\.left) + items.map(\.right), items.enumerated().map { TrainingPair(left: $0.offset, right: count + $0.offset, same: $0.element.same) })
    case .groups, .batch:
      let grouped = draws.training.pairing == .groups ? draws.pairs.groupedBatch(step, groups: count / 4) : draws.pairs.withinBatch(step, groups: count / 24)
      return (grouped.images, grouped.pairs)
    }
  }

  package static func probeStep(network: inout EmbeddingNetwork, images: Tensor) {
    let half = images.batch / 2
    _ = network.lossAndGradients(images: images, pairs: (0..<half).map { ($0, half + $0) }, labels: (0..<half).map { Float($0 % 2) })
  }

  /// The head's mean logit over each class's support images.
  package static func classScores(model: NetworkEnsemble, queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    meanPerClass(pairScores(model: model, queries: queries, support: support.flatMap { $0 }), classSizes: support.map(\.count))
  }

  /// sigmoid of the (mean) logit, in [0, 1]: it ranks pairs, it is not a calibrated probability.
  package static func pairValue(score: Double) -> Double { Double(sigmoid(Float(score))) }
  package static let pairValueName = (heading: "similarity", higherIsCloser: true)
}
