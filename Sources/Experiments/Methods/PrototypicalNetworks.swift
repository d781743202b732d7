import Episodes
import Model
import ResultsStore
import Support

/// Prototypical networks (Snell et al. 2017): no head; a class's prototype is the mean embedding
/// of its support images, a query's score for a class is the negative squared Euclidean distance
/// to the prototype, and training minimises the cross-entropy of the queries' softmax over one
/// episode of the training classes a step.
///
/// Settings (`training`): `objective: "prototypical"`, `episode` (its ways, shots, queries and
/// alphabet mode); the budget in `steps` (one episode each). An ensemble's members lie back to
/// back in each embedding row, so its score sums the members' squared distances.
package enum PrototypicalNetworks: FewShotMethod {
  package static let name = "prototypical"
  package static let similarity = Similarity.euclidean
  package static let trainsOnEpisodes = true
  package static let unusedTrainingKeys: [String] = ["pairsPerStep", "pairing"]
  package static let throughputUnit = ThroughputUnit.images

  package static func problems(_ training: TrainingConfig) -> [ConfigProblem] {
    guard let episode = training.episode else {
      return [("episode", "the prototypical objective needs its training episode, e.g. {\"ways\": 60, \"shots\": 1, \"queries\": 5, \"alphabetMode\": \"across\"}")]
    }
    var out = nested("episode", episode.problems())
    if training.pairing != .independent { out.append(("pairing", "pairing is how the pairs objective draws its pairs; remove it for the prototypical objective")) }
    return out
  }

  package static func imagesPerStep(_ training: TrainingConfig) -> Int {
    guard let episode = training.episode else { return 0 }
    return episode.ways * (episode.shots + episode.queries)
  }

  package static func pairsPerStep(_ training: TrainingConfig) -> Int { training.episode.map { $0.ways * $0.queries } ?? 0 }

  package static func lossAndGradients(step: Int, network: inout EmbeddingNetwork, draws: TrainingDraws) -> Double {
    let episode = draws.episode(step)
    return network.prototypicalLossAndGradients(images: episode.images, ways: episode.ways, shots: episode.shots, queries: episode.queries).loss
  }

  /// An episode of N/2 classes, one support and one query image each.
  package static func probeStep(network: inout EmbeddingNetwork, images: Tensor) {
    _ = network.prototypicalLossAndGradients(images: images, ways: images.batch / 2, shots: 1, queries: 1)
  }

  package static func classScores(model: NetworkEnsemble, queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    PrototypicalLoss.scores(queries: queries, support: support)
  }

  /// The squared Euclidean distance of the two embeddings (an ensemble's: the members' mean).
  package static func pairValue(score: Double) -> Double { -score }
  package static let pairValueName = (heading: "squared distance", higherIsCloser: false)
}
