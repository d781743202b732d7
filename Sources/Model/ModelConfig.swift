import Support
/// Which backbone the Siamese network shares between its two branches.
public enum BackboneKind: String, Codable, Sendable, CaseIterable {
  /// VGG16 "D": 3x3 convs (padding 1) + ReLU, 2x2 max pool after each block.
  case vgg16
  /// Koch et al. 2015: 64@10x10, 128@7x7, 128@4x4, 256@4x4 convs, then Linear(9216, 4096) + sigmoid.
  case koch
}

/// The activation between the head's two linear layers.
public enum HeadActivation: String, Codable, Sendable, CaseIterable {
  /// None, as the reference project.
  case none
  /// ReLU.
  case relu
}

/// How two embeddings are compared.
public enum Similarity: String, Codable, Sendable, CaseIterable {
  /// The reference project's learned head: |f1 - f2| -> linear layers -> a logit (pairs).
  case head
  /// No head: the negative squared Euclidean distance; a class of an episode is scored by its
  /// prototype, the mean embedding of its support images (prototypical networks).
  case euclidean
  /// No head: the cosine of the two embeddings (matching networks attend over the support set
  /// with it).
  case cosine
  /// A learned relation module (Sung et al. 2018) on the concatenation [f1, f2] of two
  /// embeddings: Linear(2F, `headHidden`) + batch norm + ReLU, Linear(`headHidden`, `headHidden`)
  /// + batch norm + ReLU, Linear(`headHidden`, 8) + ReLU, Linear(8, 1) -> a logit, whose sigmoid
  /// is the relation score. This is Sung et al.'s module (two blocks of 3x3 convolution, batch
  /// norm, ReLU and pooling, then two linear layers) brought to the 1x1 feature maps of a backbone
  /// that pools down to one pixel: there a padded 3x3 convolution is a linear layer and the
  /// pooling has nothing to pool. Under `kaiming` initialisation its linear layers start as
  /// Sung et al.'s: N(0, 0.01) weights, biases 1. `relationModule: convolutional` builds their
  /// module itself, on a backbone that keeps maps (`RelationModule.convolutional`).
  case relation
}

/// The relation module of a network with `similarity: relation`.
public enum RelationModule: String, Codable, Sendable, CaseIterable {
  /// On the flattened embeddings (the default; see `Similarity.relation`).
  case linear
  /// Sung et al.'s own module, on the backbone's feature maps (C x s x s each, the two side by
  /// side as 2C channels): two blocks of a padded 3x3 convolution to `headHidden` channels, batch
  /// norm, ReLU and 2x2 max pooling, then Linear(`headHidden` x (s/4)^2, 8) + ReLU and Linear(8, 1).
  /// It needs maps of side 4 or more: a backbone whose last blocks do not pool (`blockPooling`).
  /// PyTorch's nn.Sequential indices: head.0 conv, head.1 batch norm, head.4 conv, head.5 batch
  /// norm, head.9 and head.11 linear. Under `kaiming` initialisation, Sung et al.'s: the
  /// convolutions Kaiming-normal (fan_out) with zero biases, the linear layers N(0, 0.01) with
  /// biases of 1.
  case convolutional
}

/// How the weights of convolutions and linear layers are drawn.
public enum WeightInitialization: String, Codable, Sendable, CaseIterable {
  /// Kaiming-normal convolutions (fan_out, ReLU gain), N(0, 0.01) linear weights, zero biases:
  /// the reference project's. The default.
  case kaiming
  /// PyTorch's defaults for `nn.Conv2d` and `nn.Linear` (`kaiming_uniform_(a=sqrt(5))`):
  /// weights and biases uniform in +-1/sqrt(fan_in), as a network built in PyTorch and never
  /// re-initialised starts (Snell et al.'s prototypical networks).
  case pytorch
  /// Koch et al. 2015's: convolution weights N(0, 0.01), linear weights N(0, 0.2) ("a much wider
  /// normal distribution"), every bias N(0.5, 0.01).
  case koch
}

