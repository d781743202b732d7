// What JSONDecoder lets through in an untrusted document: a key given twice (the decoder keeps
// one silently), a number beyond Double's range (reported without its key path) and nesting deep
// enough to exhaust the stack. One pass over the bytes finds the first of them with its key path.

/// Scans JSON text for problems the decoder hides.
public enum JSONScan {
  /// Deepest nesting accepted.
  public static let maximumDepth = 256

  /// The first duplicate key, out-of-range number or over-deep nesting, with its key path
  /// (`training.optimizer.learningRate`, `evaluation[0].spec`); nil when there is none, or when
  /// the text is not JSON at all (the decoder says so then).
  public static func firstProblem(_ bytes: [UInt8]) -> ConfigProblem? {
    var scanner = Scanner(bytes: bytes)
    do {
      scanner.skipSpace()
      try scanner.value(path: "", depth: 0)
      return nil
    } catch let found as Found {
      return found.problem
    } catch {
      return nil
    }
  }

  struct Found: Error { let problem: ConfigProblem }
  struct Malformed: Error {}

  struct Scanner {
    let bytes: [UInt8]
    var i = 0

    mutating func skipSpace() { while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 } }

    mutating func expect(_ byte: UInt8) throws {
      skipSpace()
      guard i < bytes.count, bytes[i] == byte else { throw Malformed() }
      i += 1
    }

    mutating func value(path: String, depth: Int) throws {
      guard depth <= JSONScan.maximumDepth else { throw Found(problem: (path, "nested deeper than \(JSONScan.maximumDepth) levels")) }
      skipSpace()
      guard i < bytes.count else { throw Malformed() }
      switch bytes[i] {
      case UInt8(ascii: "{"):
        i += 1
        var keys = Set<[UInt8]>()
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
          i += 1
          return
        }
        while true {
          skipSpace()
          let key = try string()
          let child = path.isEmpty ? String(decoding: key, as: UTF8.self) : "\(path).\(String(decoding: key, as: UTF8.self))"
          guard keys.insert(key).inserted else { throw Found(problem: (child, "this key is given twice; keep one")) }
          try expect(UInt8(ascii: ":"))
          try value(path: child, depth: depth + 1)
          skipSpace()
          guard i < bytes.count else { throw Malformed() }
          if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
          if bytes[i] == UInt8(ascii: "}") { i += 1; return }
          throw Malformed()
        }
      case UInt8(ascii: "["):
        i += 1
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
          i += 1
          return
        }
        var index = 0
        while true {
          try value(path: "\(path)[\(index)]", depth: depth + 1)
          index += 1
          skipSpace()
          guard i < bytes.count else { throw Malformed() }
          if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
          if bytes[i] == UInt8(ascii: "]") { i += 1; return }
          throw Malformed()
        }
      case UInt8(ascii: "\""):
        _ = try string()
      default:
        let start = i
        while i < bytes.count, !([0x20, 0x09, 0x0A, 0x0D, UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "}")].contains(bytes[i])) { i += 1 }
        let token = String(decoding: bytes[start..<i], as: UTF8.self)
        if ["true", "false", "null"].contains(token) { return }
        guard let number = Double(token) else { throw Malformed() }
        if !number.isFinite { throw Found(problem: (path, "the number \(token) is beyond what a 64-bit float holds")) }
      }
    }

    /// A string's raw bytes (escapes kept as written), the quotes consumed.
    mutating func string() throws -> [UInt8] {
      guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw Malformed() }
      i += 1
      let start = i
      while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
        i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1
      }
      guard i < bytes.count else { throw Malformed() }
      defer { i += 1 }
      return Array(bytes[start..<i])
    }
  }
}
