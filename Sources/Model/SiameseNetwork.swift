// The weight-shared (Siamese) network of the reference PyTorch project and of Koch et al. 2015.
//
// Reference (PyTorch): VGG16 backbone at 105x105, |f1 - f2| -> Linear(4608, 512) -> Linear(512, 1)
// -> logit, sigmoid similarity, BCE on same/different pairs. Deviations: one input channel
// (trained from scratch, so no ImageNet replication to 3 channels); optional ReLU in the head,
// batch norm, a width multiplier and a custom block layout.
// Koch et al. 2015: conv 64@10x10 - pool - 128@7x7 - pool - 128@4x4 - pool - 256@4x4 - flatten
// 9216 - Linear(4096) - sigmoid; head |h1 - h2| -> Linear(4096, 1). Deviation: Kaiming init as the
// reference, not Koch's N(0, 0.01) / N(0.5, 0.01).
//
// A training step over B pairs runs the backbone ONCE over all 2B images (left images first),
// so the shared weights receive both branches' gradients through one accumulated backward.
// Parameter names and layouts follow `../shared/bench/torch_siamese.py`, so a checkpoint loads
// into that PyTorch model.

/// One backbone layer.
enum BackboneLayer: Sendable {
  case conv(Conv2D)
  case batchNorm(BatchNorm2D)
  case maxPool(MaxPool2D)
  case flatten
  case linear(Linear)
  case sigmoid
}

/// What one layer's backward needs.
enum LayerCache: Sendable {
  case conv(Conv2D.Cache)
  case batchNorm(BatchNorm2D.Cache)
  case maxPool(MaxPool2D.Cache)
  case flatten([Int])
  case linear(Tensor)
  case sigmoid(Tensor)
}

/// Caches of one forward pass of the whole network.
public struct ForwardCache: Sendable {
  let backbone: [LayerCache]
  let features: Tensor
  let distance: Tensor
  let head: [Tensor]  // inputs of head layers; for relu the post-activation output
  let pairs: [(Int, Int)]
}

/// The Siamese network: a shared backbone, the L1 join and a small head producing a logit.
public struct SiameseNetwork: Sendable {
  /// The configuration it was built from.
  public let config: ModelConfig
  /// Every parameter and buffer, addressed by index from the layers.
  public var store: ParameterStore
  /// The arithmetic of the convolutions (a compute setting, not part of the checkpoint).
  public var precision: ConvolutionPrecision = .fp32
  /// The convolution implementation (tests compare oneDNN's primitives with im2col).
  public var convolutionAlgorithm: ConvolutionAlgorithm = .direct
  let layers: [BackboneLayer]
  let headLayers: [Linear]
  let headReLU: Bool

  /// Builds the network with the reference initialisation drawn from `seed`.
  public init(config: ModelConfig, seed: UInt64) {
    precondition(config.problems().isEmpty, "invalid model configuration: \(config.problems().joined(separator: "; "))")
    self.config = config
    var store = ParameterStore()
    var rng = NormalSampler(seed: seed)
    var layers: [BackboneLayer] = []
    var index = 0  // position in PyTorch's nn.Sequential, counting ReLU and pooling modules
    switch config.backbone {
    case .vgg16:
      var channels = 1
      for block in config.vggBlocks {
        for width in block {
          let conv = Conv2D(
            inputChannels: channels, outputChannels: width, kernelSize: 3, padding: 1, fusedReLU: !config.batchNorm, name: "backbone.features.\(index)", store: &store, rng: &rng)
          layers.append(.conv(conv))
          index += 1
          if config.batchNorm {
            layers.append(.batchNorm(BatchNorm2D(channels: width, fusedReLU: true, name: "backbone.features.\(index)", store: &store)))
            index += 1
          }
          index += 1  // ReLU
          channels = width
        }
        layers.append(.maxPool(MaxPool2D()))
        index += 1
      }
      layers.append(.flatten)
    case .koch:
      let widths = config.kochWidths.convs
      let specs = [(1, widths[0], 10, true), (widths[0], widths[1], 7, true), (widths[1], widths[2], 4, true), (widths[2], widths[3], 4, false)]
      for (input, output, kernel, pool) in specs {
        layers.append(
          .conv(Conv2D(inputChannels: input, outputChannels: output, kernelSize: kernel, padding: 0, fusedReLU: true, name: "backbone.features.\(index)", store: &store, rng: &rng))
        )
        index += 2
        if pool {
          layers.append(.maxPool(MaxPool2D()))
          index += 1
        }
      }
      layers.append(.flatten)
      let flatten = widths[3] * config.kochFinalSide * config.kochFinalSide
      layers.append(.linear(Linear(inputFeatures: flatten, outputFeatures: config.kochWidths.features, name: "backbone.fc", store: &store, rng: &rng)))
      layers.append(.sigmoid)
    }
    var head: [Linear] = []
    switch config.backbone {
    case .vgg16:
      head.append(Linear(inputFeatures: config.featureCount, outputFeatures: config.headHidden, name: "head.0", store: &store, rng: &rng))
      let second = config.headActivation == .relu ? "head.2" : "head.1"
      head.append(Linear(inputFeatures: config.headHidden, outputFeatures: 1, name: second, store: &store, rng: &rng))
      headReLU = config.headActivation == .relu
    case .koch:
      head.append(Linear(inputFeatures: config.featureCount, outputFeatures: 1, name: "head", store: &store, rng: &rng))
      headReLU = false
    }
    self.layers = layers
    self.headLayers = head
    self.store = store
  }