/// The network's configuration; the Model module owns this part of an experiment file.
public struct ModelConfig: Codable, Hashable, Sendable {
  /// Backbone family.
  public var backbone: BackboneKind
  /// Input side in pixels (105 for Omniglot; the images are resampled to it).
  public var inputSize: Int
  /// Channel multiplier (vgg16: 0.25 gives 16 ... 128 channels; koch: scales its convs and its
  /// 4096-unit feature layer). 1 is the published network.
  public var width: Double
  /// Batch norm after every conv (vgg16 only).
  public var batchNorm: Bool
  /// vgg16 block layout override, e.g. [[32, 32], [64, 64], [128, 128], [256, 256]]; nil is
  /// VGG16's [[64, 64], [128, 128], [256 x 3], [512 x 3], [512 x 3]] (times `width`).
  public var blocks: [[Int]]?
  /// Per block of the vgg16 backbone, whether 2x2 max pooling ends it; nil: every block does (VGG).
  /// Sung et al.'s Omniglot embedding: [true, true, false, false] (5x5 maps at 28x28).
  public var blockPooling: [Bool]?
  /// Per block of the vgg16 backbone, the zero padding of its 3x3 convolutions (0 or 1); nil: 1
  /// everywhere (the side is kept). Sung et al.'s Omniglot embedding: [0, 0, 1, 1].
  public var blockPadding: [Int]?
  /// The relation module (`similarity: relation`): on flattened embeddings, or Sung et al.'s
  /// convolutional one on feature maps.
  public var relationModule: RelationModule = .linear
  /// Hidden units of the head (vgg16); koch's head is a single Linear(4096, 1).
  public var headHidden: Int
  /// Activation between the head's linears (vgg16).
  public var headActivation: HeadActivation
  /// How embeddings are compared: the learned head (the default) or Euclidean distance to
  /// prototypes (no head is built).
  public var similarity: Similarity = .head
  /// How images are brought to `inputSize` (area averaging, or PIL's nearest neighbour).
  public var resampling: ImageResampling = .area
  /// How the weights are drawn at the start of training.
  public var initialization: WeightInitialization = .kaiming
  /// With a number, the network also carries a classifier over that many training classes,
  /// Linear(featureCount, classes) named `classifier`, which a method that pre-trains by
  /// ordinary classification trains (the fine-tuning baseline); episodes never use it. Nil: none.
  public var classes: Int?

  /// A configuration; `validate()` says whether it is buildable.
  public init(
    backbone: BackboneKind, inputSize: Int = 105, width: Double = 1, batchNorm: Bool = false, blocks: [[Int]]? = nil, headHidden: Int = 512, headActivation: HeadActivation = .none,
    similarity: Similarity = .head
  ) {
    self.similarity = similarity
    self.backbone = backbone
    self.inputSize = inputSize
    self.width = width
    self.batchNorm = batchNorm
    self.blocks = blocks
    self.headHidden = headHidden
    self.headActivation = headActivation
  }

  /// The reference project's network: VGG16 at 105x105, one channel, head 4608 -> 512 -> 1.
  public static let vgg16Reference = ModelConfig(backbone: .vgg16)
  /// Koch et al. 2015.
  public static let koch = ModelConfig(backbone: .koch)

