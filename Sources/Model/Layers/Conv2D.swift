// 2-D convolution, stride 1, zero padding, optional fused ReLU, two ways:
// - oneDNN's convolution primitives (the default), in fp32 or with bf16 inputs and float
//   accumulation and outputs (`ConvolutionPrecision`). Inputs come in any layout (reordered
//   where the primitive wants another); outputs and gradients are plain NCHW, or, when the
//   context keeps layouts (training), stay in the blocked layouts the primitives chose, and the
//   fused ReLU's mask and the bias gradient are then computed by oneDNN as well (CConvolution). Each direction
//   (forward, backward data, backward weights) runs oneDNN's direct primitive, or with
//   `ConvolutionAlgorithm.auto` Winograd F(4x4, 3x3) where it is faster on this machine (fp32,
//   3x3 kernels; Winograd rounds differently: measured against float64 in the tests).
//   Direct was measured 2-2.5x faster than im2col in fp32 on the 52x52 VGG blocks, another
//   1.7x in bf16 (BENCHMARKS.md).
// - im2col + oneDNN sgemm, the reference and the fallback when no primitive can be built.
//   Images are processed in chunks whose column matrix stays under `columnBudget` floats, never
//   one column matrix for the whole batch.
//
// Shapes: N batch, C input channels, H x W input, O output channels, k kernel, p padding,
// Ho = H + 2p - k + 1, Wo likewise, HW = Ho * Wo, CKK = C * k * k.
//   x: (N, C, H, W)   weight: (O, C, k, k)   bias: (O)   y: (N, O, Ho, Wo)
//   column matrix of a chunk of n images: (CKK, n * HW), column i * HW + (oy * Wo + ox).

import CConvolution

/// The arithmetic of the convolutions: the rest of the network is always fp32.
public enum ConvolutionPrecision: String, Codable, Sendable, CaseIterable {
  /// Float inputs and accumulation.
  case fp32
  /// bfloat16 inputs (activations, weights and output gradients rounded to 8 bits of mantissa),
  /// float accumulation and float outputs, on AVX512_BF16 dot products; as PyTorch's bf16 autocast.
  case bf16
}

/// Which implementation a convolution runs.
public enum ConvolutionAlgorithm: String, Sendable, CaseIterable {
  /// oneDNN's direct convolution primitives (im2col when oneDNN cannot build them): one fixed
  /// arithmetic on every machine, what every evaluation runs.
  case direct
  /// Per layer shape and direction, direct or Winograd, whichever runs faster here: timed at
  /// the first use of a shape and kept for the process (`Conv2D.algorithmChoices`).
  case auto
  /// Winograd in every direction where oneDNN builds it (direct elsewhere): for tests and bench.
  case winograd
  /// im2col + sgemm in fp32, the reference.
  case im2col

  /// CConvolution's policy number.
  var policy: Int32 {
    switch self {
    case .direct, .im2col: return 0
    case .auto: return 1
    case .winograd: return 2
    }
  }
}

/// A convolution layer; its weights live in a `ParameterStore`.
public struct Conv2D: Layer {
  /// Input channels.
  public let inputChannels: Int
  /// Output channels.
  public let outputChannels: Int
  /// Square kernel side.
  public let kernelSize: Int
  /// Zero padding on every side.
  public let padding: Int
  /// Apply ReLU to the output (fused; backward masks by output > 0).
  public let fusedReLU: Bool
  /// Index of the weight (O, C, k, k) in the store.
  public let weight: Int
  /// Index of the bias (O) in the store.
  public let bias: Int
  /// Largest column matrix in floats (chunks of images are sized to fit).
  public static let columnBudget = 1 << 21

  /// A handle to oneDNN's cached primitives for one shape.
  struct Primitives: @unchecked Sendable {
    let handle: OpaquePointer
  }

