import CConvolution
import XCTest

@testable import Model

/// The fused batch norm + ReLU + max pooling of training (NormalizationPooling.swift, cbnpool.c)
/// against the two layers run one by one on the Swift reference kernels, in every layout family
/// it takes, with odd sizes (a row and a column outside every window), and inside a network.
final class NormalizationPoolingTests: XCTestCase {
  func random(_ count: Int, seed: UInt64) -> [Float] {
    var rng = NormalSampler(seed: seed)
    return rng.normal(count: count, std: 1)
  }

  /// max |a - b| relative to max |b| (or 1e-3).
  func assertClose(_ ours: [Float], _ reference: [Float], _ what: String, tolerance: Double = 1e-5, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(ours.count, reference.count, what, file: file, line: line)
    let scale = max(Double(reference.map(abs).max() ?? 0), 1e-3)
    let worst = zip(ours, reference).map { abs(Double($0) - Double($1)) }.max() ?? 0
    XCTAssertLessThan(worst / scale, tolerance, "\(what): worst error \(worst) relative to \(scale)", file: file, line: line)
  }

  /// Every kernel set this CPU can run (the AVX-512, AVX2 and plain x86-64 builds of the same
  /// source), whichever oneDNN's instruction set would choose.
  func testFusedLayerMatchesTheTwoLayersOneByOne() throws {
    defer { cbnpool_force_instruction_set(nil) }
    var ran: [String] = []
    for set in ["AVX-512", "AVX2", "x86-64"] where cbnpool_force_instruction_set(set) == 0 {
      XCTAssertEqual(NormalizationPooling.instructionSet, set)
      try checkFusedLayerMatchesTheTwoLayersOneByOne(set)
      ran.append(set)
    }
    XCTAssert(ran.contains("x86-64") && ran.contains("AVX2"), "every machine of this project's kind has AVX2: \(ran)")
  }

  func checkFusedLayerMatchesTheTwoLayersOneByOne(_ set: String) throws {
    // (channel block: 16, 8, or 0 for nhwc; shape)
    let cases: [(Int, [Int])] = [(16, [3, 16, 7, 6]), (16, [2, 32, 6, 6]), (8, [2, 8, 5, 7]), (0, [3, 24, 6, 5]), (0, [2, 64, 4, 4])]
    for (block, shape) in cases {
      let what = "\(set) kernels, block \(block), \(shape)"
      let c = shape[1]
      var store = ParameterStore()
      let norm = BatchNorm2D(channels: c, fusedReLU: true, name: "bn", store: &store)
      let pool = MaxPool2D()
      // Negative scales too: then a window's maximum after the batch norm is its minimum before.
      store.parameters[norm.weight].value = random(c, seed: 1).map { $0 + 0.3 }
      store.parameters[norm.bias].value = random(c, seed: 2).map { 0.5 * $0 }
      let x = Tensor(shape: shape, data: random(shape.reduce(1, *), seed: 3).map { 2 * $0 + 0.7 })
      let layout = try XCTUnwrap(clayout_channels_last(Int32(shape[0]), Int32(c), Int32(shape[2]), Int32(shape[3]), Int32(block)))
      let blocked = x.reordered(to: TensorLayout(layout))
      XCTAssertFalse(blocked.layout.isPlain, what)

      let fused = try XCTUnwrap(norm.forwardPooled(blocked, store: store), what)
      let training = ForwardContext(training: true)
      let (normalized, normCache) = norm.forward(x, store: store, context: training)
      let (pooled, poolCache) = pool.forward(normalized, store: store, context: training)
      XCTAssertEqual(fused.output.shape, pooled.shape, what)
      assertClose(fused.output.plain().data, pooled.data, "\(what): output")

      let dOut = Tensor(shape: pooled.shape, data: random(pooled.count, seed: 4))
      var fusedStore = store, referenceStore = store
      let dFused = norm.backward(pool.backward(dOut, cache: fused.pooling, store: &fusedStore), cache: fused.normalization, store: &fusedStore)
      let dReference = norm.backward(pool.backward(dOut, cache: poolCache, store: &referenceStore), cache: normCache, store: &referenceStore)
      XCTAssertEqual(dFused.layout, blocked.layout, "\(what): dx stays in the input's layout")
      assertClose(dFused.plain().data, dReference.data, "\(what): dx", tolerance: 1e-4)
      assertClose(fusedStore.parameters[norm.weight].gradient, referenceStore.parameters[norm.weight].gradient, "\(what): dgamma", tolerance: 1e-4)
      assertClose(fusedStore.parameters[norm.bias].gradient, referenceStore.parameters[norm.bias].gradient, "\(what): dbeta", tolerance: 1e-4)

      // The running estimates move by the same batch statistics.
      norm.updateRunningEstimates(fused.normalization, store: &fusedStore)
      norm.updateRunningEstimates(normCache, store: &referenceStore)
      assertClose(fusedStore.buffers[norm.runningMean].value, referenceStore.buffers[norm.runningMean].value, "\(what): running mean")
      assertClose(fusedStore.buffers[norm.runningVariance].value, referenceStore.buffers[norm.runningVariance].value, "\(what): running variance")

      // A gradient arriving in another layout (plain here) is read as well.
      var plainStore = store
      let dPlain = norm.backward(pool.backward(dOut.plain(), cache: fused.pooling, store: &plainStore), cache: fused.normalization, store: &plainStore)
      XCTAssertEqual(dPlain.plain().data, dFused.plain().data, "\(what): dy's layout does not change dx")
    }
  }

