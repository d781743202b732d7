import Episodes
import Foundation
import Model

// An experiment file: `experiments/NAME.json`. Each library owns its part (ModelConfig in
// Model, EpisodeSpec and AffineAugmentation in Episodes); the harness owns the rest. Decoding
// is strict: an unknown or misspelt key, a wrong type or an impossible value is an error that
// names the file and the key path, before any work and before anything is written.

/// The whole experiment.
struct ExperimentConfig: Codable, Equatable {
  /// Experiment name, the key runs are grouped by.
  var name: String
  /// What it is and how long it takes.
  var description: String
  /// Seed of weight initialisation, training pairs and augmentation.
  var seed: UInt64
  /// Threads for oneDNN and the parallel loops.
  var threads: Int
  /// Where the data comes from.
  var data: DataConfig
  /// The network.
  var model: ModelConfig
  /// How it is trained.
  var training: TrainingConfig
  /// What it is scored on.
  var evaluation: [ProtocolConfig]

  enum CodingKeys: String, CodingKey, CaseIterable { case name, description, seed, threads, data, model, training, evaluation }

  init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    name = try c.decode(String.self, forKey: .name)
    description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
    seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 0
    threads = try c.decodeIfPresent(Int.self, forKey: .threads) ?? 2
    data = try c.decodeIfPresent(DataConfig.self, forKey: .data) ?? DataConfig()
    model = try c.decode(ModelConfig.self, forKey: .model)
    training = try c.decode(TrainingConfig.self, forKey: .training)
    evaluation = try c.decodeIfPresent([ProtocolConfig].self, forKey: .evaluation) ?? [ProtocolConfig(protocolKind: .lake20)]
  }

  /// Value problems as (key path, what is allowed).
  func problems() -> [(String, String)] {
    var out: [(String, String)] = []
    if name.isEmpty || name.contains(where: { $0 == "/" || $0.isNewline }) { out.append(("name", "a non-empty name without '/'")) }
    if !(1...256).contains(threads) { out.append(("threads", "between 1 and 256; got \(threads)")) }
    for problem in model.problems() { out.append(split("model", problem)) }
    out += data.problems().map { ("data.\($0.0)", $0.1) }
    out += training.problems().map { ("training.\($0.0)", $0.1) }
    if evaluation.isEmpty { out.append(("evaluation", "at least one protocol")) }
    for (i, item) in evaluation.enumerated() { out += item.problems().map { ("evaluation[\(i)].\($0.0)", $0.1) } }
    let names = evaluation.map(\.name)
    if Set(names).count != names.count { out.append(("evaluation", "protocol names must be distinct (give each a \"name\"); got \(names.joined(separator: ", "))")) }
    return out
  }

  private func split(_ prefix: String, _ problem: String) -> (String, String) {
    guard let colon = problem.firstIndex(of: ":") else { return (prefix, problem) }
    return ("\(prefix).\(problem[..<colon])", problem[problem.index(after: colon)...].trimmingCharacters(in: .whitespaces))
  }
}

/// The data section.
struct DataConfig: Codable, Equatable {
  /// Folder of the Omniglot zips (or, with `custom`, a ROOT/<group>/<class>/*.png folder).
  var path: String = OmniglotDataset.defaultRoot
  /// Background alphabets held out for model selection.
  var validationAlphabets: [String] = OmniglotAlphabets.defaultValidation
  /// Fraction of negative pairs drawn from the anchor's alphabet.
  var sameAlphabetNegatives: Double = 0

  enum CodingKeys: String, CodingKey, CaseIterable { case path, validationAlphabets, sameAlphabetNegatives }

  init() {}

  init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    path = try c.decodeIfPresent(String.self, forKey: .path) ?? OmniglotDataset.defaultRoot
    validationAlphabets = try c.decodeIfPresent([String].self, forKey: .validationAlphabets) ?? OmniglotAlphabets.defaultValidation
    sameAlphabetNegatives = try c.decodeIfPresent(Double.self, forKey: .sameAlphabetNegatives) ?? 0
  }

  func problems() -> [(String, String)] {
    var out: [(String, String)] = []
    if validationAlphabets.isEmpty { out.append(("validationAlphabets", "at least one background alphabet for model selection")) }
    if !(0...1).contains(sameAlphabetNegatives) { out.append(("sameAlphabetNegatives", "within 0...1; got \(sameAlphabetNegatives)")) }
    return out
  }
}

