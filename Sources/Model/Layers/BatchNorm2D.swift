import CConvolution
import Foundation

// Batch normalisation over (N, H, W) per channel, optional fused ReLU. Training mode uses the
// batch statistics and updates running estimates (momentum 0.1, unbiased variance, as
// PyTorch); inference mode uses the running estimates.
//   x: (N, C, H, W) -> y: (N, C, H, W); gamma, beta, runningMean, runningVar: (C)
// Two implementations: the Swift kernels below on plain tensors (every evaluation, and the
// reference), and in training with `keepsLayouts` oneDNN's primitive (batch norm + ReLU fused)
// on the layout the convolution left its output in.

/// A batch-norm layer; gamma and beta are parameters, the running estimates are buffers.
public struct BatchNorm2D: Layer {
  /// Channels.
  public let channels: Int
  /// Apply ReLU after the affine transform.
  public let fusedReLU: Bool
  /// Index of gamma (init 1).
  public let weight: Int
  /// Index of beta (init 0).
  public let bias: Int
  /// Index of the running mean buffer.
  public let runningMean: Int
  /// Index of the running variance buffer.
  public let runningVariance: Int
  /// Added to the variance.
  public let epsilon: Float = 1e-5
  /// Weight of the new batch in the running estimates.
  public let momentum: Float = 0.1

  /// A batch norm named `prefix.weight`, `.bias`, `.running_mean`, `.running_var`.
  public init(channels: Int, fusedReLU: Bool, name prefix: String, store: inout ParameterStore) {
    self.channels = channels
    self.fusedReLU = fusedReLU
    weight = store.add(name: prefix + ".weight", shape: [channels], value: [Float](repeating: 1, count: channels), decays: false)
    bias = store.add(name: prefix + ".bias", shape: [channels], value: [Float](repeating: 0, count: channels), decays: false)
    runningMean = store.addBuffer(name: prefix + ".running_mean", value: [Float](repeating: 0, count: channels))
    runningVariance = store.addBuffer(name: prefix + ".running_var", value: [Float](repeating: 1, count: channels))
  }

  /// Normalises x: in training mode with the batch statistics (kept in the cache, so that
  /// `updateRunningEstimates` can fold them into the running estimates), otherwise with the
  /// running estimates.
  public func forward(_ x: Tensor, store: ParameterStore, context: ForwardContext) -> (output: Tensor, cache: LayerCache) {
    let training = context.training
    precondition(x.shape.count == 4 && x.shape[1] == channels, "BatchNorm2D expects (N, \(channels), H, W), got \(x.shape)")
    if training && context.keepsLayouts, let result = oneDNNForward(x, store: store) { return result }
    let x = x.plain()
    let (n, c, plane) = (x.shape[0], channels, x.shape[2] * x.shape[3])
    let m = Double(n * plane)
    var mean = [Float](repeating: 0, count: c), inverseStd = [Float](repeating: 0, count: c)
    var batchVariance: [Float]? = nil
    if training {
      var variance = [Float](repeating: 0, count: c)
      x.data.withUnsafeBufferPointer { xb in
        mean.withUnsafeMutableBufferPointer { meanBuf in
          variance.withUnsafeMutableBufferPointer { varBuf in
            inverseStd.withUnsafeMutableBufferPointer { invBuf in
              let xs = UncheckedBox(xb.baseAddress!), ms = UncheckedBox(meanBuf.baseAddress!), vs = UncheckedBox(varBuf.baseAddress!), isd = UncheckedBox(invBuf.baseAddress!)
              let eps = Double(epsilon)
              parallelFor(c) { channels in
                for ch in channels {
                  var sum = 0.0, squares = 0.0
                  for i in 0..<n {
                    let (s, q) = sumAndSquares(xs.value + (i * c + ch) * plane, count: plane)
                    sum += Double(s)
                    squares += Double(q)
                  }
                  let mu = sum / m
                  let v = max(squares / m - mu * mu, 0)
                  ms.value[ch] = Float(mu)
                  vs.value[ch] = Float(v)
                  isd.value[ch] = Float(1 / (v + eps).squareRoot())
                }
              }
            }
          }
        }
      }
      batchVariance = variance
    } else {
      mean = store.buffers[runningMean].value
      inverseStd = store.buffers[runningVariance].value.map { 1 / ($0 + epsilon).squareRoot() }
    }
    var y = Tensor(uninitialized: x.shape)
    let gamma = store.parameters[weight].value, beta = store.parameters[bias].value
    let relu = fusedReLU
    x.data.withUnsafeBufferPointer { xb in
      y.data.withUnsafeMutableBufferPointer { yb in
        let xs = UncheckedBox(xb.baseAddress!), ys = UncheckedBox(yb.baseAddress!)
        parallelFor(n * c) { jobs in
          for job in jobs {
            let ch = job % c
            let scale = gamma[ch] * inverseStd[ch], shift = beta[ch] - mean[ch] * scale
            let src = xs.value + job * plane, dst = ys.value + job * plane
            if relu {
              for j in 0..<plane { dst[j] = max(src[j] * scale + shift, 0) }
            } else {
              for j in 0..<plane { dst[j] = src[j] * scale + shift }
            }
          }
        }
      }
    }
    return (y, LayerCache(input: x, output: y, saved: .statistics(mean: mean, inverseStd: inverseStd, batchVariance: batchVariance)))
  }

