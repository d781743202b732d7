/// An exponential moving average of a network's weights over training ("model EMA": timm's
/// `ModelEmaV2`, PyTorch's `AveragedModel` with an EMA function): after each optimizer step,
/// average = decay x average + (1 - decay) x current, for every parameter and every buffer
/// (batch norm's running estimates too, as timm does, so the averaged network's statistics
/// belong to averaged weights). It starts at the network's initial values. Training continues
/// on the current weights; what is validated, kept as the best checkpoint and scored is the
/// average (`training.emaDecay`).
public struct WeightAverage: Sendable, Equatable {
  /// The weight of the old average at each step, in (0, 1).
  public let decay: Double
  /// Averaged parameter values, in the store's order.
  public internal(set) var parameters: [[Float]]
  /// Averaged buffer values, in the store's order.
  public internal(set) var buffers: [[Float]]

  /// An average that starts at `store`'s values.
  public init(decay: Double, store: ParameterStore) {
    self.init(decay: decay, parameters: store.parameters.map(\.value), buffers: store.buffers.map(\.value))
  }

  /// Restores an average saved in a checkpoint.
  public init(decay: Double, parameters: [[Float]], buffers: [[Float]]) {
    self.decay = decay
    self.parameters = parameters
    self.buffers = buffers
  }

  /// Moves the average towards `store`'s current values (after an optimizer step).
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
  }

  /// `store` with the averaged values in place of its own (gradients untouched).
  public func applied(to store: ParameterStore) -> ParameterStore {
    var out = store
    for p in out.parameters.indices { out.parameters[p].value = parameters[p] }
    for b in out.buffers.indices { out.buffers[b].value = buffers[b] }
    return out
  }
}
