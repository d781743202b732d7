import Episodes
import Foundation
import Support

/// The episodes of an experiment's protocols as NumPy arrays, exactly as the harness scores
/// them (the same images, resampled to `model.inputSize`, in the harness's order), so that a
/// library can evaluate the same episodes itself and its accuracy can be set beside the one an
/// outside scorer's run records (`oneshot-bench export episodes`).
///
/// One folder per protocol, with `support_images` (episodes, ways x shots, side, side; uint8 ink,
/// 0 paper and 255 ink), `support_labels` (episodes, ways x shots; class after class),
/// `query_images` (episodes, queries, side, side), `query_labels` (episodes, queries) and
/// `episode_index` (episodes: the episode's number, as the store's per-episode rows name it); and
/// `manifest.json` naming each protocol's folder, sizes and episode digest (the run's
/// `episodes.<protocol>` tag).
package enum EpisodeExport {
  package struct Written: Sendable {
    package let name: String
    package let folder: String
    package let episodes: Int
    package let ways: Int
    package let shots: Int
    package let queries: Int
  }

  package static let manifestName = "manifest.json"

  /// A folder name for a protocol name: letters, digits, `.`, `_` and `-` kept, the rest `_`.
  static func folderName(_ name: String) -> String {
    let kept = String(name.unicodeScalars.map { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "._-".unicodeScalars.contains($0) ? Character($0) : "_" })
    return kept.isEmpty || kept.hasPrefix(".") ? "_" + kept : kept
  }

  /// Writes `protocols` under `folder`: new, empty, or an earlier export (its files are replaced).
  package static func write(_ protocols: [PreparedProtocol], to folder: URL) throws -> [Written] {
    let files = FileManager.default
    var isDirectory: ObjCBool = false
    if files.fileExists(atPath: folder.path, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else { throw UserFacingError("\(folder.path) is a file; give a new folder to export the episodes to") }
      let entries = (try? files.contentsOfDirectory(atPath: folder.path)) ?? []
      guard entries.isEmpty || entries.contains(manifestName) else {
        throw UserFacingError("\(folder.path) holds files that are not an episode export; give a new or empty folder (nothing was written)")
      }
    }
    // Every protocol is checked before anything is written.
    var names = Set<String>()
    let plans = try protocols.map { prepared -> (PreparedProtocol, String, ways: Int, shots: Int, queries: Int) in
      guard let first = prepared.episodes.first else { throw UserFacingError("protocol \(prepared.name) has no episodes to export") }
      let ways = first.support.count, shots = first.support.first?.count ?? 0, queries = first.queries.count
      for episode in prepared.episodes where episode.support.count != ways || episode.support.contains(where: { $0.count != shots }) || episode.queries.count != queries {
        throw UserFacingError(
          "protocol \(prepared.name): episode \(episode.index) has another size than episode \(first.index) (\(episode.support.count) classes, \(episode.queries.count) queries); arrays need equal-sized episodes, export the other protocols with --protocol")
      }
      var name = folderName(prepared.name)
      while !names.insert(name).inserted { name += "_" }
      return (prepared, name, ways, shots, queries)
    }
    // A folder that cannot be made or written (under a file, read-only, full) is one line, as the
    // checks above are.
    var written: [Written] = []
    do {
      try files.createDirectory(at: folder, withIntermediateDirectories: true)
      var manifest: [[String: Any]] = []
      for (prepared, name, ways, shots, queries) in plans {
        let directory = folder.appendingPathComponent(name)
        try files.createDirectory(at: directory, withIntermediateDirectories: true)
        let side = prepared.evaluator.size, count = prepared.episodes.count, imageBytes = side * side
        func array(_ file: String, _ dtype: NumpyFileWriter.DType, _ shape: [Int]) throws -> NumpyFileWriter {
          try NumpyFileWriter(url: directory.appendingPathComponent(file + ".npy"), dtype: dtype, shape: shape)
        }
        let supportImages = try array("support_images", .uint8, [count, ways * shots, side, side])
        let supportLabels = try array("support_labels", .int64, [count, ways * shots])
        let queryImages = try array("query_images", .uint8, [count, queries, side, side])
        let queryLabels = try array("query_labels", .int64, [count, queries])
        let indices = try array("episode_index", .int64, [count])
        let pixels = prepared.evaluator.pixels
        func image(_ number: Int) -> ArraySlice<UInt8> { pixels[(number * imageBytes)..<((number + 1) * imageBytes)] }
        for episode in prepared.episodes {
          var bytes: [UInt8] = []
          bytes.reserveCapacity(ways * shots * imageBytes)
          for images in episode.support { for number in images { bytes += image(number) } }
          try supportImages.append(bytes)
          try supportLabels.append(episode.support.indices.flatMap { Array(repeating: $0, count: shots) })
          bytes.removeAll(keepingCapacity: true)
          for query in episode.queries { bytes += image(query.image) }
          try queryImages.append(bytes)
          try queryLabels.append(episode.queries.map(\.label))
          try indices.append([episode.index])
        }
        for file in [supportImages, supportLabels, queryImages, queryLabels, indices] { try file.close() }
        written.append(Written(name: prepared.name, folder: name, episodes: count, ways: ways, shots: shots, queries: queries))
        manifest.append([
          "protocol": prepared.name, "folder": name, "split": prepared.split, "episodes": count, "ways": ways, "shots": shots, "queries": queries, "inputSize": side,
          "episodeDigest": prepared.episodeDigest, "sequence": prepared.sequence,
        ])
      }
      let document: [String: Any] = [
        "format": "oneshot-bench episodes 1",
        "pixels": "uint8 ink intensities: 0 is paper, 255 is ink (oneshot-bench's networks take ink / 255)",
        "protocols": manifest,
      ]
      let data = try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys])
      try data.write(to: folder.appendingPathComponent(manifestName), options: .atomic)
    } catch {
      throw UserFacingError(
        "cannot write the episodes into \(folder.path) (\(failureReason(error, creatingFolder: folder.path))); choose a writable folder with room for them (export again into it: an earlier export's files are replaced)")
    }
    return written
  }
}
