// The network every few-shot method trains: a backbone that embeds images, shared by all of
// them, and, for methods that score pairs through a learned head (`similarity: head`), that head.
// A method without a head (`similarity: euclidean`: prototypical networks and their kin) trains
// the backbone through `embeddingLossAndGradients` with a loss of its own on the embeddings.
// With a head it is the weight-shared (Siamese) network of the reference PyTorch project and of
// Koch et al. 2015:
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
// Parameter names and layouts are PyTorch's, as in the project's twin `python/oneshot_twin/model.py`,
// so a checkpoint loads into that PyTorch model unchanged.

/// Caches of one forward pass of the whole network.
public struct ForwardCache: Sendable {
  let backbone: [LayerCache]
  /// The backbone's output, one row per image.
  public let features: Tensor
  let distance: Tensor
  let head: [LayerCache]
  let pairs: [(Int, Int)]
}

/// A backbone that embeds images and, for pair methods, the L1 join and a small head producing a
/// logit (the Siamese network).
public struct EmbeddingNetwork: Sendable {
  /// The configuration it was built from.
  public let config: ModelConfig
  /// Every parameter and buffer, addressed by index from the layers.
  public var store: ParameterStore
  /// The arithmetic of the convolutions (a compute setting, not part of the checkpoint).
  public var precision: ConvolutionPrecision = .fp32
  /// The convolution implementation (tests compare oneDNN's primitives with im2col).
  public var convolutionAlgorithm: ConvolutionAlgorithm = .direct
  /// The shared backbone, image -> feature vector.
  let backbone: [any Layer]
  /// The head, |f1 - f2| -> logit.
  let head: [any Layer]
  /// The classifier over the training classes (`config.classes`), embedding -> one logit per
  /// class; empty without one.
  let classifier: [any Layer]

