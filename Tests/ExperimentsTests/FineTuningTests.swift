import Foundation
import Model
import XCTest

@testable import Experiments

/// The fine-tuning baseline against PyTorch (`Tests/Reference/make_fixtures.py`, `make_finetune`):
/// one pre-training step of a batch-norm network with a classifier over the training classes
/// (loss and every gradient), and the support-set fit's scores against the twin's
/// `finetune_scores`; the softmax cross-entropy's gradient by central differences.
final class FineTuningTests: XCTestCase {
  static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/finetune.safetensors")

  func testPreTrainingStepMatchesPyTorch() throws {
    let (tensors, metadata) = try SafeTensors.read(FineTuningTests.fixture)
    let config = try JSONDecoder().decode(ModelConfig.self, from: Data(try XCTUnwrap(metadata["model_config"]).utf8))
    XCTAssertEqual(config.classes, 5)
    var network = EmbeddingNetwork(config: config, seed: 0)
    XCTAssertEqual(Set(tensors.keys.filter { $0.hasPrefix("weight.") }), Set(network.store.parameters.map { "weight." + $0.name }))
    for i in network.store.parameters.indices {
      let tensor = try XCTUnwrap(tensors["weight." + network.store.parameters[i].name])
      XCTAssertEqual(tensor.shape, network.store.parameters[i].shape)
      network.store.parameters[i].value = tensor.values
    }
    let images = try XCTUnwrap(tensors["input.images"])
    let labels = try XCTUnwrap(tensors["input.labels"]).values.map { Int($0) }
    let (loss, _) = network.classifierLossAndGradients(images: Tensor(shape: images.shape, data: images.values), labels: labels)
    let expected = Double(try XCTUnwrap(tensors["output.loss"]).values[0])
    XCTAssertEqual(loss, expected, accuracy: 1e-5 * max(1, abs(expected)))
    for parameter in network.store.parameters {
      let theirs = try XCTUnwrap(tensors["grad." + parameter.name]).values
      if parameter.name == "backbone.features.0.bias" || parameter.name == "backbone.features.4.bias" {
        // A conv bias feeding batch norm: zero in exact arithmetic, rounding noise on both sides.
        XCTAssertLessThan((parameter.gradient + theirs).map(abs).max() ?? 0, 1e-4, parameter.name)
        continue
      }
      let scale = max(Double(theirs.map(abs).max() ?? 0), 1e-12)
      let worst = zip(parameter.gradient, theirs).map { abs(Double($0) - Double($1)) }.max() ?? 0
      XCTAssertLessThan(worst / scale, 1e-4, "grad \(parameter.name): max error \(worst) relative to \(scale)")
    }
  }

  func testSupportSetFitMatchesPyTorch() throws {
    let (tensors, metadata) = try SafeTensors.read(FineTuningTests.fixture)
    let episode = try JSONDecoder().decode([String: Int].self, from: Data(try XCTUnwrap(metadata["episode"]).utf8))
    let (ways, shots, queries) = (try XCTUnwrap(episode["ways"]), try XCTUnwrap(episode["shots"]), try XCTUnwrap(episode["queries"]))
    let input = try XCTUnwrap(tensors["input.embeddings"])
    let f = input.shape[1], perClass = shots + queries
    let rows = (0..<input.shape[0]).map { Array(input.values[($0 * f)..<(($0 + 1) * f)]) }
    let support = (0..<ways).map { c in (0..<shots).map { rows[c * perClass + $0] } }
    let queryRows = (0..<ways).flatMap { c in (0..<queries).map { rows[c * perClass + shots + $0] } }
    let network = EmbeddingNetwork(config: ModelConfig(backbone: .vgg16, inputSize: 8, blocks: [[2], [2]], similarity: .euclidean), seed: 0)
    let scores = try FineTuning.classScores(model: NetworkEnsemble(members: [network]), queries: queryRows, support: support)
    let expected = try XCTUnwrap(tensors["output.class_scores"]).values
    XCTAssertEqual(scores.joined().count, expected.count)
    // float32 here (oneDNN's sgemm), float64 in the twin.
    for (a, b) in zip(scores.joined(), expected) { XCTAssertEqual(a, Double(b), accuracy: 1e-4 * max(1, abs(Double(b)))) }
    // The fit learns its support set: each support row goes to its own class.
    for (c, items) in support.enumerated() {
      for item in items {
        let logits = FineTuning.fit(support: support).logits(item)[0]
        XCTAssertEqual(logits.firstIndex(of: logits.max()!), c)
      }
    }
  }

  func testSoftmaxCrossEntropyGradientByCentralDifferences() {
    var rng = NormalSampler(seed: 8)
    let logits = Tensor(shape: [4, 6], data: rng.normal(count: 24, std: 2))
    let labels = [0, 5, 2, 2]
    let analytic = SoftmaxCrossEntropy.lossAndGradient(logits: logits, labels: labels)
    let h: Float = 1e-2
    for i in logits.data.indices {
      var plus = logits, minus = logits
      plus.data[i] += h
      minus.data[i] -= h
      let numeric = (SoftmaxCrossEntropy.lossAndGradient(logits: plus, labels: labels).loss - SoftmaxCrossEntropy.lossAndGradient(logits: minus, labels: labels).loss) / (2 * Double(h))
      XCTAssertEqual(Double(analytic.dLogits.data[i]), numeric, accuracy: 1e-3 * max(1, abs(numeric)), "entry \(i)")
    }
  }

  /// A checkpoint's classifier must cover the training pool: a run refuses another number, and a
  /// file without one is refused when read, each naming the key.
  func testClassesAreRequiredAndOnlyForClassifyingMethods() throws {
    var config = try JSONDecoder().decode(
      ExperimentConfig.self,
      from: Data(
        #"{"name": "t", "data": {"split": "vinyals"}, "model": {"backbone": "vgg16", "inputSize": 28, "blocks": [[8]], "similarity": "euclidean"}, "training": {"objective": "finetune", "steps": 2, "episode": {"ways": 4, "shots": 1, "queries": 1}, "optimizer": {"kind": "adam", "learningRate": 0.001}}, "evaluation": [{"protocol": "episodes", "split": "evaluation", "episodes": 2, "spec": {"ways": 5, "shots": 1, "queries": 1}}]}"#
          .utf8))
    XCTAssert(config.problems().contains { $0.keyPath == "model.classes" && $0.message.contains("4112") }, "\(config.problems())")
    config.model.classes = 4112
    XCTAssertEqual(config.problems().map(\.keyPath), [])
    config.training?.objective = "prototypical"
    XCTAssert(config.problems().contains { $0.keyPath == "model.classes" && $0.message.contains("only the \"finetune\" objective") }, "\(config.problems())")
  }

  func testTheHeartbeatSpeaksOnlyWhenThePhaseIsStuck() {
    XCTAssertFalse(ProgressDisplay.heartbeatDue(quiet: 10.2, statusAge: 0.1, interval: 10), "a progress line merely due is not silence")
    XCTAssertTrue(ProgressDisplay.heartbeatDue(quiet: 12, statusAge: 12, interval: 10))
    XCTAssertFalse(ProgressDisplay.heartbeatDue(quiet: 2, statusAge: 30, interval: 10))
  }
}
