import Episodes
import Foundation
import Model
import XCTest

@testable import Experiments

/// Relation networks against PyTorch (`Tests/Reference/make_fixtures.py`, `make_relation`): one
/// training step of a batch-norm network with a relation module (loss, every gradient, batch
/// norm's running estimates), then the episode's embeddings and class scores in inference mode
/// against the twin's `relation_scores`; the loss's gradient by central differences, entry by entry.
final class RelationNetworksTests: XCTestCase {
  static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/relation.safetensors")

  func testTrainingStepAndScoresMatchPyTorch() throws {
    try checkAgainstPyTorch(RelationNetworksTests.fixture, biasesFeedingBatchNorm: ["backbone.features.0.bias", "backbone.features.4.bias", "head.0.bias", "head.3.bias"])
  }

  /// Sung et al.'s own module (`relationModule: convolutional`) on an embedding that keeps 5x5
  /// maps (an unpadded first block, unpooled last blocks: `blockPadding`, `blockPooling`),
  /// against the twin's `ConvolutionalRelationModule` (`make_fixtures.py relation_conv`).
  func testConvolutionalModuleMatchesPyTorch() throws {
    let url = RelationNetworksTests.fixture.deletingLastPathComponent().appendingPathComponent("relation_conv.safetensors")
    let network = try checkAgainstPyTorch(
      url, biasesFeedingBatchNorm: ["backbone.features.0.bias", "backbone.features.4.bias", "backbone.features.7.bias", "head.0.bias", "head.4.bias"])
    XCTAssertEqual(network.config.relationModule, .convolutional)
    XCTAssertEqual(network.featureCount, 5 * 5 * 5)
    XCTAssertEqual(network.store.parameters.filter { $0.name.hasPrefix("head.") }.map(\.name), [
      "head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias", "head.4.weight", "head.4.bias", "head.5.weight", "head.5.bias", "head.9.weight", "head.9.bias",
      "head.11.weight", "head.11.bias",
    ])
  }

