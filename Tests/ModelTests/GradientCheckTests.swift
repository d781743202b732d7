import XCTest

@testable import Model

/// Central-difference gradient checks: the fake loss is sum(output * dOutput) accumulated in
/// Double, eps 1e-3, relative tolerance 1e-2 (float32's limit, as tinygrad's tests show).
/// Inputs are kept away from ReLU kinks, |a - b| = 0 and pooling ties.
final class GradientCheckTests: XCTestCase {
  let eps: Float = 1e-3

  func random(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = NormalSampler(seed: seed)
    return rng.normal(count: count, std: scale)
  }

  func fakeLoss(_ output: [Float], _ dOutput: [Float]) -> Double {
    zip(output, dOutput).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
  }

  /// Asserts analytic and numeric gradients agree to `tolerance` relative to the largest of them.
  func assertClose(_ analytic: [Float], _ numeric: [Double], _ what: String, tolerance: Double = 1e-2, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(analytic.count, numeric.count, what, file: file, line: line)
    let scale = max(numeric.map(abs).max() ?? 0, 1e-3)
    var worst = 0.0
    for (a, n) in zip(analytic, numeric) { worst = max(worst, abs(Double(a) - n) / scale) }
    XCTAssertLessThan(worst, tolerance, "\(what): worst relative error \(worst)", file: file, line: line)
  }

  /// d sum(f(x) * dOut) / dx by central differences, for every element of x.
  func numeric(_ x: [Float], indices: [Int]? = nil, step: Float? = nil, _ f: ([Float]) -> [Float], dOutput: [Float]) -> [Double] {
    var x = x
    let h = step ?? eps
    return (indices ?? Array(x.indices)).map { i in
      let saved = x[i]
      x[i] = saved + h
      let plus = fakeLoss(f(x), dOutput)
      x[i] = saved - h
      let minus = fakeLoss(f(x), dOutput)
      x[i] = saved
      return (plus - minus) / (2 * Double(h))
    }
  }

  func testConv2DGradients() {
    for algorithm in ConvolutionAlgorithm.allCases {
      checkConv2DGradients(algorithm: algorithm)
    }
  }

  func checkConv2DGradients(algorithm: ConvolutionAlgorithm) {
    for (k, p, relu) in [(3, 1, false), (4, 0, false), (3, 1, true)] {
      var store = ParameterStore()
      var rng = NormalSampler(seed: 1)
      let conv = Conv2D(inputChannels: 2, outputChannels: 3, kernelSize: k, padding: p, fusedReLU: relu, name: "c", store: &store, rng: &rng)
      store.parameters[conv.bias].value = [0.1, -0.2, 0.3]
      let shape = [2, 2, 6, 5]
      let x = Tensor(shape: shape, data: random(120, seed: 2))
      let (y, cache) = conv.forward(x, store: store, context: ForwardContext(algorithm: algorithm))
      // Keep clear of the ReLU kink: a pre-activation within 1e-2 of 0 would break the check.
      if relu {
        var plain = store
        let check = Conv2D(inputChannels: 2, outputChannels: 3, kernelSize: k, padding: p, fusedReLU: false, name: "c", store: &plain, rng: &rng)
        _ = check
      }
      let dOut = random(y.count, seed: 3)
      store.zeroGradients()
      let dx = conv.backward(Tensor(shape: y.shape, data: dOut), cache: cache, store: &store)
      let fx = { (v: [Float]) in conv.forward(Tensor(shape: shape, data: v), store: store, context: ForwardContext(algorithm: algorithm)).output.data }
      assertClose(dx.data, numeric(x.data, fx, dOutput: dOut), "\(algorithm) conv k\(k) p\(p) relu \(relu) dx")
      let w0 = store.parameters[conv.weight].value
      let fw = { (v: [Float]) -> [Float] in
        var s = store
        s.parameters[conv.weight].value = v
        return conv.forward(x, store: s, context: ForwardContext(algorithm: algorithm)).output.data
      }
      assertClose(store.parameters[conv.weight].gradient, numeric(w0, fw, dOutput: dOut), "\(algorithm) conv k\(k) dW")
      let fb = { (v: [Float]) -> [Float] in
        var s = store
        s.parameters[conv.bias].value = v
        return conv.forward(x, store: s, context: ForwardContext(algorithm: algorithm)).output.data
      }
      assertClose(store.parameters[conv.bias].gradient, numeric(store.parameters[conv.bias].value, fb, dOutput: dOut), "\(algorithm) conv k\(k) db")
      // Backward accumulates: a second call doubles the gradient.
      let first = store.parameters[conv.weight].gradient
      _ = conv.backward(Tensor(shape: y.shape, data: dOut), cache: cache, store: &store)
      for (a, b) in zip(first, store.parameters[conv.weight].gradient) { XCTAssertEqual(2 * a, b, accuracy: 1e-4 * max(1, abs(b))) }
    }
  }

