import Foundation
import XCTest

@testable import Model

/// Koch et al. 2015's optimizer and initialisation: each layer's own SGD settings, the momentum
/// ramp, and their weight draws. The update itself is checked against PyTorch in
/// `PyTorchCrossCheckTests.testLayerwiseSGDMatchesPyTorch`.
final class LayerwiseSGDTests: XCTestCase {
  let layers = [
    LayerSGDSettings(layer: "backbone.features.0", learningRate: 0.05, momentum: 0.8, weightDecay: 1e-3),
    LayerSGDSettings(layer: "head", learningRate: 0.01, momentum: 0.2, weightDecay: 0),
  ]

  func testALayerCoversItsOwnParametersOnly() {
    let layer = LayerSGDSettings(layer: "backbone.features.0", learningRate: 0.1, momentum: 0.5, weightDecay: 0)
    XCTAssertTrue(layer.covers("backbone.features.0.weight"))
    XCTAssertTrue(layer.covers("backbone.features.0.bias"))
    XCTAssertFalse(layer.covers("backbone.features.01.weight"))
    XCTAssertFalse(layer.covers("backbone.features.0"))
    XCTAssertFalse(layer.covers("backbone.features.0.sub.weight"))
    XCTAssertFalse(LayerSGDSettings(layer: "backbone", learningRate: 0.1, momentum: 0.5, weightDecay: 0).covers("backbone.features.0.weight"))
    let config = OptimizerConfig.sgd(momentum: 0.9, nesterov: false, weightDecay: 0, layers: layers)
    XCTAssertEqual(config.unknownLayers(among: ["backbone.features.0.weight", "head.weight"]), [])
    XCTAssertEqual(config.unknownLayers(among: ["backbone.features.0.weight", "head.0.weight"]), ["head"])
  }

  func testTheMomentumRampRunsLinearlyFromItsStartToEachLayersOwn() {
    let ramp = MomentumRamp(start: 0.5, steps: 4)
    XCTAssertEqual(ramp.momentum(final: 0.9, step: 0), 0.5, accuracy: 1e-12)
    XCTAssertEqual(ramp.momentum(final: 0.9, step: 2), 0.7, accuracy: 1e-12)
    XCTAssertEqual(ramp.momentum(final: 0.9, step: 4), 0.9, accuracy: 1e-12)
    XCTAssertEqual(ramp.momentum(final: 0.9, step: 400), 0.9, accuracy: 1e-12)
    XCTAssertEqual(ramp.momentum(final: 0.1, step: 2), 0.3, accuracy: 1e-12, "a layer's momentum below the start falls to it")
  }

  /// One step on one layer: its own rate times the schedule's factor, its own decay; the other
  /// layer the base settings.
  func testEachLayerStepsWithItsOwnRateAndDecay() {
    var store = ParameterStore()
    var rng = NormalSampler(seed: 1)
    let a = Conv2D(inputChannels: 1, outputChannels: 1, kernelSize: 1, padding: 0, fusedReLU: false, name: "backbone.features.0", store: &store, rng: &rng)
    let b = Conv2D(inputChannels: 1, outputChannels: 1, kernelSize: 1, padding: 0, fusedReLU: false, name: "backbone.features.3", store: &store, rng: &rng)
    for i in store.parameters.indices {
      store.parameters[i].value = [2]
      store.parameters[i].gradient = [1]
    }
    var optimizer = Optimizer(.sgd(momentum: 0.9, nesterov: false, weightDecay: 0.1, layers: layers), store: store)
    // The schedule has halved the base rate of 0.2: each layer's rate is halved too.
    optimizer.update(&store, learningRate: 0.1, baseRate: 0.2)
    XCTAssertEqual(store.parameters[a.weight].value[0], Float(2 - 0.025 * (1 + 1e-3 * 2)), accuracy: 1e-7)
    XCTAssertEqual(store.parameters[a.bias].value[0], Float(2 - 0.025 * 1), accuracy: 1e-7)
    XCTAssertEqual(store.parameters[b.weight].value[0], Float(2 - 0.1 * (1 + 0.1 * 2)), accuracy: 1e-7)
    XCTAssertEqual(store.parameters[b.bias].value[0], Float(2 - 0.1 * 1), accuracy: 1e-7)
  }

  func testACheckpointKeepsEachLayersSettingsAndTheOldFormStays() throws {
    let config = ModelConfig(backbone: .vgg16, inputSize: 16, blocks: [[4], [8]], headHidden: 5, headActivation: .relu)
    var network = EmbeddingNetwork(config: config, seed: 5)
    var rng = NormalSampler(seed: 1)
    let left = Tensor(shape: [2, 1, 16, 16], data: rng.normal(count: 512, std: 1))
    let right = Tensor(shape: [2, 1, 16, 16], data: rng.normal(count: 512, std: 1))
    _ = network.lossAndGradients(left: left, right: right, labels: [1, 0])
    let sgd = OptimizerConfig.sgd(
      momentum: 0.7, nesterov: false, weightDecay: 5e-4, layers: [LayerSGDSettings(layer: "backbone.features.0", learningRate: 0.02, momentum: 0.9, weightDecay: 1e-3)],
      momentumRamp: MomentumRamp(start: 0.5, steps: 100))
    var optimizer = Optimizer(sgd, store: network.store)
    optimizer.update(&network.store, learningRate: 1e-2)
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("layerwise-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
    let url = folder.appendingPathComponent("last.safetensors")
    try Checkpoint.write(network: network, optimizer: optimizer, metadata: [:], to: url)
    let loaded = try Checkpoint.read(url, expecting: config)
    XCTAssertEqual(loaded.optimizer?.config, sgd, "a resumed run keeps each layer's settings and the ramp")
    XCTAssertEqual(loaded.optimizer?.firstMoments, optimizer.firstMoments)
    // Configurations without them are written as they were, so their hashes and checkpoints stay.
    let old = String(decoding: try JSONEncoder().encode(OptimizerConfig.sgd(momentum: 0.9, nesterov: true, weightDecay: 5e-4)), as: UTF8.self)
    XCTAssertFalse(old.contains("layers") || old.contains("momentumRamp"), old)
    let settings = OptimizerSettings(learningRate: 0.01, config: .sgd(momentum: 0.9, nesterov: true, weightDecay: 5e-4))
    let written = String(decoding: try JSONEncoder().encode(settings), as: UTF8.self)
    XCTAssertFalse(written.contains("layers") || written.contains("momentumRamp"), written)
  }

  /// Koch et al.'s draws: convolution weights N(0, 0.01), linear weights N(0, 0.2), every bias
  /// N(0.5, 0.01).
  func testKochsInitialisation() {
    var config = ModelConfig(backbone: .koch, inputSize: 65, width: 0.25)
    config.initialization = .koch
    let network = EmbeddingNetwork(config: config, seed: 3)
    func moments(_ name: String) -> (mean: Double, std: Double) {
      let values = network.store.parameters.first { $0.name == name }!.value.map(Double.init)
      let mean = values.reduce(0, +) / Double(values.count)
      return (mean, (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot())
    }
    for (name, mean, std) in [
      ("backbone.features.3.weight", 0.0, 0.01), ("backbone.features.0.weight", 0.0, 0.01), ("backbone.fc.weight", 0.0, 0.2), ("backbone.fc.bias", 0.5, 0.01),
      ("head.weight", 0.0, 0.2),
    ] {
      let m = moments(name)
      XCTAssertEqual(m.mean, mean, accuracy: 0.2 * std + 0.002, name)
      XCTAssertEqual(m.std, std, accuracy: 0.15 * std, name)
    }
  }
}
