import Episodes
import Foundation
import Model
import XCTest

@testable import Experiments

/// First-order MAML's parts the conformance suite does not reach: the episode classifier's
/// gradients by central differences, the adaptation's known start (a zero classifier scores
/// log N) and its descent, and inductive scoring (a query's scores do not depend on the other
/// queries). The meta-gradient itself (the queries' loss at the adapted weights) is checked by
/// the conformance suite through `MAML.loss(step:network:draws:movedBy:along:)`.
final class MAMLTests: XCTestCase {
  let config = ModelConfig(backbone: .vgg16, inputSize: 8, batchNorm: true, blocks: [[3], [4]], similarity: .euclidean)

  func images(_ count: Int, seed: UInt64) -> Tensor {
    var rng = NormalSampler(seed: seed)
    return Tensor(shape: [count, 1, 8, 8], data: rng.normal(count: count * 64, std: 1))
  }

  static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/maml.safetensors")

  /// One training step against PyTorch (`Tests/Reference/make_fixtures.py`, `make_maml`, the
  /// twin's `maml_loss`): the queries' loss at the adapted weights, every gradient, the adapted
  /// running estimates; then the episode's class scores (`maml_scores`: ten adaptation steps,
  /// the queries on the running estimates).
  func testTrainingStepAndScoresMatchPyTorch() throws {
    let fixture = try PyTorchFixture(MAMLTests.fixture)
    let (tensors, images) = (fixture.tensors, fixture.images)
    let (ways, shots, queries) = (fixture.ways, fixture.shots, fixture.queries)
    var network = fixture.network
    let loss = MAML.lossAndGradients(network: &network, images: images, ways: ways, shots: shots, queries: queries)
    let expected = Double(try XCTUnwrap(tensors["output.loss"]).values[0])
    XCTAssertEqual(loss, expected, accuracy: 1e-4 * max(1, abs(expected)))
    for parameter in network.store.parameters {
      let theirs = try XCTUnwrap(tensors["grad." + parameter.name]).values
      let scale = max(Double(theirs.map(abs).max() ?? 0), 1e-12)
      let worst = zip(parameter.gradient, theirs).map { abs(Double($0) - Double($1)) }.max() ?? 0
      // A bias feeding batch norm has a zero gradient in exact arithmetic: rounding noise on both sides.
      XCTAssertLessThan(worst / max(scale, 1e-3), 1e-3, "grad \(parameter.name): max error \(worst) relative to \(scale)")
    }
    for (name, tensor) in tensors where name.hasPrefix("buffer.") {
      let buffer = try XCTUnwrap(network.store.buffers.first { $0.name == String(name.dropFirst("buffer.".count)) }, name)
      for (a, b) in zip(buffer.value, tensor.values) { XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(b)), name) }
    }
    let (support, query) = MAML.split(images, ways: ways, shots: shots, queries: queries)
    let rows = { (t: Tensor) in (0..<t.batch).map { Array(t.data[($0 * t.itemCount)..<(($0 + 1) * t.itemCount)]) } }
    let supportRows = rows(support.images)
    let scores = try MAML.classScores(
      model: NetworkEnsemble(members: [network]), queries: rows(query.images), support: (0..<ways).map { c in Array(supportRows[(c * shots)..<((c + 1) * shots)]) })
    let theirScores = try XCTUnwrap(tensors["output.class_scores"]).values
    XCTAssertEqual(scores.joined().count, theirScores.count)
    for (a, b) in zip(scores.joined(), theirScores) { XCTAssertEqual(a, Double(b), accuracy: 1e-3 * max(1, abs(Double(b)))) }
  }

  func testTheEpisodeClassifiersGradientsMatchCentralDifferences() {
    let support = images(6, seed: 4), labels = [0, 1, 2, 0, 1, 2]
    // Two steps first, so that the classifier is not zero and every term of its gradient counts.
    var adapted = MAML.adapt(EmbeddingNetwork(config: config, seed: 2), support: support, labels: labels, ways: 3, steps: 2)
    XCTAssert(adapted.weight.contains { $0 != 0 } && adapted.bias.contains { $0 != 0 })
    let queries = images(5, seed: 5), queryLabels = [2, 0, 1, 1, 0]
    _ = adapted.lossAndGradients(images: queries, labels: queryLabels)
    let (dWeight, dBias) = (adapted.weightGradient, adapted.biasGradient)
    func loss(weight: [Float], bias: [Float]) -> Double {
      var copy = adapted
      copy.weight = weight
      copy.bias = bias
      return copy.lossAndGradients(images: queries, labels: queryLabels).loss
    }
    let h: Float = 1e-2
    for i in adapted.weight.indices {
      var plus = adapted.weight, minus = adapted.weight
      plus[i] += h
      minus[i] -= h
      let numeric = (loss(weight: plus, bias: adapted.bias) - loss(weight: minus, bias: adapted.bias)) / Double(2 * h)
      XCTAssertEqual(Double(dWeight[i]), numeric, accuracy: 2e-3 + 0.02 * abs(numeric), "dL/dW[\(i)]")
    }
    for c in adapted.bias.indices {
      var plus = adapted.bias, minus = adapted.bias
      plus[c] += h
      minus[c] -= h
      let numeric = (loss(weight: adapted.weight, bias: plus) - loss(weight: adapted.weight, bias: minus)) / Double(2 * h)
      XCTAssertEqual(Double(dBias[c]), numeric, accuracy: 2e-3 + 0.02 * abs(numeric), "dL/db[\(c)]")
    }
  }

  /// A zero classifier gives every class the same logit: the loss is log N exactly, and only the
  /// classifier moves in the first step (dL/d(embedding) = (p - y) W = 0); the support loss
  /// then falls.
  func testAdaptationStartsAtLogNAndDescends() {
    let network = EmbeddingNetwork(config: config, seed: 2)
    let support = images(8, seed: 6), labels = [0, 1, 2, 3, 0, 1, 2, 3]
    var start = MAML.adapt(network, support: support, labels: labels, ways: 4, steps: 0)
    XCTAssertEqual(start.lossAndGradients(images: support, labels: labels).loss, log(4), accuracy: 1e-6)
    XCTAssertEqual(start.network.store.parameters.map { $0.gradient.map(abs).max() ?? 0 }.max(), 0, "the backbone moved in the first step")
    var one = MAML.adapt(network, support: support, labels: labels, ways: 4, steps: 1)
    XCTAssertEqual(one.network.store.parameters.map(\.value), network.store.parameters.map(\.value))
    var ten = MAML.adapt(network, support: support, labels: labels, ways: 4, steps: 10)
    let (after1, after10) = (one.lossAndGradients(images: support, labels: labels).loss, ten.lossAndGradients(images: support, labels: labels).loss)
    XCTAssertLessThan(after1, log(4))
    XCTAssertLessThan(after10, after1 - 0.2, "ten steps of 0.1 on eight images: \(after10) against \(after1) after one")
  }

  /// Scoring is inductive: a query's class scores are the same whichever other queries share its
  /// episode (normalising the queries with their own batch statistics, as Finn et al., fails this).
  func testAQuerysScoresDoNotDependOnTheOtherQueries() throws {
    let model = NetworkEnsemble(members: [EmbeddingNetwork(config: config, seed: 2)])
    let rows = (0..<9).map { i in images(1, seed: 20 + UInt64(i)).data }
    let support = [[rows[0], rows[1]], [rows[2], rows[3]], [rows[4], rows[5]]]
    let a = try MAML.classScores(model: model, queries: [rows[6], rows[7]], support: support)
    let b = try MAML.classScores(model: model, queries: [rows[6], rows[8]], support: support)
    XCTAssertEqual(a[0], b[0])
    XCTAssertNotEqual(a[1], b[1])
    // Log-probabilities: each row's exponentials sum to 1.
    for row in a + b { XCTAssertEqual(row.reduce(0) { $0 + exp($1) }, 1, accuracy: 1e-9) }
  }

  /// `training.adaptation`: scoring adapts each member by its own scoring steps and step size,
  /// exactly as `adapt` does with them, and an ensemble's scores are its members' mean.
  func testScoringAdaptsEachMemberAsItWasTrained() throws {
    let (a, b) = (EmbeddingNetwork(config: config, seed: 2), EmbeddingNetwork(config: config, seed: 3))
    let rows = (0..<8).map { i in images(1, seed: 40 + UInt64(i)).data }
    let support = [[rows[0], rows[1]], [rows[2], rows[3]], [rows[4], rows[5]]]
    let queries = [rows[6], rows[7]]
    let supportImages = Tensor(shape: [6, 1, 8, 8], data: Array(support.joined().joined()))
    let queryImages = Tensor(shape: [2, 1, 8, 8], data: Array(queries.joined()))
    func byHand(_ network: EmbeddingNetwork, steps: Int, rate: Float) -> [[Double]] {
      var adapted = MAML.adapt(network, support: supportImages, labels: [0, 0, 1, 1, 2, 2], ways: 3, steps: steps, rate: rate)
      adapted.network.store.buffers = network.store.buffers
      return adapted.logProbabilities(queryImages)
    }
    var custom = ScoringSettings()
    custom.adaptation = AdaptationSettings(learningRate: 0.3, steps: 2, scoringSteps: 3)
    let one = try MAML.classScores(model: NetworkEnsemble(members: [a]), settings: [custom], queries: queries, support: support)
    XCTAssertEqual(one, byHand(a, steps: 3, rate: 0.3))
    XCTAssertNotEqual(one, try MAML.classScores(model: NetworkEnsemble(members: [a]), queries: queries, support: support), "the defaults adapt otherwise")
    XCTAssertEqual(try MAML.classScores(model: NetworkEnsemble(members: [a]), queries: queries, support: support), byHand(a, steps: 10, rate: 0.1))
    let mixed = try MAML.classScores(model: NetworkEnsemble(members: [a, b]), settings: [custom, ScoringSettings()], queries: queries, support: support)
    let (first, second) = (byHand(a, steps: 3, rate: 0.3), byHand(b, steps: 10, rate: 0.1))
    for q in 0..<2 { for c in 0..<3 { XCTAssertEqual(mixed[q][c], (first[q][c] + second[q][c]) / 2, accuracy: 1e-12) } }
    // Through the scorer the evaluator uses: its settings reach the method.
    let scorer = NetworkScorer(network: a, method: MAML.self, settings: custom)
    XCTAssertEqual(try scorer.classScores(queries: queries.map { $0 }, support: support), one)
  }

  /// The settings of a checkpoint come from the configuration its run wrote into it, member by
  /// member; a checkpoint without them has the defaults; an unreadable or impossible one is
  /// refused naming the entry; a method that does not adapt reads nothing.
  func testScoringSettingsComeFromTheCheckpointsConfiguration() throws {
    let custom = #"{"name": "x", "training": {"objective": "maml", "adaptation": {"learningRate": 0.4, "steps": 1, "scoringSteps": 7}}}"#
    let plain = #"{"name": "x", "training": {"objective": "maml"}}"#
    let read = { (metadata: [String: String], members: Int) in try ScoringSettings.of(checkpoint: metadata, members: members, method: MAML.self, path: "c.safetensors") }
    XCTAssertEqual(try read(["experiment_config": custom], 1).map(\.adaptation), [AdaptationSettings(learningRate: 0.4, steps: 1, scoringSteps: 7)])
    XCTAssertEqual(try read(["experiment_config": plain], 1).map(\.adaptation), [AdaptationSettings()])
    XCTAssertEqual(try read([:], 1).map(\.adaptation), [AdaptationSettings()])
    XCTAssertEqual(
      try read(["member.0.experiment_config": plain, "member.1.experiment_config": custom], 2).map(\.adaptation),
      [AdaptationSettings(), AdaptationSettings(learningRate: 0.4, steps: 1, scoringSteps: 7)])
    XCTAssertThrowsError(try read(["experiment_config": "{not json"], 1)) {
      XCTAssert("\($0)".contains("metadata entry 'experiment_config' is not a JSON object") && "\($0)".contains("use another checkpoint"), "\($0)")
    }
    let impossible = #"{"training": {"adaptation": {"scoringSteps": 0}}}"#
    XCTAssertThrowsError(try read(["member.0.experiment_config": plain, "member.1.experiment_config": impossible], 2)) {
      XCTAssert("\($0)".contains("'member.1.experiment_config' has training.adaptation.scoringSteps: adaptation steps when an episode is scored"), "\($0)")
    }
    let unreadable = #"{"training": {"adaptation": {"steps": "many"}}}"#
    XCTAssertThrowsError(try read(["experiment_config": unreadable], 1)) { XCTAssert("\($0)".contains("has an unreadable training.adaptation"), "\($0)") }
    XCTAssertEqual(try ScoringSettings.of(checkpoint: ["experiment_config": "{not json"], members: 1, method: PrototypicalNetworks.self, path: "c").count, 1)
  }

  /// A training step's image passes count its adaptation steps.
  func testImagesPerStepCountTheAdaptationSteps() throws {
    var training = try JSONDecoder().decode(
      TrainingConfig.self, from: Data(#"{"objective": "maml", "steps": 10, "optimizer": {"kind": "adam", "learningRate": 0.001}, "episode": {"ways": 5, "shots": 2, "queries": 3}}"#.utf8))
    XCTAssertEqual(MAML.imagesPerStep(training), 5 * 2 * 5 + 5 * 3)
    training.adaptation = AdaptationSettings(learningRate: 0.4, steps: 1, scoringSteps: 3)
    XCTAssertEqual(MAML.imagesPerStep(training), 5 * 2 * 1 + 5 * 3)
    XCTAssertEqual(MAML.problems(training).count, 0)
    training.adaptation?.steps = 0
    XCTAssertEqual(MAML.problems(training).map(\.keyPath), ["adaptation.steps"])
  }
}
