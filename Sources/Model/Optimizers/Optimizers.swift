import Foundation

/// Which optimizer, with its settings; the Model module owns this part of an experiment file.
public enum OptimizerConfig: Codable, Hashable, Sendable {
  /// Adam (Kingma and Ba), optional decoupled weight decay (AdamW, Loshchilov and Hutter).
  case adam(beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double)
  /// SGD with (Nesterov) momentum and L2 weight decay added to the gradient, as PyTorch's SGD.
  /// The decay applies to conv and linear weights, or with `decayEveryParameter` to every
  /// parameter (biases and batch norm's too), which is what PyTorch's `SGD(weight_decay=...)`
  /// does given all of a model's parameters.
  /// With `layers`, the layers named there take their own learning rate, momentum and weight
  /// decay (Koch et al. 2015 set each layer's); with `momentumRamp`, every layer's momentum rises
  /// (or falls) linearly from the ramp's start to its own over the ramp's steps.
  case sgd(momentum: Double, nesterov: Bool, weightDecay: Double, decayEveryParameter: Bool? = nil, layers: [LayerSGDSettings]? = nil, momentumRamp: MomentumRamp? = nil)
}

/// One layer's own SGD settings. The layer is named as its parameters are, without the final
/// `.weight` / `.bias` (e.g. `backbone.features.0`, `backbone.fc`, `head`); its learning rate is
/// the rate at step 0, which the schedule scales as it scales the base rate.
public struct LayerSGDSettings: Codable, Hashable, Sendable {
  /// The layer: every parameter named `layer.<something>` (its weight and bias).
  public var layer: String
  /// The layer's learning rate at step 0.
  public var learningRate: Double
  /// The layer's momentum (after the ramp, if there is one).
  public var momentum: Double
  /// The layer's L2 weight decay (on its weight; on its bias too under `decayEveryParameter`).
  public var weightDecay: Double

  /// Settings for `layer`.
  public init(layer: String, learningRate: Double, momentum: Double, weightDecay: Double) {
    self.layer = layer
    self.learningRate = learningRate
    self.momentum = momentum
    self.weightDecay = weightDecay
  }

  /// Whether `parameter` (a parameter's full name) belongs to this layer.
  public func covers(_ parameter: String) -> Bool { Self.layer(layer, covers: parameter) }

  /// Whether `parameter` is `layer.<name>`: the layer's own weight or bias, not a deeper one's.
  static func layer(_ layer: String, covers parameter: String) -> Bool {
    parameter.count > layer.count && parameter.hasPrefix(layer) && parameter.dropFirst(layer.count).first == "." && !parameter.dropFirst(layer.count + 1).contains(".")
  }
}

/// Momentum that starts at `start` in every layer and moves linearly to each layer's own over
/// `steps` optimizer steps (Koch et al. 2015: "momentum starts at 0.5 in every layer, increasing
/// linearly each epoch until reaching the value mu_j").
public struct MomentumRamp: Codable, Hashable, Sendable {
  /// The momentum of every layer at step 0.
  public var start: Double
  /// Steps until every layer has its own momentum.
  public var steps: Int

  /// A ramp from `start` over `steps` steps.
  public init(start: Double, steps: Int) {
    self.start = start
    self.steps = steps
  }

  /// The momentum at `step` (0-based) of a layer whose own momentum is `final`.
  public func momentum(final: Double, step: Int) -> Double {
    start + (final - start) * min(Double(step) / Double(max(steps, 1)), 1)
  }
}

extension OptimizerConfig {
  /// The layers of `layers` that name no parameter of `names` (a misspelt layer would otherwise
  /// train at the base settings without a word).
  public func unknownLayers(among names: [String]) -> [String] {
    guard case .sgd(_, _, _, _, let layers?, _) = self else { return [] }
    return layers.map(\.layer).filter { layer in !names.contains { LayerSGDSettings.layer(layer, covers: $0) } }
  }
}

/// State of an optimizer over a `ParameterStore`. Weight decay applies only to parameters
/// marked `decays` (conv and linear weights), not to biases or batch-norm parameters.
public struct Optimizer: Sendable {
  /// The settings.
  public let config: OptimizerConfig
  /// Steps taken (Adam's bias correction uses it).
  public private(set) var step: Int = 0
  /// First moments (Adam) or momentum buffers (SGD), one per parameter.
  public internal(set) var firstMoments: [[Float]]
  /// Second moments (Adam only).
  public internal(set) var secondMoments: [[Float]]

  /// A fresh optimizer for the parameters of `store`.
  public init(_ config: OptimizerConfig, store: ParameterStore) {
    self.config = config
    firstMoments = store.parameters.map { [Float](repeating: 0, count: $0.value.count) }
    if case .adam = config {
      secondMoments = store.parameters.map { [Float](repeating: 0, count: $0.value.count) }
    } else {
      secondMoments = []
    }
  }

  /// Restores state saved in a checkpoint.
  public init(_ config: OptimizerConfig, step: Int, firstMoments: [[Float]], secondMoments: [[Float]]) {
    self.config = config
    self.step = step
    self.firstMoments = firstMoments
    self.secondMoments = secondMoments
  }