/// The training section.
struct TrainingConfig: Codable, Equatable {
  /// Optimizer steps (one batch each).
  var steps: Int
  /// Pairs per step (even: half same, half different).
  var pairsPerStep: Int
  /// The optimizer.
  var optimizer: OptimizerSettings
  /// The learning-rate schedule.
  var schedule: ScheduleSettings
  /// Koch et al.'s affine distortions, or nil for none.
  var augmentation: AffineAugmentation?
  /// Model selection on held-out background alphabets.
  var validation: ValidationSettings
  /// Stop after this many validations without improvement (0: never stop early).
  var patience: Int
  /// Log the training loss every this many steps.
  var logEvery: Int
  /// `independent`: every pair has its own two images (2 x pairsPerStep images a step);
  /// `groups`: groups of 2 characters x 2 drawers, each image in two pairs (pairsPerStep images).
  var pairing: Pairing
  /// The convolutions' arithmetic while training and validating: fp32, or bf16 inputs with
  /// float accumulation (about 1.7x faster on AVX512_BF16; weights, optimizer state, batch
  /// norm and the head stay fp32, as in PyTorch's bf16 autocast). Evaluation is always fp32.
  var precision: ConvolutionPrecision

  enum Pairing: String, Codable { case independent, groups }

  enum CodingKeys: String, CodingKey, CaseIterable { case steps, pairs, pairsPerStep, optimizer, schedule, augmentation, validation, patience, logEvery, pairing, precision }

  init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    pairsPerStep = try c.decodeIfPresent(Int.self, forKey: .pairsPerStep) ?? 32
    let steps = try c.decodeIfPresent(Int.self, forKey: .steps)
    let pairs = try c.decodeIfPresent(Int.self, forKey: .pairs)
    switch (steps, pairs) {
    case (let s?, nil): self.steps = s
    case (nil, let p?): self.steps = pairsPerStep > 0 ? (p + pairsPerStep - 1) / pairsPerStep : 0
    default:
      throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + [CodingKeys.steps], debugDescription: "give the budget as exactly one of \"steps\" or \"pairs\""))
    }
    optimizer = try c.decode(OptimizerSettings.self, forKey: .optimizer)
    schedule = try c.decodeIfPresent(ScheduleSettings.self, forKey: .schedule) ?? ScheduleSettings()
    augmentation = try c.decodeIfPresent(AffineAugmentation.self, forKey: .augmentation)
    validation = try c.decodeIfPresent(ValidationSettings.self, forKey: .validation) ?? ValidationSettings()
    patience = try c.decodeIfPresent(Int.self, forKey: .patience) ?? 0
    logEvery = try c.decodeIfPresent(Int.self, forKey: .logEvery) ?? 20
    pairing = try c.decodeIfPresent(Pairing.self, forKey: .pairing) ?? .independent
    precision = try c.decodeIfPresent(ConvolutionPrecision.self, forKey: .precision) ?? .fp32
  }

  func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(steps, forKey: .steps)
    try c.encode(pairsPerStep, forKey: .pairsPerStep)
    try c.encode(optimizer, forKey: .optimizer)
    try c.encode(schedule, forKey: .schedule)
    try c.encodeIfPresent(augmentation, forKey: .augmentation)
    try c.encode(validation, forKey: .validation)
    try c.encode(patience, forKey: .patience)
    try c.encode(logEvery, forKey: .logEvery)
    try c.encode(pairing, forKey: .pairing)
    // Written only when not the default, so the configuration hashes of fp32 runs recorded
    // before the key existed stay what they were.
    if precision != .fp32 { try c.encode(precision, forKey: .precision) }
  }

  func problems() -> [(String, String)] {
    var out: [(String, String)] = []
    if steps < 1 { out.append(("steps", "at least 1; got \(steps)")) }
    if pairsPerStep < 2 || pairsPerStep % 2 != 0 { out.append(("pairsPerStep", "an even number >= 2 (half same, half different); got \(pairsPerStep)")) }
    if pairing == .groups && pairsPerStep % 4 != 0 { out.append(("pairsPerStep", "a multiple of 4 with pairing groups (4 pairs per group); got \(pairsPerStep)")) }
    out += optimizer.problems().map { ("optimizer.\($0.0)", $0.1) }
    out += schedule.problems(steps: steps).map { ("schedule.\($0.0)", $0.1) }
    out += (augmentation?.problems() ?? []).map { problem in
      let parts = problem.split(separator: ":", maxSplits: 1)
      return ("augmentation.\(parts[0])", parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : "")
    }
    out += validation.problems().map { ("validation.\($0.0)", $0.1) }
    if patience < 0 { out.append(("patience", "0 (never stop early) or more validations; got \(patience)")) }
    if logEvery < 1 { out.append(("logEvery", "at least 1; got \(logEvery)")) }
    return out
  }
}

