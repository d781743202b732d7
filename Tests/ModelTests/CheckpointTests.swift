import Foundation
import XCTest

@testable import Model

final class CheckpointTests: XCTestCase {
  func temporaryURL(_ name: String) throws -> URL {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
    return folder.appendingPathComponent(name)
  }

  func testRoundTripWithOptimizerState() throws {
    let config = ModelConfig(backbone: .vgg16, inputSize: 16, batchNorm: true, blocks: [[4], [8]], headHidden: 5, headActivation: .relu)
    var network = EmbeddingNetwork(config: config, seed: 5)
    var rng = NormalSampler(seed: 1)
    let left = Tensor(shape: [2, 1, 16, 16], data: rng.normal(count: 512, std: 1))
    let right = Tensor(shape: [2, 1, 16, 16], data: rng.normal(count: 512, std: 1))
    _ = network.lossAndGradients(left: left, right: right, labels: [1, 0])
    var optimizer = Optimizer(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0), store: network.store)
    optimizer.update(&network.store, learningRate: 1e-3)
    let url = try temporaryURL("best.safetensors")
    try Checkpoint.write(network: network, optimizer: optimizer, metadata: ["run_id": "abc"], to: url)
    let loaded = try Checkpoint.read(url, expecting: config)
    XCTAssertEqual(loaded.metadata["run_id"], "abc")
    XCTAssertEqual(loaded.optimizer?.step, 1)
    XCTAssertEqual(loaded.optimizer?.secondMoments, optimizer.secondMoments)
    for (a, b) in zip(loaded.network.store.parameters, network.store.parameters) { XCTAssertEqual(a.value, b.value, a.name) }
    for (a, b) in zip(loaded.network.store.buffers, network.store.buffers) { XCTAssertEqual(a.value, b.value, a.name) }
    // No temporary file is left behind.
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path), ["best.safetensors"])
  }

  func testHalfPrecisionStorage() throws {
    let network = EmbeddingNetwork(config: ModelConfig(backbone: .vgg16, inputSize: 16, blocks: [[4], [8]], headHidden: 5), seed: 2)
    let url = try temporaryURL("half.safetensors")
    try Checkpoint.write(network: network, optimizer: nil, metadata: [:], to: url, half: true)
    let loaded = try Checkpoint.read(url)
    XCTAssertNil(loaded.optimizer)
    for (a, b) in zip(loaded.network.store.parameters, network.store.parameters) {
      for (x, y) in zip(a.value, b.value) { XCTAssertEqual(x, y, accuracy: 1e-3 * max(1, abs(y))) }
    }
  }

  /// A checkpoint with a value no trained network has is refused on loading, naming the tensor:
  /// NaN or infinity in any parameter or buffer, a negative batch-norm variance; a half-precision
  /// write that would overflow F16 is refused too (not turned into an infinity).
  func testImpossibleValuesAreRefusedNamingTheTensor() throws {
    let config = ModelConfig(backbone: .vgg16, inputSize: 16, batchNorm: true, blocks: [[4], [8]], headHidden: 5, headActivation: .relu)
    let clean = EmbeddingNetwork(config: config, seed: 5)
    let cases: [(index: Int, buffer: Bool, value: Float, expected: String)] = [
      (0, false, .nan, "holds nan at index 3"), (1, false, .infinity, "holds inf at index 3"), (0, true, -.infinity, "holds -inf at index 3"),
    ]
    for item in cases {
      var network = clean
      if item.buffer { network.store.buffers[item.index].value[3] = item.value } else { network.store.parameters[item.index].value[3] = item.value }
      let url = try temporaryURL("bad.safetensors")
      try Checkpoint.write(network: network, optimizer: nil, metadata: [:], to: url)
      let name = item.buffer ? network.store.buffers[item.index].name : network.store.parameters[item.index].name
      XCTAssertThrowsError(try Checkpoint.read(url)) { XCTAssert("\($0)".contains("'\(name)' \(item.expected)"), "\($0)") }
      XCTAssertThrowsError(try Checkpoint.readModel(url)) { XCTAssert("\($0)".contains(name), "\($0)") }
    }
    // The optimizer state too (issue #45, cause P): a NaN or infinite moment, a negative second
    // moment, a negative step.
    let adam = OptimizerConfig.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0)
    let fresh = Optimizer(adam, store: clean.store)
    let zeros = clean.store.parameters.map { [Float](repeating: 0, count: $0.value.count) }
    for (step, m, v, expected) in [
      (3, Float.nan, Float(0), "'optimizer.m.\(clean.store.parameters[0].name)' holds nan"), (3, 0, .infinity, "'optimizer.v.\(clean.store.parameters[0].name)' holds inf"),
      (3, 0, -1, "negative second moment"), (-5, 0, 0, "metadata entry 'optimizer_step' is -5"),
    ] {
      var first = zeros, second = zeros
      first[0][1] = m
      second[0][1] = v
      let broken = Optimizer(adam, step: step, firstMoments: first, secondMoments: second)
      let url = try temporaryURL("optimizer.safetensors")
      try Checkpoint.write(network: clean, optimizer: broken, metadata: [:], to: url)
      XCTAssertThrowsError(try Checkpoint.read(url)) { XCTAssert("\($0)".contains(expected), "\($0)") }
    }
    XCTAssertEqual(fresh.step, 0)
    var negative = clean
    let variance = try XCTUnwrap(negative.store.buffers.firstIndex { $0.name.hasSuffix(".running_var") })
    negative.store.buffers[variance].value[0] = -0.5
    let url = try temporaryURL("negative.safetensors")
    try Checkpoint.write(network: negative, optimizer: nil, metadata: [:], to: url)
    XCTAssertThrowsError(try Checkpoint.read(url)) { XCTAssert("\($0)".contains("negative variance"), "\($0)") }
    var large = clean
    large.store.parameters[0].value[0] = 1e6
    let half = try temporaryURL("large.safetensors")
    XCTAssertThrowsError(try Checkpoint.write(network: large, optimizer: nil, metadata: [:], to: half, half: true)) {
      XCTAssert("\($0)".contains("beyond F16's 65504") && "\($0)".contains(half.path), "\($0)")
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: half.path), "nothing written")
  }

  func testMismatchesSayWhatDiffers() throws {
    let config = ModelConfig(backbone: .vgg16, inputSize: 16, blocks: [[4], [8]], headHidden: 5)
    let url = try temporaryURL("a.safetensors")
    try Checkpoint.write(network: EmbeddingNetwork(config: config, seed: 1), optimizer: nil, metadata: [:], to: url)
    var other = config
    other.headHidden = 6
    XCTAssertThrowsError(try Checkpoint.read(url, expecting: other)) { error in
      XCTAssert("\(error)".contains("does not match the configuration"), "\(error)")
    }
    // A tensor of the wrong shape is named.
    var (tensors, metadata) = try SafeTensors.read(url)
    tensors["head.0.weight"] = NamedTensor(name: "head.0.weight", shape: [5, 7], values: [Float](repeating: 0, count: 35))
    try SafeTensors.write(Array(tensors.values), metadata: metadata, to: url)
    XCTAssertThrowsError(try Checkpoint.read(url)) { error in
      XCTAssertEqual(error as? CheckpointError, .shapeMismatch(path: url.path, name: "head.0.weight", expected: [5, 128], found: [5, 7]))
    }
    tensors["head.0.weight"] = nil
    try SafeTensors.write(Array(tensors.values), metadata: metadata, to: url)
    XCTAssertThrowsError(try Checkpoint.read(url)) { error in
      XCTAssertEqual(error as? CheckpointError, .missingTensor(path: url.path, name: "head.0.weight"))
    }
    try Data("garbage".utf8).write(to: url)
    XCTAssertThrowsError(try Checkpoint.read(url)) { error in
      XCTAssert("\(error)".contains("is not a readable safetensors checkpoint"), "\(error)")
    }
  }

  func testEnsembleCheckpointRoundTripAndMeanLogit() throws {
    let config = ModelConfig(backbone: .vgg16, inputSize: 16, batchNorm: true, blocks: [[4], [8]], headHidden: 5, headActivation: .relu)
    let first = EmbeddingNetwork(config: config, seed: 1), second = EmbeddingNetwork(config: config, seed: 2)
    let url = try temporaryURL("ensemble.safetensors")
    try Checkpoint.writeEnsemble(members: [first, second], memberMetadata: [["run_id": "a"], ["run_id": "b"]], metadata: [:], to: url)
    let (model, metadata) = try Checkpoint.readModel(url, expecting: config)
    XCTAssertEqual(model.members.count, 2)
    XCTAssertEqual(metadata["ensemble_members"], "2")
    XCTAssertEqual(metadata["member.1.run_id"], "b")
    for (loaded, original) in zip(model.members, [first, second]) {
      for (a, b) in zip(loaded.store.parameters, original.store.parameters) { XCTAssertEqual(a.value, b.value, a.name) }
      for (a, b) in zip(loaded.store.buffers, original.store.buffers) { XCTAssertEqual(a.value, b.value, a.name) }
    }
    // The ensemble's logit is the mean of the members' logits.
    var rng = NormalSampler(seed: 9)
    let left = Tensor(shape: [3, 1, 16, 16], data: rng.normal(count: 768, std: 1)), right = Tensor(shape: [3, 1, 16, 16], data: rng.normal(count: 768, std: 1))
    let l1 = first.score(first.embed(left), first.embed(right)), l2 = second.score(second.embed(left), second.embed(right))
    let ensemble = model
    let mean = ensemble.score(ensemble.embed(left), ensemble.embed(right))
    for i in 0..<3 { XCTAssertEqual(mean[i], (l1[i] + l2[i]) / 2, accuracy: 1e-5 * max(1, abs(l1[i]) + abs(l2[i]))) }
    XCTAssertNotEqual(l1, l2)
    // Half-precision storage keeps the weights to F16's precision.
    let halfURL = try temporaryURL("ensemble-half.safetensors")
    try Checkpoint.writeEnsemble(members: [first, second], memberMetadata: [[:], [:]], metadata: [:], to: halfURL, half: true)
    let halfModel = try Checkpoint.readModel(halfURL).model
    for (loaded, original) in zip(halfModel.members, [first, second]) {
      for (a, b) in zip(loaded.store.parameters, original.store.parameters) {
        for (x, y) in zip(a.value, b.value) { XCTAssertEqual(x, y, accuracy: 1e-3 * max(1, abs(y)), a.name) }
      }
    }
    // A single network reads as an ensemble of one, scored exactly as the network alone.
    let single = try temporaryURL("single.safetensors")
    try Checkpoint.write(network: first, optimizer: nil, metadata: [:], to: single)
    let one = try Checkpoint.readModel(single).model
    XCTAssertEqual(one.members.count, 1)
    XCTAssertEqual(one.score(one.embed(left), one.embed(right)), l1)
    // Training and resuming need one network: an ensemble says so.
    XCTAssertThrowsError(try Checkpoint.read(url)) { error in
      XCTAssertEqual(error as? CheckpointError, .ensembleWhereOneNetworkIsNeeded(path: url.path, members: 2))
      XCTAssert("\(error)".contains("is an ensemble of 2 networks"), "\(error)")
    }
    // A missing member tensor is named with its member prefix; another configuration is refused.
    var (tensors, meta) = try SafeTensors.read(url)
    tensors["members.1.head.0.weight"] = nil
    try SafeTensors.write(Array(tensors.values), metadata: meta, to: url)
    XCTAssertThrowsError(try Checkpoint.readModel(url)) { error in
      XCTAssertEqual(error as? CheckpointError, .missingTensor(path: url.path, name: "members.1.head.0.weight"))
    }
    var other = config
    other.headHidden = 6
    XCTAssertThrowsError(try Checkpoint.readModel(single, expecting: other)) { error in
      XCTAssert("\(error)".contains("does not match the configuration"), "\(error)")
    }
  }

  func testSchedules() {
    XCTAssertEqual(LearningRateSchedule.constant.rate(base: 0.1, step: 50, totalSteps: 100), 0.1)
    XCTAssertEqual(LearningRateSchedule.step(every: 10, factor: 0.5).rate(base: 1, step: 25, totalSteps: 100), 0.25)
    let cosine = LearningRateSchedule.cosine(warmupSteps: 10, minimum: 1e-4)
    XCTAssertEqual(cosine.rate(base: 1e-2, step: 0, totalSteps: 110), 1e-3, accuracy: 1e-12)
    XCTAssertEqual(cosine.rate(base: 1e-2, step: 9, totalSteps: 110), 1e-2, accuracy: 1e-12)
    XCTAssertEqual(cosine.rate(base: 1e-2, step: 10, totalSteps: 110), 1e-2, accuracy: 1e-12)
    XCTAssertEqual(cosine.rate(base: 1e-2, step: 110, totalSteps: 111), 1e-4, accuracy: 1e-12)
    XCTAssertEqual(cosine.rate(base: 1e-2, step: 60, totalSteps: 111), (1e-2 + 1e-4) / 2, accuracy: 1e-9)
  }

  func testConfigProblems() {
    XCTAssertTrue(ModelConfig.vgg16Reference.problems().isEmpty)
    XCTAssertEqual(ModelConfig.vgg16Reference.featureCount, 4608)
    XCTAssertEqual(ModelConfig.koch.featureCount, 4096)
    XCTAssertEqual(ModelConfig(backbone: .vgg16, width: 0.25).vggBlocks.last, [128, 128, 128])
    XCTAssertEqual(ModelConfig(backbone: .vgg16, inputSize: 52, blocks: [[32, 32], [64, 64], [128, 128], [256, 256]]).featureCount, 2304)
    XCTAssertFalse(ModelConfig(backbone: .vgg16, inputSize: 16).problems().isEmpty)  // 5 pools need 32 px
    XCTAssertFalse(ModelConfig(backbone: .koch, inputSize: 50).problems().isEmpty)
    XCTAssertFalse(ModelConfig(backbone: .vgg16, width: -1).problems().isEmpty)
  }

  func testSGDDecaysEveryParameterOnlyWhenAsked() {
    // One conv weight (decays) and its bias (does not, unless every parameter decays), zero
    // gradients, no momentum: w <- w - lr * wd * w exactly where the decay applies.
    var store = ParameterStore()
    var rng = NormalSampler(seed: 1)
    let conv = Conv2D(inputChannels: 1, outputChannels: 1, kernelSize: 1, padding: 0, fusedReLU: false, name: "c", store: &store, rng: &rng)
    store.parameters[conv.weight].value = [2]
    store.parameters[conv.bias].value = [4]
    for (everyParameter, expectedBias) in [(nil, Float(4)), (true, Float(4 - 0.5 * 0.1 * 4))] {
      var s = store
      var optimizer = Optimizer(.sgd(momentum: 0, nesterov: false, weightDecay: 0.1, decayEveryParameter: everyParameter), store: s)
      optimizer.update(&s, learningRate: 0.5)
      XCTAssertEqual(s.parameters[conv.weight].value[0], 2 - 0.5 * 0.1 * 2, accuracy: 1e-6)
      XCTAssertEqual(s.parameters[conv.bias].value[0], expectedBias, accuracy: 1e-6)
    }
    // The checkpoint form of a configuration without the flag is what it was.
    let old = String(decoding: try! JSONEncoder().encode(OptimizerConfig.sgd(momentum: 0.9, nesterov: true, weightDecay: 5e-4)), as: UTF8.self)
    XCTAssertFalse(old.contains("decayEveryParameter"), old)
  }
}
