// What JSONDecoder lets through in an untrusted document: a key given twice (the decoder keeps
// one silently), a number beyond Double's range (reported without its key path) and nesting deep
// enough to exhaust the stack. One pass over the bytes finds the first of them with its key path.
// And what it reports without a key: a number its key's type cannot hold.

import Foundation

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

  /// The first number of `bytes` that `type` cannot hold (1.5 or -1 for a count, 1e30 for an
  /// integer), with its key path, when decoding fails for want of one. Foundation's JSONDecoder
  /// calls that "not valid JSON" and names no key. Every numeric type holds 1, so with the
  /// numbers from the k-th on replaced by 1 the decoder gets past every number exactly when none
  /// before the k-th is at fault; bisection on k finds the first culprit in a few decodes.
  public static func firstUnfittingNumber<T: Decodable>(_ bytes: [UInt8], as type: T.Type) -> ConfigProblem? {
    var scanner = Scanner(bytes: bytes)
    do {
      scanner.skipSpace()
      try scanner.value(path: "", depth: 0)
    } catch {
      return nil
    }
    let numbers = scanner.numbers
    /// Whether decoding gets past every number: it succeeds, or fails somewhere it can name.
    func passes(replacingFrom k: Int) -> Bool {
      // One linear copy (replacing in place would shift the tail once per number).
      var edited: [UInt8] = []
      edited.reserveCapacity(bytes.count)
      var copied = 0
      for number in numbers[k...] {
        edited += bytes[copied..<number.range.lowerBound]
        edited.append(UInt8(ascii: "1"))
        copied = number.range.upperBound
      }
      edited += bytes[copied...]
      do {
        _ = try JSONDecoder().decode(type, from: Data(edited))
        return true
      } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
        return false
      } catch {
        return true
      }
    }
    guard !numbers.isEmpty, !passes(replacingFrom: numbers.count), passes(replacingFrom: 0) else { return nil }
    var low = 0, high = numbers.count  // passes at low, fails at high
    while high - low > 1 {
      let middle = (low + high) / 2
      if passes(replacingFrom: middle) { low = middle } else { high = middle }
    }
    let culprit = numbers[low]
    return (culprit.path, "the number \(culprit.token) does not fit this key (counts, sizes, seeds and indexes are whole numbers from 0)")
  }

  struct Found: Error { let problem: ConfigProblem }
  struct Malformed: Error {}

  struct Scanner {
    let bytes: [UInt8]
    var i = 0
    /// Every number token met, in document order, with its key path and byte range.
    var numbers: [(path: String, range: Range<Int>, token: String)] = []

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
        numbers.append((path, start..<i, token))
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