/// The optimizer of an experiment file: `{"kind": "adam", "learningRate": 1e-3, ...}`.
struct OptimizerSettings: Codable, Equatable {
  enum Kind: String, Codable { case adam, sgd }
  var kind: Kind
  var learningRate: Double
  var weightDecay: Double
  var beta1: Double
  var beta2: Double
  var epsilon: Double
  var momentum: Double
  var nesterov: Bool

  enum CodingKeys: String, CodingKey, CaseIterable { case kind, learningRate, weightDecay, beta1, beta2, epsilon, momentum, nesterov }

  init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    kind = try c.decode(Kind.self, forKey: .kind)
    learningRate = try c.decode(Double.self, forKey: .learningRate)
    weightDecay = try c.decodeIfPresent(Double.self, forKey: .weightDecay) ?? 0
    beta1 = try c.decodeIfPresent(Double.self, forKey: .beta1) ?? 0.9
    beta2 = try c.decodeIfPresent(Double.self, forKey: .beta2) ?? 0.999
    epsilon = try c.decodeIfPresent(Double.self, forKey: .epsilon) ?? 1e-8
    momentum = try c.decodeIfPresent(Double.self, forKey: .momentum) ?? 0.9
    nesterov = try c.decodeIfPresent(Bool.self, forKey: .nesterov) ?? true
  }

  /// The Model module's optimizer settings.
  var model: OptimizerConfig {
    switch kind {
    case .adam: return .adam(beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay)
    case .sgd: return .sgd(momentum: momentum, nesterov: nesterov, weightDecay: weightDecay)
    }
  }

  func problems() -> [(String, String)] {
    var out: [(String, String)] = []
    if !(learningRate > 0 && learningRate < 10) { out.append(("learningRate", "positive and below 10; got \(learningRate)")) }
    if !(0...1).contains(weightDecay) { out.append(("weightDecay", "within 0...1; got \(weightDecay)")) }
    if !(0..<1).contains(beta1) || !(0..<1).contains(beta2) { out.append(("beta1, beta2", "within [0, 1)")) }
    if !(epsilon > 0) { out.append(("epsilon", "positive")) }
    if !(0..<1).contains(momentum) { out.append(("momentum", "within [0, 1)")) }
    return out
  }
}

/// The schedule of an experiment file: `{"kind": "cosine", "warmupSteps": 100, "minimum": 0}`.
struct ScheduleSettings: Codable, Equatable {
  enum Kind: String, Codable { case constant, step, cosine }
  var kind: Kind = .constant
  var warmupSteps: Int = 0
  var minimum: Double = 0
  var every: Int = 1000
  var factor: Double = 0.1

  enum CodingKeys: String, CodingKey, CaseIterable { case kind, warmupSteps, minimum, every, factor }

  init() {}

  init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    kind = try c.decode(Kind.self, forKey: .kind)
    warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? 0
    minimum = try c.decodeIfPresent(Double.self, forKey: .minimum) ?? 0
    every = try c.decodeIfPresent(Int.self, forKey: .every) ?? 1000
    factor = try c.decodeIfPresent(Double.self, forKey: .factor) ?? 0.1
  }

  /// The Model module's schedule.
  var model: LearningRateSchedule {
    switch kind {
    case .constant: return .constant
    case .step: return .step(every: every, factor: factor)
    case .cosine: return .cosine(warmupSteps: warmupSteps, minimum: minimum)
    }
  }

  func problems(steps: Int) -> [(String, String)] {
    var out: [(String, String)] = []
    if warmupSteps < 0 || warmupSteps >= max(steps, 1) { out.append(("warmupSteps", "within 0..<steps (\(steps)); got \(warmupSteps)")) }
    if minimum < 0 { out.append(("minimum", "not negative")) }
    if every < 1 { out.append(("every", "at least 1")) }
    if !(factor > 0 && factor <= 1) { out.append(("factor", "within (0, 1]")) }
    return out
  }
}

