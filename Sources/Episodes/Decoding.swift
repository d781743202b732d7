import Support

/// Strict decoding of the Episodes parts of an experiment file: defaults for absent keys, an
/// error naming any unknown key.
extension EpisodeSpec {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case ways, shots, queries, alphabetMode, disjointDrawers
  }

  public init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    self.init(
      ways: try c.decode(Int.self, forKey: .ways), shots: try c.decodeIfPresent(Int.self, forKey: .shots) ?? 1,
      queries: try c.decodeIfPresent(Int.self, forKey: .queries) ?? 1,
      alphabetMode: try c.decodeIfPresent(AlphabetMode.self, forKey: .alphabetMode) ?? .within,
      disjointDrawers: try c.decodeIfPresent(Bool.self, forKey: .disjointDrawers) ?? false)
  }

  /// Dataset-independent checks, as (key path, what is allowed); the checks that depend on a
  /// pool (enough classes, drawers) run when a sampler is built, still before any training.
  public func problems() -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    if !(2...10_000).contains(ways) { out.append(("ways", "between 2 and 10000; got \(ways)")) }
    if !(1...10_000).contains(shots) { out.append(("shots", "between 1 and 10000; got \(shots)")) }
    if !(1...10_000).contains(queries) { out.append(("queries", "between 1 and 10000; got \(queries)")) }
    // Checked for overflow: shots = Int.max plus one query must be refused, not crash.
    let (perClass, overflow) = shots.addingReportingOverflow(queries)
    if overflow || perClass > 20 { out.append(("shots + queries", "at most 20 (Omniglot has 20 drawings per character); got \(overflow ? "\(shots) + \(queries)" : String(perClass))")) }
    return out
  }
}

extension AffineAugmentation {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case rotationDegrees, shear, scaleMin, scaleMax, translation, probability
  }

  public init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, CodingKeys.self)
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let koch = AffineAugmentation.koch
    self.init(
      rotationDegrees: try c.decodeIfPresent(Double.self, forKey: .rotationDegrees) ?? koch.rotationDegrees,
      shear: try c.decodeIfPresent(Double.self, forKey: .shear) ?? koch.shear,
      scaleMin: try c.decodeIfPresent(Double.self, forKey: .scaleMin) ?? koch.scaleMin,
      scaleMax: try c.decodeIfPresent(Double.self, forKey: .scaleMax) ?? koch.scaleMax,
      translation: try c.decodeIfPresent(Double.self, forKey: .translation) ?? koch.translation,
      probability: try c.decodeIfPresent(Double.self, forKey: .probability) ?? koch.probability)
  }

  /// Problems with the settings, as (key path, what is allowed).
  public func problems() -> [ConfigProblem] {
    var out: [ConfigProblem] = []
    if !(0...90).contains(rotationDegrees) { out.append(("rotationDegrees", "within 0...90")) }
    if !(0...1).contains(shear) { out.append(("shear", "within 0...1")) }
    if !(scaleMin > 0 && scaleMin <= scaleMax && scaleMax <= 4) { out.append(("scaleMin, scaleMax", "0 < scaleMin <= scaleMax <= 4")) }
    if !(0...20).contains(translation) { out.append(("translation", "within 0...20 pixels")) }
    if !(0...1).contains(probability) { out.append(("probability", "within 0...1")) }
    return out
  }
}
