/// One training pair: two image indices of the pool's split, and whether they show the same character.
public struct TrainingPair: Sendable, Equatable {
  /// First image (index into `ImageSplit.images`).
  public let left: Int
  /// Second image.
  public let right: Int
  /// True for the same character (label 1), false for different characters (label 0).
  public let same: Bool

  /// A pair.
  public init(left: Int, right: Int, same: Bool) {
    self.left = left
    self.right = right
    self.same = same
  }
}

/// Balanced same/different pairs for training, drawn from a pool's classes only (never the
/// validation or evaluation alphabets). Like the reference project, each sample is one
/// positive and one negative pair sharing an anchor image, so batches are exactly 1:1.
/// Batch b is a pure function of (seed, pool, settings, b).
public struct PairSampler: Sendable {
  /// The training classes.
  public let pool: ClassPool
  /// The fraction of negatives whose second character comes from the anchor's alphabet.
  public let sameAlphabetNegatives: Double
  /// The user's seed.
  public let seed: UInt64
  let key: UInt64
  private let alphabetOfClass: [Int: Int]  // class -> index into pool.byAlphabet

  /// Index into `pool.byAlphabet` of a pool class's alphabet.
  func alphabetIndex(_ poolClass: Int) -> Int { alphabetOfClass[poolClass]! }

  /// A sampler; needs at least two classes, each with two images.
  public init(pool: ClassPool, sameAlphabetNegatives: Double = 0, seed: UInt64) throws {
    guard pool.classes.count >= 2 else { throw DatasetError.impossibleSpec("training pairs need at least 2 classes; \(pool.name) has \(pool.classes.count)") }
    if let c = pool.classes.first(where: { pool.split.characters[$0].imageCount < 2 }) {
      throw DatasetError.impossibleSpec("a positive pair needs 2 images of a class; \(pool.split.characters[c].name) in \(pool.name) has \(pool.split.characters[c].imageCount)")
    }
    guard (0...1).contains(sameAlphabetNegatives) else {
      throw DatasetError.impossibleSpec("sameAlphabetNegatives is \(sameAlphabetNegatives); it must be within 0...1")
    }
    self.pool = pool
    self.sameAlphabetNegatives = sameAlphabetNegatives
    self.seed = seed
    self.key = stableHash("pairs|\(pool.name)|sameAlphabetNegatives=\(sameAlphabetNegatives)")
    var map: [Int: Int] = [:]
    for (g, group) in pool.byAlphabet.enumerated() { for c in group.classes { map[c] = g } }
    self.alphabetOfClass = map
  }

  /// Batch `index` of `pairs` pairs (even): pairs 2k and 2k+1 are sample k's positive and negative.
  public func batch(_ index: Int, pairs: Int) -> [TrainingPair] {
    precondition(pairs > 0 && pairs % 2 == 0, "a balanced batch needs an even, positive number of pairs, not \(pairs)")
    var rng = SplitMix64(seed: seed, key: key, index: UInt64(index))
    let split = pool.split
    var out: [TrainingPair] = []
    out.reserveCapacity(pairs)
    for _ in 0..<(pairs / 2) {
      let anchorClass = pool.classes[rng.below(pool.classes.count)]
      let character = split.characters[anchorClass]
      let two = rng.sample(2, from: character.imageCount)
      let anchor = character.firstImage + two[0]
      out.append(TrainingPair(left: anchor, right: character.firstImage + two[1], same: true))
      var otherClass: Int
      let group = pool.byAlphabet[alphabetOfClass[anchorClass]!].classes
      if group.count >= 2 && rng.chance(sameAlphabetNegatives) {
        repeat { otherClass = group[rng.below(group.count)] } while otherClass == anchorClass
      } else {
        repeat { otherClass = pool.classes[rng.below(pool.classes.count)] } while otherClass == anchorClass
      }
      let other = split.characters[otherClass]
      out.append(TrainingPair(left: anchor, right: other.firstImage + rng.below(other.imageCount), same: false))
    }
    return out
  }
}

/// Pairs that share images, so each embedded image serves two pairs: a group is two
/// characters (of one alphabet, or with probability 1 - `sameAlphabetNegatives` of any two
/// alphabets) drawn by two drawers, four images, scored as two positive pairs (same
/// character, different drawers) and two negative pairs (different characters and drawers).
/// Batches stay exactly balanced, and the backbone runs once per image, not once per pair side.
public struct GroupedPairBatch: Sendable, Equatable {
  /// Image indices of the pool's split; group g holds images 4g ..< 4g + 4.
  public let images: [Int]
  /// (first, second) positions in `images`, and whether they show the same character.
  public let pairs: [TrainingPair]
}