  func testTheSplitOverThreadsChangesNoBit() throws {
    let shape = [6, 16, 8, 8]
    var store = ParameterStore()
    let norm = BatchNorm2D(channels: 16, fusedReLU: true, name: "bn", store: &store)
    let x = Tensor(shape: shape, data: random(shape.reduce(1, *), seed: 5))
      .reordered(to: TensorLayout(try XCTUnwrap(clayout_channels_last(6, 16, 8, 8, 16))))
    let dOut = Tensor(shape: [6, 16, 4, 4], data: random(6 * 16 * 16, seed: 6))
    let saved = parallelThreads
    defer { parallelThreads = saved }
    var results: [([Float], [Float], [Float])] = []
    for threads in [1, 2, 3] {
      parallelThreads = threads
      var s = store
      let fused = try XCTUnwrap(norm.forwardPooled(x, store: s))
      let dx = norm.backward(MaxPool2D().backward(dOut, cache: fused.pooling, store: &s), cache: fused.normalization, store: &s)
      results.append((fused.output.data, dx.data, s.parameters[norm.weight].gradient))
    }
    for r in results.dropFirst() {
      XCTAssertEqual(r.0, results[0].0)
      XCTAssertEqual(r.1, results[0].1)
      XCTAssertEqual(r.2, results[0].2)
    }
  }

  func testPlainInputsAndBatchNormWithoutReLUAreNotFused() {
    var store = ParameterStore()
    let relu = BatchNorm2D(channels: 16, fusedReLU: true, name: "a", store: &store)
    let linear = BatchNorm2D(channels: 16, fusedReLU: false, name: "b", store: &store)
    let x = Tensor(shape: [2, 16, 4, 4], data: random(512, seed: 7))
    XCTAssertNil(relu.forwardPooled(x, store: store), "plain NCHW: the layers run one by one")
    let blocked = x.reordered(to: TensorLayout(clayout_channels_last(2, 16, 4, 4, 16)))
    XCTAssertNil(linear.forwardPooled(blocked, store: store), "no ReLU to fuse")
    XCTAssertNotNil(relu.forwardPooled(blocked, store: store))
  }

  /// A prototypical network's training step, fused and not: the same loss, gradients and running
  /// estimates (both on oneDNN's convolutions), and the fused path is taken.
  func testNetworkTrainingStepIsTheSameFusedOrNot() throws {
    let config = ModelConfig(backbone: .vgg16, inputSize: 28, batchNorm: true, blocks: [[16], [32], [16]], similarity: .euclidean)
    let (ways, shots, queries) = (5, 1, 3)
    let images = Tensor(shape: [ways * (shots + queries), 1, 28, 28], data: random(ways * (shots + queries) * 784, seed: 8).map { max($0, 0) })
    var fused = EmbeddingNetwork(config: config, seed: 3)
    var separate = fused
    separate.fusesNormalizationPooling = false

    let context = fused.context(training: true)
    let caches = fused.run(fused.backbone, images, context: context, keepCaches: true).1
    let fusedCount = caches.filter { if case .normalizationPooled = $0.saved { return true } else { return false } }.count
    XCTAssertGreaterThan(fusedCount, 0, "no batch norm and pooling pair was fused (layouts \(caches.map { $0.output.layout }))")

    let a = fused.prototypicalLossAndGradients(images: images, ways: ways, shots: shots, queries: queries)
    let b = separate.prototypicalLossAndGradients(images: images, ways: ways, shots: shots, queries: queries)
    XCTAssertEqual(a.loss, b.loss, accuracy: 1e-4 * max(1, abs(b.loss)))
    for (p, q) in zip(fused.store.parameters, separate.store.parameters) {
      // A convolution's bias before batch norm has zero gradient in exact arithmetic: noise.
      if p.name.hasSuffix(".bias"), p.gradient.count == q.gradient.count, fused.store.parameters.contains(where: { $0.name == p.name.replacingOccurrences(of: ".bias", with: ".weight") && $0.value.count > p.value.count }) {
        continue
      }
      assertClose(p.gradient, q.gradient, "grad \(p.name)", tolerance: 1e-3)
    }
    for (p, q) in zip(fused.store.buffers, separate.store.buffers) { assertClose(p.value, q.value, p.name, tolerance: 1e-4) }
  }
}
