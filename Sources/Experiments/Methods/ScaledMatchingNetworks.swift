import Model

/// Matching networks with their attention's cosines multiplied by a fixed scale of 10 (a softmax
/// temperature of 0.1), as cosine classifiers are run since Baseline++ (Chen et al. 2019) and
/// TADAM (Oreshkin et al. 2018); everything else is `MatchingNetworks`. Why: after ReLU and max
/// pooling every embedding is non-negative, so each cosine lies in [0, 1] and an unscaled 20-way
/// softmax can put at most e / (e + 19), 12.5%, on the true class; its loss cannot fall below
/// log(1 + 19 / e) = 2.08, and `matching-vinyals-20way` trained at 2.31-2.40, near that floor
/// (RESULTS.md). Scaled by 10 the floor is log(1 + 19 / e^10), under 0.001.
///
/// Settings (`training`): `objective: "matching-scaled"`, `episode`; the network:
/// `model.similarity: "cosine"`.
package enum ScaledMatchingNetworks: EpisodicMethod {
  package static let name = "matching-scaled"
  package static let similarity = Similarity.cosine
  /// The cosines' scale in the attention's softmax.
  package static let scale = 10.0

  package static func episodeLoss(embeddings: Tensor, ways: Int, shots: Int, queries: Int) -> (loss: Double, dEmbeddings: Tensor) {
    MatchingNetworks.episodeLoss(embeddings: embeddings, ways: ways, shots: shots, queries: queries, scale: scale)
  }

  /// log p(class) under the scaled attention.
  package static func classScores(model: NetworkEnsemble, queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    MatchingNetworks.classScores(model: model, queries: queries, support: support, scale: scale)
  }

  /// The cosine of the two embeddings, in [-1, 1] (an ensemble's: the members' mean).
  package static func pairValue(score: Double) -> Double { score }
  package static let pairValueName = (heading: "cosine similarity", higherIsCloser: true)
}