extension PairSampler {
  /// Two distinct pool classes: the first uniform, the second from the first's alphabet with
  /// probability `sameAlphabetNegatives` (when it has another class), otherwise from any.
  func characterPair(_ rng: inout SplitMix64) -> (Int, Int) {
    let first = pool.classes[rng.below(pool.classes.count)]
    let group = pool.byAlphabet[alphabetIndex(first)].classes
    var second: Int
    if group.count >= 2 && rng.chance(sameAlphabetNegatives) {
      repeat { second = group[rng.below(group.count)] } while second == first
    } else {
      repeat { second = pool.classes[rng.below(pool.classes.count)] } while second == first
    }
    return (first, second)
  }

  /// Batch `index` of `groups` groups: 4 x `groups` images and as many pairs.
  public func groupedBatch(_ index: Int, groups: Int) -> GroupedPairBatch {
    precondition(groups > 0, "a grouped batch needs at least one group")
    var rng = SplitMix64(seed: seed, key: key ^ 0x67_726f_7570, index: UInt64(index))
    let split = pool.split
    var images: [Int] = []
    var pairs: [TrainingPair] = []
    images.reserveCapacity(4 * groups)
    pairs.reserveCapacity(4 * groups)
    for g in 0..<groups {
      let (first, second) = characterPair(&rng)
      let a = split.characters[first], b = split.characters[second]
      let drawers = rng.sample(2, from: min(a.imageCount, b.imageCount))
      images += [a.firstImage + drawers[0], a.firstImage + drawers[1], b.firstImage + drawers[0], b.firstImage + drawers[1]]
      let base = 4 * g
      pairs += [
        TrainingPair(left: base, right: base + 1, same: true), TrainingPair(left: base, right: base + 3, same: false),
        TrainingPair(left: base + 2, right: base + 3, same: true), TrainingPair(left: base + 1, right: base + 2, same: false),
      ]
    }
    return GroupedPairBatch(images: images, pairs: pairs)
  }
}

extension PairSampler {
  /// Drawers per character in a within-batch group.
  public static let batchDrawers = 4

  /// Within-batch scoring: batch `index` of `groups` groups of 2 characters (of one alphabet, or
  /// with probability 1 - `sameAlphabetNegatives` of any two alphabets) x 4 drawers, 8 images a
  /// group, scored as every same-character pair among them (2 x 6 = 12, always two drawers) and
  /// every different-character pair by two different drawers (4 x 3 = 12): 24 balanced pairs from
  /// 8 images, three times the pairs per embedded image of `groupedBatch`; as there, no pair is
  /// of one drawer, so drawer style never tells the label. Every class needs 4 images
  /// (`problemForBatchPairing`).
  public func withinBatch(_ index: Int, groups: Int) -> GroupedPairBatch {
    precondition(groups > 0, "a within-batch step needs at least one group")
    var rng = SplitMix64(seed: seed, key: key ^ 0x6261_7463_68, index: UInt64(index))
    let split = pool.split
    let d = PairSampler.batchDrawers
    var images: [Int] = []
    var pairs: [TrainingPair] = []
    images.reserveCapacity(2 * d * groups)
    pairs.reserveCapacity(24 * groups)
    for g in 0..<groups {
      let (first, second) = characterPair(&rng)
      let a = split.characters[first], b = split.characters[second]
      let drawers = rng.sample(d, from: min(a.imageCount, b.imageCount))
      let base = 2 * d * g
      images += drawers.map { a.firstImage + $0 } + drawers.map { b.firstImage + $0 }
      for character in 0..<2 {
        for i in 0..<d {
          for j in (i + 1)..<d { pairs.append(TrainingPair(left: base + character * d + i, right: base + character * d + j, same: true)) }
        }
      }
      for i in 0..<d {
        for j in 0..<d where j != i { pairs.append(TrainingPair(left: base + i, right: base + d + j, same: false)) }
      }
    }
    return GroupedPairBatch(images: images, pairs: pairs)
  }

  /// Why this pool cannot feed `withinBatch` (a class with fewer than 4 images), or nil.
  public var problemForBatchPairing: String? {
    guard let c = pool.classes.first(where: { pool.split.characters[$0].imageCount < PairSampler.batchDrawers }) else { return nil }
    return "pairing batch needs \(PairSampler.batchDrawers) images of every training class; \(pool.split.characters[c].name) in \(pool.name) has \(pool.split.characters[c].imageCount): use pairing groups"
  }
}