  /// A convolution whose parameters are added to `store`, named `prefix.weight` / `prefix.bias`,
  /// weights drawn Kaiming-normal (fan_out, ReLU gain: std = sqrt(2 / (O k k))), biases zero; or,
  /// with `initialization: .pytorch`, weights and biases uniform in +-1/sqrt(I k k) as PyTorch's;
  /// with `.koch`, Koch et al.'s: weights N(0, 0.01), biases N(0.5, 0.01).
  public init(
    inputChannels: Int, outputChannels: Int, kernelSize: Int, padding: Int, fusedReLU: Bool, name prefix: String, initialization: WeightInitialization = .kaiming,
    store: inout ParameterStore, rng: inout NormalSampler
  ) {
    precondition(inputChannels > 0 && outputChannels > 0 && kernelSize > 0 && padding >= 0, "Conv2D(\(inputChannels) -> \(outputChannels), k \(kernelSize), p \(padding))")
    self.inputChannels = inputChannels
    self.outputChannels = outputChannels
    self.kernelSize = kernelSize
    self.padding = padding
    self.fusedReLU = fusedReLU
    let count = outputChannels * inputChannels * kernelSize * kernelSize
    let weights: [Float], biases: [Float]
    switch initialization {
    case .kaiming:
      weights = rng.normal(count: count, std: Float((2.0 / Double(outputChannels * kernelSize * kernelSize)).squareRoot()))
      biases = [Float](repeating: 0, count: outputChannels)
    case .pytorch:
      let bound = Float(1 / Double(inputChannels * kernelSize * kernelSize).squareRoot())
      weights = rng.uniform(count: count, bound: bound)
      biases = rng.uniform(count: outputChannels, bound: bound)
    case .koch:
      weights = rng.normal(count: count, std: 0.01)
      biases = rng.normal(count: outputChannels, mean: 0.5, std: 0.01)
    }
    weight = store.add(name: prefix + ".weight", shape: [outputChannels, inputChannels, kernelSize, kernelSize], value: weights, decays: true)
    bias = store.add(name: prefix + ".bias", shape: [outputChannels], value: biases, decays: false)
  }

  /// Output spatial side for an input side.
  public func outputSize(_ input: Int) -> Int { input + 2 * padding - kernelSize + 1 }

  /// Multiply-adds x 2 for one image of side `inputHeight` x `inputWidth`.
  public func flops(inputHeight: Int, inputWidth: Int) -> Double {
    2 * Double(outputChannels * inputChannels * kernelSize * kernelSize * outputSize(inputHeight) * outputSize(inputWidth))
  }

  /// The oneDNN primitives for an input of this shape, or nil when oneDNN cannot build them
  /// (the caller then uses im2col, five to ten times slower: the reason is noted once for the
  /// trainer to print and record, e.g. a oneDNN that could not create its CPU engine).
  func primitives(batch n: Int, height h: Int, width w: Int, precision: ConvolutionPrecision, algorithm: ConvolutionAlgorithm) -> Primitives? {
    var message = [CChar](repeating: 0, count: 512)
    let built = handle(batch: n, height: h, width: w, precision: precision, algorithm: algorithm, message: &message)
    if built == nil {
      ReasonLog.oneDNNFallbacks.note("a \(kernelSize)x\(kernelSize) convolution \(inputChannels) -> \(outputChannels) on \(n)x\(inputChannels)x\(h)x\(w) (\(precision.rawValue)) runs on im2col: \(messageText(message))")
    }
    return built
  }

  /// The primitives, or why oneDNN could not build them.
  func primitivesOrProblem(batch n: Int, side: Int, precision: ConvolutionPrecision, algorithm: ConvolutionAlgorithm) -> (primitives: Primitives?, problem: String) {
    var message = [CChar](repeating: 0, count: 512)
    let p = handle(batch: n, height: side, width: side, precision: precision, algorithm: algorithm, message: &message)
    return (p, messageText(message))
  }