  /// Builds the network with the reference initialisation drawn from `seed`.
  public init(config: ModelConfig, seed: UInt64) {
    precondition(config.problems().isEmpty, "invalid model configuration: \(config.problemSummary)")
    self.config = config
    var store = ParameterStore()
    var rng = NormalSampler(seed: seed)
    var layers: [any Layer] = []
    var index = 0  // position in PyTorch's nn.Sequential, counting ReLU and pooling modules
    switch config.backbone {
    case .vgg16:
      var channels = 1
      for block in config.vggLayout {
        for width in block.widths {
          let conv = Conv2D(
            inputChannels: channels, outputChannels: width, kernelSize: 3, padding: block.padding, fusedReLU: !config.batchNorm, name: "backbone.features.\(index)",
            initialization: config.initialization, store: &store, rng: &rng)
          layers.append(conv)
          index += 1
          if config.batchNorm {
            layers.append(BatchNorm2D(channels: width, fusedReLU: true, name: "backbone.features.\(index)", store: &store))
            index += 1
          }
          index += 1  // ReLU
          channels = width
        }
        if block.pools {
          layers.append(MaxPool2D())
          index += 1
        }
      }
      layers.append(Flatten())
    case .koch:
      let widths = config.kochWidths.convs
      let specs = [(1, widths[0], 10, true), (widths[0], widths[1], 7, true), (widths[1], widths[2], 4, true), (widths[2], widths[3], 4, false)]
      for (input, output, kernel, pool) in specs {
        layers.append(Conv2D(inputChannels: input, outputChannels: output, kernelSize: kernel, padding: 0, fusedReLU: true, name: "backbone.features.\(index)", initialization: config.initialization, store: &store, rng: &rng))
        index += 2
        if pool {
          layers.append(MaxPool2D())
          index += 1
        }
      }
      layers.append(Flatten())
      let flatten = widths[3] * config.kochFinalSide * config.kochFinalSide
      layers.append(Linear(inputFeatures: flatten, outputFeatures: config.kochWidths.features, name: "backbone.fc", initialization: config.initialization, store: &store, rng: &rng))
      layers.append(Sigmoid())
    }
    var head: [any Layer] = []
    switch (config.similarity, config.backbone) {
    case (.euclidean, _), (.cosine, _): break  // no head: embeddings are compared by distance or angle
    case (.head, .vgg16):
      head.append(Linear(inputFeatures: config.featureCount, outputFeatures: config.headHidden, name: "head.0", initialization: config.initialization, store: &store, rng: &rng))
      if config.headActivation == .relu { head.append(ReLU()) }
      // PyTorch's nn.Sequential numbers the ReLU too: the second linear is head.2 after one.
      head.append(Linear(inputFeatures: config.headHidden, outputFeatures: 1, name: "head.\(head.count)", initialization: config.initialization, store: &store, rng: &rng))
    case (.head, .koch):
      head.append(Linear(inputFeatures: config.featureCount, outputFeatures: 1, name: "head", initialization: config.initialization, store: &store, rng: &rng))
    case (.relation, .vgg16) where config.relationModule == .convolutional:
      // Sung et al.'s module (RelationModule.convolutional) on the two maps side by side as 2C
      // channels (the joined vectors [f1, f2] are those maps, flattened one after the other):
      // PyTorch's indices head.0 conv, head.1 BN, (ReLU, pool), head.4 conv, head.5 BN, (ReLU,
      // pool, flatten), head.9 linear, (ReLU), head.11 linear.
      let (hidden, width, side) = (config.headHidden, ModelConfig.relationWidth, config.vggFinalSide.side)
      let channels = 2 * (config.vggBlocks.last?.last ?? 0)
      head.append(Unflatten(channels: channels, side: side))
      head.append(Conv2D(inputChannels: channels, outputChannels: hidden, kernelSize: 3, padding: 1, fusedReLU: false, name: "head.0", initialization: config.initialization, store: &store, rng: &rng))
      head.append(BatchNorm2D(channels: hidden, fusedReLU: true, name: "head.1", store: &store))
      head.append(MaxPool2D())
      head.append(Conv2D(inputChannels: hidden, outputChannels: hidden, kernelSize: 3, padding: 1, fusedReLU: false, name: "head.4", initialization: config.initialization, store: &store, rng: &rng))
      head.append(BatchNorm2D(channels: hidden, fusedReLU: true, name: "head.5", store: &store))
      head.append(MaxPool2D())
      head.append(Flatten())
      let linear = { (input: Int, output: Int, index: Int, store: inout ParameterStore, rng: inout NormalSampler) in
        Linear(inputFeatures: input, outputFeatures: output, name: "head.\(index)", initialBias: 1, initialization: config.initialization, store: &store, rng: &rng)
      }
      head.append(linear(hidden * config.relationModuleSide * config.relationModuleSide, width, 9, &store, &rng))
      head.append(ReLU())
      head.append(linear(width, 1, 11, &store, &rng))
    case (.relation, _):
      // Sung et al.'s module brought to 1x1 maps (see Similarity.relation): [f1, f2] ->
      // Linear(2F, H) -> BN -> ReLU -> Linear(H, H) -> BN -> ReLU -> Linear(H, 8) -> ReLU ->
      // Linear(8, 1), PyTorch's nn.Sequential indices head.0 ... head.8. Sung et al.'s
      // initialisation: N(0, 0.01) weights and biases of 1.
      let (hidden, width) = (config.headHidden, ModelConfig.relationWidth)
      let linear = { (input: Int, output: Int, index: Int, store: inout ParameterStore, rng: inout NormalSampler) in
        Linear(inputFeatures: input, outputFeatures: output, name: "head.\(index)", initialBias: 1, initialization: config.initialization, store: &store, rng: &rng)
      }
      head.append(linear(2 * config.featureCount, hidden, 0, &store, &rng))
      head.append(BatchNorm1D(features: hidden, fusedReLU: true, name: "head.1", store: &store))
      head.append(linear(hidden, hidden, 3, &store, &rng))
      head.append(BatchNorm1D(features: hidden, fusedReLU: true, name: "head.4", store: &store))
      head.append(linear(hidden, width, 6, &store, &rng))
      head.append(ReLU())
      head.append(linear(width, 1, 8, &store, &rng))
    }
    // Built last, so that a network without one draws exactly the weights it always did.
    classifier = config.classes.map { [Linear(inputFeatures: config.featureCount, outputFeatures: $0, name: "classifier", initialization: config.initialization, store: &store, rng: &rng)] } ?? []
    self.backbone = layers
    self.head = head
    self.store = store
  }

