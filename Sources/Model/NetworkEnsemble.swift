/// Several networks of one model configuration scored as one model: a pair's score is the mean
/// of the members' scores (with a head, the logit, whose sigmoid `predict` prints; without one,
/// the negative squared distance). A single network is an ensemble of one, scored exactly as the
/// network alone.
public struct NetworkEnsemble: Sendable {
  /// The networks, in checkpoint order.
  public private(set) var members: [EmbeddingNetwork]

  /// An ensemble of `members`, which must be non-empty and share one model configuration.
  public init(members: [EmbeddingNetwork]) {
    precondition(!members.isEmpty, "an ensemble needs at least one network")
    precondition(members.allSatisfy { $0.config == members[0].config }, "ensemble members must share one model configuration")
    self.members = members
  }

  /// The configuration every member was built from.
  public var config: ModelConfig { members[0].config }

  /// Feature count of one member's embedding.
  public var featureCount: Int { members[0].featureCount }

  /// Embeds images with every member's backbone.   images: (N, 1, S, S) -> one (N, F) per member
  public func embed(_ images: Tensor) -> [Tensor] {
    members.map { $0.embed(images) }
  }

  /// Mean logit of pairs from precomputed embeddings: `a[m]`, `b[m]` are member m's (P, F).
  public func score(_ a: [Tensor], _ b: [Tensor]) -> [Float] {
    precondition(a.count == members.count && b.count == members.count, "one embedding per member is needed")
    var sum = members[0].score(a[0], b[0])
    guard members.count > 1 else { return sum }
    for m in 1..<members.count {
      let logits = members[m].score(a[m], b[m])
      for i in sum.indices { sum[i] += logits[i] }
    }
    let scale = 1 / Float(members.count)
    for i in sum.indices { sum[i] *= scale }
    return sum
  }
}
