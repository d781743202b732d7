import Foundation
import Support

/// A saved network (and, for resuming, its optimizer state) in safetensors. Tensors carry
/// PyTorch's names and layouts (`backbone.features.0.weight`, OIHW; `head.0.weight`, out x in),
/// so the project's PyTorch twin (`python/oneshot_twin/model.py`) loads the model part as it is.
/// Metadata: `format` = `oneshot-bench`, `format_version`, the model configuration as JSON,
/// and whatever the caller adds (experiment configuration, run id, step).
public struct Checkpoint {
  /// The format version this build writes and reads.
  public static let formatVersion = "1"
  /// Prefix of optimizer-state tensors: `optimizer.m.<name>`, `optimizer.v.<name>`.
  static let optimizerPrefix = "optimizer."
  /// Prefix of the weight average's tensors (training state, like the optimizer's: a scorer
  /// ignores them).
  static let averagePrefix = "optimizer.average."

  /// The restored network.
  public var network: EmbeddingNetwork
  /// The restored optimizer, when the checkpoint holds its state.
  public var optimizer: Optimizer?
  /// The restored moving average of the weights (`training.emaDecay`), when the checkpoint
  /// holds one: tensors `optimizer.average.<name>`, metadata `average_decay`.
  public var average: WeightAverage? = nil
  /// Metadata strings.
  public var metadata: [String: String]

