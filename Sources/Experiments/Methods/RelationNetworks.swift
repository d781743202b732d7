import Episodes
import Foundation
import Model
import ResultsStore
import Support

/// Relation networks (Sung et al. 2018, "Learning to Compare: Relation Network for Few-Shot
/// Learning"): a learned relation module scores a query against a class from the concatenation
/// [f(query), f(class)], where a class's representation is the mean of its support embeddings;
/// the relation score is the sigmoid of the module's logit. Training minimises the mean squared
/// error between every (query, class) relation score of one episode of the training classes and
/// the one-hot target (1 for the query's class, 0 for the others).
///
/// The module (`model.similarity: "relation"`; `ModelConfig`): Linear(2F, H) + batch norm +
/// ReLU, Linear(H, H) + batch norm + ReLU, Linear(H, 8) + ReLU, Linear(8, 1), H = `headHidden`.
/// Sung et al.'s embedding keeps 5x5 feature maps (no pooling in its last two blocks) and their
/// module starts with two blocks of 3x3 convolution, batch norm, ReLU and pooling; on the 4-block
/// backbone of the other methods, which pools to 1x1, those convolutions are linear layers and the
/// pooling has nothing to pool. Their network itself is `model.blockPooling`,
/// `model.blockPadding` and `model.relationModule: convolutional` (`RelationModule`): the joined
/// [f(query), f(class)] are then the two maps side by side, and this file is the same. Other
/// deviations from Sung et al., stated: their K-shot class
/// representation is the sum of the support embeddings; here it is the mean, so that one trained
/// network scores 1-shot and 5-shot episodes on one scale. No gradient clipping (theirs: norm
/// 0.5). The module's batch norm normalises over the step's (query, class) pairs in training and
/// uses its running estimates when scoring (inductive: no statistics of a test episode).
///
/// Settings (`training`): `objective: "relation"`, `episode` (as for prototypical networks: the
/// budget in steps, one episode each). An ensemble's score is its members' mean logit.
///
/// Shapes: N = ways (shots + queries) embeddings of F features, class-major (class c's support
/// rows, then its query rows); Q = ways * queries queries, each paired with every class.
package enum RelationNetworks: TrainsOnEpisodes {
  package static let name = "relation"
  package static let similarity = Similarity.relation

  package static func lossAndGradients(step: Int, network: inout EmbeddingNetwork, draws: TrainingDraws) -> Double {
    let episode = draws.episode(step)
    return lossAndGradients(network: &network, images: episode.images, ways: episode.ways, shots: episode.shots, queries: episode.queries)
  }

  /// An episode of N/2 classes, one support and one query image each.
  package static func probeStep(network: inout EmbeddingNetwork, images: Tensor) {
    _ = lossAndGradients(network: &network, images: images, ways: images.batch / 2, shots: 1, queries: 1)
  }

  /// Zeroes the gradients, accumulates those of the episode's loss through the module and the
  /// backbone, and returns the loss.   images: (ways (shots + queries), 1, S, S), class-major
  package static func lossAndGradients(network: inout EmbeddingNetwork, images: Tensor, ways: Int, shots: Int, queries: Int) -> Double {
    let head = network.pairHead
    return network.backboneLossAndGradients(images: images) { embeddings, store in
      episodeLoss(embeddings: embeddings, ways: ways, shots: shots, queries: queries, head: head, store: &store)
    }
  }

  /// The loss on one episode's embeddings, the module's gradients accumulated into `store`, and
  /// dL/d(embeddings).   embeddings: (N, F)
  package static func episodeLoss(embeddings: Tensor, ways: Int, shots: Int, queries: Int, head: PairHead, store: inout ParameterStore) -> (loss: Double, dEmbeddings: Tensor) {
    let perClass = shots + queries
    precondition(
      ways >= 2 && shots >= 1 && queries >= 1 && embeddings.shape.count == 2 && embeddings.shape[0] == ways * perClass,
      "RelationNetworks: \(embeddings.shape) embeddings for \(ways) ways x (\(shots) shots + \(queries) queries)")
    let f = embeddings.shape[1]
    let supportRows = (0..<ways).map { c in (0..<shots).map { c * perClass + $0 } }
    let queryRows = (0..<ways).flatMap { c in (0..<queries).map { c * perClass + shots + $0 } }
    let means = classMeans(embeddings, rows: supportRows)
    // Pair (query i, class c) at row i * ways + c: its query's row and its class's.
    let pairQueries = queryRows.flatMap { [Int](repeating: $0, count: ways) }
    let pairClasses = queryRows.indices.flatMap { _ in Array(0..<ways) }
    let left = embeddings.rows(pairQueries)
    let right = means.rows(pairClasses)
    let joined = head.join(left, right)
    let (logits, caches) = head.forward(joined, store: store)
    head.updateRunningEstimates(caches, store: &store)
    // MSE of sigmoid(logit) against one-hot, in Double: mean over the Q x ways pairs.
    let pairs = Double(logits.count)
    var loss = 0.0
    var dLogits = [Float](repeating: 0, count: logits.count)
    for (i, row) in queryRows.enumerated() {
      let label = row / perClass
      for c in 0..<ways {
        let k = i * ways + c
        let s = 1 / (1 + exp(-Double(logits.data[k])))
        let error = s - (c == label ? 1 : 0)
        loss += error * error / pairs
        dLogits[k] = Float(2 * error * s * (1 - s) / pairs)
      }
    }
    let dJoined = head.backward(Tensor(shape: logits.shape, data: dLogits), caches: caches, store: &store)
    let (dLeft, dRight) = head.joinBackward(dJoined, left, right)
    var dEmbeddings = Tensor(zeros: embeddings.shape)
    dEmbeddings.addRows(dLeft, at: pairQueries)
    // A class mean's gradient reaches each of its support rows divided by the shots.
    var dMeans = Tensor(zeros: [ways, f])
    dMeans.addRows(dRight, at: pairClasses)
    let scale = 1 / Float(shots)
    for i in dMeans.data.indices { dMeans.data[i] *= scale }
    for (c, rows) in supportRows.enumerated() { dEmbeddings.addRows(dMeans.rows([Int](repeating: c, count: rows.count)), at: rows) }
    return (loss, dEmbeddings)
  }

  /// Each class's mean of `rows` of `embeddings`.   -> (classes, F)
  static func classMeans(_ embeddings: Tensor, rows: [[Int]]) -> Tensor {
    let f = embeddings.itemCount
    var out = [Float](repeating: 0, count: rows.count * f)
    for (c, members) in rows.enumerated() {
      for r in members { for j in 0..<f { out[c * f + j] += embeddings.data[r * f + j] } }
      let scale = 1 / Float(members.count)
      for j in 0..<f { out[c * f + j] *= scale }
    }
    return Tensor(shape: [rows.count, f], data: out)
  }

  /// The module's logit (an ensemble's: the members' mean) for each query against each class's
  /// mean support embedding.
  package static func classScores(model: NetworkEnsemble, queries: [[Float]], support: [[[Float]]]) throws -> [[Double]] {
    // An ensemble's members lie back to back in each row, so the row mean is each member's mean.
    let means = support.map { rows -> [Float] in
      var sum = [Float](repeating: 0, count: rows.first?.count ?? 0)
      for row in rows { for j in sum.indices { sum[j] += row[j] } }
      return sum.map { $0 / Float(rows.count) }
    }
    return pairScores(model: model, queries: queries, support: means)
  }

  /// The relation score, the sigmoid of the (mean) logit, in [0, 1].
  package static func pairValue(score: Double) -> Double { 1 / (1 + exp(-score)) }
  package static let pairValueName = (heading: "relation score", higherIsCloser: true)
}