  /// The training forward on oneDNN's primitive in x's layout; nil when oneDNN cannot build it
  /// (the Swift kernel runs instead).
  func oneDNNForward(_ x: Tensor, store: ParameterStore) -> (output: Tensor, cache: LayerCache)? {
    var message = [CChar](repeating: 0, count: 256)
    guard let handle = cbnorm_get(x.layout.handle(for: x.shape), fusedReLU ? 1 : 0, epsilon, &message, message.count) else {
      ReasonLog.oneDNNFallbacks.note("batch norm on \(x.shape) (\(x.layout)) runs in Swift: \(messageText(message))")
      return nil
    }
    var y = Tensor(uninitialized: x.shape)
    y.layout = x.layout
    var mean = [Float](repeating: 0, count: channels), variance = [Float](repeating: 0, count: channels)
    var workspace = [UInt8](repeating: 0, count: cbnorm_workspace_size(handle))
    let status = x.data.withUnsafeBufferPointer { xb in
      y.data.withUnsafeMutableBufferPointer { yb in
        store.parameters[weight].value.withUnsafeBufferPointer { gb in
          store.parameters[bias].value.withUnsafeBufferPointer { bb in
            mean.withUnsafeMutableBufferPointer { mb in
              variance.withUnsafeMutableBufferPointer { vb in
                workspace.withUnsafeMutableBytes { wb in
                  cbnorm_forward(handle, xb.baseAddress!, gb.baseAddress!, bb.baseAddress!, yb.baseAddress!, mb.baseAddress!, vb.baseAddress!, wb.baseAddress)
                }
              }
            }
          }
        }
      }
    }
    precondition(status == 0, "oneDNN batch normalisation forward failed for input \(x.shape)")
    return (y, LayerCache(input: x, output: y, saved: .normalization(OneDNNHandle(pointer: handle), mean: mean, variance: variance, workspace: workspace)))
  }

  /// Folds a training forward's batch statistics into the running estimates (momentum 0.1,
  /// unbiased variance, as PyTorch). Does nothing for an inference forward's cache.
  public func updateRunningEstimates(_ cache: LayerCache, store: inout ParameterStore) {
    let mean: [Float], variance: [Float]
    switch cache.saved {
    case .statistics(let m, _, let v?), .normalization(_, let m, let v, _):
      (mean, variance) = (m, v)
    case .normalizationPooled(let state):
      (mean, variance) = (state.mean, state.variance)
    default:
      return
    }
    let m = Double(cache.input.count / channels)
    let unbiased = m > 1 ? Float(m / (m - 1)) : 1
    for ch in 0..<channels {
      store.buffers[runningMean].value[ch] = (1 - momentum) * store.buffers[runningMean].value[ch] + momentum * mean[ch]
      store.buffers[runningVariance].value[ch] = (1 - momentum) * store.buffers[runningVariance].value[ch] + momentum * variance[ch] * unbiased
    }
  }

