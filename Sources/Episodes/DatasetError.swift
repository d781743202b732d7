import Foundation

/// Everything a user can get wrong about a dataset or an episode specification. Each message
/// says what happened and what to do.
public enum DatasetError: Error, Equatable, CustomStringConvertible, LocalizedError {
  /// An archive or folder the catalog needs is not there.
  case missing(path: String, hint: String)
  /// A zip archive could not be opened or one of its entries could not be read.
  case corruptArchive(path: String, entry: String?, reason: String)
  /// An image could not be decoded.
  case corruptImage(name: String, reason: String)
  /// A file in the dataset is not where or what the layout allows.
  case unexpectedFile(name: String, reason: String)
  /// A file's SHA-256 is not the one `SHA256SUMS` lists.
  case checksumMismatch(file: String, expected: String, actual: String)
  /// An episode or pair specification cannot be satisfied by the data.
  case impossibleSpec(String)
  /// Lake's runs archive does not have the documented layout.
  case malformedRuns(String)
  /// A folder of the user's own images has a problem (the first of those a scan found).
  case folderProblem(root: String, problem: String)

  public var description: String {
    switch self {
    case .missing(let path, let hint):
      return "\(path) not found: \(hint)"
    case .corruptArchive(let path, let entry, let reason):
      if let entry { return "cannot read entry '\(entry)' of \(path): \(reason); restore the archive (dataset/omniglot/SHA256SUMS lists the expected checksums)" }
      return "cannot open zip archive \(path): \(reason); restore the archive (dataset/omniglot/SHA256SUMS lists the expected checksums)"
    case .corruptImage(let name, let reason):
      let lower = name.lowercased()
      let kind = lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg") ? "JPEG" : "PNG"
      return "cannot decode \(kind) '\(name)': \(reason); replace or remove the file"
    case .unexpectedFile(let name, let reason):
      return "unexpected file '\(name)': \(reason)"
    case .folderProblem(let root, let problem):
      return "image folder \(root): \(problem)"
    case .checksumMismatch(let file, let expected, let actual):
      return "checksum mismatch for \(file): expected sha256 \(expected), found \(actual); restore the file from a fresh clone"
    case .impossibleSpec(let reason):
      return "impossible episode specification: \(reason)"
    case .malformedRuns(let reason):
      return "malformed one-shot runs archive: \(reason); restore all_runs.zip from a fresh clone"
    }
  }

  public var errorDescription: String? { description }
}
