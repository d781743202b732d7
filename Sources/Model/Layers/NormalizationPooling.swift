import CConvolution

// Batch norm with its ReLU and the 2x2 max pooling after it, run as one layer in training when
// the batch norm's input is in a channel-blocked layout (nChw16c, nChw8c, nhwc): the fused
// kernels (cbnpool.c) never write the normalised full-resolution tensor, which at a network's
// first block is most of a training step's memory traffic. The two layers stay two layers (their
// parameters, checkpoints and the Swift reference kernels are unchanged): the network's forward
// asks the batch norm for `forwardPooled`, keeps one cache for each layer, and in backward the
// pooling passes the pooled gradient through to the batch norm, which does both layers' work.
//
// Arithmetic: the batch statistics are each image's sums in double, added in image order (the
// same whatever the thread count), with the biased variance as E[x^2] - E[x]^2, as the Swift
// kernel computes them; the backward is the Swift kernel's formula with the gradient routed to
// each window's first maximum, as MaxPool2D routes it.

/// What the fused forward keeps for its backward.
public struct NormalizationPooling: @unchecked Sendable {
  /// The instruction set the fused kernels run here ("AVX-512", "AVX2" or "x86-64"): oneDNN's
  /// effective one, so that ONEDNN_MAX_CPU_ISA=AVX2 runs their AVX2 code as well.
  public static var instructionSet: String { String(cString: cbnpool_instruction_set()) }

  let handle: OpaquePointer
  /// The batch's mean and biased variance (for the running estimates too).
  let mean: [Float]
  let variance: [Float]
  /// Each pooled output's window position (0-3), plus 4 when its ReLU passed it.
  let winners: [UInt8]
  /// The pooled output's layout, in which backward reads the gradient.
  let outputLayout: TensorLayout
}

extension BatchNorm2D {
  /// The training forward of this batch norm (with its ReLU) and the 2x2 max pooling after it;
  /// nil when x's layout is not one the fused kernels take (the layers then run one by one).
  func forwardPooled(_ x: Tensor, store: ParameterStore) -> (output: Tensor, normalization: LayerCache, pooling: LayerCache)? {
    guard fusedReLU, x.shape.count == 4, x.shape[1] == channels, x.shape[2] >= 2, x.shape[3] >= 2 else { return nil }
    func unfused(_ why: String) -> (output: Tensor, normalization: LayerCache, pooling: LayerCache)? {
      ReasonLog.unfusedPairs.note("batch norm + pooling at \(channels) x \(x.shape[2]) x \(x.shape[3]) not fused: \(why)")
      return nil
    }
    guard let layout = x.layout.handle else { return unfused("the convolution left its output in plain NCHW") }
    var message = [CChar](repeating: 0, count: 256)
    guard let handle = cbnpool_get(layout, &message, message.count) else { return unfused(messageText(message)) }
    let (n, c) = (x.shape[0], channels)
    let m = Double(n * x.shape[2] * x.shape[3])
    var sums = [Double](repeating: 0, count: n * c), squares = [Double](repeating: 0, count: n * c)
    x.data.withUnsafeBufferPointer { xb in
      sums.withUnsafeMutableBufferPointer { sb in
        squares.withUnsafeMutableBufferPointer { qb in
          let (xs, ss, qs) = (UncheckedBox(xb.baseAddress!), UncheckedBox(sb.baseAddress!), UncheckedBox(qb.baseAddress!))
          parallelFor(n) { images in cbnpool_statistics(handle, xs.value, images.lowerBound, images.upperBound, ss.value, qs.value) }
        }
      }
    }
    var mean = [Float](repeating: 0, count: c), variance = [Float](repeating: 0, count: c)
    var scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
    let gamma = store.parameters[weight].value, beta = store.parameters[bias].value
    let (sum, square) = (channelTotals(sums, images: n), channelTotals(squares, images: n))
    for ch in 0..<c {
      let mu = sum[ch] / m, v = max(square[ch] / m - mu * mu, 0)
      mean[ch] = Float(mu)
      variance[ch] = Float(v)
      scale[ch] = gamma[ch] * Float(1 / (v + Double(epsilon)).squareRoot())
      shift[ch] = beta[ch] - mean[ch] * scale[ch]
    }
    var y = Tensor(uninitialized: [n, c, x.shape[2] / 2, x.shape[3] / 2])
    y.layout = TensorLayout(cbnpool_output_layout(handle))
    precondition(y.data.count == cbnpool_output_count(handle), "fused pooling output: \(y.data.count) floats, the layout holds \(cbnpool_output_count(handle))")
    var winners = [UInt8](repeating: 0, count: y.data.count)
    x.data.withUnsafeBufferPointer { xb in
      y.data.withUnsafeMutableBufferPointer { yb in
        winners.withUnsafeMutableBufferPointer { wb in
          let (xs, ys, ws) = (UncheckedBox(xb.baseAddress!), UncheckedBox(yb.baseAddress!), UncheckedBox(wb.baseAddress!))
          parallelFor(n) { images in cbnpool_forward(handle, xs.value, scale, shift, ys.value, ws.value, images.lowerBound, images.upperBound) }
        }
      }
    }
    let state = NormalizationPooling(handle: handle, mean: mean, variance: variance, winners: winners, outputLayout: y.layout)
    return (y, LayerCache(input: x, output: y, saved: .normalizationPooled(state)), LayerCache(input: y, output: y, saved: .pooledByNormalization))
  }