  /// Accumulates dL/dgamma and dL/dbeta; returns dL/dx.
  public func backward(_ dOutput: Tensor, cache: LayerCache, store: inout ParameterStore, needInputGradient: Bool) -> Tensor {
    if case .normalizationPooled(let state) = cache.saved {
      return pooledBackward(dOutput, cache: cache, state: state, store: &store)
    }
    if case .normalization(let handle, let mean, let variance, let workspace) = cache.saved {
      return oneDNNBackward(dOutput, cache: cache, handle: handle.pointer, mean: mean, variance: variance, workspace: workspace, store: &store)
    }
    guard case .statistics(let means, let inverse, let batchVariance) = cache.saved else { preconditionFailure("BatchNorm2D backward needs its own forward's cache") }
    let dOutput = dOutput.plain()
    let x = cache.input
    precondition(dOutput.shape == x.shape, "BatchNorm2D backward: dOutput \(dOutput.shape), input \(x.shape)")
    let (n, c, plane) = (x.shape[0], channels, x.shape[2] * x.shape[3])
    let m = Float(n * plane)
    var dx = Tensor(uninitialized: x.shape)
    let gamma = store.parameters[weight].value
    var dGamma = [Float](repeating: 0, count: c), dBeta = [Float](repeating: 0, count: c)
    let training = batchVariance != nil, relu = fusedReLU
    x.data.withUnsafeBufferPointer { xb in
      dOutput.data.withUnsafeBufferPointer { db in
        cache.output.data.withUnsafeBufferPointer { yb in
          dx.data.withUnsafeMutableBufferPointer { dxb in
            dGamma.withUnsafeMutableBufferPointer { dgb in
              dBeta.withUnsafeMutableBufferPointer { dbb in
                let xs = UncheckedBox(xb.baseAddress!), ds = UncheckedBox(db.baseAddress!), ys = UncheckedBox(yb.baseAddress!)
                let dxs = UncheckedBox(dxb.baseAddress!), dg = UncheckedBox(dgb.baseAddress!), dbt = UncheckedBox(dbb.baseAddress!)
                parallelFor(c) { channels in
                  for ch in channels {
                    let mu = means[ch], inv = inverse[ch]
                    // Pass 1: the gradient behind the ReLU (kept in dx) and its two sums.
                    var sumDy = 0.0, sumDyCentred = 0.0
                    for i in 0..<n {
                      let offset = (i * c + ch) * plane
                      let g: UnsafePointer<Float>
                      if relu {
                        // The sum comes again with the product below, from the masked values.
                        _ = reluMaskedSum(ds.value + offset, output: ys.value + offset, into: dxs.value + offset, count: plane)
                        g = UnsafePointer(dxs.value + offset)
                      } else {
                        g = ds.value + offset
                      }
                      let (s, t) = sumAndCentredProduct(g, xs.value + offset, mean: mu, count: plane)
                      sumDy += Double(s)
                      sumDyCentred += Double(t)
                    }
                    let sumDyXhat = Float(sumDyCentred) * inv
                    dg.value[ch] = sumDyXhat
                    dbt.value[ch] = Float(sumDy)
                    // Pass 2: dx = gamma * inv * (g - mean(g) - xhat * mean(g * xhat)).
                    let k = gamma[ch] * inv
                    let a = Float(sumDy) / m, b = sumDyXhat / m
                    let kv = Lanes(repeating: k), av = Lanes(repeating: a), muv = Lanes(repeating: mu), sv = Lanes(repeating: inv * b)
                    for i in 0..<n {
                      let offset = (i * c + ch) * plane
                      let x = xs.value + offset, out = dxs.value + offset
                      let g = relu ? UnsafePointer(out) : ds.value + offset
                      var j = 0
                      if training {
                        while j + 8 <= plane {
                          storeLanes(kv * (loadLanes(g, j) - av - (loadLanes(x, j) - muv) * sv), out, j)
                          j += 8
                        }
                        while j < plane {
                          out[j] = k * (g[j] - a - (x[j] - mu) * inv * b)
                          j += 1
                        }
                      } else {
                        while j + 8 <= plane {
                          storeLanes(kv * loadLanes(g, j), out, j)
                          j += 8
                        }
                        while j < plane {
                          out[j] = k * g[j]
                          j += 1
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
    }
    for ch in 0..<c {
      store.parameters[weight].gradient[ch] += dGamma[ch]
      store.parameters[bias].gradient[ch] += dBeta[ch]
    }
    return dx
  }

  /// Backward on oneDNN's primitive: dx in the forward's layout, dgamma and dbeta accumulated.
  func oneDNNBackward(_ dOutput: Tensor, cache: LayerCache, handle: OpaquePointer, mean: [Float], variance: [Float], workspace: [UInt8], store: inout ParameterStore) -> Tensor {
    let x = cache.input
    precondition(dOutput.shape == x.shape, "BatchNorm2D backward: dOutput \(dOutput.shape), input \(x.shape)")
    var dx = Tensor(uninitialized: x.shape)
    dx.layout = x.layout
    var dGamma = [Float](repeating: 0, count: channels), dBeta = [Float](repeating: 0, count: channels)
    let gamma = store.parameters[weight].value, beta = store.parameters[bias].value
    let status = x.data.withUnsafeBufferPointer { xb in
      dOutput.data.withUnsafeBufferPointer { db in
        dx.data.withUnsafeMutableBufferPointer { dxb in
          dGamma.withUnsafeMutableBufferPointer { dgb in
            dBeta.withUnsafeMutableBufferPointer { dbb in
              workspace.withUnsafeBytes { wb in
                cbnorm_backward(
                  handle, xb.baseAddress!, dOutput.layout.handle(for: dOutput.shape), db.baseAddress!, mean, variance, gamma, beta, wb.baseAddress, dxb.baseAddress!,
                  dgb.baseAddress!, dbb.baseAddress!)
              }
            }
          }
        }
      }
    }
    precondition(status == 0, "oneDNN batch normalisation backward failed for input \(x.shape)")
    for ch in 0..<channels {
      store.parameters[weight].gradient[ch] += dGamma[ch]
      store.parameters[bias].gradient[ch] += dBeta[ch]
    }
    return dx
  }
}