  /// Length of the embedding.
  public var featureCount: Int { config.featureCount }

  // MARK: Layers

  /// Whether training keeps the backbone's tensors in oneDNN's layouts (convolution, batch norm
  /// and pooling on oneDNN back to back); off, training runs batch norm and pooling in Swift on
  /// plain tensors (the reference path the tests compare with). Never used by inference.
  public var keepsLayouts = true

  /// Whether training runs a batch norm (with ReLU) and the max pooling after it as one fused
  /// layer where the layout allows (NormalizationPooling.swift); off, as two oneDNN primitives.
  public var fusesNormalizationPooling = true

  /// Whether the backbone has a batch norm with ReLU followed by max pooling (what
  /// `fusesNormalizationPooling` fuses).
  public var hasNormalizationPooling: Bool {
    zip(backbone, backbone.dropFirst()).contains { ($0 as? BatchNorm2D)?.fusedReLU == true && $1 is MaxPool2D }
  }

  /// The forward context of this network's settings.
  func context(training: Bool) -> ForwardContext {
    var context = ForwardContext(training: training, precision: precision, algorithm: convolutionAlgorithm, keepsLayouts: training && keepsLayouts && convolutionAlgorithm != .im2col)
    context.fusesNormalizationPooling = fusesNormalizationPooling
    return context
  }

  /// Runs `layers` in order; the caches are kept only when `keepCaches` (training).
  func run(_ layers: [any Layer], _ input: Tensor, context: ForwardContext, keepCaches: Bool) -> (Tensor, [LayerCache]) {
    var x = input
    var caches: [LayerCache] = []
    if keepCaches { caches.reserveCapacity(layers.count) }
    let fuses = context.training && context.keepsLayouts && context.fusesNormalizationPooling
    var i = 0
    while i < layers.count {
      // Batch norm + ReLU, then max pooling: one fused layer where the layout allows.
      if fuses, i + 1 < layers.count, layers[i + 1] is MaxPool2D, let norm = layers[i] as? BatchNorm2D,
        let (y, normalization, pooling) = norm.forwardPooled(x, store: store)
      {
        if keepCaches { caches += [normalization, pooling] }
        x = y
        i += 2
        continue
      }
      let (y, cache) = layers[i].forward(x, store: store, context: context)
      if keepCaches { caches.append(cache) }
      x = y
      i += 1
    }
    return (x, caches)
  }

  /// Runs `layers` backwards from dL/d(output); returns dL/d(input), or an empty tensor when
  /// `needInputGradient` is false (the images need none).
  mutating func runBackward(_ layers: [any Layer], _ dOutput: Tensor, caches: [LayerCache], needInputGradient: Bool) -> Tensor {
    precondition(caches.count == layers.count, "\(caches.count) caches for \(layers.count) layers")
    var d = dOutput
    for i in layers.indices.reversed() {
      d = layers[i].backward(d, cache: caches[i], store: &store, needInputGradient: needInputGradient || i > 0)
    }
    return d
  }

  /// Embeds images with the backbone alone (inference mode).   images: (N, 1, S, S) -> (N, F)
  public func embed(_ images: Tensor) -> Tensor {
    checkImages(images)
    return run(backbone, images, context: context(training: false), keepCaches: false).0
  }