  func testConv2DChunkedEqualsPerImage() {
    // A batch large enough to be split into several column chunks gives the same result as
    // the images one at a time.
    var store = ParameterStore()
    var rng = NormalSampler(seed: 4)
    let conv = Conv2D(inputChannels: 64, outputChannels: 8, kernelSize: 3, padding: 1, fusedReLU: true, name: "c", store: &store, rng: &rng)
    let x = Tensor(shape: [6, 64, 40, 40], data: random(6 * 64 * 1600, seed: 5))
    let whole = conv.forward(x, store: store, context: ForwardContext(algorithm: .im2col)).output
    for i in 0..<6 {
      let one = conv.forward(x.items(i..<(i + 1)), store: store, context: ForwardContext(algorithm: .im2col)).output
      let part = whole.items(i..<(i + 1))
      for (a, b) in zip(one.data, part.data) { XCTAssertEqual(a, b, accuracy: 1e-4) }
    }
  }

  /// oneDNN's direct primitives (fp32 and bf16) against im2col: outputs, dx, dW and db, for
  /// VGG's 3x3 padded convs at the odd sides pooling produces and Koch's unpadded 10x10 on one
  /// channel. fp32 agrees to float rounding; bf16 to its 8-bit mantissa.
  func testDirectConvolutionMatchesIm2col() {
    let cases: [(n: Int, c: Int, h: Int, w: Int, o: Int, k: Int, p: Int, relu: Bool)] = [
      (3, 1, 26, 26, 8, 3, 1, true), (2, 16, 13, 13, 32, 3, 1, true), (2, 8, 7, 9, 16, 3, 1, false), (2, 1, 30, 30, 4, 10, 0, true), (2, 4, 12, 12, 8, 4, 0, true),
    ]
    for (index, t) in cases.enumerated() {
      // The same weights with and without the fused ReLU: bf16 moves outputs near 0 across the
      // kink, which changes the ReLU mask, so bf16 gradients are compared without it.
      func make(relu: Bool) -> (Conv2D, ParameterStore) {
        var store = ParameterStore()
        var rng = NormalSampler(seed: 10 + UInt64(index))
        let conv = Conv2D(inputChannels: t.c, outputChannels: t.o, kernelSize: t.k, padding: t.p, fusedReLU: relu, name: "c", store: &store, rng: &rng)
        store.parameters[conv.bias].value = random(t.o, seed: 20, scale: 0.1)
        return (conv, store)
      }
      let x = Tensor(shape: [t.n, t.c, t.h, t.w], data: random(t.n * t.c * t.h * t.w, seed: 21))
      func run(_ algorithm: ConvolutionAlgorithm, _ precision: ConvolutionPrecision, relu: Bool) -> (y: [Float], dx: [Float], dw: [Float], db: [Float]) {
        let conv: Conv2D
        var s: ParameterStore
        (conv, s) = make(relu: relu)
        s.zeroGradients()
        let (y, cache) = conv.forward(x, store: s, context: ForwardContext(precision: precision, algorithm: algorithm))
        let dOut = Tensor(shape: y.shape, data: random(y.count, seed: 22))
        let dx = conv.backward(dOut, cache: cache, store: &s)
        return (y.data, dx.data, s.parameters[conv.weight].gradient, s.parameters[conv.bias].gradient)
      }
      for (precision, tolerance) in [(ConvolutionPrecision.fp32, Float(1e-4)), (.bf16, 2e-2)] {
        let relu = t.relu && precision == .fp32
        let reference = run(.im2col, .fp32, relu: relu)
        let direct = run(.direct, precision, relu: relu)
        var comparisons = [("dx", direct.dx, reference.dx), ("dW", direct.dw, reference.dw), ("db", direct.db, reference.db)]
        comparisons.append(("y", run(.direct, precision, relu: t.relu).y, run(.im2col, .fp32, relu: t.relu).y))
        for (name, a, b) in comparisons {
          let scale = max(b.map(abs).max() ?? 0, 1e-3)
          let worst = zip(a, b).map { abs($0 - $1) / scale }.max() ?? 0
          XCTAssertLessThan(worst, tolerance, "case \(index) \(precision) \(name): worst relative error \(worst)")
        }
      }
      // (implementation says "im2col (why)" when oneDNN built nothing: compared with "im2col" alone,
      // as this check once was, it could not fail, and a oneDNN without a CPU engine went unseen.)
      let implementation = make(relu: t.relu).0.implementation(batch: t.n, side: t.h, precision: .fp32)
      XCTAssertFalse(implementation.hasPrefix("im2col"), "oneDNN built no primitive for case \(index): \(implementation)")
    }
  }

