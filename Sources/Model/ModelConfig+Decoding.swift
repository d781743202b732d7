import Support

/// Decoding with defaults for absent keys, and an error for unknown ones (a misspelt key in an
/// experiment file must not silently fall back to a default).
extension ModelConfig {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case backbone, inputSize, width, batchNorm, blocks, blockPooling, blockPadding, relationModule, headHidden, headActivation, similarity, resampling, initialization, classes
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    try rejectUnknownKeys(decoder, CodingKeys.self)
    self.init(
      backbone: try container.decode(BackboneKind.self, forKey: .backbone),
      inputSize: try container.decodeIfPresent(Int.self, forKey: .inputSize) ?? 105,
      width: try container.decodeIfPresent(Double.self, forKey: .width) ?? 1,
      batchNorm: try container.decodeIfPresent(Bool.self, forKey: .batchNorm) ?? false,
      blocks: try container.decodeIfPresent([[Int]].self, forKey: .blocks),
      headHidden: try container.decodeIfPresent(Int.self, forKey: .headHidden) ?? 512,
      headActivation: try container.decodeIfPresent(HeadActivation.self, forKey: .headActivation) ?? HeadActivation.none)
    similarity = try container.decodeIfPresent(Similarity.self, forKey: .similarity) ?? .head
    resampling = try container.decodeIfPresent(ImageResampling.self, forKey: .resampling) ?? .area
    initialization = try container.decodeIfPresent(WeightInitialization.self, forKey: .initialization) ?? .kaiming
    classes = try container.decodeIfPresent(Int.self, forKey: .classes)
    blockPooling = try container.decodeIfPresent([Bool].self, forKey: .blockPooling)
    blockPadding = try container.decodeIfPresent([Int].self, forKey: .blockPadding)
    relationModule = try container.decodeIfPresent(RelationModule.self, forKey: .relationModule) ?? .linear
  }

  /// Every key; `similarity`, `resampling`, `initialization`, `classes`, `blockPooling`,
  /// `blockPadding` and `relationModule` only when not their defaults (`head`, `area`, `kaiming`,
  /// none, none, none, `linear`), so that the configuration hashes and checkpoint metadata of
  /// networks recorded before those keys existed stay the same.
  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(backbone, forKey: .backbone)
    try c.encode(inputSize, forKey: .inputSize)
    try c.encode(width, forKey: .width)
    try c.encode(batchNorm, forKey: .batchNorm)
    try c.encodeIfPresent(blocks, forKey: .blocks)
    try c.encodeIfPresent(blockPooling, forKey: .blockPooling)
    try c.encodeIfPresent(blockPadding, forKey: .blockPadding)
    if relationModule != .linear { try c.encode(relationModule, forKey: .relationModule) }
    try c.encode(headHidden, forKey: .headHidden)
    try c.encode(headActivation, forKey: .headActivation)
    if similarity != .head { try c.encode(similarity, forKey: .similarity) }
    if resampling != .area { try c.encode(resampling, forKey: .resampling) }
    if initialization != .kaiming { try c.encode(initialization, forKey: .initialization) }
    try c.encodeIfPresent(classes, forKey: .classes)
  }
}
