import Foundation
import Model
import XCTest

/// A fixture written by `Tests/Reference/make_fixtures.py`'s `save_experiments_fixture`: its
/// tensors, the network of its model configuration with its `weight.*` tensors loaded (every
/// parameter by name, shape for shape), its episode's shape and its input images.
struct PyTorchFixture {
  let tensors: [String: NamedTensor]
  let config: ModelConfig
  let network: EmbeddingNetwork
  let ways: Int, shots: Int, queries: Int
  let images: Tensor

  init(_ url: URL, file: StaticString = #filePath, line: UInt = #line) throws {
    let (tensors, metadata) = try SafeTensors.read(url)
    self.tensors = tensors
    config = try JSONDecoder().decode(ModelConfig.self, from: Data(try XCTUnwrap(metadata["model_config"], file: file, line: line).utf8))
    let episode = try JSONDecoder().decode([String: Int].self, from: Data(try XCTUnwrap(metadata["episode"], file: file, line: line).utf8))
    (ways, shots, queries) = (try XCTUnwrap(episode["ways"], file: file, line: line), try XCTUnwrap(episode["shots"], file: file, line: line), try XCTUnwrap(episode["queries"], file: file, line: line))
    var network = EmbeddingNetwork(config: config, seed: 0)
    XCTAssertEqual(Set(tensors.keys.filter { $0.hasPrefix("weight.") }), Set(network.store.parameters.map { "weight." + $0.name }), file: file, line: line)
    for i in network.store.parameters.indices {
      let tensor = try XCTUnwrap(tensors["weight." + network.store.parameters[i].name], file: file, line: line)
      XCTAssertEqual(tensor.shape, network.store.parameters[i].shape, file: file, line: line)
      network.store.parameters[i].value = tensor.values
    }
    self.network = network
    let input = try XCTUnwrap(tensors["input.images"], file: file, line: line)
    images = Tensor(shape: input.shape, data: input.values)
  }
}
