/// The documented split of Omniglot's background alphabets into training and validation.
public enum OmniglotAlphabets {
  /// Background alphabets held out for model selection and early stopping (157 characters,
  /// each with at least 20, so 20-way within-alphabet validation episodes are possible).
  /// Training uses the other 25 background alphabets (807 characters). The evaluation
  /// alphabets are the test set and are never used for training or model selection.
  public static let defaultValidation = ["Armenian", "Bengali", "Early_Aramaic", "Futurama", "Hebrew"]

  /// The alphabets of Lake's 20 runs, two runs each, in run order (run01-02 Atlantean, ...).
  public static let lakeRunAlphabets = [
    "Atlantean", "Ge_ez", "Glagolitic", "Gurmukhi", "Kannada", "Malayalam", "Manipuri",
    "Old_Church_Slavonic_(Cyrillic)", "Tengwar", "Tibetan",
  ]
}

extension ImageSplit {
  /// The training and validation pools of a background split: validation = the named
  /// alphabets, training = every other alphabet. The two never share a class.
  public func trainingAndValidation(validationAlphabets: [String]) throws -> (training: ClassPool, validation: ClassPool) {
    let validation = try ClassPool(split: self, alphabets: validationAlphabets, include: true, name: "\(name)/validation")
    let training = try ClassPool(split: self, alphabets: validationAlphabets, include: false, name: "\(name)/training")
    return (training, validation)
  }
}

/// The held-out part of a folder of your own images used for training: whole groups (they play
/// Omniglot's validation alphabets), or, for a folder with a single group, classes of it.
public struct HeldOut: Sendable {
  /// The training and validation pools; they never share a class.
  public let pools: (training: ClassPool, validation: ClassPool)
  /// What was held out: group names, or `group/class` names, sorted.
  public let names: [String]

  /// The pools of `split` holding out the named `groups`, or else a `fraction` of its groups
  /// (at least one, never all) chosen by a seeded shuffle; a single-group split holds out that
  /// fraction of its classes instead. The same seed always holds out the same part.
  /// `folder` names the folder in messages.
  public init(_ split: ImageSplit, folder: String, groups: [String]?, fraction: Double, seed: UInt64) throws {
    if let groups {
      pools = try split.trainingAndValidation(validationAlphabets: groups)
      names = groups.sorted(by: utf8Less)
      return
    }
    var random = SplitMix64(seed: seed, key: 0x6865_6c64_6f75_74, index: 0)  // "heldout"
    func chosen(_ count: Int) -> Set<Int> {
      let take = min(count - 1, max(1, Int((fraction * Double(count)).rounded())))
      var order = Array(0..<count)
      for i in stride(from: count - 1, to: 0, by: -1) { order.swapAt(i, random.below(i + 1)) }
      return Set(order.prefix(take))
    }
    if split.alphabets.count >= 2 {
      let held = chosen(split.alphabets.count)
      let heldNames = split.alphabets.indices.filter(held.contains).map { split.alphabets[$0] }
      pools = try split.trainingAndValidation(validationAlphabets: heldNames)
      names = heldNames
    } else {
      guard split.characters.count >= 2 else {
        throw DatasetError.folderProblem(
          root: folder, problem: "one group with \(split.characters.count) class; training needs classes to train on and others to validate on: add classes or groups")
      }
      let held = chosen(split.characters.count)
      let validation = split.characters.indices.filter(held.contains)
      let training = split.characters.indices.filter { !held.contains($0) }
      pools = (ClassPool(split: split, name: "\(split.name)/training", classes: training), ClassPool(split: split, name: "\(split.name)/validation", classes: validation))
      names = validation.map { "\(split.alphabets[split.characters[$0].alphabet])/\(split.characters[$0].name)" }
    }
  }
}