  /// Writes `network` (and `optimizer`, if given) atomically to `url`. With `half`, weights are
  /// stored as F16 (halves the size; optimizer state is never stored in half precision).
  public static func write(network: EmbeddingNetwork, optimizer: Optimizer?, average: WeightAverage? = nil, metadata: [String: String], to url: URL, half: Bool = false) throws {
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
    meta["model_config"] = String(decoding: try JSONEncoder.canonical().encode(network.config), as: UTF8.self)
    if let average {
      meta["average_decay"] = String(average.decay)
      meta["average_steps"] = String(average.steps)
      for (i, parameter) in network.store.parameters.enumerated() {
        tensors.append(NamedTensor(name: "\(averagePrefix)\(parameter.name)", shape: parameter.shape, values: average.parameters[i]))
      }
      for (i, buffer) in network.store.buffers.enumerated() {
        tensors.append(NamedTensor(name: "\(averagePrefix)\(buffer.name)", shape: [buffer.value.count], values: average.buffers[i]))
      }
    }
    if let optimizer {
      meta["optimizer_config"] = String(decoding: try JSONEncoder.canonical().encode(optimizer.config), as: UTF8.self)
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

  /// Metadata key of an ensemble checkpoint: its number of members.
  public static let membersKey = "ensemble_members"
  /// Metadata key under which an ensemble checkpoint keeps member m's `key` (e.g. its run id).
  public static func memberKey(_ m: Int, _ key: String) -> String { "member.\(m).\(key)" }

  /// Writes several networks of one configuration as one ensemble checkpoint. Member m's
  /// tensors are named `members.<m>.<name>` and its `memberMetadata[m]` is kept as
  /// `member.<m>.<key>`. Read it with `readModel`.
  public static func writeEnsemble(members: [EmbeddingNetwork], memberMetadata: [[String: String]], metadata: [String: String], to url: URL, half: Bool = false) throws {
    precondition(members.count >= 2 && memberMetadata.count == members.count, "an ensemble checkpoint holds two or more networks, each with its metadata")
    precondition(members.allSatisfy { $0.config == members[0].config }, "ensemble members must share one model configuration")
    var tensors: [NamedTensor] = []
    var meta = metadata
    for (m, network) in members.enumerated() {
      for parameter in network.store.parameters {
        tensors.append(NamedTensor(name: "members.\(m).\(parameter.name)", shape: parameter.shape, values: parameter.value, half: half))
      }
      for buffer in network.store.buffers {
        tensors.append(NamedTensor(name: "members.\(m).\(buffer.name)", shape: [buffer.value.count], values: buffer.value, half: false))
      }
      for (key, value) in memberMetadata[m] { meta[memberKey(m, key)] = value }
    }
    meta["format"] = "oneshot-bench"
    meta["format_version"] = formatVersion
    meta["model_config"] = String(decoding: try JSONEncoder.canonical().encode(members[0].config), as: UTF8.self)
    meta[membersKey] = String(members.count)
    try SafeTensors.write(tensors, metadata: meta, to: url)
  }

  /// Reads the model of any checkpoint for inference: a single network (an ensemble of one)
  /// or an ensemble checkpoint. With `expecting`, the stored model configuration must equal it.
  public static func readModel(_ url: URL, expecting expected: ModelConfig? = nil) throws -> (model: NetworkEnsemble, metadata: [String: String]) {
    let path = url.path
    let (tensors, metadata) = try SafeTensors.read(url)
    let config = try modelConfig(of: metadata, path: path, expecting: expected)
    guard let countText = metadata[membersKey] else {
      var used = Set<String>()
      let network = try loadNetwork(config, from: tensors, prefix: "", path: path, used: &used)
      try rejectUnused(tensors, used: used, path: path, ignoringOptimizerState: true)
      return (NetworkEnsemble(members: [network]), metadata)
    }
    guard let count = Int(countText), count >= 2 else { throw CheckpointError.malformed(path: path, reason: "\(membersKey) = \(countText) is not a member count of 2 or more") }
    var used = Set<String>()
    var members: [EmbeddingNetwork] = []
    for m in 0..<count { members.append(try loadNetwork(config, from: tensors, prefix: "members.\(m).", path: path, used: &used)) }
    try rejectUnused(tensors, used: used, path: path)
    return (NetworkEnsemble(members: members), metadata)
  }

  /// Reads a single-network checkpoint, with its optimizer state if it has one (what training
  /// and resuming need). With `expecting`, the stored model configuration must equal it; every
  /// tensor name and shape is checked against the configuration either way.
  public static func read(_ url: URL, expecting expected: ModelConfig? = nil) throws -> Checkpoint {
    let path = url.path
    let (tensors, metadata) = try SafeTensors.read(url)
    let config = try modelConfig(of: metadata, path: path, expecting: expected)
    if let members = metadata[membersKey] { throw CheckpointError.ensembleWhereOneNetworkIsNeeded(path: path, members: Int(members) ?? 0) }
    var used = Set<String>()
    let network = try loadNetwork(config, from: tensors, prefix: "", path: path, used: &used)
    var optimizer: Optimizer? = nil
    if let optimizerText = metadata["optimizer_config"] {
      guard let optimizerConfig = try? JSONDecoder().decode(OptimizerConfig.self, from: Data(optimizerText.utf8)), let step = Int(metadata["optimizer_step"] ?? "") else {
        throw CheckpointError.malformed(path: path, reason: "optimizer metadata unreadable")
      }
      // The optimizer state is checked as the weights are (issue #45, cause P): a NaN moment
      // trains on with NaN weights hidden behind ReLU, a negative step skews Adam's bias correction.
      guard step >= 0 else { throw CheckpointError.impossibleValue(path: path, name: "optimizer_step", reason: "is \(step), below 0", metadata: true) }
      var first: [[Float]] = [], second: [[Float]] = []
      for parameter in network.store.parameters {
        let m = "\(optimizerPrefix)m.\(parameter.name)", v = "\(optimizerPrefix)v.\(parameter.name)"
        guard let mt = tensors[m], mt.shape == parameter.shape else { throw CheckpointError.missingTensor(path: path, name: m) }
        try refuseImpossibleValues(mt.values, name: m, path: path)
        first.append(mt.values)
        used.insert(m)
        if case .adam = optimizerConfig {
          guard let vt = tensors[v], vt.shape == parameter.shape else { throw CheckpointError.missingTensor(path: path, name: v) }
          try refuseImpossibleValues(vt.values, name: v, path: path)
          if let negative = vt.values.first(where: { $0 < 0 }) {
            throw CheckpointError.impossibleValue(path: path, name: v, reason: "holds a negative second moment (\(negative))")
          }
          second.append(vt.values)
          used.insert(v)
        }
      }
      optimizer = Optimizer(optimizerConfig, step: step, firstMoments: first, secondMoments: second)
    }
    var average: WeightAverage? = nil
    if let decayText = metadata["average_decay"] {
      guard let decay = Double(decayText), decay > 0 && decay < 1 else {
        throw CheckpointError.impossibleValue(path: path, name: "average_decay", reason: "is \(decayText), not in (0, 1)", metadata: true)
      }
      guard let steps = Int(metadata["average_steps"] ?? ""), steps >= 0 else {
        throw CheckpointError.impossibleValue(path: path, name: "average_steps", reason: "is \(metadata["average_steps"] ?? "missing"), not a count of steps", metadata: true)
      }
      func averaged(_ name: String, count: Int) throws -> [Float] {
        let key = averagePrefix + name
        guard let tensor = tensors[key], tensor.values.count == count else { throw CheckpointError.missingTensor(path: path, name: key) }
        try refuseImpossibleValues(tensor.values, name: key, path: path)
        used.insert(key)
        return tensor.values
      }
      average = WeightAverage(
        decay: decay, steps: steps, parameters: try network.store.parameters.map { try averaged($0.name, count: $0.value.count) },
        buffers: try network.store.buffers.map { try averaged($0.name, count: $0.value.count) })
    }
    try rejectUnused(tensors, used: used, path: path)
    var checkpoint = Checkpoint(network: network, optimizer: optimizer, metadata: metadata)
    checkpoint.average = average
    return checkpoint
  }

  /// The model configuration a checkpoint's metadata records, checked against `expected`.
  static func modelConfig(of metadata: [String: String], path: String, expecting expected: ModelConfig?) throws -> ModelConfig {
    guard metadata["format"] == "oneshot-bench" else {
      throw CheckpointError.malformed(path: path, reason: "no oneshot-bench metadata (format = \(metadata["format"] ?? "none"))")
    }
    if let version = metadata["format_version"], version != formatVersion { throw CheckpointError.unsupportedVersion(path: path, found: version) }
    guard let configText = metadata["model_config"], let config = try? JSONDecoder().decode(ModelConfig.self, from: Data(configText.utf8)) else {
      throw CheckpointError.malformed(path: path, reason: "model_config metadata missing or unreadable")
    }
    if let expected, expected != config {
      throw CheckpointError.configMismatch(
        path: path, detail: "it was trained with \(configText), the experiment asks for \(String(decoding: (try? JSONEncoder.canonical().encode(expected)) ?? Data(), as: UTF8.self))")
    }
    guard config.problems().isEmpty else { throw CheckpointError.malformed(path: path, reason: "invalid model_config: \(config.problemSummary)") }
    return config
  }

  /// Throws if the file holds tensors that were not used (PyTorch's `num_batches_tracked` and,
  /// when scoring, optimizer state are expected extras).
  static func rejectUnused(_ tensors: [String: NamedTensor], used: Set<String>, path: String, ignoringOptimizerState: Bool = false) throws {
    let extra = tensors.keys.filter {
      !used.contains($0) && !$0.hasSuffix("num_batches_tracked") && !(ignoringOptimizerState && $0.hasPrefix(optimizerPrefix))
    }.sorted()
    guard extra.isEmpty else { throw CheckpointError.unexpectedTensors(path: path, names: extra) }
  }

  /// Builds a network of `config` from the tensors named `prefix` + its parameter and buffer
  /// names, checking each one's presence and shape; records the names it used.
  static func loadNetwork(_ config: ModelConfig, from tensors: [String: NamedTensor], prefix: String, path: String, used: inout Set<String>) throws -> EmbeddingNetwork {
    var network = EmbeddingNetwork(config: config, seed: 0)
    for i in network.store.parameters.indices {
      let parameter = network.store.parameters[i]
      let name = prefix + parameter.name
      guard let tensor = tensors[name] else { throw CheckpointError.missingTensor(path: path, name: name) }
      guard tensor.shape == parameter.shape else { throw CheckpointError.shapeMismatch(path: path, name: name, expected: parameter.shape, found: tensor.shape) }
      try refuseImpossibleValues(tensor.values, name: name, path: path)
      network.store.parameters[i].value = tensor.values
      used.insert(name)
    }
    for i in network.store.buffers.indices {
      let buffer = network.store.buffers[i]
      let name = prefix + buffer.name
      guard let tensor = tensors[name] else { throw CheckpointError.missingTensor(path: path, name: name) }
      guard tensor.values.count == buffer.value.count else {
        throw CheckpointError.shapeMismatch(path: path, name: name, expected: [buffer.value.count], found: tensor.shape)
      }
      try refuseImpossibleValues(tensor.values, name: name, path: path)
      if name.hasSuffix(".running_var"), let negative = tensor.values.first(where: { $0 < 0 }) {
        throw CheckpointError.impossibleValue(path: path, name: name, reason: "holds a negative variance (\(negative))")
      }
      network.store.buffers[i].value = tensor.values
      used.insert(name)
    }
    return network
  }

  /// A NaN or an infinity in a loaded tensor is refused, naming the tensor and the first index.
  static func refuseImpossibleValues(_ values: [Float], name: String, path: String) throws {
    guard let index = values.firstIndex(where: { !$0.isFinite }) else { return }
    throw CheckpointError.impossibleValue(path: path, name: name, reason: "holds \(values[index]) at index \(index)")
  }
}