  private func handle(batch n: Int, height h: Int, width w: Int, precision: ConvolutionPrecision, algorithm: ConvolutionAlgorithm, message: inout [CChar]) -> Primitives? {
    cconv_get(
      Int32(n), Int32(inputChannels), Int32(h), Int32(w), Int32(outputChannels), Int32(kernelSize), Int32(padding), fusedReLU ? 1 : 0,
      precision == .bf16 ? 1 : 0, algorithm.policy, &message, message.count
    ).map { Primitives(handle: $0) }
  }

  /// The implementations oneDNN picks for an input of this shape ("jit:avx512_core / ..."), or
  /// "im2col" and the reason when it builds none.
  public func implementation(batch: Int, side: Int, precision: ConvolutionPrecision, algorithm: ConvolutionAlgorithm = .direct) -> String {
    if algorithm == .im2col { return "im2col" }
    let (p, problem) = primitivesOrProblem(batch: batch, side: side, precision: precision, algorithm: algorithm)
    guard let p else { return "im2col (\(problem))" }
    return String(cString: cconv_implementation(p.handle))
  }

  /// The algorithm of each direction (forward, backward data, backward weights), "direct" or
  /// "winograd", for an input of this shape, and how each was chosen: e.g. "forward winograd
  /// (winograd 1.10 ms, direct 2.02 ms); backward-data direct (...); ...". ["im2col"] x 3 when
  /// oneDNN builds no primitive. Creates (and times, under `.auto`) the primitives when this
  /// shape has not been used yet.
  public func algorithmChoices(batch: Int, side: Int, precision: ConvolutionPrecision, algorithm: ConvolutionAlgorithm) -> (algorithms: [String], detail: String) {
    let im2col = ["im2col", "im2col", "im2col"]
    if algorithm == .im2col { return (im2col, "im2col") }
    let (p, problem) = primitivesOrProblem(batch: batch, side: side, precision: precision, algorithm: algorithm)
    guard let p else { return (im2col, "im2col (\(problem))") }
    return ((0..<3).map { cconv_uses_winograd(p.handle, Int32($0)) != 0 ? "winograd" : "direct" }, String(cString: cconv_choices(p.handle)))
  }

  /// The algorithm of each direction alone (see `algorithmChoices`).
  public func algorithms(batch: Int, side: Int, precision: ConvolutionPrecision, algorithm: ConvolutionAlgorithm) -> [String] {
    algorithmChoices(batch: batch, side: side, precision: precision, algorithm: algorithm).algorithms
  }