  /// Length of the embedding.
  public var featureCount: Int { config.featureCount }

  // MARK: Backbone

  mutating func backboneForward(_ images: Tensor, training: Bool, keepCaches: Bool) -> (Tensor, [LayerCache]) {
    precondition(
      images.shape.count == 4 && images.shape[1] == 1 && images.shape[2] == config.inputSize && images.shape[3] == config.inputSize,
      "the backbone expects (N, 1, \(config.inputSize), \(config.inputSize)) images, got \(images.shape)")
    var x = images
    var caches: [LayerCache] = []
    for layer in layers {
      switch layer {
      case .conv(let conv):
        let (y, cache) = conv.forward(x, store: store, precision: precision, algorithm: convolutionAlgorithm)
        if keepCaches { caches.append(.conv(cache)) }
        x = y
      case .batchNorm(let norm):
        let (y, cache) = norm.forward(x, training: training, store: &store)
        if keepCaches { caches.append(.batchNorm(cache)) }
        x = y
      case .maxPool(let pool):
        let (y, cache) = pool.forward(x)
        if keepCaches { caches.append(.maxPool(cache)) }
        x = y
      case .flatten:
        if keepCaches { caches.append(.flatten(x.shape)) }
        x = x.reshaped([x.shape[0], x.itemCount])
      case .linear(let linear):
        if keepCaches { caches.append(.linear(x)) }
        x = linear.forward(x, store: store)
      case .sigmoid:
        x = Sigmoid().forward(x)
        if keepCaches { caches.append(.sigmoid(x)) }
      }
    }
    return (x, caches)
  }

  mutating func backboneBackward(_ dFeatures: Tensor, caches: [LayerCache]) {
    var d = dFeatures
    for (i, cache) in caches.enumerated().reversed() {
      switch (layers[i], cache) {
      case (.conv(let conv), .conv(let c)):
        guard let dx = conv.backward(d, cache: c, store: &store, needInputGradient: i > 0) else { return }
        d = dx
      case (.batchNorm(let norm), .batchNorm(let c)): d = norm.backward(d, cache: c, store: &store)
      case (.maxPool(let pool), .maxPool(let c)): d = pool.backward(d, cache: c)
      case (.flatten, .flatten(let shape)): d = d.reshaped(shape)
      case (.linear(let linear), .linear(let input)): d = linear.backward(d, input: input, store: &store)
      case (.sigmoid, .sigmoid(let output)): d = Sigmoid().backward(d, output: output)
      default: preconditionFailure("backbone cache \(i) does not match its layer")
      }
    }
  }

  /// Embeds images with the backbone alone (inference mode).   images: (N, 1, S, S) -> (N, F)
  public mutating func embed(_ images: Tensor) -> Tensor {
    backboneForward(images, training: false, keepCaches: false).0
  }

  // MARK: Head

  func headForward(_ distance: Tensor) -> (logits: Tensor, inputs: [Tensor]) {
    var x = distance
    var inputs: [Tensor] = []
    for (i, linear) in headLayers.enumerated() {
      inputs.append(x)
      x = linear.forward(x, store: store)
      if i == 0 && headReLU && headLayers.count > 1 { x = ReLU().forward(x) }
    }
    return (x, inputs)
  }

