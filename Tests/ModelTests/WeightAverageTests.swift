import XCTest

@testable import Model

/// The moving average of the weights (`training.emaDecay`): its arithmetic, and that a
/// checkpoint carries it exactly.
final class WeightAverageTests: XCTestCase {
  func testTheAverageFollowsItsDefinition() {
    let network = EmbeddingNetwork(config: ModelConfig(backbone: .vgg16, inputSize: 8, batchNorm: true, blocks: [[2], [2]], similarity: .euclidean), seed: 1)
    var store = network.store
    var average = WeightAverage(decay: 0.75, store: store)
    // Nothing averaged yet: the network as it is.
    XCTAssertEqual(average.applied(to: store).parameters.map(\.value), store.parameters.map(\.value))
    // Steps that set every value to 1 and then to 2 (buffers to 3 and 5). After one, the average
    // is that step's values; after two, their weighted mean (0.75 x 1 + 2) / 1.75, never the
    // initial weights (bias-corrected as Adam's moments).
    for (step, (value, buffer)) in [(Float(1), Float(3)), (2, 5)].enumerated() {
      for p in store.parameters.indices { store.parameters[p].value = [Float](repeating: value, count: store.parameters[p].value.count) }
      for b in store.buffers.indices { store.buffers[b].value = [Float](repeating: buffer, count: store.buffers[b].value.count) }
      average.update(store)
      let applied = average.applied(to: store)
      let (expected, expectedBuffer): (Float, Float) = step == 0 ? (1, 3) : ((0.75 * 1 + 2) / 1.75, (0.75 * 3 + 5) / 1.75)
      for values in applied.parameters.map(\.value) { for a in values { XCTAssertEqual(a, expected, accuracy: 1e-6) } }
      for values in applied.buffers.map(\.value) { for a in values { XCTAssertEqual(a, expectedBuffer, accuracy: 1e-5) } }
      XCTAssertEqual(applied.parameters.map(\.name), store.parameters.map(\.name))
    }
    XCTAssertEqual(average.steps, 2)
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
