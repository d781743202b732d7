import CConvolution

// 2x2 max pooling, stride 2, floor mode (105 -> 52, as PyTorch): the last row and column of an
// odd input belong to no window and get zero gradient. Ties go to the first maximum in
// row-major window order, as PyTorch's CPU kernel.
//   x: (N, C, H, W) -> y: (N, C, H/2, W/2); the cache keeps the argmax (0...3) per output.
// Two implementations: the Swift kernels below on plain tensors (every evaluation, and the
// reference), and in training with `keepsLayouts` oneDNN's primitive on the input's layout.

/// Max pooling over 2x2 windows.
public struct MaxPool2D: Layer {
  /// A 2x2, stride-2 pool.
  public init() {}

  /// y[n, c, i, j] = max of x[n, c, 2i...2i+1, 2j...2j+1].
  public func forward(_ x: Tensor, store: ParameterStore, context: ForwardContext) -> (output: Tensor, cache: LayerCache) {
    precondition(x.shape.count == 4 && x.shape[2] >= 2 && x.shape[3] >= 2, "MaxPool2D expects (N, C, H >= 2, W >= 2), got \(x.shape)")
    if context.training && context.keepsLayouts, let result = oneDNNForward(x) { return result }
    let x = x.plain()
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (ho, wo) = (h / 2, w / 2)
    var y = Tensor(zeros: [n, c, ho, wo])
    var argmax = [UInt8](repeating: 0, count: n * c * ho * wo)
    x.data.withUnsafeBufferPointer { xb in
      y.data.withUnsafeMutableBufferPointer { yb in
        argmax.withUnsafeMutableBufferPointer { ab in
          let xs = UncheckedBox(xb.baseAddress!), ys = UncheckedBox(yb.baseAddress!), ars = UncheckedBox(ab.baseAddress!)
          parallelFor(n * c) { planes in
            for plane in planes {
              let src = xs.value + plane * h * w
              let dst = ys.value + plane * ho * wo
              let arg = ars.value + plane * ho * wo
              for i in 0..<ho {
                let r0 = src + 2 * i * w, r1 = r0 + w
                for j in 0..<wo {
                  var best = r0[2 * j]
                  var at: UInt8 = 0
                  if r0[2 * j + 1] > best { best = r0[2 * j + 1]; at = 1 }
                  if r1[2 * j] > best { best = r1[2 * j]; at = 2 }
                  if r1[2 * j + 1] > best { best = r1[2 * j + 1]; at = 3 }
                  dst[i * wo + j] = best
                  arg[i * wo + j] = at
                }
              }
            }
          }
        }
      }
    }
    return (y, LayerCache(input: x, output: y, saved: .argmax(argmax)))
  }

  /// Routes each output gradient to its window's maximum.
  public func backward(_ dOutput: Tensor, cache: LayerCache, store: inout ParameterStore, needInputGradient: Bool) -> Tensor {
    // The batch norm before it pooled in its fused forward and takes the pooled gradient.
    if case .pooledByNormalization = cache.saved { return dOutput }
    if case .pooling(let handle, let workspace) = cache.saved {
      var dx = Tensor(uninitialized: cache.input.shape)
      dx.layout = cache.input.layout
      let status = dOutput.data.withUnsafeBufferPointer { db in
        dx.data.withUnsafeMutableBufferPointer { xb in
          workspace.withUnsafeBytes { wb in
            cpool_backward(handle.pointer, dOutput.layout.handle(for: dOutput.shape), db.baseAddress!, wb.baseAddress, xb.baseAddress!)
          }
        }
      }
      precondition(status == 0, "oneDNN pooling backward failed for input \(cache.input.shape)")
      return dx
    }
    guard case .argmax(let argmax) = cache.saved else { preconditionFailure("MaxPool2D backward needs its own forward's cache") }
    let dOutput = dOutput.plain()
    let inputShape = cache.input.shape
    let (n, c, h, w) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
    let (ho, wo) = (h / 2, w / 2)
    precondition(dOutput.shape == [n, c, ho, wo], "MaxPool2D backward: dOutput \(dOutput.shape), expected \([n, c, ho, wo])")
    var dx = Tensor(zeros: inputShape)
    dOutput.data.withUnsafeBufferPointer { db in
      dx.data.withUnsafeMutableBufferPointer { xb in
        argmax.withUnsafeBufferPointer { ab in
          let ds = UncheckedBox(db.baseAddress!), xs = UncheckedBox(xb.baseAddress!), ars = UncheckedBox(ab.baseAddress!)
          parallelFor(n * c) { planes in
            for plane in planes {
              let src = ds.value + plane * ho * wo
              let arg = ars.value + plane * ho * wo
              let dst = xs.value + plane * h * w
              for i in 0..<ho {
                for j in 0..<wo {
                  let a = Int(arg[i * wo + j])
                  dst[(2 * i + (a >> 1)) * w + 2 * j + (a & 1)] += src[i * wo + j]
                }
              }
            }
          }
        }
      }
    }
    return dx
  }

  /// The training forward on oneDNN's primitive in x's layout; nil when oneDNN cannot build it
  /// (the Swift kernel runs instead).
  func oneDNNForward(_ x: Tensor) -> (output: Tensor, cache: LayerCache)? {
    var message = [CChar](repeating: 0, count: 256)
    guard let handle = cpool_get(x.layout.handle(for: x.shape), &message, message.count) else {
      ReasonLog.oneDNNFallbacks.note("max pooling on \(x.shape) (\(x.layout)) runs in Swift: \(messageText(message))")
      return nil
    }
    var y = Tensor(uninitialized: [x.shape[0], x.shape[1], x.shape[2] / 2, x.shape[3] / 2])
    y.layout = TensorLayout(cpool_output_layout(handle))
    var workspace = [UInt8](repeating: 0, count: cpool_workspace_size(handle))
    let status = x.data.withUnsafeBufferPointer { xb in
      y.data.withUnsafeMutableBufferPointer { yb in
        workspace.withUnsafeMutableBytes { wb in cpool_forward(handle, xb.baseAddress!, yb.baseAddress!, wb.baseAddress) }
      }
    }
    precondition(status == 0, "oneDNN pooling forward failed for input \(x.shape)")
    return (y, LayerCache(input: x, output: y, saved: .pooling(OneDNNHandle(pointer: handle), workspace: workspace)))
  }
}