  /// Backward of `forwardPooled` from the pooled output's gradient: dL/dx (in x's layout), with
  /// dL/dgamma and dL/dbeta accumulated.
  func pooledBackward(_ dOutput: Tensor, cache: LayerCache, state: NormalizationPooling, store: inout ParameterStore) -> Tensor {
    let x = cache.input
    let (n, c) = (x.shape[0], channels)
    precondition(dOutput.shape == [n, c, x.shape[2] / 2, x.shape[3] / 2], "fused pooling backward: dOutput \(dOutput.shape) for input \(x.shape)")
    let dy = dOutput.reordered(to: state.outputLayout)
    let m = Double(n * x.shape[2] * x.shape[3])
    var sums = [Double](repeating: 0, count: n * c), centred = [Double](repeating: 0, count: n * c)
    x.data.withUnsafeBufferPointer { xb in
      dy.data.withUnsafeBufferPointer { db in
        state.winners.withUnsafeBufferPointer { wb in
          sums.withUnsafeMutableBufferPointer { sb in
            centred.withUnsafeMutableBufferPointer { tb in
              let (xs, ds, ws) = (UncheckedBox(xb.baseAddress!), UncheckedBox(db.baseAddress!), UncheckedBox(wb.baseAddress!))
              let (ss, ts) = (UncheckedBox(sb.baseAddress!), UncheckedBox(tb.baseAddress!))
              parallelFor(n) { images in
                cbnpool_backward_sums(state.handle, xs.value, ds.value, ws.value, state.mean, images.lowerBound, images.upperBound, ss.value, ts.value)
              }
            }
          }
        }
      }
    }
    var k = [Float](repeating: 0, count: c), a = [Float](repeating: 0, count: c), s = [Float](repeating: 0, count: c)
    let gamma = store.parameters[weight].value
    let (sumsDy, sumsCentred) = (channelTotals(sums, images: n), channelTotals(centred, images: n))
    for ch in 0..<c {
      let (sumDy, sumCentred) = (sumsDy[ch], sumsCentred[ch])
      let inverse = 1 / (Double(state.variance[ch]) + Double(epsilon)).squareRoot()
      store.parameters[weight].gradient[ch] += Float(sumCentred * inverse)
      store.parameters[bias].gradient[ch] += Float(sumDy)
      k[ch] = gamma[ch] * Float(inverse)
      a[ch] = Float(sumDy / m)
      s[ch] = Float(inverse * inverse * sumCentred / m)
    }
    var dx = Tensor(uninitialized: x.shape)
    dx.layout = x.layout
    x.data.withUnsafeBufferPointer { xb in
      dy.data.withUnsafeBufferPointer { db in
        state.winners.withUnsafeBufferPointer { wb in
          dx.data.withUnsafeMutableBufferPointer { dxb in
            let (xs, ds, ws, dxs) = (UncheckedBox(xb.baseAddress!), UncheckedBox(db.baseAddress!), UncheckedBox(wb.baseAddress!), UncheckedBox(dxb.baseAddress!))
            parallelFor(n) { images in
              cbnpool_backward(state.handle, xs.value, ds.value, ws.value, state.mean, k, a, s, dxs.value, images.lowerBound, images.upperBound)
            }
          }
        }
      }
    }
    return dx
  }

  /// Per-channel totals of per-image sums (image-major, `channels` per image), added in image
  /// order: the same whatever the images' split over threads.
  private func channelTotals(_ perImage: [Double], images: Int) -> [Double] {
    var totals = [Double](repeating: 0, count: channels)
    for i in 0..<images {
      for ch in 0..<channels { totals[ch] += perImage[i * channels + ch] }
    }
    return totals
  }
}