  /// Logits of pairs from precomputed embeddings.   a, b: (P, F) -> P logits
  /// Under Euclidean similarity, the negative squared distance of each pair; under cosine, the
  /// cosine of the two embeddings (0 where one of them is zero).
  public func score(_ a: Tensor, _ b: Tensor) -> [Float] {
    if config.similarity == .cosine {
      let f = a.itemCount
      return (0..<a.batch).map { i in
        var dot: Float = 0, aa: Float = 0, bb: Float = 0
        for j in 0..<f {
          let (x, y) = (a.data[i * f + j], b.data[i * f + j])
          dot += x * y
          aa += x * x
          bb += y * y
        }
        let norms = (aa * bb).squareRoot()
        return norms > 0 ? dot / norms : 0
      }
    }
    guard config.similarity == .head || config.similarity == .relation else {
      let f = a.itemCount
      return (0..<a.batch).map { i in
        var d: Float = 0
        for j in 0..<f {
          let diff = a.data[i * f + j] - b.data[i * f + j]
          d += diff * diff
        }
        return -d
      }
    }
    return run(head, join(a, b), context: context(training: false), keepCaches: false).0.data
  }

  func join(_ a: Tensor, _ b: Tensor) -> Tensor { PairHead.join(a, b, similarity: config.similarity) }
  func joinBackward(_ dJoined: Tensor, _ a: Tensor, _ b: Tensor) -> (Tensor, Tensor) { PairHead.joinBackward(dJoined, a, b, similarity: config.similarity) }

  func checkImages(_ images: Tensor) {
    precondition(
      images.shape.count == 4 && images.shape[1] == 1 && images.shape[2] == config.inputSize && images.shape[3] == config.inputSize,
      "the backbone expects (N, 1, \(config.inputSize), \(config.inputSize)) images, got \(images.shape)")
  }

  // MARK: Training

  /// Logits for B pairs; `left` and `right` are (B, 1, S, S). The backbone runs once over all
  /// 2B images. With `training`, batch norm uses batch statistics and the caches for backward
  /// are kept; nothing changes (see `trainingForward`).
  public func forward(left: Tensor, right: Tensor, training: Bool) -> (logits: [Float], cache: ForwardCache) {
    forward(images: Tensor.concatenate([left, right]), pairs: EmbeddingNetwork.sideBySide(left, right), training: training)
  }

  /// Logits for pairs of images of one batch: the backbone embeds each of the N images once,
  /// and every pair (i, j) is scored from rows i and j. Several pairs may share an image; its
  /// gradient is the sum over them.   images: (N, 1, S, S)
  public func forward(images: Tensor, pairs: [(Int, Int)], training: Bool) -> (logits: [Float], cache: ForwardCache) {
    checkImages(images)
    precondition(!pairs.isEmpty && pairs.allSatisfy { $0.0 >= 0 && $0.0 < images.batch && $0.1 >= 0 && $0.1 < images.batch }, "pair indices must lie in 0..<\(images.batch)")
    let context = context(training: training)
    let (features, backboneCaches) = run(backbone, images, context: context, keepCaches: training)
    let a = features.rows(pairs.map(\.0)), b = features.rows(pairs.map(\.1))
    let distance = join(a, b)
    let (logits, headCaches) = run(head, distance, context: context, keepCaches: training)
    return (logits.data, ForwardCache(backbone: backboneCaches, features: features, distance: distance, head: headCaches, pairs: pairs))
  }

  /// The training forward: `forward(training: true)`, then batch norm folds the batch
  /// statistics into its running estimates. The only forward that changes the network.
  public mutating func trainingForward(images: Tensor, pairs: [(Int, Int)]) -> (logits: [Float], cache: ForwardCache) {
    let result = forward(images: images, pairs: pairs, training: true)
    for (layer, cache) in zip(backbone, result.cache.backbone) { layer.updateRunningEstimates(cache, store: &store) }
    return result
  }

