import Foundation

/// Gaussian draws for weight initialisation from a seed: SplitMix64 + Box-Muller, the same
/// numbers on every machine. (Model does not import Episodes, whose samplers use the same
/// generator; the dozen lines are repeated on purpose to keep the modules apart.)
public struct NormalSampler: Sendable {
  private var state: UInt64

  /// A sampler for `seed`.
  public init(seed: UInt64) { state = seed ^ 0x5851_f42d_4c95_7f2d }

  private mutating func next() -> UInt64 {
    state &+= 0x9e37_79b9_7f4a_7c15
    var z = state
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
  }

  /// Uniform in (0, 1].
  private mutating func unit() -> Double { (Double(next() >> 11) + 1) * 0x1.0p-53 }

  /// `count` draws uniform in (-bound, bound].
  public mutating func uniform(count: Int, bound: Float) -> [Float] {
    (0..<count).map { _ in Float((2 * unit() - 1) * Double(bound)) }
  }

  /// `count` draws from N(mean, std^2).
  public mutating func normal(count: Int, mean: Float = 0, std: Float) -> [Float] {
    var out = [Float]()
    out.reserveCapacity(count)
    while out.count < count {
      let r = (-2 * log(unit())).squareRoot(), theta = 2 * Double.pi * unit()
      out.append(mean + std * Float(r * cos(theta)))
      if out.count < count { out.append(mean + std * Float(r * sin(theta))) }
    }
    return out
  }
}
