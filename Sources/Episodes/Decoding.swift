/// Strict decoding of the Episodes parts of an experiment file: defaults for absent keys, an
/// error naming any unknown key.
extension EpisodeSpec {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case ways, shots, queries, alphabetMode, disjointDrawers
  }

  public init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue))
    let c = try decoder.container(keyedBy: CodingKeys.self)
    self.init(
      ways: try c.decode(Int.self, forKey: .ways), shots: try c.decodeIfPresent(Int.self, forKey: .shots) ?? 1,
      queries: try c.decodeIfPresent(Int.self, forKey: .queries) ?? 1,
      alphabetMode: try c.decodeIfPresent(AlphabetMode.self, forKey: .alphabetMode) ?? .within,
      disjointDrawers: try c.decodeIfPresent(Bool.self, forKey: .disjointDrawers) ?? false)
  }
}

extension AffineAugmentation {
  enum CodingKeys: String, CodingKey, CaseIterable {
    case rotationDegrees, shear, scaleMin, scaleMax, translation, probability
  }

  public init(from decoder: any Decoder) throws {
    try rejectUnknownKeys(decoder, allowed: CodingKeys.allCases.map(\.rawValue))
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

  /// Problems with the settings, as `key: what is allowed`.
  public func problems() -> [String] {
    var out: [String] = []
    if !(0...90).contains(rotationDegrees) { out.append("rotationDegrees: within 0...90") }
    if !(0...1).contains(shear) { out.append("shear: within 0...1") }
    if !(scaleMin > 0 && scaleMin <= scaleMax && scaleMax <= 4) { out.append("scaleMin, scaleMax: 0 < scaleMin <= scaleMax <= 4") }
    if !(0...20).contains(translation) { out.append("translation: within 0...20 pixels") }
    if !(0...1).contains(probability) { out.append("probability: within 0...1") }
    return out
  }
}

/// A key that is whatever string the input holds.
struct AnyKey: CodingKey {
  var stringValue: String
  var intValue: Int? { nil }
  init(stringValue: String) { self.stringValue = stringValue }
  init?(intValue: Int) { nil }
}

/// Throws `DecodingError.dataCorrupted` naming the first key that is not in `allowed`.
func rejectUnknownKeys(_ decoder: any Decoder, allowed: [String]) throws {
  let container = try decoder.container(keyedBy: AnyKey.self)
  for key in container.allKeys.map(\.stringValue).sorted() where !allowed.contains(key) {
    throw DecodingError.dataCorrupted(
      .init(codingPath: decoder.codingPath + [AnyKey(stringValue: key)], debugDescription: "unknown key '\(key)'; allowed: \(allowed.sorted().joined(separator: ", "))"))
  }
}
