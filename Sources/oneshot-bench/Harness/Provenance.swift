import Foundation

/// Where a number came from: the code, the machine, the toolchain.
struct Provenance {
  var gitCommit: String?
  var gitDirty: Bool?
  var host: String
  var cpu: String
  var swiftVersion: String

  /// Reads git state of the current directory (nil when it is not a repository), the host
  /// name, the CPU model and the compiler version this binary was built with.
  static func current() -> Provenance {
    let commit = shell("git", ["rev-parse", "HEAD"])?.trimmingCharacters(in: .whitespacesAndNewlines)
    let status = shell("git", ["status", "--porcelain", "--untracked-files=no"])
    var cpu = "unknown"
    if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
      let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
      let colon = line.firstIndex(of: ":")
    {
      cpu = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) + " x\(ProcessInfo.processInfo.activeProcessorCount)"
    }
    return Provenance(
      gitCommit: (commit?.isEmpty ?? true) ? nil : commit, gitDirty: commit == nil ? nil : !(status ?? "").isEmpty,
      host: ProcessInfo.processInfo.hostName, cpu: cpu, swiftVersion: compilerVersion)
  }

  /// Runs a command and returns its standard output, or nil when it fails.
  static func shell(_ command: String, _ arguments: [String]) -> String? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [command] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return nil }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return process.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
  }
}

/// The Swift compiler that built this binary.
let compilerVersion: String = {
  #if compiler(>=6.4)
    return "6.4+"
  #elseif compiler(>=6.3)
    return "6.3"
  #elseif compiler(>=6.2)
    return "6.2"
  #else
    return "6.x"
  #endif
}()

/// `a.b.c = value` pairs of a JSON document, sorted by key; arrays index as `a.0.b`.
func flattenJSON(_ json: String) -> [(key: String, value: String)] {
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
