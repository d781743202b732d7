import Foundation

// One spelling of "the same value gives the same bytes" (configuration hashes, checkpoint
// metadata, baselines) and of a JSON document as flat `a.b.c = value` parameters.

extension JSONEncoder {
  /// An encoder with sorted keys, so the same value always gives the same bytes; `pretty` adds
  /// indentation for files people read.
  public static func canonical(pretty: Bool = false) -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
    return encoder
  }
}

/// `a.b.c = value` pairs of a JSON document, sorted by key; arrays of scalars join with commas,
/// other arrays index as `a.0.b`.
public func flattenJSON(_ json: String) -> [(key: String, value: String)] {
  guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) else { return [] }
  var out: [(String, String)] = []
  func walk(_ value: Any, _ path: String) {
    if let dictionary = value as? [String: Any] {
      for key in dictionary.keys.sorted() { walk(dictionary[key]!, path.isEmpty ? key : "\(path).\(key)") }
    } else if let array = value as? [Any] {
      if array.allSatisfy({ !($0 is [String: Any]) && !($0 is [Any]) }) {
        out.append((path, array.map { "\($0)" }.joined(separator: ",")))
      } else {
        for (i, item) in array.enumerated() { walk(item, "\(path).\(i)") }
      }
    } else if let number = value as? NSNumber {
      // Booleans come back as a distinct NSNumber subclass (__NSCFBoolean).
      let isBool = String(describing: type(of: number)).contains("Bool")
      out.append((path, isBool ? (number.boolValue ? "true" : "false") : number.stringValue))
    } else if value is NSNull {
      out.append((path, "null"))
    } else {
      out.append((path, "\(value)"))
    }
  }
  walk(object, "")
  return out.sorted { $0.0 < $1.0 }
}