  /// The conv widths per block for vgg16, after the width multiplier.
  public var vggBlocks: [[Int]] {
    let base = blocks ?? [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
    if blocks != nil { return base }
    return base.map { $0.map { max(1, Int((Double($0) * width).rounded())) } }
  }

  /// Koch's conv widths and feature size after the width multiplier.
  public var kochWidths: (convs: [Int], features: Int) {
    let scale = { (c: Int) in max(1, Int((Double(c) * width).rounded())) }
    return ([64, 128, 128, 256].map(scale), scale(4096))
  }

  /// Koch's spatial side after its last conv: 105 -> 96 -> 48 -> 42 -> 21 -> 18 -> 9 -> 6.
  public var kochFinalSide: Int { ((((inputSize - 9) / 2 - 6) / 2 - 3) / 2) - 3 }

  /// The vgg16 backbone's blocks: each block's convolution widths, their padding, and whether
  /// 2x2 max pooling ends it.
  public var vggLayout: [(widths: [Int], padding: Int, pools: Bool)] {
    vggBlocks.enumerated().map { i, widths in
      (widths, blockPadding.flatMap { i < $0.count ? $0[i] : nil } ?? 1, blockPooling.flatMap { i < $0.count ? $0[i] : nil } ?? true)
    }
  }

  /// The side of the vgg16 backbone's feature maps, or the first block and a side that cannot
  /// be convolved or pooled (a convolution needs a side of 3 with its padding, pooling 2).
  public var vggFinalSide: (side: Int, tooSmallAt: Int?) {
    var side = inputSize
    for (i, block) in vggLayout.enumerated() {
      for _ in block.widths {
        if side + 2 * block.padding < 3 { return (side, i) }
        side += 2 * block.padding - 2
      }
      if block.pools {
        if side < 2 { return (side, i) }
        side /= 2
      }
    }
    return (side, nil)
  }

  /// Length of the feature vector the backbone produces.
  public var featureCount: Int {
    switch backbone {
    case .koch: return kochWidths.features
    case .vgg16:
      let side = max(vggFinalSide.side, 0)
      return (vggBlocks.last?.last ?? 0) * side * side
    }
  }

  /// The side of the convolutional relation module's output maps (two 2x2 poolings of the
  /// backbone's maps).
  public var relationModuleSide: Int { max(vggFinalSide.side, 0) / 2 / 2 }

  /// Problems with the configuration, as (key path, what is allowed); empty when valid.
  public func problems() -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    switch backbone {
    case .koch:
      if inputSize < 65 { out.append(("inputSize", "koch's network needs at least 65x65 input (105 is the published one); got \(inputSize)")) }
      if !(width > 0 && width <= 4) { out.append(("width", "must be in (0, 4]; got \(width)")) }
      if batchNorm { out.append(("batchNorm", "only vgg16 supports batch norm")) }
      if blocks != nil { out.append(("blocks", "only vgg16 takes a block layout")) }
    case .vgg16:
      if !(width > 0 && width <= 4) { out.append(("width", "must be in (0, 4]; got \(width)")) }
      if let blocks, blocks.isEmpty || blocks.contains(where: { $0.isEmpty || $0.contains { $0 < 1 } }) {
        out.append(("blocks", "a non-empty list of non-empty lists of positive channel counts"))
      }
      if let blockPooling, blockPooling.count != vggBlocks.count {
        out.append(("blockPooling", "one true or false per block (\(vggBlocks.count) blocks); got \(blockPooling.count)"))
      }
      if let blockPadding, blockPadding.count != vggBlocks.count || blockPadding.contains(where: { !(0...1).contains($0) }) {
        out.append(("blockPadding", "one padding per block (\(vggBlocks.count) blocks), each 0 or 1; got \(blockPadding)"))
      }
      if blockPooling == nil && blockPadding == nil {
        var side = inputSize
        for _ in vggBlocks { side /= 2 }
        if inputSize < 8 || side < 1 {
          out.append(("inputSize", "\(inputSize) is too small for \(vggBlocks.count) pooling blocks (each halves the side; at least \(1 << vggBlocks.count) needed)"))
        }
      } else if let block = vggFinalSide.tooSmallAt {
        out.append(("inputSize", "\(inputSize) is too small for these blocks: the maps are too small to convolve or pool in block \(block + 1)"))
      } else if vggFinalSide.side < 1 {
        out.append(("inputSize", "\(inputSize) is too small for these blocks: no feature map is left after them"))
      }
      if headHidden < 1 { out.append(("headHidden", "must be at least 1; got \(headHidden)")) }
    }
    if similarity == .relation && backbone == .koch && headHidden < 1 { out.append(("headHidden", "must be at least 1; got \(headHidden)")) }
    if backbone == .koch && (blockPooling != nil || blockPadding != nil) { out.append(("blockPooling", "only vgg16 takes blockPooling and blockPadding")) }
    if relationModule == .convolutional {
      if similarity != .relation {
        out.append(("relationModule", "\"convolutional\" is a relation network's module: it needs \"similarity\": \"relation\""))
      } else if backbone != .vgg16 {
        out.append(("relationModule", "\"convolutional\" needs the vgg16 backbone's feature maps"))
      } else if out.isEmpty && vggFinalSide.side < 4 {
        out.append(("relationModule", "\"convolutional\" pools the backbone's maps twice: they must be at least 4x4, and these blocks leave \(vggFinalSide.side)x\(vggFinalSide.side) (set blockPooling false for the last blocks, as Sung et al.: [true, true, false, false])"))
      }
    }
    if inputSize > 512 { out.append(("inputSize", "at most 512; got \(inputSize)")) }
    if inputSize < 1 { out.append(("inputSize", "at least 1; got \(inputSize)")) }
    // Upper bounds, so that neither a file nor a checkpoint's metadata can ask for a network
    // that does not fit in memory (or overflows its sizes) on a 24 GB machine.
    if let blocks {
      if blocks.count > 8 || blocks.contains(where: { $0.count > 8 }) { out.append(("blocks", "at most 8 blocks of at most 8 convolutions")) }
      if blocks.contains(where: { $0.contains { $0 > 4096 } }) { out.append(("blocks", "at most 4096 channels per convolution")) }
    }
    if headHidden > 65_536 { out.append(("headHidden", "at most 65536; got \(headHidden)")) }
    if let classes, !(2...ModelConfig.maximumClasses).contains(classes) {
      out.append(("classes", "the training classes a classifier covers: between 2 and \(ModelConfig.maximumClasses); got \(classes)"))
    }
    if out.isEmpty && parameterCount > ModelConfig.maximumParameters {
      out.append(("", "the network would have \(parameterCount) parameters; at most \(ModelConfig.maximumParameters) fit in memory with their gradients and optimizer state"))
    }
    return out
  }

