import Foundation
import XCTest

@testable import Model

/// The prototypical objective: its loss gradient by central differences, the whole training
/// step against PyTorch's numbers (`Tests/Reference/make_fixtures.py`, `proto.safetensors`),
/// and scoring by distance to prototypes.
final class PrototypicalTests: XCTestCase {
  func features(ways: Int, shots: Int, queries: Int, f: Int, seed: UInt64) -> Tensor {
    var rng = NormalSampler(seed: seed)
    return Tensor(shape: [ways * (shots + queries), f], data: rng.normal(count: ways * (shots + queries) * f, std: 1))
  }

  func testLossGradientByCentralDifferences() {
    for (ways, shots, queries) in [(3, 2, 2), (4, 1, 3), (2, 5, 1)] {
      let x = features(ways: ways, shots: shots, queries: queries, f: 5, seed: UInt64(ways * 10 + shots))
      let (_, analytic, _) = PrototypicalLoss.lossAndGradient(features: x, ways: ways, shots: shots, queries: queries)
      let h: Float = 1e-2
      var worst = 0.0
      for i in x.data.indices {
        var plus = x, minus = x
        plus.data[i] += h
        minus.data[i] -= h
        let numeric =
          (PrototypicalLoss.lossAndGradient(features: plus, ways: ways, shots: shots, queries: queries).loss
            - PrototypicalLoss.lossAndGradient(features: minus, ways: ways, shots: shots, queries: queries).loss) / (2 * Double(h))
        worst = max(worst, abs(numeric - Double(analytic.data[i])))
      }
      let scale = max(analytic.data.map { abs(Double($0)) }.max() ?? 0, 1e-3)
      XCTAssertLessThan(worst / scale, 1e-3, "\(ways)-way \(shots)-shot \(queries)-query: worst error \(worst) of \(scale)")
    }
  }

  func testLossOfAPerfectEmbeddingIsSmallAndCountsEveryQueryCorrect() {
    // Classes far apart, queries on their prototypes: loss near 0, every query right.
    let ways = 3, shots = 2, queries = 2, f = 3
    var data: [Float] = []
    for c in 0..<ways { for _ in 0..<(shots + queries) { data += (0..<f).map { $0 == c ? 10 : 0 } } }
    let (loss, _, correct) = PrototypicalLoss.lossAndGradient(features: Tensor(shape: [ways * (shots + queries), f], data: data), ways: ways, shots: shots, queries: queries)
    XCTAssertLessThan(loss, 1e-6)
    XCTAssertEqual(correct, ways * queries)
  }

  func testTrainingStepMatchesPyTorch() throws {
    let (tensors, metadata) = try SafeTensors.read(PyTorchCrossCheckTests.fixtures.appendingPathComponent("proto.safetensors"))
    let config = try JSONDecoder().decode(ModelConfig.self, from: Data(metadata["model_config"]!.utf8))
    XCTAssertEqual(config.similarity, .euclidean)
    let episode = try JSONDecoder().decode([String: Int].self, from: Data(metadata["episode"]!.utf8))
    var network = EmbeddingNetwork(config: config, seed: 0)
    XCTAssertFalse(network.store.parameters.contains { $0.name.hasPrefix("head") }, "a prototypical network has no head")
    for i in network.store.parameters.indices {
      let tensor = try XCTUnwrap(tensors["weight." + network.store.parameters[i].name])
      network.store.parameters[i].value = tensor.values
    }
    XCTAssertEqual(Set(tensors.keys.filter { $0.hasPrefix("weight.") }), Set(network.store.parameters.map { "weight." + $0.name }))
    let images = try XCTUnwrap(tensors["input.images"])
    let (loss, _) = network.prototypicalLossAndGradients(
      images: Tensor(shape: images.shape, data: images.values), ways: episode["ways"]!, shots: episode["shots"]!, queries: episode["queries"]!)
    XCTAssertEqual(loss, Double(tensors["output.loss"]!.values[0]), accuracy: 1e-5)
    for parameter in network.store.parameters {
      let theirs = tensors["grad." + parameter.name]!.values
      // A conv bias feeding batch norm has zero gradient in exact arithmetic: noise on both sides.
      let parts = parameter.name.split(separator: ".")
      if parameter.name.hasSuffix(".bias"), parts.count == 4, let index = Int(parts[2]), tensors["buffer.backbone.features.\(index + 1).running_mean"] != nil {
        XCTAssertLessThan((parameter.gradient + theirs).map(abs).max() ?? 0, 1e-4, parameter.name)
        continue
      }
      assertMatches(parameter.gradient, theirs, "grad \(parameter.name)")
    }
    for buffer in network.store.buffers {
      assertMatches(buffer.value, tensors["buffer." + buffer.name]!.values, buffer.name)
    }
  }

  /// max |a - b| / max |b| below 1e-4, as the other PyTorch cross-checks.
  func assertMatches(_ ours: [Float], _ theirs: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(ours.count, theirs.count, what, file: file, line: line)
    let scale = max(Double(theirs.map(abs).max() ?? 0), 1e-12)
    let worst = zip(ours, theirs).map { abs(Double($0) - Double($1)) }.max() ?? 0
    XCTAssertLessThan(worst / scale, 1e-4, "\(what): max error \(worst) relative to \(scale)", file: file, line: line)
  }

