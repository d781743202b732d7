// Batch normalisation of feature vectors, PyTorch's `nn.BatchNorm1d` on (N, C): per feature over
// the batch, with an optional fused ReLU. BatchNorm2D's Swift kernels on (N, C, 1, 1): the same
// statistics, running estimates (momentum 0.1, unbiased variance) and parameter names.
//   x: (N, C) -> y: (N, C)

/// A batch norm over features; gamma and beta are parameters, the running estimates buffers.
public struct BatchNorm1D: Layer {
  let normalization: BatchNorm2D

  /// A batch norm named `prefix.weight`, `.bias`, `.running_mean`, `.running_var`.
  public init(features: Int, fusedReLU: Bool, name prefix: String, store: inout ParameterStore) {
    normalization = BatchNorm2D(channels: features, fusedReLU: fusedReLU, name: prefix, store: &store)
  }

  public func forward(_ x: Tensor, store: ParameterStore, context: ForwardContext) -> (output: Tensor, cache: LayerCache) {
    precondition(x.shape.count == 2 && x.shape[1] == normalization.channels, "BatchNorm1D expects (N, \(normalization.channels)), got \(x.shape)")
    var plain = context
    plain.keepsLayouts = false
    let (y, cache) = normalization.forward(x.reshaped([x.shape[0], x.shape[1], 1, 1]), store: store, context: plain)
    return (y.reshaped(x.shape), cache)
  }

  public func backward(_ dOutput: Tensor, cache: LayerCache, store: inout ParameterStore, needInputGradient: Bool) -> Tensor {
    let d = dOutput.plain()
    precondition(d.shape.count == 2, "BatchNorm1D backward expects (N, C), got \(d.shape)")
    return normalization.backward(d.reshaped([d.shape[0], d.shape[1], 1, 1]), cache: cache, store: &store, needInputGradient: needInputGradient).reshaped(d.shape)
  }

  public func updateRunningEstimates(_ cache: LayerCache, store: inout ParameterStore) {
    normalization.updateRunningEstimates(cache, store: &store)
  }
}