/// Validation during training: episodes from the held-out background alphabets.
struct ValidationSettings: Codable, Equatable {
  /// Validate every this many steps (and at the end).
  var every: Int = 500
  /// Episodes per validation.
  var episodes: Int = 100
  /// What a validation episode is.
  var spec: EpisodeSpec = EpisodeSpec(ways: 20, shots: 1, queries: 1, alphabetMode: .within, disjointDrawers: true)
  /// Seed of the validation episodes (the same episodes at every validation).
  var seed: UInt64 = 1

  enum CodingKeys: String, CodingKey, CaseIterable { case every, episodes, spec, seed }

  init() {}

  init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let defaults = ValidationSettings()
    every = try c.decodeIfPresent(Int.self, forKey: .every) ?? defaults.every
    episodes = try c.decodeIfPresent(Int.self, forKey: .episodes) ?? defaults.episodes
    spec = try c.decodeIfPresent(EpisodeSpec.self, forKey: .spec) ?? defaults.spec
    seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? defaults.seed
  }

  func problems() -> [(String, String)] {
    var out: [(String, String)] = []
    if every < 1 { out.append(("every", "at least 1 step")) }
    if episodes < 1 { out.append(("episodes", "at least 1")) }
    out += specProblems(spec).map { ("spec.\($0.0)", $0.1) }
    return out
  }
}

/// One evaluation protocol: Lake's 20 runs, or sampled N-way K-shot episodes.
struct ProtocolConfig: Codable, Equatable {
  enum Kind: String, Codable { case lake20, episodes }
  var protocolKind: Kind
  /// Split of sampled episodes: `evaluation` (the test set) or `validation`.
  var split: String = "evaluation"
  var episodes: Int = 1000
  var spec: EpisodeSpec = EpisodeSpec(ways: 20, shots: 1, queries: 1)
  var seed: UInt64 = 0
  var customName: String?

  enum CodingKeys: String, CodingKey, CaseIterable {
    case protocolKind = "protocol"
    case split, episodes, spec, seed
    case customName = "name"
  }

  init(protocolKind: Kind) { self.protocolKind = protocolKind }

  init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    protocolKind = try c.decode(Kind.self, forKey: .protocolKind)
    split = try c.decodeIfPresent(String.self, forKey: .split) ?? "evaluation"
    episodes = try c.decodeIfPresent(Int.self, forKey: .episodes) ?? 1000
    spec = try c.decodeIfPresent(EpisodeSpec.self, forKey: .spec) ?? EpisodeSpec(ways: 20, shots: 1, queries: 1)
    seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 0
    customName = try c.decodeIfPresent(String.self, forKey: .customName)
  }

  /// The protocol's name in results: `lake20`, or e.g. `evaluation-20way-1shot-within`.
  var name: String {
    if let customName { return customName }
    switch protocolKind {
    case .lake20: return "lake20"
    case .episodes:
      return "\(split)-\(spec.ways)way-\(spec.shots)shot-\(spec.alphabetMode.rawValue)\(spec.disjointDrawers ? "-disjoint" : "")"
    }
  }

  func problems() -> [(String, String)] {
    guard protocolKind == .episodes else { return [] }
    var out: [(String, String)] = []
    if !["evaluation", "validation"].contains(split) { out.append(("split", "evaluation (the test set) or validation; got \(split)")) }
    if episodes < 1 { out.append(("episodes", "at least 1")) }
    out += specProblems(spec).map { ("spec.\($0.0)", $0.1) }
    return out
  }
}

