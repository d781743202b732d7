/// How the classes of one episode are drawn.
public enum AlphabetMode: String, Codable, Sendable, CaseIterable {
  /// All N classes from one alphabet, as in Lake's protocol (harder: similar characters).
  case within
  /// Classes drawn from the whole pool, across alphabets.
  case across
}

/// What one N-way K-shot episode is.
public struct EpisodeSpec: Codable, Hashable, Sendable {
  /// N: classes per episode.
  public var ways: Int
  /// K: support images per class.
  public var shots: Int
  /// Q: query images per class.
  public var queries: Int
  /// Classes from one alphabet or across alphabets.
  public var alphabetMode: AlphabetMode
  /// When true, every class's support images come from the same K drawers and its queries
  /// from Q other drawers (Lake's runs: training from one drawer, tests from another).
  public var disjointDrawers: Bool

  /// A specification; check it against a pool with `EpisodeSampler.init`.
  public init(ways: Int, shots: Int, queries: Int, alphabetMode: AlphabetMode = .within, disjointDrawers: Bool = false) {
    self.ways = ways
    self.shots = shots
    self.queries = queries
    self.alphabetMode = alphabetMode
    self.disjointDrawers = disjointDrawers
  }

  /// Canonical text of the spec, the part of the random key that names it.
  public var canonical: String {
    "ways=\(ways);shots=\(shots);queries=\(queries);alphabets=\(alphabetMode.rawValue);disjointDrawers=\(disjointDrawers)"
  }
}

/// One sampled episode. Image indices point into the pool's `ImageSplit.images`.
public struct Episode: Sendable, Equatable {
  /// Position in the episode sequence (the counter of the random stream).
  public let index: Int
  /// The alphabet of a within-alphabet episode (index into `ImageSplit.alphabets`).
  public let alphabet: Int?
  /// N character indices, in draw order; class c of the episode is `classes[c]`.
  public let classes: [Int]
  /// `support[c]`: K image indices of class c.
  public let support: [[Int]]
  /// `queries[c]`: Q image indices of class c, none of them in `support`.
  public let queries: [[Int]]
}

/// A set of classes of one split that episodes or pairs are drawn from, e.g. the evaluation
/// split, or the background split without its validation alphabets.
public struct ClassPool: Sendable {
  /// The split the classes belong to.
  public let split: ImageSplit
  /// Name of the pool in random keys and messages, e.g. `background/validation`.
  public let name: String
  /// Character indices in the pool, sorted.
  public let classes: [Int]
  /// The pool's classes grouped by alphabet: (alphabet index, its classes), sorted.
  public let byAlphabet: [(alphabet: Int, classes: [Int])]

  /// All classes of `split`.
  public init(split: ImageSplit) {
    self.init(split: split, name: split.name, classes: Array(split.characters.indices))
  }

  /// The given classes of `split`.
  public init(split: ImageSplit, name: String, classes: [Int]) {
    self.split = split
    self.name = name
    self.classes = classes.sorted()
    var groups: [(alphabet: Int, classes: [Int])] = []
    for c in self.classes {
      let alphabet = split.characters[c].alphabet
      if groups.last?.alphabet == alphabet { groups[groups.count - 1].classes.append(c) } else { groups.append((alphabet, [c])) }
    }
    self.byAlphabet = groups
  }

  /// The classes of the named alphabets (`include: true`) or of all others (`include: false`).
  /// Unknown alphabet names are an error that lists the split's alphabets.
  public init(split: ImageSplit, alphabets names: [String], include: Bool, name: String) throws {
    for alphabet in names where !split.alphabets.contains(alphabet) {
      throw DatasetError.impossibleSpec("alphabet '\(alphabet)' is not in the \(split.name) split; it has: \(split.alphabets.joined(separator: ", "))")
    }
    let chosen = Set(names.compactMap { split.alphabets.firstIndex(of: $0) })
    let classes = split.characters.indices.filter { chosen.contains(split.characters[$0].alphabet) == include }
    self.init(split: split, name: name, classes: classes)
  }
}

/// Draws episodes: episode i is a pure function of (seed, pool name, spec, i), so the same
/// episodes come out on every machine, in any order, on any number of threads.
public struct EpisodeSampler: Sendable {
  /// Where classes come from.
  public let pool: ClassPool
  /// What an episode is.
  public let spec: EpisodeSpec
  /// The user's seed.
  public let seed: UInt64
  private let key: UInt64
  private let eligibleAlphabets: [Int]  // indices into pool.byAlphabet with >= ways classes

