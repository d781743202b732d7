import Foundation

/// A saved network (and, for resuming, its optimizer state) in safetensors. Tensors carry
/// PyTorch's names and layouts (`backbone.features.0.weight`, OIHW; `head.0.weight`, out x in),
/// so `load_state_dict` of `../shared/bench/torch_siamese.py`'s model accepts the model part.
/// Metadata: `format` = `oneshot-bench`, `format_version`, the model configuration as JSON,
/// and whatever the caller adds (experiment configuration, run id, step).
public struct Checkpoint {
  /// The format version this build writes and reads.
  public static let formatVersion = "1"
  /// Prefix of optimizer-state tensors: `optimizer.m.<name>`, `optimizer.v.<name>`.
  static let optimizerPrefix = "optimizer."

  /// The restored network.
  public var network: SiameseNetwork
  /// The restored optimizer, when the checkpoint holds its state.
  public var optimizer: Optimizer?
  /// Metadata strings.
  public var metadata: [String: String]

  /// Writes `network` (and `optimizer`, if given) atomically to `url`. With `half`, weights are
  /// stored as F16 (halves the size; optimizer state is never stored in half precision).
  public static func write(network: SiameseNetwork, optimizer: Optimizer?, metadata: [String: String], to url: URL, half: Bool = false) throws {
    var tensors: [NamedTensor] = []
    for parameter in network.store.parameters {
      tensors.append(NamedTensor(name: parameter.name, shape: parameter.shape, values: parameter.value, half: half))
    }
    for buffer in network.store.buffers {
      tensors.append(NamedTensor(name: buffer.name, shape: [buffer.value.count], values: buffer.value, half: false))
    }
    var meta = metadata
    meta["format"] = "oneshot-bench"
    meta["format_version"] = formatVersion
    meta["model_config"] = String(decoding: try JSONEncoder.sorted.encode(network.config), as: UTF8.self)
    if let optimizer {
      meta["optimizer_config"] = String(decoding: try JSONEncoder.sorted.encode(optimizer.config), as: UTF8.self)
      meta["optimizer_step"] = String(optimizer.step)
      for (i, parameter) in network.store.parameters.enumerated() {
        tensors.append(NamedTensor(name: "\(optimizerPrefix)m.\(parameter.name)", shape: parameter.shape, values: optimizer.firstMoments[i]))
        if !optimizer.secondMoments.isEmpty {
          tensors.append(NamedTensor(name: "\(optimizerPrefix)v.\(parameter.name)", shape: parameter.shape, values: optimizer.secondMoments[i]))
        }
      }
    }
    try SafeTensors.write(tensors, metadata: meta, to: url)
  }

  /// Reads a checkpoint. With `expecting`, the stored model configuration must equal it;
  /// every tensor name and shape is checked against the configuration either way.
  public static func read(_ url: URL, expecting expected: ModelConfig? = nil) throws -> Checkpoint {
    let path = url.path
    let (tensors, metadata) = try SafeTensors.read(url)
    guard metadata["format"] == "oneshot-bench" else {
      throw CheckpointError.malformed(path: path, reason: "no oneshot-bench metadata (format = \(metadata["format"] ?? "none"))")
    }
    if let version = metadata["format_version"], version != formatVersion { throw CheckpointError.unsupportedVersion(path: path, found: version) }
    guard let configText = metadata["model_config"], let config = try? JSONDecoder().decode(ModelConfig.self, from: Data(configText.utf8)) else {
      throw CheckpointError.malformed(path: path, reason: "model_config metadata missing or unreadable")
    }
    if let expected, expected != config {
      throw CheckpointError.configMismatch(
        path: path, detail: "it was trained with \(configText), the experiment asks for \(String(decoding: (try? JSONEncoder.sorted.encode(expected)) ?? Data(), as: UTF8.self))")
    }
    guard config.problems().isEmpty else { throw CheckpointError.malformed(path: path, reason: "invalid model_config: \(config.problems().joined(separator: "; "))") }
    var network = SiameseNetwork(config: config, seed: 0)
    var used = Set<String>()
    for i in network.store.parameters.indices {
      let parameter = network.store.parameters[i]
      guard let tensor = tensors[parameter.name] else { throw CheckpointError.missingTensor(path: path, name: parameter.name) }
      guard tensor.shape == parameter.shape else { throw CheckpointError.shapeMismatch(path: path, name: parameter.name, expected: parameter.shape, found: tensor.shape) }
      network.store.parameters[i].value = tensor.values
      used.insert(parameter.name)
    }
    for i in network.store.buffers.indices {
      let buffer = network.store.buffers[i]
      guard let tensor = tensors[buffer.name] else { throw CheckpointError.missingTensor(path: path, name: buffer.name) }
      guard tensor.values.count == buffer.value.count else {
        throw CheckpointError.shapeMismatch(path: path, name: buffer.name, expected: [buffer.value.count], found: tensor.shape)
      }
      network.store.buffers[i].value = tensor.values
      used.insert(buffer.name)
    }
    var optimizer: Optimizer? = nil
    if let optimizerText = metadata["optimizer_config"] {
      guard let optimizerConfig = try? JSONDecoder().decode(OptimizerConfig.self, from: Data(optimizerText.utf8)), let step = Int(metadata["optimizer_step"] ?? "") else {
        throw CheckpointError.malformed(path: path, reason: "optimizer metadata unreadable")
      }
      var first: [[Float]] = [], second: [[Float]] = []
      for parameter in network.store.parameters {
        let m = "\(optimizerPrefix)m.\(parameter.name)", v = "\(optimizerPrefix)v.\(parameter.name)"
        guard let mt = tensors[m], mt.shape == parameter.shape else { throw CheckpointError.missingTensor(path: path, name: m) }
        first.append(mt.values)
        used.insert(m)
        if case .adam = optimizerConfig {
          guard let vt = tensors[v], vt.shape == parameter.shape else { throw CheckpointError.missingTensor(path: path, name: v) }
          second.append(vt.values)
          used.insert(v)
        }
      }
      optimizer = Optimizer(optimizerConfig, step: step, firstMoments: first, secondMoments: second)
    }
    let extra = tensors.keys.filter { !used.contains($0) && !$0.hasSuffix("num_batches_tracked") }.sorted()
    guard extra.isEmpty else { throw CheckpointError.unexpectedTensors(path: path, names: extra) }
    return Checkpoint(network: network, optimizer: optimizer, metadata: metadata)
  }
}

extension JSONEncoder {
  /// An encoder with sorted keys, so the same value always gives the same bytes.
  public static var sorted: JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return encoder
  }
}