/// Dataset-independent checks of an episode spec (the dataset-dependent ones run when the
/// sampler is built, still before any training).
func specProblems(_ spec: EpisodeSpec) -> [(String, String)] {
  var out: [(String, String)] = []
  if spec.ways < 2 { out.append(("ways", "at least 2; got \(spec.ways)")) }
  if spec.shots < 1 { out.append(("shots", "at least 1; got \(spec.shots)")) }
  if spec.queries < 1 { out.append(("queries", "at least 1; got \(spec.queries)")) }
  if spec.shots + spec.queries > 20 { out.append(("shots + queries", "at most 20 (Omniglot has 20 drawings per character); got \(spec.shots + spec.queries)")) }
  return out
}

/// A problem with an experiment file, naming the file and the key path.
struct ConfigError: Error, CustomStringConvertible {
  let file: String
  let keyPath: String
  let message: String
  var description: String { keyPath.isEmpty ? "\(file): \(message)" : "\(file): \(keyPath): \(message)" }
}

/// A key that is whatever string the input holds.
struct AnyKey: CodingKey {
  var stringValue: String
  var intValue: Int? { nil }
  init(stringValue: String) { self.stringValue = stringValue }
  init?(intValue: Int) { nil }
}

/// Throws for the first key of the current object that is not one of `keys`.
func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_ decoder: any Decoder, _ keys: Keys.Type) throws {
  let allowed = Keys.allCases.map(\.stringValue)
  let container = try decoder.container(keyedBy: AnyKey.self)
  for key in container.allKeys.map(\.stringValue).sorted() where !allowed.contains(key) {
    throw DecodingError.dataCorrupted(
      .init(codingPath: decoder.codingPath + [AnyKey(stringValue: key)], debugDescription: "unknown key '\(key)'; allowed: \(allowed.sorted().joined(separator: ", "))"))
  }
}

extension ExperimentConfig {
  /// Reads and checks an experiment file: strict decoding, then every value.
  static func load(_ path: String) throws -> ExperimentConfig {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw ConfigError(file: path, keyPath: "", message: "cannot read the file; give the path of an experiment JSON (see experiments/)")
    }
    let config: ExperimentConfig
    do {
      config = try JSONDecoder().decode(ExperimentConfig.self, from: data)
    } catch let error as DecodingError {
      throw ConfigError.from(error, file: path)
    } catch {
      throw ConfigError(file: path, keyPath: "", message: "\(error)")
    }
    if let (key, message) = config.problems().first { throw ConfigError(file: path, keyPath: key, message: message) }
    return config
  }

  /// The resolved configuration as canonical JSON (sorted keys), stored with every run.
  var canonicalJSON: String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: (try? encoder.encode(self)) ?? Data(), as: UTF8.self)
  }
}

extension ConfigError {
  static func from(_ error: DecodingError, file: String) -> ConfigError {
    func path(_ codingPath: [any CodingKey]) -> String {
      var out = ""
      for key in codingPath {
        if let index = key.intValue { out += "[\(index)]" } else { out += out.isEmpty ? key.stringValue : ".\(key.stringValue)" }
      }
      return out
    }
    switch error {
    case .keyNotFound(let key, let context):
      return ConfigError(file: file, keyPath: path(context.codingPath + [key]), message: "missing; this key is required")
    case .typeMismatch(let type, let context):
      return ConfigError(file: file, keyPath: path(context.codingPath), message: "wrong type; expected \(describe(type))")
    case .valueNotFound(let type, let context):
      return ConfigError(file: file, keyPath: path(context.codingPath), message: "null; expected \(describe(type))")
    case .dataCorrupted(let context):
      if context.codingPath.isEmpty {
        let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
        return ConfigError(file: file, keyPath: "", message: "not valid JSON (\(underlying ?? context.debugDescription))")
      }
      var message = context.debugDescription
      if message.hasPrefix("Cannot initialize") { message = "not one of the allowed values (\(message))" }
      return ConfigError(file: file, keyPath: path(context.codingPath), message: message)
    @unknown default:
      return ConfigError(file: file, keyPath: "", message: "\(error)")
    }
  }

  private static func describe(_ type: Any.Type) -> String {
    switch type {
    case is Int.Type, is UInt64.Type: return "an integer"
    case is Double.Type: return "a number"
    case is Bool.Type: return "true or false"
    case is String.Type: return "a string"
    default: return "\(type)"
    }
  }
}
