import Foundation

/// An exponential moving average of a network's weights over training ("model EMA": timm's
/// `ModelEmaV2`, PyTorch's `AveragedModel` with an EMA function): after each optimizer step,
/// average = decay x average + (1 - decay) x current, for every parameter and every buffer
/// (batch norm's running estimates too, as timm does, so the averaged network's statistics
/// belong to averaged weights). The sum starts at zero and is divided by 1 - decay^steps, as
/// Adam corrects its moments: the average is then a weighted mean of the weights the steps
/// visited, never of the random initialisation (started at the initial weights, a 0.999 average
/// still held 47% of them after 750 steps). Training continues on the current weights; what is
/// validated, kept as the best checkpoint and scored is the average (`training.emaDecay`).
public struct WeightAverage: Sendable, Equatable {
  /// The weight of the old average at each step, in (0, 1).
  public let decay: Double
  /// Steps averaged so far.
  public internal(set) var steps: Int
  /// Sums of (1 - decay) decay^k x the parameters' values, in the store's order.
  public internal(set) var parameters: [[Float]]
  /// The same for the buffers, in the store's order.
  public internal(set) var buffers: [[Float]]

  /// An empty average for the values of `store`.
  public init(decay: Double, store: ParameterStore) {
    self.init(
      decay: decay, steps: 0, parameters: store.parameters.map { [Float](repeating: 0, count: $0.value.count) },
      buffers: store.buffers.map { [Float](repeating: 0, count: $0.value.count) })
  }

  /// Restores an average saved in a checkpoint.
  public init(decay: Double, steps: Int, parameters: [[Float]], buffers: [[Float]]) {
    self.decay = decay
    self.steps = steps
    self.parameters = parameters
    self.buffers = buffers
  }

  /// Adds `store`'s current values (after an optimizer step).
  public mutating func update(_ store: ParameterStore) {
    precondition(parameters.count == store.parameters.count && buffers.count == store.buffers.count, "the average holds another network's values")
    let keep = Float(decay), take = Float(1 - decay)
    func blend(_ average: inout [Float], _ current: [Float]) {
      average.withUnsafeMutableBufferPointer { a in
        current.withUnsafeBufferPointer { c in for i in 0..<a.count { a[i] = keep * a[i] + take * c[i] } }
      }
    }
    for p in parameters.indices { blend(&parameters[p], store.parameters[p].value) }
    for b in buffers.indices { blend(&buffers[b], store.buffers[b].value) }
    steps += 1
  }

  /// `store` with the averaged values in place of its own (gradients untouched); before the
  /// first step there is nothing to average and `store` is returned as it is.
  public func applied(to store: ParameterStore) -> ParameterStore {
    guard steps > 0 else { return store }
    let scale = Float(1 / (1 - pow(decay, Double(steps))))
    var out = store
    for p in out.parameters.indices { out.parameters[p].value = parameters[p].map { $0 * scale } }
    for b in out.buffers.indices { out.buffers[b].value = buffers[b].map { $0 * scale } }
    return out
  }
}