  /// Checks `spec` against `pool` before any work: an impossible spec is a clear error.
  public init(pool: ClassPool, spec: EpisodeSpec, seed: UInt64) throws {
    guard spec.ways >= 2 else { throw DatasetError.impossibleSpec("ways is \(spec.ways); an episode needs at least 2 classes") }
    guard spec.shots >= 1 else { throw DatasetError.impossibleSpec("shots is \(spec.shots); each class needs at least 1 support image") }
    guard spec.queries >= 1 else { throw DatasetError.impossibleSpec("queries is \(spec.queries); each class needs at least 1 query image") }
    let (need, overflow) = spec.shots.addingReportingOverflow(spec.queries)
    guard !overflow else { throw DatasetError.impossibleSpec("shots + queries = \(spec.shots) + \(spec.queries) images per class is more than any class has; lower shots or queries") }
    let split = pool.split
    guard !pool.classes.isEmpty else { throw DatasetError.impossibleSpec("the pool \(pool.name) has no classes") }
    if let smallest = pool.classes.min(by: { split.characters[$0].imageCount < split.characters[$1].imageCount }),
      split.characters[smallest].imageCount < need
    {
      let c = split.characters[smallest]
      throw DatasetError.impossibleSpec(
        "shots + queries = \(need) images per class, but class \(split.alphabets[c.alphabet])/\(c.name) in \(pool.name) has only \(c.imageCount); lower shots or queries")
    }
    switch spec.alphabetMode {
    case .across:
      guard spec.ways <= pool.classes.count else {
        throw DatasetError.impossibleSpec("\(spec.ways)-way episodes need \(spec.ways) classes, but \(pool.name) has \(pool.classes.count); lower ways")
      }
      eligibleAlphabets = []
    case .within:
      eligibleAlphabets = pool.byAlphabet.indices.filter { pool.byAlphabet[$0].classes.count >= spec.ways }
      guard !eligibleAlphabets.isEmpty else {
        let largest = pool.byAlphabet.map { $0.classes.count }.max() ?? 0
        throw DatasetError.impossibleSpec(
          "\(spec.ways)-way within-alphabet episodes need an alphabet with \(spec.ways) characters, but the largest in \(pool.name) has \(largest); lower ways or use alphabetMode across"
        )
      }
    }
    self.pool = pool
    self.spec = spec
    self.seed = seed
    self.key = stableHash("episode|\(pool.name)|\(spec.canonical)")
  }

  /// Episode `index`, independent of which other episodes were drawn.
  public func episode(_ index: Int) -> Episode {
    var rng = SplitMix64(seed: seed, key: key, index: UInt64(index))
    let split = pool.split
    var alphabet: Int? = nil
    var classes: [Int]
    switch spec.alphabetMode {
    case .within:
      let group = pool.byAlphabet[eligibleAlphabets[rng.below(eligibleAlphabets.count)]]
      alphabet = group.alphabet
      classes = rng.sample(spec.ways, from: group.classes.count).map { group.classes[$0] }
    case .across:
      classes = rng.sample(spec.ways, from: pool.classes.count).map { pool.classes[$0] }
    }
    var support: [[Int]] = []
    var queries: [[Int]] = []
    let need = spec.shots + spec.queries
    if spec.disjointDrawers {
      let smallest = classes.map { split.characters[$0].imageCount }.min() ?? need
      let positions = rng.sample(need, from: smallest)
      for c in classes {
        let first = split.characters[c].firstImage
        support.append(positions[0..<spec.shots].map { first + $0 })
        queries.append(positions[spec.shots...].map { first + $0 })
      }
    } else {
      for c in classes {
        let character = split.characters[c]
        let positions = rng.sample(need, from: character.imageCount)
        support.append(positions[0..<spec.shots].map { character.firstImage + $0 })
        queries.append(positions[spec.shots...].map { character.firstImage + $0 })
      }
    }
    return Episode(index: index, alphabet: alphabet, classes: classes, support: support, queries: queries)
  }

  /// Episodes `0..<count`.
  public func episodes(count: Int) -> [Episode] { (0..<count).map(episode) }
}

extension ClassPool {
  /// `spec` as a folder of your own can serve it: within one group when some group has `ways`
  /// classes, otherwise across groups (Omniglot's alphabets always have enough; a folder's groups
  /// may not).
  public func fitted(_ spec: EpisodeSpec) -> EpisodeSpec {
    var out = spec
    if out.alphabetMode == .within && !byAlphabet.contains(where: { $0.classes.count >= out.ways }) { out.alphabetMode = .across }
    return out
  }
}
