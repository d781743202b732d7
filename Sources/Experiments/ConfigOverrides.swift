import Foundation

// `run FILE --set key.path=value`: any key of an experiment file, changed on the command line.
// The assignments edit the file's JSON before it is decoded, so an override meets exactly the
// checks of the file (unknown key, wrong type, impossible value) and the run records the
// resolved configuration, hash and all.

/// One `key.path=value` assignment.
package struct ConfigOverride: Equatable {
  /// Keys and array indices from the root: `training.optimizer.learningRate`, `evaluation.0.episodes`.
  package let path: [PathComponent]
  /// The value as JSON (a bare word that is not JSON is a string: `precision=bf16`).
  package let value: Any
  /// The assignment as written.
  package let text: String

  /// The key path as an error names it: `training.schedule.warmupSteps`, `evaluation[0].episodes`.
  package var keyPathText: String {
    path.enumerated().map { i, component in
      switch component {
      case .key(let key): return i == 0 ? key : ".\(key)"
      case .index(let index): return "[\(index)]"
      }
    }.joined()
  }

  package enum PathComponent: Equatable {
    case key(String)
    case index(Int)
  }

  package static func == (a: ConfigOverride, b: ConfigOverride) -> Bool { a.text == b.text }

  /// Parses `key.path=value`; `evaluation[0].episodes` and `evaluation.0.episodes` are the same.
  /// The deepest key path `--set` and `--grid` take.
  package static let maximumDepth = 16

  package init(_ text: String) throws {
    guard let equals = text.firstIndex(of: "=") else {
      throw UserFacingError("--set \(text): write it as key.path=value, e.g. --set training.optimizer.learningRate=0.005")
    }
    let keyText = String(text[..<equals]), valueText = String(text[text.index(after: equals)...])
    var path: [PathComponent] = []
    for part in keyText.replacingOccurrences(of: "[", with: ".").replacingOccurrences(of: "]", with: "").split(separator: ".", omittingEmptySubsequences: false) {
      guard !part.isEmpty else { throw UserFacingError("--set \(text): the key path '\(keyText)' has an empty part; write e.g. training.steps=100") }
      path.append(Int(part).map { .index($0) } ?? .key(String(part)))
    }
    guard case .key = path.first else { throw UserFacingError("--set \(text): a key path starts with a key, e.g. evaluation.0.episodes") }
    // No key of an experiment lies deeper than a few levels; a path thousands of parts deep
    // would only overflow the stack of the recursive edit.
    guard path.count <= ConfigOverride.maximumDepth else {
      throw UserFacingError("a key path of \(path.count) parts: an experiment's keys are at most \(ConfigOverride.maximumDepth) deep (e.g. evaluation.0.spec.ways)")
    }
    self.path = path
    self.text = text
    if let parsed = try? JSONSerialization.jsonObject(with: Data(valueText.utf8), options: [.fragmentsAllowed]) {
      value = parsed
    } else {
      value = valueText
    }
  }

  /// `json` with this assignment made; objects on the way are created, array items must exist.
  package func apply(to json: Any) throws -> Any {
    func set(_ node: Any?, _ rest: ArraySlice<PathComponent>, at done: String) throws -> Any {
      guard let head = rest.first else { return value }
      switch head {
      case .key(let key):
        guard var object = (node ?? [String: Any]()) as? [String: Any] else {
          throw UserFacingError("--set \(text): \(done.isEmpty ? "the file" : done) is not an object, so it has no key '\(key)'")
        }
        object[key] = try set(object[key], rest.dropFirst(), at: done.isEmpty ? key : "\(done).\(key)")
        return object
      case .index(let index):
        guard var array = node as? [Any] else { throw UserFacingError("--set \(text): \(done) is not a list, so it has no item \(index)") }
        guard array.indices.contains(index) else {
          throw UserFacingError("--set \(text): \(done) has \(array.count) item\(array.count == 1 ? "" : "s"); index \(index) is not one of them")
        }
        array[index] = try set(array[index], rest.dropFirst(), at: "\(done)[\(index)]")
        return array
      }
    }
    return try set(json, path[...], at: "")
  }
}

extension ExperimentConfig {
  /// Reads an experiment file, makes the assignments and checks the result like a file.
  package static func load(_ path: String, overrides: [ConfigOverride]) throws -> ExperimentConfig {
    guard !overrides.isEmpty else { return try load(path) }
    let data = try readExperimentFile(path)
    let source = "\(path) with \(overrides.map { "--set \($0.text)" }.joined(separator: " "))"
    guard var json = try? JSONSerialization.jsonObject(with: data) else { return try decode(data, source: path) }
    for override in overrides { json = try override.apply(to: json) }
    do {
      return try decode(try JSONSerialization.data(withJSONObject: json), source: source)
    } catch let error as ConfigError where !error.keyPath.isEmpty && !overrides.contains(where: { error.keyPath.hasPrefix($0.keyPathText) }) {
      // The file's own mistake (a key this build does not know, a wrong type) is not the
      // assignments' doing: it is reported as the file's, as a run without --set reports it.
      do { _ = try decode(data, source: path) } catch let own as ConfigError where own.keyPath == error.keyPath { throw own }
      // A value the file set that the assignments made impossible (a warm-up longer than the
      // shortened run): name the one more assignment that fixes it.
      throw ConfigError(file: error.file, keyPath: error.keyPath, message: "\(error.message) (a key --set did not change: set it as well, --set \(error.keyPath)=VALUE, or choose other --set values)")
    }
  }
}