  /// `trainingForward` for B pairs given as left and right images.
  public mutating func trainingForward(left: Tensor, right: Tensor) -> (logits: [Float], cache: ForwardCache) {
    trainingForward(images: Tensor.concatenate([left, right]), pairs: EmbeddingNetwork.sideBySide(left, right))
  }

  /// Pairs (i, B + i) of B left images followed by B right images.
  static func sideBySide(_ left: Tensor, _ right: Tensor) -> [(Int, Int)] {
    precondition(left.shape == right.shape, "left \(left.shape) and right \(right.shape) differ")
    return (0..<left.batch).map { ($0, left.batch + $0) }
  }

  /// Accumulates every parameter's gradient of the loss given dL/dlogits.
  public mutating func backward(dLogits: [Float], cache: ForwardCache) {
    let pairs = cache.pairs
    let dDistance = runBackward(head, Tensor(shape: [pairs.count, 1], data: dLogits), caches: cache.head, needInputGradient: true)
    let a = cache.features.rows(pairs.map(\.0)), b = cache.features.rows(pairs.map(\.1))
    let (da, db) = joinBackward(dDistance, a, b)
    var dFeatures = Tensor(zeros: cache.features.shape)
    dFeatures.addRows(da, at: pairs.map(\.0))
    dFeatures.addRows(db, at: pairs.map(\.1))
    _ = runBackward(backbone, dFeatures, caches: cache.backbone, needInputGradient: false)
  }

  /// One forward and backward pass over B pairs with labels (1 = same): zeroes the gradients,
  /// accumulates new ones, returns the mean BCE loss and the logits.
  public mutating func lossAndGradients(left: Tensor, right: Tensor, labels: [Float]) -> (loss: Double, logits: [Float]) {
    lossAndGradients(images: Tensor.concatenate([left, right]), pairs: EmbeddingNetwork.sideBySide(left, right), labels: labels)
  }

  /// The same over pairs of one batch of images (see `forward(images:pairs:training:)`).
  public mutating func lossAndGradients(images: Tensor, pairs: [(Int, Int)], labels: [Float]) -> (loss: Double, logits: [Float]) {
    precondition(config.similarity == .head || config.similarity == .relation, "pairs are scored by a head; this network compares embeddings by \(config.similarity.rawValue) similarity")
    store.zeroGradients()
    let (logits, cache) = trainingForward(images: images, pairs: pairs)
    let (loss, dLogits) = BinaryCrossEntropy.lossAndGradient(logits: logits, labels: labels)
    backward(dLogits: dLogits, cache: cache)
    return (loss, logits)
  }

  /// One forward and backward pass of a loss on the embeddings of `images`: the backbone runs in
  /// training mode (batch norm on the batch's statistics, its running estimates updated), `loss`
  /// returns the loss and dL/d(embeddings) (same shape as its input), and the gradients are
  /// zeroed first, then accumulated through the backbone. How a headless method trains.
  ///   images: (N, 1, S, S), embeddings: (N, F)
  public mutating func embeddingLossAndGradients(images: Tensor, loss: (Tensor) -> (loss: Double, dEmbeddings: Tensor)) -> Double {
    backboneLossAndGradients(images: images) { features, _ in loss(features) }
  }

  /// `embeddingLossAndGradients` whose loss may also accumulate gradients of parameters past
  /// the backbone (a classifier's, a head's through `pairHead`) into the store it is given.
  public mutating func backboneLossAndGradients(images: Tensor, loss: (Tensor, inout ParameterStore) -> (loss: Double, dEmbeddings: Tensor)) -> Double {
    checkImages(images)
    store.zeroGradients()
    let context = context(training: true)
    let (features, caches) = run(backbone, images, context: context, keepCaches: true)
    for (layer, cache) in zip(backbone, caches) { layer.updateRunningEstimates(cache, store: &store) }
    let (value, dFeatures) = loss(features, &store)
    precondition(dFeatures.shape == features.shape, "the loss's gradient \(dFeatures.shape) must have the embeddings' shape \(features.shape)")
    _ = runBackward(backbone, dFeatures, caches: caches, needInputGradient: false)
    return value
  }