  @discardableResult
  func checkAgainstPyTorch(_ url: URL, biasesFeedingBatchNorm: Set<String>, file: StaticString = #filePath, line: UInt = #line) throws -> EmbeddingNetwork {
    let fixture = try PyTorchFixture(url)
    let (tensors, config, images) = (fixture.tensors, fixture.config, fixture.images)
    let (ways, shots, queries) = (fixture.ways, fixture.shots, fixture.queries)
    XCTAssertEqual(config.similarity, .relation)
    var network = fixture.network
    XCTAssertEqual(network.store.parameters.map(\.value.count).reduce(0, +), config.parameterCount)
    let loss = RelationNetworks.lossAndGradients(network: &network, images: images, ways: ways, shots: shots, queries: queries)
    let expected = Double(try XCTUnwrap(tensors["output.loss"]).values[0])
    XCTAssertEqual(loss, expected, accuracy: 1e-5 * max(1, abs(expected)))
    for parameter in network.store.parameters {
      let theirs = try XCTUnwrap(tensors["grad." + parameter.name]).values
      if biasesFeedingBatchNorm.contains(parameter.name) {
        // A bias feeding batch norm: zero in exact arithmetic, rounding noise on both sides.
        XCTAssertLessThan((parameter.gradient + theirs).map(abs).max() ?? 0, 1e-4, parameter.name)
        continue
      }
      let scale = max(Double(theirs.map(abs).max() ?? 0), 1e-12)
      let worst = zip(parameter.gradient, theirs).map { abs(Double($0) - Double($1)) }.max() ?? 0
      XCTAssertLessThan(worst / scale, 1e-4, "grad \(parameter.name): max error \(worst) relative to \(scale)")
    }
    // Inference after the step: batch norm's running estimates, the embeddings, the class scores.
    for (name, tensor) in tensors where name.hasPrefix("buffer.") {
      let buffer = try XCTUnwrap(network.store.buffers.first { $0.name == String(name.dropFirst("buffer.".count)) }, name)
      for (a, b) in zip(buffer.value, tensor.values) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b)), name) }
    }
    let embedded = network.embed(images)
    let theirEmbeddings = try XCTUnwrap(tensors["output.embeddings"]).values
    for (a, b) in zip(embedded.data, theirEmbeddings) { XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(b))) }
    let f = network.featureCount, perClass = shots + queries
    let rows = (0..<embedded.batch).map { Array(embedded.data[($0 * f)..<(($0 + 1) * f)]) }
    let support = (0..<ways).map { c in (0..<shots).map { rows[c * perClass + $0] } }
    let queryRows = (0..<ways).flatMap { c in (0..<queries).map { rows[c * perClass + shots + $0] } }
    let scores = try RelationNetworks.classScores(model: NetworkEnsemble(members: [network]), queries: queryRows, support: support)
    let theirScores = try XCTUnwrap(tensors["output.class_scores"]).values
    XCTAssertEqual(scores.joined().count, theirScores.count)
    for (a, b) in zip(scores.joined(), theirScores) { XCTAssertEqual(a, Double(b), accuracy: 1e-4 * max(1, abs(Double(b)))) }
    return network
  }

  /// dL/d(embeddings) and dL/d(module parameters), entry by entry, against central differences
  /// of the loss, in 1-shot and 3-shot episodes (the class mean's gradient reaches every shot).
  func testLossGradientByCentralDifferences() {
    var rng = NormalSampler(seed: 5)
    var convolutional = ModelConfig(backbone: .vgg16, inputSize: 4, blocks: [[2], [2]], headHidden: 3, similarity: .relation)
    (convolutional.blockPooling, convolutional.relationModule) = ([false, false], .convolutional)
    for (ways, shots, queries, config) in [
      (3, 1, 2, ModelConfig(backbone: .vgg16, inputSize: 8, blocks: [[2], [2]], headHidden: 5, similarity: .relation)), (2, 3, 2, ModelConfig(backbone: .vgg16, inputSize: 8, blocks: [[2], [2]], headHidden: 5, similarity: .relation)),
      // Sung et al.'s module on 2 x 4 x 4 maps: convolutions, batch norm over (pair, pixel), pooling.
      (3, 1, 2, convolutional),
    ] {
      let network = EmbeddingNetwork(config: config, seed: 1)
      let f = network.featureCount
      var store = network.store
      // Larger module weights than the initialisation's N(0, 0.01), so that every term matters.
      for p in store.parameters.indices where store.parameters[p].name.hasPrefix("head.") {
        store.parameters[p].value = rng.normal(count: store.parameters[p].value.count, std: 0.7)
      }
      let x = Tensor(shape: [ways * (shots + queries), f], data: rng.normal(count: ways * (shots + queries) * f, std: 1))
      let head = network.pairHead
      func loss(_ x: Tensor, _ store: ParameterStore) -> Double {
        var copy = store
        return RelationNetworks.episodeLoss(embeddings: x, ways: ways, shots: shots, queries: queries, head: head, store: &copy).loss
      }
      var analyticStore = store
      analyticStore.zeroGradients()
      let analytic = RelationNetworks.episodeLoss(embeddings: x, ways: ways, shots: shots, queries: queries, head: head, store: &analyticStore).dEmbeddings
      let h: Float = 1e-2
      for i in x.data.indices {
        var plus = x, minus = x
        plus.data[i] += h
        minus.data[i] -= h
        let numeric = (loss(plus, store) - loss(minus, store)) / (2 * Double(h))
        XCTAssertEqual(Double(analytic.data[i]), numeric, accuracy: 2e-3 * max(1, abs(numeric)), "\(config.relationModule) \(ways)-way \(shots)-shot embedding entry \(i)")
      }
      // A smaller step for the module's parameters: a step of 1e-2 on a bias can carry a unit
      // across its ReLU's kink for one of the pairs.
      let small: Float = 2e-3
      for p in store.parameters.indices where store.parameters[p].name.hasPrefix("head.") {
        for i in store.parameters[p].value.indices {
          var plus = store, minus = store
          plus.parameters[p].value[i] += small
          minus.parameters[p].value[i] -= small
          let numeric = (loss(x, plus) - loss(x, minus)) / (2 * Double(small))
          XCTAssertEqual(Double(analyticStore.parameters[p].gradient[i]), numeric, accuracy: 2e-3 * max(1, abs(numeric)), "\(config.relationModule) \(store.parameters[p].name)[\(i)]")
        }
      }
    }
  }

  /// A step's images and comparisons: every query against every class.
  func testEpisodeSettings() throws {
    var training = try JSONDecoder().decode(TrainingConfig.self, from: Data(#"{"steps": 10, "optimizer": {"kind": "adam", "learningRate": 0.001}}"#.utf8))
    training.objective = "relation"
    training.episode = EpisodeSpec(ways: 5, shots: 1, queries: 2, alphabetMode: .across)
    XCTAssertEqual(RelationNetworks.problems(training).map(\.message), [])
    XCTAssertEqual(RelationNetworks.imagesPerStep(training), 15)
    XCTAssertEqual(RelationNetworks.pairsPerStep(training), 10)
  }
}
