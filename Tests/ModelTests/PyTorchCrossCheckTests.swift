import Foundation
import XCTest

@testable import Model

/// Compares the Swift network with PyTorch's numbers, recorded by
/// `Tests/Reference/make_fixtures.py` into `Tests/ModelTests/Fixtures` (no PyTorch needed here).
final class PyTorchCrossCheckTests: XCTestCase {
  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

  struct Fixture {
    let config: ModelConfig
    let tensors: [String: NamedTensor]
    var network: EmbeddingNetwork

    func tensor(_ name: String) -> NamedTensor { tensors[name]! }
  }

  func load(_ name: String) throws -> Fixture {
    let (tensors, metadata) = try SafeTensors.read(PyTorchCrossCheckTests.fixtures.appendingPathComponent("\(name).safetensors"))
    let config = try JSONDecoder().decode(ModelConfig.self, from: Data(metadata["model_config"]!.utf8))
    var network = EmbeddingNetwork(config: config, seed: 0)
    for i in network.store.parameters.indices {
      let parameter = network.store.parameters[i]
      let tensor = try XCTUnwrap(tensors["weight." + parameter.name], "fixture lacks \(parameter.name)")
      XCTAssertEqual(tensor.shape, parameter.shape, parameter.name)
      network.store.parameters[i].value = tensor.values
    }
    XCTAssertEqual(Set(tensors.keys.filter { $0.hasPrefix("weight.") }), Set(network.store.parameters.map { "weight." + $0.name }))
    return Fixture(config: config, tensors: tensors, network: network)
  }

  /// max |a - b| / max |b| must stay below 1e-4 (different GEMM kernels round differently).
  func assertMatches(_ ours: [Float], _ theirs: [Float], _ what: String, tolerance: Double = 1e-4, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(ours.count, theirs.count, what, file: file, line: line)
    let scale = max(Double(theirs.map(abs).max() ?? 0), 1e-12)
    let worst = zip(ours, theirs).map { abs(Double($0) - Double($1)) }.max() ?? 0
    XCTAssertLessThan(worst / scale, tolerance, "\(what): max error \(worst) relative to \(scale)", file: file, line: line)
  }

  func runForwardBackward(_ name: String, algorithm: ConvolutionAlgorithm = .direct, tolerance: Double = 1e-4) throws -> Fixture {
    var fixture = try load(name)
    fixture.network.convolutionAlgorithm = algorithm
    let left = fixture.tensor("input.left"), right = fixture.tensor("input.right")
    let labels = fixture.tensor("input.labels").values
    fixture.network.store.zeroGradients()
    let (logits, cache) = fixture.network.trainingForward(left: Tensor(shape: left.shape, data: left.values), right: Tensor(shape: right.shape, data: right.values))
    let (loss, dLogits) = BinaryCrossEntropy.lossAndGradient(logits: logits, labels: labels)
    fixture.network.backward(dLogits: dLogits, cache: cache)
    assertMatches(cache.features.data, fixture.tensor("output.features").values, "\(name) embeddings", tolerance: tolerance)
    assertMatches(logits, fixture.tensor("output.logits").values, "\(name) logits", tolerance: tolerance)
    XCTAssertEqual(loss, Double(fixture.tensor("output.loss").values[0]), accuracy: 1e-5, "\(name) loss")
    let bufferNames = Set(fixture.network.store.buffers.map(\.name))
    for parameter in fixture.network.store.parameters {
      let theirs = fixture.tensor("grad." + parameter.name).values
      // A conv bias feeding batch norm has zero gradient in exact arithmetic; both sides
      // hold rounding noise there, so check that it is noise-sized rather than its digits.
      let parts = parameter.name.split(separator: ".")
      if parameter.name.hasSuffix(".bias"), parts.count == 4, let index = Int(parts[2]), bufferNames.contains("backbone.features.\(index + 1).running_mean") {
        XCTAssertLessThan((parameter.gradient + theirs).map(abs).max() ?? 0, 1e-4, "\(name) \(parameter.name) should be ~0")
        continue
      }
      assertMatches(parameter.gradient, theirs, "\(name) grad \(parameter.name)", tolerance: tolerance)
    }
    for buffer in fixture.network.store.buffers {
      assertMatches(buffer.value, fixture.tensor("buffer." + buffer.name).values, "\(name) \(buffer.name)", tolerance: tolerance)
    }
    return fixture
  }