  /// y = act(conv(x, W) + b); the cache keeps the primitives it ran on (nil: im2col) for backward.
  public func forward(_ x: Tensor, store: ParameterStore, context: ForwardContext) -> (output: Tensor, cache: LayerCache) {
    precondition(x.shape.count == 4 && x.shape[1] == inputChannels, "Conv2D expects (N, \(inputChannels), H, W), got \(x.shape)")
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (ho, wo) = (outputSize(h), outputSize(w))
    precondition(ho > 0 && wo > 0, "Conv2D: input \(h)x\(w) too small for kernel \(kernelSize) with padding \(padding)")
    if context.algorithm != .im2col, let p = primitives(batch: n, height: h, width: w, precision: context.precision, algorithm: context.algorithm) {
      let inputLayout = x.layout.handle ?? cconv_plain_input_layout(p.handle)
      let outputLayout = context.keepsLayouts ? cconv_output_layout(p.handle) : cconv_plain_output_layout(p.handle)
      var y = Tensor(uninitialized: [n, outputChannels, ho, wo])
      y.layout = TensorLayout(outputLayout)
      // In training, the input as the primitives read it (e.g. converted to bf16) is kept for
      // backward, which then does not convert it again.
      let keptBytes = context.keepsLayouts ? cconv_kept_input_bytes(p.handle, inputLayout) : 0
      var kept = [UInt8](unsafeUninitializedCapacity: keptBytes) { _, count in count = keptBytes }
      let status = store.parameters[weight].value.withUnsafeBufferPointer { wBuf in
        store.parameters[bias].value.withUnsafeBufferPointer { bBuf in
          x.data.withUnsafeBufferPointer { xBuf in
            y.data.withUnsafeMutableBufferPointer { yBuf in
              kept.withUnsafeMutableBytes { keptBuf in
                cconv_forward(p.handle, inputLayout, xBuf.baseAddress!, wBuf.baseAddress!, bBuf.baseAddress!, outputLayout, yBuf.baseAddress!, keptBuf.count > 0 ? keptBuf.baseAddress : nil)
              }
            }
          }
        }
      }
      precondition(status == 0, "oneDNN convolution forward failed for input \(x.shape)")
      return (y, LayerCache(input: x, output: y, saved: .primitives(p, keepsLayouts: context.keepsLayouts, keptInput: kept)))
    }
    let x = x.plain()
    let hw = ho * wo, ckk = c * kernelSize * kernelSize, o = outputChannels
    let chunk = max(1, min(n, Conv2D.columnBudget / (ckk * hw)))
    var y = Tensor(zeros: [n, o, ho, wo])
    var column = [Float](repeating: 0, count: ckk * chunk * hw)
    var product = [Float](repeating: 0, count: o * chunk * hw)
    let relu = fusedReLU
    store.parameters[weight].value.withUnsafeBufferPointer { wBuf in
      store.parameters[bias].value.withUnsafeBufferPointer { bBuf in
        x.data.withUnsafeBufferPointer { xBuf in
          y.data.withUnsafeMutableBufferPointer { yBuf in
            column.withUnsafeMutableBufferPointer { colBuf in
              product.withUnsafeMutableBufferPointer { pBuf in
                var start = 0
                while start < n {
                  let count = min(chunk, n - start)
                  let ld = count * hw
                  im2col(xBuf.baseAddress!, first: start, count: count, channels: c, height: h, width: w, into: colBuf.baseAddress!, ld: ld)
                  gemm(transposeA: false, transposeB: false, m: o, n: ld, k: ckk, wBuf.baseAddress!, lda: ckk, colBuf.baseAddress!, ldb: ld, beta: 0, pBuf.baseAddress!, ldc: ld)
                  let p = UncheckedBox(pBuf.baseAddress!), yb = UncheckedBox(yBuf.baseAddress!), bb = UncheckedBox(bBuf.baseAddress!)
                  parallelFor(o) { channels in
                    for oc in channels {
                      let b = bb.value[oc]
                      for i in 0..<count {
                        let src = p.value + oc * ld + i * hw
                        let dst = yb.value + ((start + i) * o + oc) * hw
                        if relu {
                          for q in 0..<hw { dst[q] = max(src[q] + b, 0) }
                        } else {
                          for q in 0..<hw { dst[q] = src[q] + b }
                        }
                      }
                    }
                  }
                  start += count
                }
              }
            }
          }
        }
      }
    }
    return (y, LayerCache(input: x, output: y, saved: .primitives(nil, keepsLayouts: false, keptInput: [])))
  }