  mutating func headBackward(_ dLogits: Tensor, inputs: [Tensor]) -> Tensor {
    var d = dLogits
    for i in stride(from: headLayers.count - 1, through: 0, by: -1) {
      d = headLayers[i].backward(d, input: inputs[i], store: &store)
      // inputs[1] is the ReLU's output: mask the gradient flowing back into the first linear.
      if i == 1 && headReLU { d = ReLU().backward(d, output: inputs[1]) }
    }
    return d
  }

  /// Logits of pairs from precomputed embeddings.   a, b: (P, F) -> P logits
  public func score(_ a: Tensor, _ b: Tensor) -> [Float] {
    headForward(L1Distance.forward(a, b)).logits.data
  }

  // MARK: Training

  /// Logits for B pairs; `left` and `right` are (B, 1, S, S). The backbone runs once over all
  /// 2B images. With `training`, batch norm uses batch statistics and caches are kept.
  public mutating func forward(left: Tensor, right: Tensor, training: Bool) -> (logits: [Float], cache: ForwardCache) {
    precondition(left.shape == right.shape, "left \(left.shape) and right \(right.shape) differ")
    let b = left.batch
    return forward(images: Tensor.concatenate([left, right]), pairs: (0..<b).map { ($0, b + $0) }, training: training)
  }

  /// Logits for pairs of images of one batch: the backbone embeds each of the N images once,
  /// and every pair (i, j) is scored from rows i and j. Several pairs may share an image; its
  /// gradient is the sum over them.   images: (N, 1, S, S)
  public mutating func forward(images: Tensor, pairs: [(Int, Int)], training: Bool) -> (logits: [Float], cache: ForwardCache) {
    precondition(!pairs.isEmpty && pairs.allSatisfy { $0.0 >= 0 && $0.0 < images.batch && $0.1 >= 0 && $0.1 < images.batch }, "pair indices must lie in 0..<\(images.batch)")
    let (features, caches) = backboneForward(images, training: training, keepCaches: training)
    let a = features.rows(pairs.map(\.0)), b = features.rows(pairs.map(\.1))
    let distance = L1Distance.forward(a, b)
    let (logits, inputs) = headForward(distance)
    return (logits.data, ForwardCache(backbone: caches, features: features, distance: distance, head: inputs, pairs: pairs))
  }

  /// Accumulates every parameter's gradient of the loss given dL/dlogits.
  public mutating func backward(dLogits: [Float], cache: ForwardCache) {
    let pairs = cache.pairs
    let dDistance = headBackward(Tensor(shape: [pairs.count, 1], data: dLogits), inputs: cache.head)
    let a = cache.features.rows(pairs.map(\.0)), b = cache.features.rows(pairs.map(\.1))
    let (da, db) = L1Distance.backward(dDistance, a, b)
    var dFeatures = Tensor(zeros: cache.features.shape)
    dFeatures.addRows(da, at: pairs.map(\.0))
    dFeatures.addRows(db, at: pairs.map(\.1))
    backboneBackward(dFeatures, caches: cache.backbone)
  }

  /// One forward and backward pass over B pairs with labels (1 = same): zeroes the gradients,
  /// accumulates new ones, returns the mean BCE loss and the logits.
  public mutating func lossAndGradients(left: Tensor, right: Tensor, labels: [Float]) -> (loss: Double, logits: [Float]) {
    let b = left.batch
    return lossAndGradients(images: Tensor.concatenate([left, right]), pairs: (0..<b).map { ($0, b + $0) }, labels: labels)
  }

  /// The same over pairs of one batch of images (see `forward(images:pairs:training:)`).
  public mutating func lossAndGradients(images: Tensor, pairs: [(Int, Int)], labels: [Float]) -> (loss: Double, logits: [Float]) {
    store.zeroGradients()
    let (logits, cache) = forward(images: images, pairs: pairs, training: true)
    let (loss, dLogits) = BinaryCrossEntropy.lossAndGradient(logits: logits, labels: labels)
    backward(dLogits: dLogits, cache: cache)
    return (loss, logits)
  }

  /// Forward FLOPs of the backbone for one image (convs and linears, 2 x multiply-adds).
  public var backboneFlopsPerImage: Double {
    var side = config.inputSize
    var total = 0.0
    for layer in layers {
      switch layer {
      case .conv(let conv):
        total += conv.flops(inputHeight: side, inputWidth: side)
        side = conv.outputSize(side)
      case .maxPool: side /= 2
      case .linear(let linear): total += linear.flops
      default: break
      }
    }
    return total
  }

  /// FLOPs of the head for one pair.
  public var headFlopsPerPair: Double { headLayers.reduce(0) { $0 + $1.flops } }
}