  /// One update of every parameter in `store` with learning rate `learningRate`; a layer with
  /// its own learning rate (`LayerSGDSettings`) takes it times `learningRate / baseRate`, the
  /// schedule's factor at this step.
  public mutating func update(_ store: inout ParameterStore, learningRate: Double, baseRate: Double? = nil) {
    let scale = learningRate / (baseRate ?? learningRate)
    precondition(firstMoments.count == store.parameters.count, "optimizer holds \(firstMoments.count) states for \(store.parameters.count) parameters")
    step += 1
    let lr = Float(learningRate)
    switch config {
    case .adam(let beta1, let beta2, let epsilon, let weightDecay):
      let b1 = Float(beta1), b2 = Float(beta2), eps = Float(epsilon), wd = Float(weightDecay)
      let correction1 = Float(1 - pow(beta1, Double(step)))
      let correction2Root = Float((1 - pow(beta2, Double(step))).squareRoot())
      let stepSize = lr / correction1
      for p in store.parameters.indices {
        let decay: Float = store.parameters[p].decays ? 1 - lr * wd : 1
        let g = store.parameters[p].gradient
        firstMoments[p].withUnsafeMutableBufferPointer { m in
          secondMoments[p].withUnsafeMutableBufferPointer { v in
            store.parameters[p].value.withUnsafeMutableBufferPointer { w in
              g.withUnsafeBufferPointer { g in
                for i in 0..<w.count {
                  m[i] = b1 * m[i] + (1 - b1) * g[i]
                  v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
                  // PyTorch's order: decoupled decay first, then the Adam step.
                  w[i] = w[i] * decay - stepSize * m[i] / (v[i].squareRoot() / correction2Root + eps)
                }
              }
            }
          }
        }
      }
    case .sgd(let momentum, let nesterov, let weightDecay, let everyParameter, let layers, let ramp):
      let first = step == 1
      for p in store.parameters.indices {
        // The parameter's layer's own settings, or the base ones; the schedule's factor on both.
        let own = layers?.first { $0.covers(store.parameters[p].name) }
        let rate = own.map { Float($0.learningRate * scale) } ?? lr
        let final = own?.momentum ?? momentum
        let mu = Float(ramp?.momentum(final: final, step: step - 1) ?? final)
        let decay: Float = store.parameters[p].decays || everyParameter == true ? Float(own?.weightDecay ?? weightDecay) : 0
        let g = store.parameters[p].gradient
        firstMoments[p].withUnsafeMutableBufferPointer { b in
          store.parameters[p].value.withUnsafeMutableBufferPointer { w in
            g.withUnsafeBufferPointer { g in
              for i in 0..<w.count {
                let d = g[i] + decay * w[i]
                if mu == 0 {
                  w[i] -= rate * d
                  continue
                }
                // PyTorch: the buffer starts as the first gradient, then b = mu b + d.
                b[i] = first ? d : mu * b[i] + d
                w[i] -= rate * (nesterov ? d + mu * b[i] : b[i])
              }
            }
          }
        }
      }
    }
  }
}

/// How the learning rate changes over training; the Model module owns this part of an
/// experiment file (`{"kind": "cosine", "warmupSteps": 100, "minimum": 0}`).
public struct LearningRateSchedule: Codable, Hashable, Sendable {
  /// The shape of the schedule.
  public enum Kind: String, Codable, Sendable, CaseIterable {
    /// The base rate throughout.
    case constant
    /// Multiply by `factor` every `every` steps.
    case step
    /// Linear warm-up from 0 over `warmupSteps`, then cosine decay to `minimum` at the last
    /// step (the reference project's schedule, with its 1e-4 floor).
    case cosine
  }
  public var kind: Kind = .constant
  /// Steps of linear warm-up (cosine).
  public var warmupSteps: Int = 0
  /// The rate at the last step (cosine).
  public var minimum: Double = 0
  /// Steps between decays (step).
  public var every: Int = 1000
  /// Decay factor (step).
  public var factor: Double = 0.1

  /// A constant rate.
  public static let constant = LearningRateSchedule()
  /// Step decay.
  public static func step(every: Int, factor: Double) -> LearningRateSchedule { LearningRateSchedule(kind: .step, every: every, factor: factor) }
  /// Warm-up, then cosine decay.
  public static func cosine(warmupSteps: Int, minimum: Double) -> LearningRateSchedule { LearningRateSchedule(kind: .cosine, warmupSteps: warmupSteps, minimum: minimum) }

  /// A schedule; the defaults are a constant rate.
  public init(kind: Kind = .constant, warmupSteps: Int = 0, minimum: Double = 0, every: Int = 1000, factor: Double = 0.1) {
    self.kind = kind
    self.warmupSteps = warmupSteps
    self.minimum = minimum
    self.every = every
    self.factor = factor
  }

  /// The learning rate at `step` (0-based) of `totalSteps`, for base rate `base`.
  public func rate(base: Double, step: Int, totalSteps: Int) -> Double {
    switch kind {
    case .constant:
      return base
    case .step:
      return base * pow(factor, Double(step / max(every, 1)))
    case .cosine:
      if step < warmupSteps { return base * Double(step + 1) / Double(warmupSteps) }
      let span = max(totalSteps - warmupSteps - 1, 1)
      let progress = min(Double(step - warmupSteps) / Double(span), 1)
      return minimum + (base - minimum) * 0.5 * (1 + cos(Double.pi * progress))
    }
  }
}
