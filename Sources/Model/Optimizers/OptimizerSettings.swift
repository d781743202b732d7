import Support

// The optimizer and schedule sections of an experiment file, decoded strictly (unknown keys,
// wrong types and effective settings of the other optimizer are errors) straight into the
// types the training loop uses, and checked by `problems()`.

/// The optimizer section: `{"kind": "sgd", "learningRate": 0.005, "weightDecay": 5e-4, ...}`.
public struct OptimizerSettings: Codable, Hashable, Sendable {
  /// The base learning rate (the schedule scales it).
  public var learningRate: Double
  /// The update rule and its settings.
  public var config: OptimizerConfig

  /// Settings for `optimizer` at `learningRate`.
  public init(learningRate: Double, config: OptimizerConfig) {
    self.learningRate = learningRate
    self.config = config
  }

  public enum Kind: String, Codable, CaseIterable { case adam, sgd }

  enum CodingKeys: String, CodingKey, CaseIterable { case kind, learningRate, weightDecay, beta1, beta2, epsilon, momentum, nesterov, decayEveryParameter, layers, momentumRamp }

  // The defaults, also written for the other optimizer's keys so that the configuration hashes
  // of recorded runs stay what they were.
  static let defaults = (beta1: 0.9, beta2: 0.999, epsilon: 1e-8, momentum: 0.9, nesterov: true)

  public init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    learningRate = try c.decode(Double.self, forKey: .learningRate)
    let weightDecay = try c.decodeIfPresent(Double.self, forKey: .weightDecay) ?? 0
    let d = OptimizerSettings.defaults
    // The other optimizer's keys are accepted at their defaults only (the canonical form writes
    // them); any other value would have no effect and is refused.
    func inert<T: Decodable & Equatable>(_ key: CodingKeys, _ type: T.Type, _ value: T, for kind: Kind) throws {
      if let given = try c.decodeIfPresent(type, forKey: key), given != value {
        throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key], debugDescription: "only the \(kind.rawValue) optimizer uses \(key.rawValue); remove it"))
      }
    }
    switch try c.decode(Kind.self, forKey: .kind) {
    case .adam:
      try inert(.momentum, Double.self, d.momentum, for: .sgd)
      try inert(.nesterov, Bool.self, d.nesterov, for: .sgd)
      try inert(.decayEveryParameter, Bool.self, false, for: .sgd)
      for key in [CodingKeys.layers, .momentumRamp] where c.contains(key) {
        throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key], debugDescription: "only the sgd optimizer takes \(key.rawValue); remove it, or use \"kind\": \"sgd\""))
      }
      config = .adam(
        beta1: try c.decodeIfPresent(Double.self, forKey: .beta1) ?? d.beta1, beta2: try c.decodeIfPresent(Double.self, forKey: .beta2) ?? d.beta2,
        epsilon: try c.decodeIfPresent(Double.self, forKey: .epsilon) ?? d.epsilon, weightDecay: weightDecay)
    case .sgd:
      try inert(.beta1, Double.self, d.beta1, for: .adam)
      try inert(.beta2, Double.self, d.beta2, for: .adam)
      try inert(.epsilon, Double.self, d.epsilon, for: .adam)
      let everyParameter = try c.decodeIfPresent(Bool.self, forKey: .decayEveryParameter) ?? false
      config = .sgd(
        momentum: try c.decodeIfPresent(Double.self, forKey: .momentum) ?? d.momentum, nesterov: try c.decodeIfPresent(Bool.self, forKey: .nesterov) ?? d.nesterov,
        weightDecay: weightDecay, decayEveryParameter: everyParameter ? true : nil, layers: try c.decodeIfPresent([LayerSGDSettings].self, forKey: .layers),
        momentumRamp: try c.decodeIfPresent(MomentumRamp.self, forKey: .momentumRamp))
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    let d = OptimizerSettings.defaults
    try c.encode(learningRate, forKey: .learningRate)
    switch config {
    case .adam(let beta1, let beta2, let epsilon, let weightDecay):
      try c.encode(Kind.adam, forKey: .kind)
      try c.encode(weightDecay, forKey: .weightDecay)
      try c.encode(beta1, forKey: .beta1)
      try c.encode(beta2, forKey: .beta2)
      try c.encode(epsilon, forKey: .epsilon)
      try c.encode(d.momentum, forKey: .momentum)
      try c.encode(d.nesterov, forKey: .nesterov)
    case .sgd(let momentum, let nesterov, let weightDecay, let everyParameter, let layers, let ramp):
      try c.encode(Kind.sgd, forKey: .kind)
      // Written only when set, so that the hashes of configurations without them stay.
      if everyParameter == true { try c.encode(true, forKey: .decayEveryParameter) }
      try c.encodeIfPresent(layers, forKey: .layers)
      try c.encodeIfPresent(ramp, forKey: .momentumRamp)
      try c.encode(weightDecay, forKey: .weightDecay)
      try c.encode(d.beta1, forKey: .beta1)
      try c.encode(d.beta2, forKey: .beta2)
      try c.encode(d.epsilon, forKey: .epsilon)
      try c.encode(momentum, forKey: .momentum)
      try c.encode(nesterov, forKey: .nesterov)
    }
  }

  /// Problems with the values, as (key path, what is allowed).
  public func problems() -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    if !(learningRate > 0 && learningRate < 10) { out.append(("learningRate", "positive and below 10; got \(learningRate)")) }
    switch config {
    case .adam(let beta1, let beta2, let epsilon, let weightDecay):
      if !(0...1).contains(weightDecay) { out.append(("weightDecay", "within 0...1; got \(weightDecay)")) }
      if !(0..<1).contains(beta1) || !(0..<1).contains(beta2) { out.append(("beta1, beta2", "within [0, 1)")) }
      if !(epsilon > 0) { out.append(("epsilon", "positive")) }
    case .sgd(let momentum, _, let weightDecay, _, let layers, let ramp):
      if !(0...1).contains(weightDecay) { out.append(("weightDecay", "within 0...1; got \(weightDecay)")) }
      if !(0..<1).contains(momentum) { out.append(("momentum", "within [0, 1)")) }
      for (i, layer) in (layers ?? []).enumerated() {
        let key = "layers[\(i)]"
        if layer.layer.isEmpty || layer.layer.hasSuffix(".") { out.append((key + ".layer", "a layer's name as its parameters are named without .weight / .bias, e.g. \"backbone.features.0\"")) }
        if !(layer.learningRate > 0 && layer.learningRate < 10) { out.append((key + ".learningRate", "positive and below 10; got \(layer.learningRate)")) }
        if !(0..<1).contains(layer.momentum) { out.append((key + ".momentum", "within [0, 1); got \(layer.momentum)")) }
        if !(0...1).contains(layer.weightDecay) { out.append((key + ".weightDecay", "within 0...1; got \(layer.weightDecay)")) }
        if layers?.prefix(i).contains(where: { $0.layer == layer.layer }) == true { out.append((key + ".layer", "\(layer.layer) is listed twice; give each layer once")) }
      }
      if layers?.isEmpty == true { out.append(("layers", "at least one layer's settings; remove the key for none")) }
      if let ramp {
        if !(0..<1).contains(ramp.start) { out.append(("momentumRamp.start", "within [0, 1); got \(ramp.start)")) }
        if ramp.steps < 1 { out.append(("momentumRamp.steps", "at least 1 step; got \(ramp.steps)")) }
      }
    }
    return out
  }
}

