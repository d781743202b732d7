import Episodes
import Model
import ResultsStore
import Support

/// Prototypical networks (Snell et al. 2017): no head; a class's prototype is the mean embedding
/// of its support images, a query's score for a class is the negative squared Euclidean distance
/// to the prototype, and training minimises the cross-entropy of the queries' softmax over one
/// episode of the training classes a step (`PrototypicalLoss`, checked against PyTorch).
///
/// Settings (`training`): `objective: "prototypical"`, `episode` (its ways, shots, queries and
/// alphabet mode); the budget in `steps` (one episode each). An ensemble's members lie back to
/// back in each embedding row, so its score sums the members' squared distances.
package enum PrototypicalNetworks: EpisodicMethod {
  package static let name = "prototypical"
  package static let similarity = Similarity.euclidean

  package static func episodeLoss(embeddings: Tensor, ways: Int, shots: Int, queries: Int) -> (loss: Double, dEmbeddings: Tensor) {
    let result = PrototypicalLoss.lossAndGradient(features: embeddings, ways: ways, shots: shots, queries: queries)
    return (result.loss, result.dFeatures)
  }

  package static func classScores(model: NetworkEnsemble, queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    PrototypicalLoss.scores(queries: queries, support: support)
  }

  /// The squared Euclidean distance of the two embeddings (an ensemble's: the members' mean).
  package static func pairValue(score: Double) -> Double { -score }
  package static let pairValueName = (heading: "squared distance", higherIsCloser: false)
}
