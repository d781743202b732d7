import Foundation
import Support

/// One line of a `SHA256SUMS` check.
public struct ChecksumResult: Sendable, Equatable {
  /// File name as listed.
  public let file: String
  /// The listed digest.
  public let expected: String
  /// The digest of the file on disk, or nil when the file is missing.
  public let actual: String?
  /// True when the file is present and matches.
  public var ok: Bool { actual == expected }
}

extension OmniglotDataset {
  /// The SHA-256 of a file of the dataset.
  static func sha256(ofFile url: URL) throws -> String {
    guard let digest = SHA256.hex(ofFile: url) else { throw DatasetError.missing(path: url.path, hint: "cannot open it for reading") }
    return digest
  }

  /// Checks every file listed in `SHA256SUMS` (`sha256sum -c` format); missing files are
  /// reported, not thrown.
  public func verifyChecksums() throws -> [ChecksumResult] {
    let listURL = root.appendingPathComponent("SHA256SUMS")
    try requireFile(listURL)
    let text = try String(contentsOf: listURL, encoding: .utf8)
    var results: [ChecksumResult] = []
    for line in text.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).isEmpty {
      let parts = line.split(separator: " ", maxSplits: 1)
      guard parts.count == 2, parts[0].count == 64 else {
        throw DatasetError.unexpectedFile(name: listURL.path, reason: "line '\(line)' is not '<sha256>  <file>'")
      }
      let file = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: " *"))
      let url = root.appendingPathComponent(file)
      let actual = FileManager.default.fileExists(atPath: url.path) ? try OmniglotDataset.sha256(ofFile: url) : nil
      results.append(ChecksumResult(file: file, expected: String(parts[0]).lowercased(), actual: actual))
    }
    return results
  }

  /// The dataset's identity for provenance: the SHA-256 of the `<sha256>  <file>` lines of
  /// the background, evaluation and runs archives, in that order.
  public func fingerprint() throws -> String {
    var lines = ""
    for url in [archiveURL(.background), archiveURL(.evaluation), runsURL] {
      try requireFile(url)
      lines += "\(try OmniglotDataset.sha256(ofFile: url))  \(url.lastPathComponent)\n"
    }
    return SHA256.hex(Array(lines.utf8))
  }
}