extension LearningRateSchedule {
  enum CodingKeys: String, CodingKey, CaseIterable { case kind, warmupSteps, minimum, every, factor }

  public init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let defaults = LearningRateSchedule()
    self.init(
      kind: try c.decode(Kind.self, forKey: .kind), warmupSteps: try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? defaults.warmupSteps,
      minimum: try c.decodeIfPresent(Double.self, forKey: .minimum) ?? defaults.minimum, every: try c.decodeIfPresent(Int.self, forKey: .every) ?? defaults.every,
      factor: try c.decodeIfPresent(Double.self, forKey: .factor) ?? defaults.factor)
  }

  /// Problems with the values for a run of `steps` steps, as (key path, what is allowed).
  public func problems(steps: Int) -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    if warmupSteps < 0 || warmupSteps >= max(steps, 1) { out.append(("warmupSteps", "within 0..<steps (\(steps)); got \(warmupSteps)")) }
    if minimum < 0 { out.append(("minimum", "not negative")) }
    if every < 1 { out.append(("every", "at least 1")) }
    if !(factor > 0 && factor <= 1) { out.append(("factor", "within (0, 1]")) }
    return out
  }
}

extension LayerSGDSettings {
  enum CodingKeys: String, CodingKey, CaseIterable { case layer, learningRate, momentum, weightDecay }

  public init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    self.init(
      layer: try c.decode(String.self, forKey: .layer), learningRate: try c.decode(Double.self, forKey: .learningRate), momentum: try c.decode(Double.self, forKey: .momentum),
      weightDecay: try c.decode(Double.self, forKey: .weightDecay))
  }
}

extension MomentumRamp {
  enum CodingKeys: String, CodingKey, CaseIterable { case start, steps }

  public init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    self.init(start: try c.decode(Double.self, forKey: .start), steps: try c.decode(Int.self, forKey: .steps))
  }
}