  /// One forward and backward pass of ordinary classification over the training classes: the
  /// backbone in training mode (as `embeddingLossAndGradients`), the classifier's logits, the
  /// mean softmax cross-entropy against `labels` (each image's class, 0 ..< `config.classes`);
  /// zeroes the gradients, accumulates those of the classifier and the backbone, and returns the
  /// loss and how many images the classifier gets right.   images: (N, 1, S, S)
  public mutating func classifierLossAndGradients(images: Tensor, labels: [Int]) -> (loss: Double, correct: Int) {
    guard let layer = classifier.first else { preconditionFailure("this network has no classifier over the training classes (model.classes)") }
    precondition(labels.count == images.batch, "\(labels.count) labels for \(images.batch) images")
    var correct = 0
    let classifierContext = context(training: true)
    let loss = backboneLossAndGradients(images: images) { features, store in
      let (logits, cache) = layer.forward(features, store: store, context: classifierContext)
      let result = SoftmaxCrossEntropy.lossAndGradient(logits: logits, labels: labels)
      correct = result.correct
      return (result.loss, layer.backward(result.dLogits, cache: cache, store: &store, needInputGradient: true))
    }
    return (loss, correct)
  }

  /// One forward and backward pass of the prototypical loss over an episode whose images come
  /// class-major (each class's `shots` support images, then its `queries` query images): zeroes
  /// the gradients, accumulates new ones through the backbone, returns the loss and how many
  /// queries the nearest prototype classifies correctly.   images: (ways (shots + queries), 1, S, S)
  public mutating func prototypicalLossAndGradients(images: Tensor, ways: Int, shots: Int, queries: Int) -> (loss: Double, correct: Int) {
    var correct = 0
    let loss = embeddingLossAndGradients(images: images) { features in
      let result = PrototypicalLoss.lossAndGradient(features: features, ways: ways, shots: shots, queries: queries)
      correct = result.correct
      return (result.loss, result.dFeatures)
    }
    return (loss, correct)
  }

  /// The head as a training step runs it (batch statistics, caches kept), for a loss that joins
  /// embeddings of its own making (a relation module scoring queries against class means)
  /// inside `backboneLossAndGradients`.
  public var pairHead: PairHead { PairHead(layers: head, context: context(training: true), similarity: config.similarity) }

  /// Forward FLOPs of the backbone for one image (convs and linears, 2 x multiply-adds).
  public var backboneFlopsPerImage: Double {
    convolutions.reduce(0) { $0 + $1.layer.flops(inputHeight: $1.side, inputWidth: $1.side) }
      + backbone.reduce(0) { $0 + (($1 as? Linear)?.flops ?? 0) }
  }

  /// The backbone's convolutions in order, each with its parameter name and the side of the
  /// input it sees.
  public var convolutions: [(name: String, layer: Conv2D, side: Int)] {
    var side = config.inputSize
    var out: [(name: String, layer: Conv2D, side: Int)] = []
    for layer in backbone {
      if let conv = layer as? Conv2D {
        out.append((String(store.parameters[conv.weight].name.dropLast(".weight".count)), conv, side))
        side = conv.outputSize(side)
      } else if layer is MaxPool2D {
        side /= 2
      }
    }
    return out
  }

  /// Per convolution, the algorithm of each direction (forward, backward data, backward
  /// weights) under this network's settings for a step of `batch` images, and how it was
  /// chosen. Builds (and under `.auto` times) the primitives of shapes not used yet.
  public func convolutionChoices(batch: Int) -> [(name: String, algorithms: [String], detail: String)] {
    convolutions.map { item in
      let choice = item.layer.algorithmChoices(batch: batch, side: item.side, precision: precision, algorithm: convolutionAlgorithm)
      return (item.name, choice.algorithms, choice.detail)
    }
  }

