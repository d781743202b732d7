// Counter-based randomness. Every random draw in the harness comes from a SplitMix64 stream
// whose starting state is a pure function of (seed, what is being drawn, index): episode i,
// training batch b, augmentation of sample s. Never Swift's `Hasher` (seeded per process) and
// never the system generator, so the same draws come out on every machine, in any order.

/// SplitMix64 (Steele, Lea and Flood 2014): a 64-bit generator with a fixed, portable output.
public struct SplitMix64: RandomNumberGenerator, Sendable {
  /// The generator's state; each `next()` advances it by the golden-ratio increment.
  public private(set) var state: UInt64

  /// A stream starting at `state`.
  public init(state: UInt64) { self.state = state }

  /// A stream for item `index` of the stream family `key` under `seed`.
  public init(seed: UInt64, key: UInt64, index: UInt64) {
    self.state = SplitMix64.mix(SplitMix64.mix(seed ^ 0x6a09_e667_f3bc_c909) &+ key) ^ SplitMix64.mix(index &+ 0x9e37_79b9_7f4a_7c15)
  }

  /// The next 64 random bits.
  public mutating func next() -> UInt64 {
    state &+= 0x9e37_79b9_7f4a_7c15
    return SplitMix64.mix(state)
  }

  /// SplitMix64's finaliser: a bijective avalanche of 64 bits.
  @inline(__always) public static func mix(_ value: UInt64) -> UInt64 {
    var z = value
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
  }

  /// A uniform integer in `0..<bound` (Lemire's multiply-shift with rejection; exact, portable).
  public mutating func below(_ bound: Int) -> Int {
    precondition(bound > 0, "below(\(bound)): the bound must be positive")
    let range = UInt64(bound)
    var product = next().multipliedFullWidth(by: range)
    if product.low < range {
      let threshold = (0 &- range) % range
      while product.low < threshold { product = next().multipliedFullWidth(by: range) }
    }
    return Int(product.high)
  }

  /// A uniform Double in [0, 1) with 53 random bits.
  public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

  /// A uniform Double in [low, high).
  public mutating func uniform(_ low: Double, _ high: Double) -> Double { low + (high - low) * unit() }

  /// True with probability `p`.
  public mutating func chance(_ p: Double) -> Bool { unit() < p }

  /// `count` distinct values from `0..<population` in draw order (partial Fisher-Yates).
  public mutating func sample(_ count: Int, from population: Int) -> [Int] {
    precondition(count <= population, "cannot draw \(count) distinct items from \(population)")
    var pool = Array(0..<population)
    for i in 0..<count {
      let j = i + below(population - i)
      pool.swapAt(i, j)
    }
    return Array(pool[0..<count])
  }
}

/// A stable 64-bit hash of a string (FNV-1a over its UTF-8 bytes, then SplitMix-mixed),
/// identical on every platform and in every process, unlike `hashValue`.
public func stableHash(_ text: String) -> UInt64 { stableHash(bytes: text.utf8) }

/// The same hash of any bytes (e.g. an image's pixels).
@inlinable public func stableHash<Bytes: Sequence>(bytes: Bytes) -> UInt64 where Bytes.Element == UInt8 {
  var hash: UInt64 = 0xcbf2_9ce4_8422_2325
  for byte in bytes {
    hash ^= UInt64(byte)
    hash = hash &* 0x0000_0100_0000_01b3
  }
  return SplitMix64.mix(hash)
}