  func checkOptimizers(_ name: String) throws {
    let trained = try runForwardBackward(name)
    let optimizers: [(String, OptimizerConfig, Double)] = [
      ("adam", .adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01), 1e-3),
      ("sgd", .sgd(momentum: 0.9, nesterov: true, weightDecay: 5e-4), 1e-2),
    ]
    for (label, config, rate) in optimizers {
      // The optimizers step on PyTorch's own gradients: this checks the update rule alone
      // (Adam's m / sqrt(v) turns rounding noise in a near-zero gradient into a full step).
      var store = trained.network.store
      for i in store.parameters.indices {
        store.parameters[i].value = trained.tensor("weight." + store.parameters[i].name).values
        store.parameters[i].gradient = trained.tensor("grad." + store.parameters[i].name).values
      }
      var optimizer = Optimizer(config, store: store)
      optimizer.update(&store, learningRate: rate)
      optimizer.update(&store, learningRate: rate)
      for parameter in store.parameters {
        assertMatches(parameter.value, trained.tensor("\(label).\(parameter.name)").values, "\(name) \(label) \(parameter.name)")
      }
    }
  }

  /// Koch et al.'s optimizer (each layer's own rate, momentum and L2; the momentum ramped from
  /// 0.5; the rate decayed 1% a step) against PyTorch's SGD with a parameter group per layer,
  /// three steps from the koch fixture's weights and gradients (`make_fixtures.py
  /// koch_layerwise`, which states the same settings). The layers not named take the base ones.
  func testLayerwiseSGDMatchesPyTorch() throws {
    let trained = try load("koch")
    let (expected, _) = try SafeTensors.read(PyTorchCrossCheckTests.fixtures.appendingPathComponent("koch_layerwise.safetensors"))
    let layers = [
      LayerSGDSettings(layer: "backbone.features.0", learningRate: 0.05, momentum: 0.8, weightDecay: 1e-3),
      LayerSGDSettings(layer: "backbone.features.3", learningRate: 0.02, momentum: 0.3, weightDecay: 0),
      LayerSGDSettings(layer: "backbone.fc", learningRate: 0.01, momentum: 0.9, weightDecay: 2e-3),
    ]
    let config = OptimizerConfig.sgd(momentum: 0.7, nesterov: false, weightDecay: 5e-4, layers: layers, momentumRamp: MomentumRamp(start: 0.5, steps: 2))
    XCTAssertEqual(config.unknownLayers(among: trained.network.store.parameters.map(\.name)), [])
    var store = trained.network.store
    for i in store.parameters.indices { store.parameters[i].gradient = trained.tensor("grad." + store.parameters[i].name).values }
    var optimizer = Optimizer(config, store: store)
    let schedule = LearningRateSchedule.step(every: 1, factor: 0.99)
    for step in 0..<3 {
      optimizer.update(&store, learningRate: schedule.rate(base: 0.03, step: step, totalSteps: 3), baseRate: 0.03)
    }
    for parameter in store.parameters {
      let theirs = try XCTUnwrap(expected["sgd_layers." + parameter.name], parameter.name).values
      assertMatches(parameter.value, theirs, "koch layerwise sgd \(parameter.name)", tolerance: 1e-5)
      // Each layer moved: a setting that reached no parameter would leave the base rule's numbers.
      XCTAssertNotEqual(parameter.value, trained.tensor("weight." + parameter.name).values, parameter.name)
    }
  }

  func testVGGMatchesPyTorch() throws { try checkOptimizers("vgg") }
  func testVGGWithBatchNormMatchesPyTorch() throws { try checkOptimizers("vgg_bn") }
  func testKochMatchesPyTorch() throws { try checkOptimizers("koch") }

  func testWideVGGMatchesPyTorch() throws { try checkOptimizers("vgg_wide") }

  /// The 16- and 32-channel fixture with Winograd wherever oneDNN builds it: PyTorch's numbers
  /// within 1e-4 of their scale, as on the direct path.
  func testWinogradMatchesPyTorch() throws {
    let fixture = try runForwardBackward("vgg_wide", algorithm: .winograd)
    // Which directions ran Winograd: walk the backbone with the side each convolution saw.
    var side = fixture.config.inputSize
    var used: [String] = []
    for layer in fixture.network.backbone {
      if let conv = layer as? Conv2D {
        used += conv.algorithms(batch: 2 * fixture.tensor("input.left").shape[0], side: side, precision: .fp32, algorithm: .winograd)
      } else if layer is MaxPool2D {
        side /= 2
      }
    }
    try XCTSkipUnless(used.contains("winograd"), "oneDNN \(oneDNNVersion) built no Winograd primitive on this CPU: the fallback matched PyTorch")
  }

  func testEmbedAndScoreEqualTheTrainingForward() throws {
    // Evaluation embeds images once and scores pairs with the head; it must give the
    // training forward's logits (no batch norm here, so the modes agree).
    let fixture = try load("vgg")
    let left = fixture.tensor("input.left"), right = fixture.tensor("input.right")
    let a = fixture.network.embed(Tensor(shape: left.shape, data: left.values))
    let b = fixture.network.embed(Tensor(shape: right.shape, data: right.values))
    assertMatches(fixture.network.score(a, b), fixture.tensor("output.logits").values, "embed + score")
  }
}
