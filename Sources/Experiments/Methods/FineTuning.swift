import Episodes
import Foundation
import Model
import ResultsStore
import Support

/// The fine-tuning baseline (Chen et al. 2019, "A Closer Look at Few-shot Classification", their
/// "Baseline"): the backbone is pre-trained as an ordinary classifier over every training class
/// (a linear layer on the embedding, `model.classes` outputs, softmax cross-entropy), and each
/// episode is scored by a new linear classifier fitted to its support set on the frozen
/// embeddings. The pre-training classifier is then thrown away.
///
/// The fit (fixed before any result, issue #42; `SoftmaxRegression`): multinomial logistic
/// regression, W (N x F) and b (N) from zero, minimising the support rows' mean cross-entropy +
/// (lambda / 2) |W|^2 with lambda = 0.001 (Chen et al.'s weight decay), by 300 full-batch
/// gradient steps of size 1/L, where L = lambda_max / 2 + lambda bounds the loss's curvature
/// (lambda_max: the largest eigenvalue of the mean of x x^T over the support rows with a 1
/// appended, by 30 power iterations). Deterministic; float32 on oneDNN's sgemm. Deviation: Chen
/// et al. fit by 100 SGD steps on batches of 4 (momentum 0.9, learning rate 0.01); full-batch
/// steps from zero need no random order.
/// A query's score for a class is that class's logit.
///
/// Settings (`training`): `objective: "finetune"`, `episode` (the shape of a step's batch:
/// `ways` classes x (`shots` + `queries`) images, each labelled with its class; class-balanced
/// batches, where Chen et al. drew images uniformly); the network: `model.similarity:
/// "euclidean"` (no head) and `model.classes`, the number of training classes (checked against
/// the training pool when the run starts). An ensemble fits one classifier to its members'
/// embeddings side by side.
package enum FineTuning: TrainsOnEpisodes {
  package static let name = "finetune"
  package static let similarity = Similarity.euclidean
  package static let classifiesTrainingClasses = true

  /// Chen et al.'s weight decay of the fitted classifier.
  package static let weightDecay = 1e-3
  /// Full-batch gradient steps of the fit.
  package static let fitSteps = 300
  /// Power iterations that estimate the curvature bound.
  static let powerIterations = 30

  package static func lossAndGradients(step: Int, network: inout EmbeddingNetwork, draws: TrainingDraws) -> Double {
    let batch = draws.episode(step)
    return network.classifierLossAndGradients(images: batch.images, labels: batch.labels).loss
  }

  /// Every image its own class in turn, as many as the classifier has.
  package static func probeStep(network: inout EmbeddingNetwork, images: Tensor) {
    let classes = network.config.classes ?? 1
    _ = network.classifierLossAndGradients(images: images, labels: (0..<images.batch).map { $0 % classes })
  }

  /// The logits of a linear classifier fitted to the support set (see the type's comment).
  package static func classScores(model: NetworkEnsemble, queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    guard !queries.isEmpty else { return [] }
    return fit(support: support).logits(Array(queries.joined()))
  }

  /// The classifier fitted to the support embeddings, one list of rows per class.
  package static func fit(support: [[[Float]]]) -> SoftmaxRegression.Classifier {
    let labels = support.enumerated().flatMap { c, items in [Int](repeating: c, count: items.count) }
    let features = support.first?.first?.count ?? 0
    return SoftmaxRegression.fit(
      rows: Array(support.joined().joined()), features: features, labels: labels, classes: support.count, weightDecay: weightDecay, steps: fitSteps, powerIterations: powerIterations)
  }

  /// The squared Euclidean distance of the two embeddings (an ensemble's: the members' mean).
  package static func pairValue(score: Double) -> Double { -score }
  package static let pairValueName = (heading: "squared distance", higherIsCloser: false)
}
