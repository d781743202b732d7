import Foundation

/// The difference of two runs scored on the same episodes.
public struct PairedDifference: Sendable, Equatable {
  /// Episodes compared.
  public let count: Int
  /// Mean of (a - b) over episodes.
  public let mean: Double
  /// Half-width of the 95% confidence interval of the mean (Student t).
  public let halfWidth95: Double
  /// Two-sided p-value of the paired t-test (1 when every difference is zero).
  public let pValue: Double

  /// Lower end of the 95% CI.
  public var low: Double { mean - halfWidth95 }
  /// Upper end of the 95% CI.
  public var high: Double { mean + halfWidth95 }
}

/// Statistics of accuracies over episodes, runs and seeds: means, intervals and tests.
public enum Statistics {
  /// Arithmetic mean; 0 for no values.
  public static func mean(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }

  /// Sample standard deviation (n - 1); 0 for fewer than two values.
  public static func standardDeviation(_ values: [Double]) -> Double {
    guard values.count >= 2 else { return 0 }
    let m = mean(values)
    return (values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count - 1)).squareRoot()
  }

  /// Standard error of the mean.
  public static func standardError(_ values: [Double]) -> Double {
    values.count < 2 ? 0 : standardDeviation(values) / Double(values.count).squareRoot()
  }

  /// Wilson's 95% score interval of a proportion `p` over `n` trials (n may be fractional);
  /// it stays in [0, 1] and is not degenerate at 0 or 1.
  public static func wilson95(_ p: Double, trials n: Double) -> (low: Double, high: Double) {
    guard n > 0 else { return (0, 1) }
    let z = 1.959963984540054, z2 = z * z
    let denominator = 1 + z2 / n
    let center = (p + z2 / (2 * n)) / denominator
    let half = z / denominator * (p * (1 - p) / n + z2 / (4 * n * n)).squareRoot()
    return (max(0, center - half), min(1, center + half))
  }

  /// The 95% interval of an accuracy measured over episodes: Wilson's score interval with the
  /// effective number of trials that the spread of the episode accuracies implies
  /// (n_eff = p(1 - p) / SE^2, SE the standard error of the episode accuracies), at most the
  /// `trials` (queries) scored. For one-query episodes it is Wilson's interval over the
  /// episodes; for episodes of many queries it is as wide as the spread between episodes
  /// says. Unlike mean +- 1.96 SE it never leaves [0, 1].
  public static func accuracyInterval95(_ episodeAccuracies: [Double], pooled p: Double, trials: Int? = nil) -> (low: Double, high: Double) {
    let cap = Double(trials ?? episodeAccuracies.count)
    let se = standardError(episodeAccuracies)
    let effective = se > 0 ? min(cap, p * (1 - p) / (se * se)) : cap
    return wilson95(p, trials: max(effective, 1))
  }
}

extension Statistics {
  /// The paired t-test of per-episode accuracies `a` and `b` (same episodes, same order).
  public static func paired(_ a: [Double], _ b: [Double]) -> PairedDifference {
    precondition(a.count == b.count, "paired: \(a.count) and \(b.count) values")
    let d = zip(a, b).map { $0 - $1 }
    let n = d.count
    let m = mean(d)
    guard n >= 2 else { return PairedDifference(count: n, mean: m, halfWidth95: 0, pValue: 1) }
    let se = standardError(d)
    let df = Double(n - 1)
    if se == 0 { return PairedDifference(count: n, mean: m, halfWidth95: 0, pValue: m == 0 ? 1 : 0) }
    let t = m / se
    return PairedDifference(count: n, mean: m, halfWidth95: studentQuantile975(df) * se, pValue: studentTwoSidedP(abs(t), df))
  }

  /// Two-sided p-value of McNemar's exact test from the discordant counts (a right and b
  /// wrong: `onlyA`; the reverse: `onlyB`), for runs scored trial by trial.
  public static func mcNemarP(onlyA: Int, onlyB: Int) -> Double {
    let n = onlyA + onlyB
    guard n > 0 else { return 1 }
    let k = min(onlyA, onlyB)
    // P(X <= k) for X ~ Binomial(n, 1/2), doubled.
    var logTerm = -Double(n) * log(2.0)  // log C(n, 0) / 2^n
    var cumulative = exp(logTerm)
    if k > 0 {
      for i in 1...k {
        logTerm += log(Double(n - i + 1)) - log(Double(i))
        cumulative += exp(logTerm)
      }
    }
    return min(1, 2 * cumulative)
  }

  /// The 97.5% quantile of Student's t with `df` degrees of freedom (two-sided 95%).
  public static func studentQuantile975(_ df: Double) -> Double {
    // Bisection on the CDF; the quantile lies between 1.96 (df = infinity) and 12.71 (df = 1).
    var low = 1.959, high = 12.71
    for _ in 0..<60 {
      let mid = (low + high) / 2
      if studentTwoSidedP(mid, df) > 0.05 { low = mid } else { high = mid }
    }
    return (low + high) / 2
  }

  /// P(|T| >= t) for Student's t with `df` degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2).
  public static func studentTwoSidedP(_ t: Double, _ df: Double) -> Double {
    regularizedIncompleteBeta(df / (df + t * t), df / 2, 0.5)
  }

  /// The regularized incomplete beta function I_x(a, b) (continued fraction, Lentz's method).
  static func regularizedIncompleteBeta(_ x: Double, _ a: Double, _ b: Double) -> Double {
    if x <= 0 { return 0 }
    if x >= 1 { return 1 }
    let logGammas: Double = lgamma(a + b) - lgamma(a) - lgamma(b)
    let logPowers: Double = a * log(x) + b * log(1 - x)
    let logFront = logGammas + logPowers
    if x > (a + 1) / (a + b + 2) { return 1 - regularizedIncompleteBeta(1 - x, b, a) }
    let tiny = 1e-300
    var c = 1.0, d = 1 - (a + b) * x / (a + 1)
    if abs(d) < tiny { d = tiny }
    d = 1 / d
    var f = d
    for m in 1...300 {
      let m = Double(m)
      let evenDenominator: Double = (a + 2 * m - 1) * (a + 2 * m)
      var numerator: Double = m * (b - m) * x / evenDenominator
      d = 1 + numerator * d
      if abs(d) < tiny { d = tiny }
      c = 1 + numerator / c
      if abs(c) < tiny { c = tiny }
      d = 1 / d
      f *= d * c
      let oddDenominator: Double = (a + 2 * m) * (a + 2 * m + 1)
      numerator = -(a + m) * (a + b + m) * x / oddDenominator
      d = 1 + numerator * d
      if abs(d) < tiny { d = tiny }
      c = 1 + numerator / c
      if abs(c) < tiny { c = tiny }
      d = 1 / d
      let delta = d * c
      f *= delta
      if abs(delta - 1) < 1e-14 { break }
    }
    return exp(logFront) * f / a
  }
}