  /// Float64 convolution (stride 1, zero padding) and its two gradients: the yardstick the
  /// direct and Winograd primitives are both measured against.
  func referenceConvolution(x: [Float], n: Int, c: Int, h: Int, w: Int, weight: [Float], bias: [Float], o: Int, k: Int, p: Int, dy: [Float]) -> (y: [Double], dx: [Double], dw: [Double], db: [Double]) {
    let ho = h + 2 * p - k + 1, wo = w + 2 * p - k + 1
    var y = [Double](repeating: 0, count: n * o * ho * wo)
    var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: weight.count), db = [Double](repeating: 0, count: o)
    for b in 0..<n {
      for oc in 0..<o {
        for i in 0..<ho {
          for j in 0..<wo {
            let out = ((b * o + oc) * ho + i) * wo + j
            var sum = Double(bias[oc])
            let g = Double(dy[out])
            db[oc] += g
            for ic in 0..<c {
              for ki in 0..<k {
                let yy = i + ki - p
                if yy < 0 || yy >= h { continue }
                for kj in 0..<k {
                  let xx = j + kj - p
                  if xx < 0 || xx >= w { continue }
                  let xi = ((b * c + ic) * h + yy) * w + xx, wi = ((oc * c + ic) * k + ki) * k + kj
                  sum += Double(x[xi]) * Double(weight[wi])
                  dx[xi] += g * Double(weight[wi])
                  dw[wi] += g * Double(x[xi])
                }
              }
            }
            y[out] = sum
          }
        }
      }
    }
    return (y, dx, dw, db)
  }

  /// Winograd F(4x4, 3x3) rounds differently from the direct primitive: both are measured
  /// against float64 on VGG-like 3x3 layers (max |error| / max |reference|, printed). Measured
  /// on an AVX-512 EPYC: direct 0.7-10e-7, Winograd 0.7-16e-7 (about 2-5x direct's); the
  /// bounds are 5e-6 and 2e-5.
  func testWinogradAgainstFloat64() throws {
    let cases: [(n: Int, c: Int, h: Int, o: Int)] = [(2, 16, 13, 16), (2, 32, 26, 16), (3, 16, 6, 32), (2, 64, 9, 64)]
    var winogradRan = false
    for (index, t) in cases.enumerated() {
      var store = ParameterStore()
      var rng = NormalSampler(seed: 40 + UInt64(index))
      let conv = Conv2D(inputChannels: t.c, outputChannels: t.o, kernelSize: 3, padding: 1, fusedReLU: false, name: "c", store: &store, rng: &rng)
      store.parameters[conv.bias].value = random(t.o, seed: 41, scale: 0.1)
      let x = random(t.n * t.c * t.h * t.h, seed: 42)
      let dy = random(t.n * t.o * t.h * t.h, seed: 43)
      let reference = referenceConvolution(
        x: x, n: t.n, c: t.c, h: t.h, w: t.h, weight: store.parameters[conv.weight].value, bias: store.parameters[conv.bias].value, o: t.o, k: 3, p: 1, dy: dy)
      func error(_ ours: [Float], _ theirs: [Double]) -> Double {
        let scale = max(theirs.map(abs).max() ?? 0, 1e-12)
        return zip(ours, theirs).map { abs(Double($0) - $1) }.max()! / scale
      }
      var line = "conv \(t.c)->\(t.o) at \(t.h)x\(t.h), batch \(t.n), error against float64 (y, dx, dW, db):"
      for algorithm in [ConvolutionAlgorithm.direct, .winograd] {
        var s = store
        s.zeroGradients()
        let (y, cache) = conv.forward(Tensor(shape: [t.n, t.c, t.h, t.h], data: x), store: s, context: ForwardContext(algorithm: algorithm))
        let dx = conv.backward(Tensor(shape: y.shape, data: dy), cache: cache, store: &s)
        let errors = [error(y.data, reference.y), error(dx.data, reference.dx), error(s.parameters[conv.weight].gradient, reference.dw), error(s.parameters[conv.bias].gradient, reference.db)]
        line += " \(algorithm) " + errors.map { String(format: "%.1e", $0) }.joined(separator: " ")
        let used = conv.algorithms(batch: t.n, side: t.h, precision: .fp32, algorithm: algorithm)
        if algorithm == .winograd {
          winogradRan = winogradRan || used.contains("winograd")
          line += " [\(used.joined(separator: "/"))]"
        } else {
          XCTAssertEqual(used, ["direct", "direct", "direct"], "the fixed path is direct")
        }
        for (name, e) in zip(["y", "dx", "dW", "db"], errors) {
          XCTAssertLessThan(e, algorithm == .direct ? 5e-6 : 2e-5, "case \(index) \(algorithm) \(name)")
        }
      }
      print(line)
    }
    try XCTSkipUnless(winogradRan, "oneDNN \(oneDNNVersion) built no Winograd primitive on this CPU (2.6 builds it on AVX-512; the 3.x of PyPI, which runs on a SYCL device, builds none): only the fallback was checked")
  }

  /// Central differences through the Winograd path itself, on a sample of inputs and weights.
  /// Without the ReLU the convolution is linear in x and in W, so a large step (0.05) is exact
  /// and keeps float32 rounding of the 1,152 summed outputs out of the difference.
  func testWinogradGradientCheck() throws {
    var store = ParameterStore()
    var rng = NormalSampler(seed: 50)
    let conv = Conv2D(inputChannels: 16, outputChannels: 16, kernelSize: 3, padding: 1, fusedReLU: false, name: "c", store: &store, rng: &rng)
    store.parameters[conv.bias].value = random(16, seed: 51, scale: 0.1)
    let shape = [2, 16, 6, 6]
    let x = random(2 * 16 * 36, seed: 52)
    try XCTSkipUnless(conv.algorithms(batch: 2, side: 6, precision: .fp32, algorithm: .winograd).allSatisfy { $0 == "winograd" }, "oneDNN \(oneDNNVersion) has no Winograd primitive on this CPU")
    let context = ForwardContext(algorithm: .winograd)
    let (y, cache) = conv.forward(Tensor(shape: shape, data: x), store: store, context: context)
    let dOut = random(y.count, seed: 53)
    store.zeroGradients()
    let dx = conv.backward(Tensor(shape: y.shape, data: dOut), cache: cache, store: &store)
    let sample = Array(stride(from: 0, to: x.count, by: 23))
    let fx = { (v: [Float]) in conv.forward(Tensor(shape: shape, data: v), store: store, context: context).output.data }
    assertClose(sample.map { dx.data[$0] }, numeric(x, indices: sample, step: 0.05, fx, dOutput: dOut), "winograd dx")
    let w0 = store.parameters[conv.weight].value
    let wSample = Array(stride(from: 0, to: w0.count, by: 37))
    let fw = { (v: [Float]) -> [Float] in
      var s = store
      s.parameters[conv.weight].value = v
      return conv.forward(Tensor(shape: shape, data: x), store: s, context: context).output.data
    }
    assertClose(wSample.map { store.parameters[conv.weight].gradient[$0] }, numeric(w0, indices: wSample, step: 0.05, fw, dOutput: dOut), "winograd dW")
  }

  func testMaxPoolGradientsAndFloor() {
    checkMaxPoolGradientsAndFloor(context: .inference)
    checkMaxPoolGradientsAndFloor(context: ForwardContext(training: true, keepsLayouts: true))
  }

  /// With `context.keepsLayouts` in training, oneDNN's pooling primitive; otherwise the Swift kernel.
  func checkMaxPoolGradientsAndFloor(context: ForwardContext) {
    // Distinct values 0.01 apart: no tie can flip within eps.
    var values = (0..<(2 * 3 * 5 * 7)).map { Float($0) * 0.01 }
    var rng = NormalSampler(seed: 9)
    let keys = rng.normal(count: values.count, std: 1)
    values = zip(keys, values).sorted { $0.0 < $1.0 }.map(\.1)
    let x = Tensor(shape: [2, 3, 5, 7], data: values)
    let pool = MaxPool2D()
    var none = ParameterStore()
    let (y, cache) = pool.forward(x, store: none, context: context)
    XCTAssertEqual(y.shape, [2, 3, 2, 3])
    let dOut = random(y.count, seed: 10)
    let dx = pool.backward(Tensor(shape: y.shape, data: dOut), cache: cache, store: &none).plain()
    assertClose(dx.data, numeric(x.data, { pool.forward(Tensor(shape: [2, 3, 5, 7], data: $0), store: none, context: context).output.plain().data }, dOutput: dOut), "maxpool dx")
    // Ties go to the first maximum, as PyTorch.
    let tie = pool.forward(Tensor(shape: [1, 1, 2, 2], data: [1, 1, 1, 1]), store: none, context: context)
    let routed = pool.backward(Tensor(shape: [1, 1, 1, 1], data: [5]), cache: tie.cache, store: &none).plain()
    XCTAssertEqual(routed.data, [5, 0, 0, 0], "keepsLayouts \(context.keepsLayouts)")
  }

  func testLinearGradients() {
    var store = ParameterStore()
    var rng = NormalSampler(seed: 11)
    let linear = Linear(inputFeatures: 7, outputFeatures: 4, name: "l", std: 0.5, store: &store, rng: &rng)
    store.parameters[linear.bias].value = [0.1, 0.2, -0.3, 0.4]
    let x = Tensor(shape: [3, 7], data: random(21, seed: 12))
    let (y, cache) = linear.forward(x, store: store, context: .inference)
    let dOut = random(y.count, seed: 13)
    let dx = linear.backward(Tensor(shape: y.shape, data: dOut), cache: cache, store: &store)
    assertClose(dx.data, numeric(x.data, { linear.forward(Tensor(shape: [3, 7], data: $0), store: store, context: .inference).output.data }, dOutput: dOut), "linear dx")
    let fw = { (v: [Float]) -> [Float] in
      var s = store
      s.parameters[linear.weight].value = v
      return linear.forward(x, store: s, context: .inference).output.data
    }
    assertClose(store.parameters[linear.weight].gradient, numeric(store.parameters[linear.weight].value, fw, dOutput: dOut), "linear dW")
    let fb = { (v: [Float]) -> [Float] in
      var s = store
      s.parameters[linear.bias].value = v
      return linear.forward(x, store: s, context: .inference).output.data
    }
    assertClose(store.parameters[linear.bias].gradient, numeric(store.parameters[linear.bias].value, fb, dOutput: dOut), "linear db")
  }

  func testBatchNormGradients() {
    // A plane of 6 runs only the scalar tails of the eight-lane loops; 5x5 = 25 runs both.
    for keepsLayouts in [false, true] {
      checkBatchNormGradients(shape: [4, 3, 3, 2], keepsLayouts: keepsLayouts)
      checkBatchNormGradients(shape: [3, 3, 5, 5], keepsLayouts: keepsLayouts)
    }
  }

  /// With `keepsLayouts`, oneDNN's batch-norm primitive; otherwise the Swift kernel.
  func checkBatchNormGradients(shape: [Int], keepsLayouts: Bool) {
    var store = ParameterStore()
    let norm = BatchNorm2D(channels: 3, fusedReLU: false, name: "bn", store: &store)
    store.parameters[norm.weight].value = [1.5, 0.7, -1.1]
    store.parameters[norm.bias].value = [0.2, -0.1, 0.3]
    let x = Tensor(shape: shape, data: random(shape.reduce(1, *), seed: 14))
    let training = ForwardContext(training: true, keepsLayouts: keepsLayouts)
    let (y, cache) = norm.forward(x, store: store, context: training)
    let dOut = random(y.count, seed: 15)
    let dx = norm.backward(Tensor(shape: shape, data: dOut), cache: cache, store: &store).plain()
    let fx = { (v: [Float]) -> [Float] in norm.forward(Tensor(shape: shape, data: v), store: store, context: training).output.plain().data }
    assertClose(dx.data, numeric(x.data, fx, dOutput: dOut), "batchnorm dx \(keepsLayouts)")
    let fg = { (v: [Float]) -> [Float] in
      var s = store
      s.parameters[norm.weight].value = v
      return norm.forward(x, store: s, context: training).output.data
    }
    assertClose(store.parameters[norm.weight].gradient, numeric(store.parameters[norm.weight].value, fg, dOutput: dOut), "batchnorm dgamma")
    let fb = { (v: [Float]) -> [Float] in
      var s = store
      s.parameters[norm.bias].value = v
      return norm.forward(x, store: s, context: training).output.data
    }
    assertClose(store.parameters[norm.bias].gradient, numeric(store.parameters[norm.bias].value, fb, dOutput: dOut), "batchnorm dbeta")

    // The fused ReLU equals masking the output gradient by output > 0 (kinks are everywhere
    // in a normalised batch, so it is checked exactly rather than by differences).
    var reluStore = ParameterStore()
    let fused = BatchNorm2D(channels: 3, fusedReLU: true, name: "bn", store: &reluStore)
    reluStore.parameters = store.parameters
    reluStore.zeroGradients()
    let (yr, reluCache) = fused.forward(x, store: reluStore, context: training)
    let yrPlain = yr.plain(), yPlain = y.plain()
    let masked = zip(dOut, yrPlain.data).map { $1 > 0 ? $0 : 0 }
    var plainStore = reluStore
    let dxFused = fused.backward(Tensor(shape: shape, data: dOut), cache: reluCache, store: &reluStore)
    let dxPlain = norm.backward(Tensor(shape: shape, data: masked), cache: cache, store: &plainStore)
    for (a, b) in zip(dxFused.plain().data, dxPlain.plain().data) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    XCTAssertEqual(yrPlain.data, yPlain.data.map { max($0, 0) })
  }

  func testBatchNormRunningStatisticsAndInference() {
    var store = ParameterStore()
    let norm = BatchNorm2D(channels: 1, fusedReLU: false, name: "bn", store: &store)
    let x = Tensor(shape: [2, 1, 1, 2], data: [1, 2, 3, 4])
    // A forward reads the store and changes nothing, in either mode; the running estimates
    // move only when the training forward's cache is folded in.
    let (_, cache) = norm.forward(x, store: store, context: ForwardContext(training: true))
    XCTAssertEqual(store.buffers[norm.runningMean].value, [0])
    XCTAssertEqual(store.buffers[norm.runningVariance].value, [1])
    norm.updateRunningEstimates(norm.forward(x, store: store, context: .inference).cache, store: &store)
    XCTAssertEqual(store.buffers[norm.runningMean].value, [0], "an inference cache changes no estimate")
    norm.updateRunningEstimates(cache, store: &store)
    XCTAssertEqual(store.buffers[norm.runningMean].value[0], 0.25, accuracy: 1e-6)  // 0.1 * 2.5
    XCTAssertEqual(store.buffers[norm.runningVariance].value[0], 0.9 + 0.1 * (5.0 / 3.0), accuracy: 1e-5)  // unbiased 1.667
    let y = norm.forward(x, store: store, context: .inference).output
    XCTAssertEqual(y.data[0], (1 - 0.25) / (store.buffers[norm.runningVariance].value[0] + 1e-5).squareRoot(), accuracy: 1e-5)
  }

  func testSigmoidL1AndLoss() {
    let x = random(10, seed: 16)
    let dOut = random(10, seed: 17)
    var none = ParameterStore()
    for layer: any Layer in [Sigmoid(), ReLU()] {
      let (_, cache) = layer.forward(Tensor(shape: [10], data: x), store: none, context: .inference)
      let numericGradient = numeric(x, { layer.forward(Tensor(shape: [10], data: $0), store: none, context: .inference).output.data }, dOutput: dOut)
      assertClose(layer.backward(Tensor(shape: [10], data: dOut), cache: cache, store: &none).data, numericGradient, "\(type(of: layer))")
    }
    let flat = Flatten().forward(Tensor(shape: [2, 5], data: x).reshaped([2, 5, 1, 1]), store: none, context: .inference)
    XCTAssertEqual(flat.output.shape, [2, 5])
    XCTAssertEqual(Flatten().backward(Tensor(shape: [2, 5], data: dOut), cache: flat.cache, store: &none).shape, [2, 5, 1, 1])

    let a = random(12, seed: 18), b = a.enumerated().map { $1 + ($0 % 2 == 0 ? 0.3 : -0.4) }  // |a - b| well away from 0
    let dD = random(12, seed: 19)
    let (da, db) = L1Distance.backward(Tensor(shape: [3, 4], data: dD), Tensor(shape: [3, 4], data: a), Tensor(shape: [3, 4], data: b))
    assertClose(da.data, numeric(a, { L1Distance.forward(Tensor(shape: [3, 4], data: $0), Tensor(shape: [3, 4], data: b)).data }, dOutput: dD), "l1 da")
    assertClose(db.data, numeric(b, { L1Distance.forward(Tensor(shape: [3, 4], data: a), Tensor(shape: [3, 4], data: $0)).data }, dOutput: dD), "l1 db")

    let logits: [Float] = [-30, -2, -0.5, 0, 0.7, 3, 40]
    let labels: [Float] = [0, 1, 0, 1, 1, 0, 1]
    let (loss, grad) = BinaryCrossEntropy.lossAndGradient(logits: logits, labels: labels)
    XCTAssertTrue(loss.isFinite)
    let numericGrad = numeric(logits, { [Float(BinaryCrossEntropy.lossAndGradient(logits: $0, labels: labels).loss)] }, dOutput: [1])
    assertClose(grad, numericGrad, "bce dlogits")
    // Stable at extremes: log(1 + e^30) computed without overflow.
    XCTAssertEqual(BinaryCrossEntropy.lossAndGradient(logits: [100], labels: [0]).loss, 100, accuracy: 1e-9)
  }

  func testWholeSiameseStepGradients() {
    // The fake loss sum(logits * dLogits) with head weights of order 1, so that eps-sized
    // changes move the logits well above float32 rounding. BCE's own gradient is checked above.
    for config in [
      ModelConfig(backbone: .vgg16, inputSize: 12, blocks: [[3, 3], [4]], headHidden: 5, headActivation: .relu),
      ModelConfig(backbone: .vgg16, inputSize: 8, batchNorm: true, blocks: [[3], [4]], headHidden: 6, headActivation: .none),
      ModelConfig(backbone: .koch, inputSize: 65, width: 1.0 / 16),
    ] {
      var network = EmbeddingNetwork(config: config, seed: 21)
      // The Swift batch-norm and pooling kernels (statistics summed in Double): through
      // oneDNN's float batch norm the logits move by one float rounding step where a conv bias
      // feeds batch norm, which is as large as these differences. The oneDNN path is tied to
      // this one by testOneDNNLayoutsMatchSwiftKernels and to PyTorch by the fixtures.
      network.keepsLayouts = false
      for i in network.store.parameters.indices {
        let parameter = network.store.parameters[i]
        let n = parameter.value.count
        if parameter.name.hasSuffix("bias") && !parameter.name.hasPrefix("head") {
          network.store.parameters[i].value = random(n, seed: UInt64(30 + i), scale: 0.05)
        } else if parameter.name.hasPrefix("head") || parameter.name.hasPrefix("backbone.fc") {
          network.store.parameters[i].value = random(n, seed: UInt64(60 + i), scale: 2 / Float(parameter.shape.last!).squareRoot())
        }
      }
      let s = config.inputSize
      let left = Tensor(shape: [3, 1, s, s], data: random(3 * s * s, seed: 22).map { abs($0) })
      let right = Tensor(shape: [3, 1, s, s], data: random(3 * s * s, seed: 23).map { abs($0) })
      let dLogits = random(3, seed: 24)
      var analytic = network
      analytic.store.zeroGradients()
      let (_, cache) = analytic.forward(left: left, right: right, training: true)
      analytic.backward(dLogits: dLogits, cache: cache)
      // A whole network has ReLU kinks and pooling ties everywhere, and in one parameter it is
      // piecewise linear (or smooth, with BN and sigmoid). When the forward and backward
      // difference quotients agree, no kink lies within eps and the central difference must
      // match. When they disagree, a kink does: the analytic gradient (the slope at the point)
      // must then match the side without one; entries with kinks on both sides are counted and
      // may be at most a quarter.
      let noise = quotientNoise(network, cache, dLogits)
      var checked = 0, undecided = 0
      for p in network.store.parameters.indices {
        let count = network.store.parameters[p].value.count
        let picks = Array(Set((0..<6).map { ($0 * 7919 + p * 31) % count })).sorted()
        let base = network.store.parameters[p].value
        let f = { (v: [Float]) -> Double in
          var copy = network
          copy.store.parameters[p].value = v
          return self.fakeLoss(copy.forward(left: left, right: right, training: true).logits, dLogits)
        }
        let centre = f(base)
        for i in picks {
          var v = base
          v[i] = base[i] + eps
          let plus = f(v)
          v[i] = base[i] - eps
          let minus = f(v)
          let forward = (plus - centre) / Double(eps), backward = (centre - minus) / Double(eps), central = (plus - minus) / (2 * Double(eps))
          let a = Double(analytic.store.parameters[p].gradient[i])
          let scale = max(abs(central), abs(forward), abs(backward))
          let name = "\(config.backbone) \(network.store.parameters[p].name)[\(i)]"
          // A kink shows as one-sided quotients that disagree by more than 1% of the larger
          // (at least 3e-4: below that, rounding alone can separate them). Where none shows,
          // the central quotient must match to 2% plus what rounding can move it by.
          let kinkThreshold = 1e-2 * max(scale, 3e-2)
          if abs(forward - backward) <= kinkThreshold {
            checked += 1
            XCTAssertLessThan(abs(a - central), 2e-2 * scale + noise, "\(name): analytic \(a), numeric \(central), rounding bound \(noise)")
          } else if abs(a - forward) <= kinkThreshold || abs(a - backward) <= kinkThreshold {
            checked += 1
          } else {
            undecided += 1
          }
        }
      }
      XCTAssertLessThanOrEqual(undecided * 4, checked + undecided, "\(config.backbone): \(undecided) of \(checked + undecided) entries undecidable")
    }
  }

  /// How far float32 rounding can move a central difference quotient of the fake loss
  /// sum_j z_j * dLogits_j of a whole network, from the arithmetic of its last layer.
  ///
  /// Every perturbation reaches the loss through the head's last Linear, z_j = b + sum_k w_k x_jk
  /// over n = fanIn + 1 terms, where the magnitudes are largest (the test scales the head to
  /// order-1 weights). Recursive summation errs by at most gamma_n * S_j, S_j = |b| + sum_k |w_k x_jk|
  /// (Higham, Accuracy and Stability of Numerical Algorithms, 3.1); a blocked or FMA kernel
  /// (oneDNN's AVX2 and AVX-512 GEMMs sum in different orders) stays within the same bound. With
  /// E_j = n u S_j, u = 2^-24, the quotient (plus - minus) / 2 eps errs by at most
  /// sum_j |dLogits_j| (E_j + E_j) / (2 eps). The check used to allow a fixed 2% of
  /// max(|gradient|, 3e-2), an absolute 6e-4 for small gradients, which sits below this bound
  /// (about 6e-3 for the first network here): on an AVX2-only CPU, whose GEMM sums in another
  /// order, two head biases with gradients near 0.03 missed by 1e-3, about one rounding step of
  /// the logits divided by eps.
  func quotientNoise(_ network: EmbeddingNetwork, _ cache: ForwardCache, _ dLogits: [Float]) -> Double {
    guard let last = network.head.last as? Linear, let input = cache.head.last?.input else {
      XCTFail("the head must end in a Linear")
      return 0
    }
    let weight = network.store.parameters[last.weight].value, bias = network.store.parameters[last.bias].value
    let fanIn = weight.count, u = Double(Float.ulpOfOne) / 2
    precondition(bias.count == 1 && input.count == fanIn * dLogits.count, "one logit per row of the head's input")
    var noise = 0.0
    for j in dLogits.indices {
      var magnitude = Double(abs(bias[0]))
      for k in 0..<fanIn { magnitude += Double(abs(weight[k] * input.data[j * fanIn + k])) }
      noise += Double(abs(dLogits[j])) * Double(fanIn + 1) * u * magnitude / Double(eps)
    }
    return noise
  }

  /// A training step with the backbone in oneDNN's layouts (convolution, batch norm + ReLU and
  /// pooling on oneDNN's primitives, gradients kept blocked) against the same step on plain
  /// tensors with the Swift batch-norm and pooling kernels: logits, embeddings, every gradient
  /// and the running estimates, for networks whose channels fill oneDNN's blocks of 16 and for
  /// networks whose channels do not (padded layouts fall back to plain between layers).
  func testOneDNNLayoutsMatchSwiftKernels() {
    let configs = [
      ModelConfig(backbone: .vgg16, inputSize: 21, blocks: [[16, 16], [32]], headHidden: 8, headActivation: .relu),
      ModelConfig(backbone: .vgg16, inputSize: 21, batchNorm: true, blocks: [[16, 32], [32, 16]], headHidden: 8, headActivation: .relu),
      ModelConfig(backbone: .vgg16, inputSize: 13, batchNorm: true, blocks: [[3, 5], [4]], headHidden: 6, headActivation: .none),
      ModelConfig(backbone: .vgg16, inputSize: 12, blocks: [[3, 3], [4]], headHidden: 5, headActivation: .relu),
      ModelConfig(backbone: .koch, inputSize: 65, width: 1.0 / 4),
    ]
    for config in configs {
      let s = config.inputSize
      let images = Tensor(shape: [6, 1, s, s], data: random(6 * s * s, seed: 41).map { abs($0) })
      let pairs = [(0, 1), (2, 3), (4, 5), (0, 5)]
      let labels: [Float] = [1, 0, 1, 0]
      func step(_ algorithm: ConvolutionAlgorithm, _ precision: ConvolutionPrecision, keepsLayouts: Bool) -> (loss: Double, logits: [Float], network: EmbeddingNetwork) {
        var network = EmbeddingNetwork(config: config, seed: 5)
        network.convolutionAlgorithm = algorithm
        network.precision = precision
        network.keepsLayouts = keepsLayouts
        let (loss, logits) = network.lossAndGradients(images: images, pairs: pairs, labels: labels)
        return (loss, logits, network)
      }
      // A conv bias feeding batch norm has zero gradient in exact arithmetic: only its size is checked.
      func feedsBatchNorm(_ p: Parameter, in network: EmbeddingNetwork) -> Bool {
        guard config.batchNorm, p.name.hasPrefix("backbone."), p.name.hasSuffix(".bias"), let w = network.store.index(of: p.name.dropLast(".bias".count) + ".weight") else { return false }
        return network.store.parameters[w].shape.count == 4
      }
      for algorithm in [ConvolutionAlgorithm.direct, .winograd] {
        let reference = step(algorithm, .fp32, keepsLayouts: false), blocked = step(algorithm, .fp32, keepsLayouts: true)
        let what = "\(config.backbone) \(config.vggBlocks) bn \(config.batchNorm) \(algorithm)"
        XCTAssertEqual(reference.loss, blocked.loss, accuracy: 1e-5 * max(1, abs(reference.loss)), what)
        XCTAssertLessThan(maxRelativeError(blocked.logits, reference.logits), 1e-4, "\(what) logits")
        for (a, b) in zip(reference.network.store.parameters, blocked.network.store.parameters) {
          if feedsBatchNorm(a, in: reference.network) {
            let w = reference.network.store.index(of: a.name.dropLast(".bias".count) + ".weight")!
            let scale = Double(reference.network.store.parameters[w].gradient.map(abs).max() ?? 0)
            XCTAssertLessThan(Double(b.gradient.map(abs).max() ?? 0), 1e-3 * max(scale, 1), "\(what) \(a.name) should be ~0 (weight gradient up to \(scale))")
            continue
          }
          XCTAssertLessThan(maxRelativeError(b.gradient, a.gradient), 1e-4, "\(what) grad \(a.name)")
        }
        for (a, b) in zip(reference.network.store.buffers, blocked.network.store.buffers) {
          XCTAssertLessThan(maxRelativeError(b.value, a.value), 1e-5, "\(what) \(a.name)")
        }
      }
      // bf16 (with oneDNN's layouts kept, each converted input is kept from forward for
      // backward). Rounding to 8 bits moves these tiny networks' small gradients by tens of
      // percent of their largest entry on either path, so each path is measured against the
      // fp32 step by the cosine of the angle between the gradients, layer by layer, and the
      // blocked path must stay as close as the plain one.
      let exact = step(.direct, .fp32, keepsLayouts: false)
      let plain16 = step(.direct, .bf16, keepsLayouts: false), blocked16 = step(.direct, .bf16, keepsLayouts: true)
      let what = "\(config.backbone) \(config.vggBlocks) bn \(config.batchNorm) bf16"
      var worst = (plain: 1.0, blocked: 1.0)
      for p in exact.network.store.parameters.indices where !feedsBatchNorm(exact.network.store.parameters[p], in: exact.network) {
        let truth = exact.network.store.parameters[p].gradient
        let plainCosine = cosine(plain16.network.store.parameters[p].gradient, truth)
        let blockedCosine = cosine(blocked16.network.store.parameters[p].gradient, truth)
        worst = (min(worst.plain, plainCosine), min(worst.blocked, blockedCosine))
        XCTAssertGreaterThan(blockedCosine, plainCosine - 0.01, "\(what) grad \(exact.network.store.parameters[p].name): cosine with fp32, plain path \(plainCosine), blocked \(blockedCosine)")
      }
      XCTAssertGreaterThan(cosine(blocked16.logits, exact.logits), 0.99, "\(what) logits")
      print("\(what): lowest cosine of a layer's gradient with fp32's, plain path \(String(format: "%.4f", worst.plain)), blocked path \(String(format: "%.4f", worst.blocked))")
    }
  }

  /// The cosine of the angle between two vectors (1 when both are zero).
  func cosine(_ a: [Float], _ b: [Float]) -> Double {
    let dot = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    let na = a.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot(), nb = b.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
    return na == 0 && nb == 0 ? 1 : dot / max(na * nb, 1e-300)
  }

  /// max |a - b| / max |b| (0 when both are zero).
  func maxRelativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
    let scale = Double(b.map(abs).max() ?? 0)
    let worst = zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
    return scale == 0 ? worst : worst / scale
  }

  func testSharedWeightsReceiveBothBranchesGradients() {
    // Swapping left and right must not change the loss or any gradient: the L1 join is
    // symmetric and both branches go through the same weights.
    let config = ModelConfig(backbone: .vgg16, inputSize: 8, blocks: [[3], [4]], headHidden: 4)
    var a = EmbeddingNetwork(config: config, seed: 3)
    var b = a
    let left = Tensor(shape: [2, 1, 8, 8], data: random(128, seed: 1).map(abs))
    let right = Tensor(shape: [2, 1, 8, 8], data: random(128, seed: 2).map(abs))
    let lossA = a.lossAndGradients(left: left, right: right, labels: [1, 0]).loss
    let lossB = b.lossAndGradients(left: right, right: left, labels: [1, 0]).loss
    XCTAssertEqual(lossA, lossB, accuracy: 1e-6)
    for (pa, pb) in zip(a.store.parameters, b.store.parameters) {
      for (ga, gb) in zip(pa.gradient, pb.gradient) { XCTAssertEqual(ga, gb, accuracy: 1e-5 * max(1, abs(ga))) }
    }
  }
}