  func testScoresAreNegativeSquaredDistancesToPrototypes() {
    let queries: [[Float]] = [[0, 0], [4, 4]]
    let support: [[[Float]]] = [[[1, 0], [-1, 0]], [[4, 3], [4, 5]]]
    let scores = PrototypicalLoss.scores(queries: queries, support: support)
    XCTAssertEqual(scores[0], [0, -32])
    XCTAssertEqual(scores[1], [-32, 0])
    // A pair's score under Euclidean similarity: -|a - b|^2.
    let network = EmbeddingNetwork(config: ModelConfig(backbone: .vgg16, inputSize: 8, blocks: [[2], [3]], similarity: .euclidean), seed: 1)
    XCTAssertEqual(network.score(Tensor(shape: [1, 2], data: [1, 2]), Tensor(shape: [1, 2], data: [4, -2])), [-25])
  }

  func testSimilarityIsWrittenOnlyWhenNotTheDefault() throws {
    let head = String(decoding: try JSONEncoder().encode(ModelConfig(backbone: .vgg16)), as: UTF8.self)
    XCTAssertFalse(head.contains("similarity"), "the configuration hashes of head networks must not change")
    let euclidean = ModelConfig(backbone: .vgg16, inputSize: 28, batchNorm: true, blocks: [[64], [64], [64], [64]], similarity: .euclidean)
    let decoded = try JSONDecoder().decode(ModelConfig.self, from: try JSONEncoder().encode(euclidean))
    XCTAssertEqual(decoded, euclidean)
    XCTAssertEqual(euclidean.featureCount, 64, "Snell's network embeds a 28x28 image in 64 numbers")
    XCTAssertEqual(euclidean.parameterCount, EmbeddingNetwork(config: euclidean, seed: 1).store.parameters.reduce(0) { $0 + $1.value.count })
  }

  func testPyTorchInitialisationDrawsUniformWithinOneOverRootFanIn() throws {
    var config = ModelConfig(backbone: .vgg16, inputSize: 28, batchNorm: true, blocks: [[64], [64], [64], [64]], similarity: .euclidean)
    let kaiming = EmbeddingNetwork(config: config, seed: 3)
    config.initialization = .pytorch
    let pytorch = EmbeddingNetwork(config: config, seed: 3)
    func values(_ network: EmbeddingNetwork, _ name: String) throws -> [Float] { try XCTUnwrap(network.store.parameters.first { $0.name == name }).value }
    // features.4 is the second convolution: fan_in 64 x 3 x 3 = 576, bound 1/24.
    let weights = try values(pytorch, "backbone.features.4.weight"), biases = try values(pytorch, "backbone.features.4.bias")
    XCTAssertLessThanOrEqual(weights.map(abs).max() ?? 1, 1 / 24)
    let std = (weights.reduce(0) { $0 + Double($1 * $1) } / Double(weights.count)).squareRoot()
    XCTAssertEqual(std, 1 / 24 / 3.0.squareRoot(), accuracy: 0.02 / 24, "uniform in +-b has standard deviation b / sqrt(3)")
    XCTAssertLessThanOrEqual(biases.map(abs).max() ?? 1, 1 / 24)
    XCTAssertGreaterThan(Set(biases).count, 60, "PyTorch draws the biases too")
    // The first convolution: fan_in 9, bound 1/3.
    XCTAssertLessThanOrEqual(try values(pytorch, "backbone.features.0.weight").map(abs).max() ?? 1, 1 / 3)
    XCTAssertGreaterThan(try values(pytorch, "backbone.features.0.weight").map(abs).max() ?? 0, 0.3)
    // The default is unchanged: Kaiming-normal (fan_out 576, std sqrt(2/576)), zero biases.
    let k = try values(kaiming, "backbone.features.4.weight")
    XCTAssertEqual((k.reduce(0) { $0 + Double($1 * $1) } / Double(k.count)).squareRoot(), (2.0 / 576).squareRoot(), accuracy: 0.003)
    XCTAssertEqual(Set(try values(kaiming, "backbone.features.4.bias")), [0])
    // Batch norm starts at gamma 1, beta 0 either way.
    XCTAssertEqual(try values(pytorch, "backbone.features.1.weight"), [Float](repeating: 1, count: 64))
  }

  func testResamplingAndInitialisationAreWrittenOnlyWhenNotTheDefault() throws {
    let plain = String(decoding: try JSONEncoder().encode(ModelConfig(backbone: .vgg16)), as: UTF8.self)
    XCTAssertFalse(plain.contains("resampling") || plain.contains("initialization"), "the configuration hashes of earlier networks must not change")
    var snell = ModelConfig(backbone: .vgg16, inputSize: 28, batchNorm: true, blocks: [[64], [64], [64], [64]], similarity: .euclidean)
    snell.resampling = .nearest
    snell.initialization = .pytorch
    let decoded = try JSONDecoder().decode(ModelConfig.self, from: try JSONEncoder().encode(snell))
    XCTAssertEqual(decoded, snell)
    XCTAssertEqual(decoded.resampling, .nearest)
    XCTAssertEqual(decoded.initialization, .pytorch)
  }
}