  /// The choices in one line: "features.0 d/d/d, features.2 w/w/d, ..." (d direct, w Winograd,
  /// i im2col; forward/backward-data/backward-weights).
  public static func summary(of choices: [(name: String, algorithms: [String], detail: String)]) -> String {
    choices.map { item in
      item.name.replacingOccurrences(of: "backbone.", with: "") + " " + item.algorithms.map { String($0.prefix(1)) }.joined(separator: "/")
    }.joined(separator: ", ")
  }

  /// FLOPs of the head for one pair (its linear layers, and the convolutions of a convolutional
  /// relation module on the backbone's maps).
  public var headFlopsPerPair: Double {
    var side = config.backbone == .vgg16 ? config.vggFinalSide.side : 1
    var total = 0.0
    for layer in head {
      if let linear = layer as? Linear { total += linear.flops }
      if let conv = layer as? Conv2D {
        total += conv.flops(inputHeight: side, inputWidth: side)
        side = conv.outputSize(side)
      }
      if layer is MaxPool2D { side /= 2 }
    }
    return total
  }
}


/// A network's head as a function of its joined input, run in training mode: `forward` keeps
/// the caches, `backward` accumulates the head's gradients into the store and returns
/// dL/d(input). `join` and `joinBackward` are the network's (|a - b|, or [a, b] for a relation
/// module).
public struct PairHead: Sendable {
  let layers: [any Layer]
  let context: ForwardContext
  let similarity: Similarity

  /// The logits of joined pairs.   joined: (P, J) -> (P, 1)
  public func forward(_ joined: Tensor, store: ParameterStore) -> (logits: Tensor, caches: [LayerCache]) {
    var x = joined
    var caches: [LayerCache] = []
    for layer in layers {
      let (y, cache) = layer.forward(x, store: store, context: context)
      caches.append(cache)
      x = y
    }
    return (x, caches)
  }

  /// Folds a forward's batch statistics into the running estimates (a head with batch norm).
  public func updateRunningEstimates(_ caches: [LayerCache], store: inout ParameterStore) {
    for (layer, cache) in zip(layers, caches) { layer.updateRunningEstimates(cache, store: &store) }
  }

  /// dL/d(joined) from dL/d(logits), accumulating the head's parameter gradients.
  public func backward(_ dLogits: Tensor, caches: [LayerCache], store: inout ParameterStore) -> Tensor {
    precondition(caches.count == layers.count, "\(caches.count) caches for \(layers.count) layers")
    var d = dLogits
    for i in layers.indices.reversed() { d = layers[i].backward(d, cache: caches[i], store: &store, needInputGradient: true) }
    return d
  }

  /// The head's input for pairs (a_i, b_i).
  public func join(_ a: Tensor, _ b: Tensor) -> Tensor { PairHead.join(a, b, similarity: similarity) }
  /// (dL/da, dL/db) from dL/d(joined).
  public func joinBackward(_ dJoined: Tensor, _ a: Tensor, _ b: Tensor) -> (Tensor, Tensor) { PairHead.joinBackward(dJoined, a, b, similarity: similarity) }

  /// What a head reads of a pair: |a - b| (the Siamese head) or [a, b] (a relation module).
  static func join(_ a: Tensor, _ b: Tensor, similarity: Similarity) -> Tensor {
    similarity == .relation ? Concatenation.forward(a, b) : L1Distance.forward(a, b)
  }

  /// The adjoint of `join`.
  static func joinBackward(_ dJoined: Tensor, _ a: Tensor, _ b: Tensor, similarity: Similarity) -> (Tensor, Tensor) {
    similarity == .relation ? Concatenation.backward(dJoined) : L1Distance.backward(dJoined, a, b)
  }
}
