// Strict decoding of configuration files: every module that owns part of an experiment file
// decodes it with defaults for absent keys and an error naming any unknown key (a misspelt key
// must never fall back to a default silently).

/// A coding key that is whatever string the input holds.
public struct AnyKey: CodingKey {
  public var stringValue: String
  public var intValue: Int? { nil }
  public init(stringValue: String) { self.stringValue = stringValue }
  public init?(intValue: Int) { nil }
}

/// Throws `DecodingError.dataCorrupted` for the first key of the current object that is not
/// one of `keys`, naming the allowed keys.
public func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_ decoder: any Decoder, _ keys: Keys.Type) throws {
  let allowed = Keys.allCases.map(\.stringValue)
  let container = try decoder.container(keyedBy: AnyKey.self)
  for key in container.allKeys.map(\.stringValue).sorted() where !allowed.contains(key) {
    throw DecodingError.dataCorrupted(
      .init(codingPath: decoder.codingPath + [AnyKey(stringValue: key)], debugDescription: "unknown key '\(key)'; allowed: \(allowed.sorted().joined(separator: ", "))"))
  }
}

/// A problem with a configuration value: the key path (relative to whoever checks it) and
/// what is allowed.
public typealias ConfigProblem = (keyPath: String, message: String)

/// Problems of a nested part, with `prefix.` before each key path.
public func nested(_ prefix: String, _ problems: [ConfigProblem]) -> [ConfigProblem] {
  problems.map { (keyPath: $0.keyPath.isEmpty ? prefix : "\(prefix).\($0.keyPath)", message: $0.message) }
}