  /// The most parameters a configuration may have: 4 bytes each for values, gradients and
  /// Adam's two moments is 4 GB.
  public static let maximumParameters = 250_000_000
  /// The most classes a classifier over the training classes may have.
  public static let maximumClasses = 1_000_000

  /// Parameters of the network (weights and biases; batch norm's included), for bounds checks.
  public var parameterCount: Int {
    switch backbone {
    case .vgg16:
      var total = 0, channels = 1
      for block in vggBlocks {
        for width in block {
          total += width * channels * 9 + width + (batchNorm ? 2 * width : 0)
          channels = width
        }
      }
      return total + headParameterCount + classifierParameterCount
    case .koch:
      let (convs, features) = kochWidths
      let side = max(kochFinalSide, 0)
      return convs[0] * 100 + convs[1] * convs[0] * 49 + convs[2] * convs[1] * 16 + convs[3] * convs[2] * 16 + convs.reduce(0, +)
        + convs[3] * side * side * features + features + headParameterCount + classifierParameterCount
    }
  }

  /// Parameters of the classifier over the training classes (none without `classes`).
  public var classifierParameterCount: Int {
    guard let classes else { return 0 }
    let (product, overflow) = featureCount.multipliedReportingOverflow(by: classes)
    return overflow ? Int.max / 2 : product + classes
  }

  /// Width of the relation module's second hidden layer (Sung et al.'s `relation_dim`).
  public static let relationWidth = 8

  /// Parameters of the head (none under Euclidean or cosine similarity).
  public var headParameterCount: Int {
    if similarity == .relation && relationModule == .convolutional {
      let (channels, hidden, side, width) = (2 * (vggBlocks.last?.last ?? 0), headHidden, relationModuleSide, ModelConfig.relationWidth)
      let (first, overflow) = channels.multipliedReportingOverflow(by: 9 * hidden)
      let (second, overflow2) = hidden.multipliedReportingOverflow(by: 9 * hidden)
      return overflow || overflow2 ? Int.max / 2 : first + hidden + 2 * hidden + second + hidden + 2 * hidden + hidden * side * side * width + width + width + 1
    }
    if similarity == .relation {
      let (joined, overflow) = (2 * featureCount).multipliedReportingOverflow(by: headHidden)
      let (square, overflow2) = headHidden.multipliedReportingOverflow(by: headHidden)
      let width = ModelConfig.relationWidth
      return overflow || overflow2 ? Int.max / 2 : joined + 3 * headHidden + square + 3 * headHidden + headHidden * width + width + width + 1
    }
    guard similarity == .head else { return 0 }
    switch backbone {
    case .vgg16: return featureCount * headHidden + headHidden + headHidden + 1
    case .koch: return kochWidths.features + 1
    }
  }

  /// Floats of activations one image keeps alive in a training step (conv, batch-norm and
  /// pooling outputs), for bounds on the batch size.
  public var activationFloatsPerImage: Int {
    switch backbone {
    case .vgg16:
      var total = 0, side = inputSize
      for block in vggLayout {
        for width in block.widths {
          side = max(side + 2 * block.padding - 2, 0)
          total += width * side * side * (batchNorm ? 2 : 1)
        }
        if block.pools {
          side /= 2
          total += (block.widths.last ?? 0) * side * side
        }
      }
      return total
    case .koch:
      let widths = kochWidths.convs
      var side = inputSize, total = 0
      for (i, (kernel, pool)) in [(10, true), (7, true), (4, true), (4, false)].enumerated() {
        side = max(side - kernel + 1, 0)
        total += widths[i] * side * side
        if pool {
          side /= 2
          total += widths[i] * side * side
        }
      }
      return total + kochWidths.features
    }
  }
}

extension ModelConfig {
  /// The problems in one line, `key: what is allowed; ...`.
  public var problemSummary: String { problems().map { "\($0.keyPath): \($0.message)" }.joined(separator: "; ") }
}
