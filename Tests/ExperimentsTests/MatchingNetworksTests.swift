import Foundation
import Model
import XCTest

@testable import Experiments

/// Matching networks' loss against PyTorch's autograd (`Tests/Reference/make_fixtures.py`,
/// `make_matching`: the twin's `matching_loss` in float64 on float32 embeddings), its gradient
/// by central differences, and its episode scores against the twin's.
final class MatchingNetworksTests: XCTestCase {
  static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/matching.safetensors")

  func testLossGradientAndScoresMatchPyTorch() throws {
    let (tensors, metadata) = try SafeTensors.read(MatchingNetworksTests.fixture)
    let episode = try JSONDecoder().decode([String: Int].self, from: Data(try XCTUnwrap(metadata["episode"]).utf8))
    let (ways, shots, queries) = (try XCTUnwrap(episode["ways"]), try XCTUnwrap(episode["shots"]), try XCTUnwrap(episode["queries"]))
    let input = try XCTUnwrap(tensors["input.embeddings"])
    let embeddings = Tensor(shape: input.shape, data: input.values)
    let (loss, gradient) = MatchingNetworks.episodeLoss(embeddings: embeddings, ways: ways, shots: shots, queries: queries)
    let expected = try XCTUnwrap(tensors["output.loss"]).values[0]
    XCTAssertEqual(loss, Double(expected), accuracy: 1e-6 * max(1, Double(abs(expected))))
    let expectedGradient = try XCTUnwrap(tensors["grad.embeddings"]).values
    XCTAssertEqual(gradient.data.count, expectedGradient.count)
    for (a, b) in zip(gradient.data, expectedGradient) { XCTAssertEqual(a, b, accuracy: 1e-6) }

    // The scores of the episode's queries: the log of the attention on each class.
    let f = input.shape[1], perClass = shots + queries
    let rows = (0..<input.shape[0]).map { Array(input.values[($0 * f)..<(($0 + 1) * f)]) }
    let support = (0..<ways).map { c in (0..<shots).map { rows[c * perClass + $0] } }
    let queryRows = (0..<ways).flatMap { c in (0..<queries).map { rows[c * perClass + shots + $0] } }
    // A network whose embedding has the fixture's 8 features (2 channels at 2x2): classScores reads the width from it.
    let network = EmbeddingNetwork(config: ModelConfig(backbone: .vgg16, inputSize: 8, blocks: [[2], [2]], similarity: .cosine), seed: 0)
    XCTAssertEqual(network.featureCount, f)
    let scores = try MatchingNetworks.classScores(model: NetworkEnsemble(members: [network]), queries: queryRows, support: support)
    let expectedScores = try XCTUnwrap(tensors["output.class_scores"]).values
    for (a, b) in zip(scores.joined(), expectedScores) { XCTAssertEqual(a, Double(b), accuracy: 1e-5) }
  }

  /// `matching-scaled`: the same with the cosines x 10 in the softmax, against the twin's.
  func testScaledLossGradientAndScoresMatchPyTorch() throws {
    let (tensors, metadata) = try SafeTensors.read(MatchingNetworksTests.fixture)
    let episode = try JSONDecoder().decode([String: Int].self, from: Data(try XCTUnwrap(metadata["episode"]).utf8))
    let (ways, shots, queries) = (try XCTUnwrap(episode["ways"]), try XCTUnwrap(episode["shots"]), try XCTUnwrap(episode["queries"]))
    let input = try XCTUnwrap(tensors["input.embeddings"])
    let (loss, gradient) = ScaledMatchingNetworks.episodeLoss(embeddings: Tensor(shape: input.shape, data: input.values), ways: ways, shots: shots, queries: queries)
    let expected = Double(try XCTUnwrap(tensors["output.loss_scaled"]).values[0])
    XCTAssertEqual(loss, expected, accuracy: 1e-6 * max(1, abs(expected)))
    XCTAssertNotEqual(loss, MatchingNetworks.episodeLoss(embeddings: Tensor(shape: input.shape, data: input.values), ways: ways, shots: shots, queries: queries).loss)
    for (a, b) in zip(gradient.data, try XCTUnwrap(tensors["grad.embeddings_scaled"]).values) { XCTAssertEqual(a, b, accuracy: 1e-5) }
    let f = input.shape[1], perClass = shots + queries
    let rows = (0..<input.shape[0]).map { Array(input.values[($0 * f)..<(($0 + 1) * f)]) }
    let support = (0..<ways).map { c in (0..<shots).map { rows[c * perClass + $0] } }
    let queryRows = (0..<ways).flatMap { c in (0..<queries).map { rows[c * perClass + shots + $0] } }
    let network = EmbeddingNetwork(config: ModelConfig(backbone: .vgg16, inputSize: 8, blocks: [[2], [2]], similarity: .cosine), seed: 0)
    let scores = try ScaledMatchingNetworks.classScores(model: NetworkEnsemble(members: [network]), queries: queryRows, support: support)
    for (a, b) in zip(scores.joined(), try XCTUnwrap(tensors["output.class_scores_scaled"]).values) { XCTAssertEqual(a, Double(b), accuracy: 1e-4) }
  }

  func testLossGradientByCentralDifferences() {
    var rng = NormalSampler(seed: 4)
    for (ways, shots, queries) in [(3, 2, 2), (4, 1, 3), (2, 5, 1)] {
      let x = Tensor(shape: [ways * (shots + queries), 6], data: rng.normal(count: ways * (shots + queries) * 6, std: 1))
      let analytic = MatchingNetworks.episodeLoss(embeddings: x, ways: ways, shots: shots, queries: queries).dEmbeddings
      let h: Float = 1e-2
      for i in x.data.indices {
        var plus = x, minus = x
        plus.data[i] += h
        minus.data[i] -= h
        let numeric =
          (MatchingNetworks.episodeLoss(embeddings: plus, ways: ways, shots: shots, queries: queries).loss
            - MatchingNetworks.episodeLoss(embeddings: minus, ways: ways, shots: shots, queries: queries).loss) / (2 * Double(h))
        XCTAssertEqual(Double(analytic.data[i]), numeric, accuracy: 2e-3 * max(1, abs(numeric)), "\(ways)-way \(shots)-shot entry \(i)")
      }
    }
  }
}
