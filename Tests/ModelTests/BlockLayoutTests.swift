import Foundation
import XCTest

@testable import Model

/// `blockPooling`, `blockPadding` and `relationModule: convolutional` (Sung et al.'s relation
/// network: an embedding that keeps 5x5 maps at 28x28, and a module of convolutions on them).
final class BlockLayoutTests: XCTestCase {
  /// Sung et al.'s Omniglot network: 28 -> 26 -> 13 -> 11 -> 5 -> 5 -> 5, 64 x 5 x 5 features.
  static var sung: ModelConfig {
    var config = ModelConfig(backbone: .vgg16, inputSize: 28, batchNorm: true, blocks: [[64], [64], [64], [64]], headHidden: 64, similarity: .relation)
    (config.blockPooling, config.blockPadding, config.relationModule) = ([true, true, false, false], [0, 0, 1, 1], .convolutional)
    return config
  }

  func testSungsNetworkHasItsShapesAndCounts() {
    let config = BlockLayoutTests.sung
    XCTAssertEqual(config.problems().map(\.message), [])
    XCTAssertEqual(config.vggFinalSide.side, 5)
    XCTAssertEqual(config.featureCount, 64 * 5 * 5)
    XCTAssertEqual(config.relationModuleSide, 1)
    let network = EmbeddingNetwork(config: config, seed: 1)
    XCTAssertEqual(network.store.parameters.map(\.value.count).reduce(0, +), config.parameterCount)
    XCTAssertEqual(network.convolutions.map(\.side), [28, 13, 5, 5])
    var rng = NormalSampler(seed: 2)
    let images = Tensor(shape: [3, 1, 28, 28], data: rng.normal(count: 3 * 28 * 28, std: 1))
    XCTAssertEqual(network.embed(images).shape, [3, 1600])
    // The module's two padded convolutions on 10 x 5 x 5 pairs of maps count in a pair's FLOPs.
    let multiplyAdds: Int = 128 * 64 * 9 * 25 + 64 * 64 * 9 * 4 + 64 * 8 + 8
    XCTAssertEqual(network.headFlopsPerPair, Double(2 * multiplyAdds), accuracy: 0.5)
  }

  func testMistakesAreNamed() {
    var config = BlockLayoutTests.sung
    config.blockPooling = [true, false]
    XCTAssertEqual(config.problems().map(\.keyPath), ["blockPooling"])
    config = BlockLayoutTests.sung
    config.blockPadding = [0, 0, 2, 1]
    XCTAssertEqual(config.problems().map(\.message), ["one padding per block (4 blocks), each 0 or 1; got [0, 0, 2, 1]"])
    // Four pooled blocks leave 1x1 maps: the module's two poolings have nothing to pool.
    config = BlockLayoutTests.sung
    config.blockPooling = nil
    config.blockPadding = nil
    XCTAssertEqual(config.problems().map(\.keyPath), ["relationModule"])
    XCTAssert(config.problems()[0].message.contains("leave 1x1"), config.problems()[0].message)
    config = BlockLayoutTests.sung
    config.similarity = .euclidean
    XCTAssertEqual(config.problems().map(\.message), ["\"convolutional\" is a relation network's module: it needs \"similarity\": \"relation\""])
    config = BlockLayoutTests.sung
    config.inputSize = 4
    XCTAssertEqual(config.problems().map(\.message), ["4 is too small for these blocks: the maps are too small to convolve or pool in block 2"])
    var koch = ModelConfig.koch
    koch.blockPooling = [true]
    XCTAssertEqual(koch.problems().map(\.keyPath), ["blockPooling"])
  }

  /// A configuration without the new keys encodes as before (its hash, and the metadata of the
  /// checkpoints recorded with it, do not change); one with them round-trips.
  func testEncodingKeepsOldConfigurationsAndRoundTrips() throws {
    let plain = ModelConfig(backbone: .vgg16, inputSize: 28, batchNorm: true, blocks: [[64], [64], [64], [64]], similarity: .relation)
    let json = String(decoding: try JSONEncoder().encode(plain), as: UTF8.self)
    for key in ["blockPooling", "blockPadding", "relationModule"] { XCTAssertFalse(json.contains(key), json) }
    let sung = BlockLayoutTests.sung
    XCTAssertEqual(try JSONDecoder().decode(ModelConfig.self, from: try JSONEncoder().encode(sung)), sung)
  }
}
