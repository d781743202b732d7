import XCTest

@testable import Model

/// The moving average of the weights (`training.emaDecay`): its arithmetic, and that a
/// checkpoint carries it exactly.
final class WeightAverageTests: XCTestCase {
  func testTheAverageFollowsItsDefinition() {
    let network = EmbeddingNetwork(config: ModelConfig(backbone: .vgg16, inputSize: 8, batchNorm: true, blocks: [[2], [2]], similarity: .euclidean), seed: 1)
    var store = network.store
    let start = store.parameters.map(\.value)
    var average = WeightAverage(decay: 0.75, store: store)
    XCTAssertEqual(average.parameters, start)
    // Two steps that set every value to 1 and then to 2 (buffers to 3 and 5): the average is
    // 0.75^2 x start + 0.75 x 0.25 x 1 + 0.25 x 2.
    for (value, buffer) in [(Float(1), Float(3)), (2, 5)] {
      for p in store.parameters.indices { store.parameters[p].value = [Float](repeating: value, count: store.parameters[p].value.count) }
      for b in store.buffers.indices { store.buffers[b].value = [Float](repeating: buffer, count: store.buffers[b].value.count) }
      average.update(store)
    }
    for (averaged, initial) in zip(average.parameters, start) {
      for (a, w) in zip(averaged, initial) { XCTAssertEqual(a, 0.5625 * w + 0.1875 + 0.5, accuracy: 1e-6) }
    }
    let startBuffers = network.store.buffers.map(\.value)
    for (averaged, initial) in zip(average.buffers, startBuffers) {
      for (a, w) in zip(averaged, initial) { XCTAssertEqual(a, 0.5625 * w + 0.1875 * 3 + 0.25 * 5, accuracy: 1e-5) }
    }
    let applied = average.applied(to: store)
    XCTAssertEqual(applied.parameters.map(\.value), average.parameters)
    XCTAssertEqual(applied.buffers.map(\.value), average.buffers)
    XCTAssertEqual(applied.parameters.map(\.name), store.parameters.map(\.name))
  }

  func testACheckpointCarriesTheAverageExactly() throws {
    var network = EmbeddingNetwork(config: ModelConfig(backbone: .vgg16, inputSize: 8, batchNorm: true, blocks: [[2], [2]], similarity: .euclidean), seed: 1)
    var average = WeightAverage(decay: 0.999, store: network.store)
    for p in network.store.parameters.indices { network.store.parameters[p].value = network.store.parameters[p].value.map { $0 + 0.5 } }
    average.update(network.store)
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("average-\(UUID().uuidString).safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try Checkpoint.write(network: network, optimizer: Optimizer(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0), store: network.store), average: average, metadata: [:], to: url)
    let read = try Checkpoint.read(url)
    XCTAssertEqual(read.average, average)
    XCTAssertEqual(read.network.store.parameters.map(\.value), network.store.parameters.map(\.value))
  }
}
