/// y = x W^T + b.   x: (N, inFeatures) -> y: (N, outFeatures)
/// Weights (out, in) as PyTorch; initialised N(0, std^2) (the reference: 0.01), bias zero.
public struct Linear: Layer {
  /// Input features.
  public let inputFeatures: Int
  /// Output features.
  public let outputFeatures: Int
  /// Index of the weight (out, in).
  public let weight: Int
  /// Index of the bias (out).
  public let bias: Int

  /// A linear layer whose parameters are added to `store` as `prefix.weight` / `prefix.bias`:
  /// weights N(0, std^2) and zero biases, or with `initialization: .pytorch` both uniform in
  /// +-1/sqrt(inputFeatures) as PyTorch's `nn.Linear`, or with `.koch` Koch et al.'s weights
  /// N(0, 0.2) and biases N(0.5, 0.01) (`std` and `initialBias` are then not used).
  public init(
    inputFeatures: Int, outputFeatures: Int, name prefix: String, std: Float = 0.01, initialBias: Float = 0, initialization: WeightInitialization = .kaiming,
    store: inout ParameterStore, rng: inout NormalSampler
  ) {
    precondition(inputFeatures > 0 && outputFeatures > 0, "Linear(\(inputFeatures) -> \(outputFeatures))")
    self.inputFeatures = inputFeatures
    self.outputFeatures = outputFeatures
    let count = outputFeatures * inputFeatures, bound = Float(1 / Double(inputFeatures).squareRoot())
    let weights: [Float], biases: [Float]
    switch initialization {
    case .kaiming:
      weights = rng.normal(count: count, std: std)
      biases = [Float](repeating: initialBias, count: outputFeatures)
    case .pytorch:
      weights = rng.uniform(count: count, bound: bound)
      biases = rng.uniform(count: outputFeatures, bound: bound)
    case .koch:
      weights = rng.normal(count: count, std: 0.2)
      biases = rng.normal(count: outputFeatures, mean: 0.5, std: 0.01)
    }
    weight = store.add(name: prefix + ".weight", shape: [outputFeatures, inputFeatures], value: weights, decays: true)
    bias = store.add(name: prefix + ".bias", shape: [outputFeatures], value: biases, decays: false)
  }

  /// 2 x multiply-adds per row.
  public var flops: Double { 2 * Double(inputFeatures * outputFeatures) }

  /// y = x W^T + b.
  public func forward(_ x: Tensor, store: ParameterStore, context: ForwardContext) -> (output: Tensor, cache: LayerCache) {
    precondition(x.shape.count == 2 && x.shape[1] == inputFeatures, "Linear expects (N, \(inputFeatures)), got \(x.shape)")
    let n = x.shape[0]
    var y = Tensor(zeros: [n, outputFeatures])
    y.data.withUnsafeMutableBufferPointer { yb in
      store.parameters[bias].value.withUnsafeBufferPointer { b in
        for i in 0..<n { for j in 0..<outputFeatures { yb[i * outputFeatures + j] = b[j] } }
      }
      x.data.withUnsafeBufferPointer { xb in
        store.parameters[weight].value.withUnsafeBufferPointer { wb in
          gemm(
            transposeA: false, transposeB: true, m: n, n: outputFeatures, k: inputFeatures, xb.baseAddress!, lda: inputFeatures, wb.baseAddress!, ldb: inputFeatures, beta: 1,
            yb.baseAddress!, ldc: outputFeatures)
        }
      }
    }
    return (y, LayerCache(input: x, output: y))
  }

  /// Adds dL/dW = dy^T x and dL/db = sum dy into the store; returns dL/dx = dy W.
  public func backward(_ dOutput: Tensor, cache: LayerCache, store: inout ParameterStore, needInputGradient: Bool) -> Tensor {
    let x = cache.input
    let n = x.shape[0]
    precondition(dOutput.shape == [n, outputFeatures], "Linear backward: dOutput \(dOutput.shape), expected \([n, outputFeatures])")
    var dx = Tensor(zeros: x.shape)
    dOutput.data.withUnsafeBufferPointer { dy in
      x.data.withUnsafeBufferPointer { xb in
        store.parameters[weight].gradient.withUnsafeMutableBufferPointer { dw in
          gemm(
            transposeA: true, transposeB: false, m: outputFeatures, n: inputFeatures, k: n, dy.baseAddress!, lda: outputFeatures, xb.baseAddress!, ldb: inputFeatures, beta: 1,
            dw.baseAddress!, ldc: inputFeatures)
        }
      }
      store.parameters[bias].gradient.withUnsafeMutableBufferPointer { db in
        for i in 0..<n { for j in 0..<outputFeatures { db[j] += dy[i * outputFeatures + j] } }
      }
      store.parameters[weight].value.withUnsafeBufferPointer { wb in
        dx.data.withUnsafeMutableBufferPointer { dxb in
          gemm(
            transposeA: false, transposeB: false, m: n, n: inputFeatures, k: outputFeatures, dy.baseAddress!, lda: outputFeatures, wb.baseAddress!, ldb: inputFeatures, beta: 0,
            dxb.baseAddress!, ldc: inputFeatures)
        }
      }
    }
    return dx
  }
}