  /// Accumulates dL/dW and dL/db into the store; returns dL/dx (empty when `needInputGradient` is false).
  public func backward(_ dOutput: Tensor, cache: LayerCache, store: inout ParameterStore, needInputGradient: Bool) -> Tensor {
    let x = cache.input
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (ho, wo) = (outputSize(h), outputSize(w))
    precondition(dOutput.shape == [n, outputChannels, ho, wo], "Conv2D backward: dOutput \(dOutput.shape), expected \([n, outputChannels, ho, wo])")
    if case .primitives(let p?, let keepsLayouts, let kept) = cache.saved {
      if keepsLayouts { return layoutBackward(dOutput, cache: cache, primitives: p, keptInput: kept, store: &store, needInputGradient: needInputGradient) }
      return directBackward(dOutput.plain(), cache: cache, primitives: p, store: &store, needInputGradient: needInputGradient)
    }
    let dOutput = dOutput.plain()
    let hw = ho * wo, ckk = c * kernelSize * kernelSize, o = outputChannels
    let chunk = max(1, min(n, Conv2D.columnBudget / (ckk * hw)))
    var dx: Tensor? = needInputGradient ? Tensor(zeros: x.shape) : nil
    var column = [Float](repeating: 0, count: ckk * chunk * hw)
    var gathered = [Float](repeating: 0, count: o * chunk * hw)
    var dBias = [Float](repeating: 0, count: o)
    let relu = fusedReLU
    var dxData = dx?.data ?? []
    dx = nil
    let weights = store.parameters[weight].value
    store.parameters[weight].gradient.withUnsafeMutableBufferPointer { dwBuf in
      weights.withUnsafeBufferPointer { wBuf in
        x.data.withUnsafeBufferPointer { xBuf in
          cache.output.data.withUnsafeBufferPointer { yBuf in
            dOutput.data.withUnsafeBufferPointer { dyBuf in
              column.withUnsafeMutableBufferPointer { colBuf in
                gathered.withUnsafeMutableBufferPointer { gBuf in
                  dBias.withUnsafeMutableBufferPointer { dbBuf in
                    dxData.withUnsafeMutableBufferPointer { dxBuf in
                      var start = 0
                      while start < n {
                        let count = min(chunk, n - start)
                        let ld = count * hw
                        let g = UncheckedBox(gBuf.baseAddress!), dy = UncheckedBox(dyBuf.baseAddress!), y = UncheckedBox(yBuf.baseAddress!)
                        let db = UncheckedBox(dbBuf.baseAddress!)
                        parallelFor(o) { channels in
                          for oc in channels {
                            var sum: Float = 0
                            for i in 0..<count {
                              let src = dy.value + ((start + i) * o + oc) * hw
                              let out = y.value + ((start + i) * o + oc) * hw
                              let dst = g.value + oc * ld + i * hw
                              if relu {
                                for q in 0..<hw { dst[q] = out[q] > 0 ? src[q] : 0 }
                              } else {
                                for q in 0..<hw { dst[q] = src[q] }
                              }
                              var s: Float = 0
                              for q in 0..<hw { s += dst[q] }
                              sum += s
                            }
                            db.value[oc] += sum
                          }
                        }
                        im2col(xBuf.baseAddress!, first: start, count: count, channels: c, height: h, width: w, into: colBuf.baseAddress!, ld: ld)
                        gemm(
                          transposeA: false, transposeB: true, m: o, n: ckk, k: ld, gBuf.baseAddress!, lda: ld, colBuf.baseAddress!, ldb: ld, beta: 1, dwBuf.baseAddress!, ldc: ckk)
                        if needInputGradient {
                          gemm(
                            transposeA: true, transposeB: false, m: ckk, n: ld, k: o, wBuf.baseAddress!, lda: ckk, gBuf.baseAddress!, ldb: ld, beta: 0, colBuf.baseAddress!, ldc: ld
                          )
                          col2im(colBuf.baseAddress!, ld: ld, first: start, count: count, channels: c, height: h, width: w, into: dxBuf.baseAddress!)
                        }
                        start += count
                      }
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
    store.parameters[bias].gradient.withUnsafeMutableBufferPointer { gb in for i in 0..<o { gb[i] += dBias[i] } }
    return needInputGradient ? Tensor(shape: x.shape, data: dxData) : .empty
  }

  /// Backward on oneDNN's primitives: the ReLU mask and the bias gradient here, dW and dx there.
  func directBackward(_ dOutput: Tensor, cache: LayerCache, primitives p: Primitives, store: inout ParameterStore, needInputGradient: Bool) -> Tensor {
    let x = cache.input
    let n = x.shape[0], o = outputChannels, hw = dOutput.shape[2] * dOutput.shape[3]
    let relu = fusedReLU
    // Behind a fused ReLU the gradient is dOutput masked into a new tensor; without one it is
    // dOutput itself (no copy). Either way its per-channel sums are the bias gradient.
    var dBias = [Float](repeating: 0, count: o)
    func reduce(into g: UnsafeMutablePointer<Float>?) {
      dOutput.data.withUnsafeBufferPointer { dyBuf in
        cache.output.data.withUnsafeBufferPointer { yBuf in
          dBias.withUnsafeMutableBufferPointer { dbBuf in
            let g = UncheckedBox(g), dy = UncheckedBox(dyBuf.baseAddress!), y = UncheckedBox(yBuf.baseAddress!)
            let db = UncheckedBox(dbBuf.baseAddress!)
            parallelFor(o) { channels in
              for oc in channels {
                var sum: Float = 0
                for i in 0..<n {
                  let offset = (i * o + oc) * hw
                  if let g = g.value {
                    sum += reluMaskedSum(dy.value + offset, output: y.value + offset, into: g + offset, count: hw)
                  } else {
                    sum += laneSum(dy.value + offset, count: hw)
                  }
                }
                db.value[oc] = sum
              }
            }
          }
        }
      }
    }
    let gradient: Tensor
    if relu {
      var masked = Tensor(uninitialized: dOutput.shape)
      masked.data.withUnsafeMutableBufferPointer { reduce(into: $0.baseAddress!) }
      gradient = masked
    } else {
      reduce(into: nil)
      gradient = dOutput
    }
    var dx = needInputGradient ? Tensor(uninitialized: x.shape) : nil
    let weights = store.parameters[weight].value
    let status = store.parameters[weight].gradient.withUnsafeMutableBufferPointer { dwBuf in
      weights.withUnsafeBufferPointer { wBuf in
        x.data.withUnsafeBufferPointer { xBuf in
          gradient.data.withUnsafeBufferPointer { gBuf in
            let input = cconv_plain_input_layout(p.handle), output = cconv_plain_output_layout(p.handle)
            let xLayout = x.layout.handle(for: x.shape)
            if dx == nil {
              return cconv_backward(p.handle, xLayout, xBuf.baseAddress!, output, gBuf.baseAddress!, output, nil, wBuf.baseAddress!, input, nil, dwBuf.baseAddress!, nil, nil)
            }
            return dx!.data.withUnsafeMutableBufferPointer { dxBuf in
              cconv_backward(p.handle, xLayout, xBuf.baseAddress!, output, gBuf.baseAddress!, output, nil, wBuf.baseAddress!, input, dxBuf.baseAddress!, dwBuf.baseAddress!, nil, nil)
            }
          }
        }
      }
    }
    precondition(status == 0, "oneDNN convolution backward failed for input \(x.shape)")
    store.parameters[bias].gradient.withUnsafeMutableBufferPointer { gb in for i in 0..<o { gb[i] += dBias[i] } }
    return dx ?? .empty
  }

  /// Backward with the tensors in oneDNN's layouts: the ReLU mask, dW, db and dx all on the
  /// primitives (dx in the layout the next layer down reads without a reorder).
  func layoutBackward(_ dOutput: Tensor, cache: LayerCache, primitives p: Primitives, keptInput: [UInt8], store: inout ParameterStore, needInputGradient: Bool) -> Tensor {
    let x = cache.input, y = cache.output
    let inputLayout = x.layout.handle(for: x.shape), outputLayout = y.layout.handle(for: y.shape)
    let gradientLayout = dOutput.layout.handle(for: dOutput.shape)
    let dxLayout = cconv_input_gradient_layout(p.handle)
    var dx = needInputGradient ? Tensor(uninitialized: x.shape) : nil
    dx?.layout = TensorLayout(dxLayout)
    let weights = store.parameters[weight].value
    var dBias = store.parameters[bias].gradient
    store.parameters[bias].gradient = []
    let status = store.parameters[weight].gradient.withUnsafeMutableBufferPointer { dwBuf in
      dBias.withUnsafeMutableBufferPointer { dbBuf in
        weights.withUnsafeBufferPointer { wBuf in
          x.data.withUnsafeBufferPointer { xBuf in
            y.data.withUnsafeBufferPointer { yBuf in
              dOutput.data.withUnsafeBufferPointer { gBuf in
                keptInput.withUnsafeBytes { keptBuf in
                  let kept = keptBuf.count > 0 ? keptBuf.baseAddress : nil
                  guard dx != nil else {
                    return cconv_backward(
                      p.handle, inputLayout, xBuf.baseAddress!, gradientLayout, gBuf.baseAddress!, outputLayout, yBuf.baseAddress!, wBuf.baseAddress!, dxLayout, nil,
                      dwBuf.baseAddress!, dbBuf.baseAddress!, kept)
                  }
                  return dx!.data.withUnsafeMutableBufferPointer { dxBuf in
                    cconv_backward(
                      p.handle, inputLayout, xBuf.baseAddress!, gradientLayout, gBuf.baseAddress!, outputLayout, yBuf.baseAddress!, wBuf.baseAddress!, dxLayout, dxBuf.baseAddress!,
                      dwBuf.baseAddress!, dbBuf.baseAddress!, kept)
                  }
                }
              }
            }
          }
        }
      }
    }
    store.parameters[bias].gradient = dBias
    precondition(status == 0, "oneDNN convolution backward failed for input \(x.shape)")
    return dx ?? .empty
  }

  /// Column matrix of images `first..<first+count` of x into `col` (CKK rows, stride `ld`).
  func im2col(_ x: UnsafePointer<Float>, first: Int, count: Int, channels: Int, height: Int, width: Int, into col: UnsafeMutablePointer<Float>, ld: Int) {
    let k = kernelSize, p = padding
    let ho = outputSize(height), wo = outputSize(width), hw = ho * wo
    let xs = UncheckedBox(x), cs = UncheckedBox(col)
    parallelFor(channels * count) { jobs in
      for job in jobs {
        let i = job / channels, ch = job % channels
        let plane = xs.value + ((first + i) * channels + ch) * height * width
        for ki in 0..<k {
          for kj in 0..<k {
            let row = (ch * k + ki) * k + kj
            let dst = cs.value + row * ld + i * hw
            let lo = max(0, p - kj), hi = min(wo, width + p - kj)
            for oy in 0..<ho {
              let iy = oy + ki - p
              let d = dst + oy * wo
              if iy < 0 || iy >= height || hi <= lo {
                d.update(repeating: 0, count: wo)
                continue
              }
              if lo > 0 { d.update(repeating: 0, count: lo) }
              d.advanced(by: lo).update(from: plane + iy * width + (lo + kj - p), count: hi - lo)
              if hi < wo { d.advanced(by: hi).update(repeating: 0, count: wo - hi) }
            }
          }
        }
      }
    }
  }

  /// Adds a column matrix back into image gradients (the adjoint of `im2col`).
  func col2im(_ col: UnsafePointer<Float>, ld: Int, first: Int, count: Int, channels: Int, height: Int, width: Int, into dx: UnsafeMutablePointer<Float>) {
    let k = kernelSize, p = padding
    let ho = outputSize(height), wo = outputSize(width), hw = ho * wo
    let cs = UncheckedBox(col), ds = UncheckedBox(dx)
    parallelFor(channels * count) { jobs in
      for job in jobs {
        let i = job / channels, ch = job % channels
        let plane = ds.value + ((first + i) * channels + ch) * height * width
        for ki in 0..<k {
          for kj in 0..<k {
            let row = (ch * k + ki) * k + kj
            let src = cs.value + row * ld + i * hw
            let lo = max(0, p - kj), hi = min(wo, width + p - kj)
            guard hi > lo else { continue }
            for oy in 0..<ho {
              let iy = oy + ki - p
              if iy < 0 || iy >= height { continue }
              let s = src + oy * wo
              let d = plane + iy * width + (kj - p)
              for ox in lo..<hi { d[ox] += s[ox] }
            }
          }
        }
      }
    }
  }
}
