import Support
import Dispatch
import Foundation
import ZIPFoundation

/// The Omniglot splits as shipped in `dataset/omniglot/`.
public enum OmniglotSplit: String, CaseIterable, Sendable, Codable {
  /// 30 alphabets, 964 characters: the training (and validation) split.
  case background
  /// 20 alphabets, 659 characters: the test split. Never used for training or model selection.
  case evaluation
  /// Lake's small background subset 1 (5 alphabets).
  case backgroundSmall1 = "background_small1"
  /// Lake's small background subset 2 (5 alphabets).
  case backgroundSmall2 = "background_small2"

  /// The archive's file name and its top-level folder, e.g. `images_background`.
  public var folder: String {
    switch self {
    case .background: return "images_background"
    case .evaluation: return "images_evaluation"
    case .backgroundSmall1: return "images_background_small1"
    case .backgroundSmall2: return "images_background_small2"
    }
  }
}

/// The Omniglot data read straight from its zip archives (no unpacking).
public struct OmniglotDataset: Sendable {
  /// Folder holding `images_*.zip`, `all_runs.zip` and `SHA256SUMS`.
  public let root: URL

  /// The default location, `dataset/omniglot` under the current directory.
  public static let defaultRoot = "dataset/omniglot"

  /// A dataset rooted at `root`; nothing is read until asked.
  public init(root: URL) { self.root = root }

  /// The archive of `split`.
  public func archiveURL(_ split: OmniglotSplit) -> URL { root.appendingPathComponent(split.folder + ".zip") }

  /// The archive of Lake's 20 one-shot runs.
  public var runsURL: URL { root.appendingPathComponent("all_runs.zip") }

  public func requireFile(_ url: URL) throws {
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw DatasetError.missing(
        path: url.path,
        hint: "the Omniglot archives belong in \(root.path) (a fresh clone has them in dataset/omniglot; pass --data DIR to point elsewhere)")
    }
  }

  /// Reads and decodes one split; images are resampled to `size` x `size` when it is not 105.
  public func load(_ split: OmniglotSplit, size: Int = 105, resampling: ImageResampling = .area) throws -> ImageSplit {
    let url = archiveURL(split)
    let files = try readPNGEntries(archive: url, topFolder: split.folder)
    var entries: [(alphabet: String, character: String, path: String, drawer: Int)] = []
    entries.reserveCapacity(files.count)
    for file in files {
      let parts = file.path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
      guard parts.count == 4, parts[0] == split.folder, parts[3].hasSuffix(".png") else {
        throw DatasetError.unexpectedFile(name: "\(url.lastPathComponent):\(file.path)", reason: "expected \(split.folder)/<alphabet>/<character>/<id>_<drawer>.png")
      }
      let stem = parts[3].dropLast(4)
      guard let underscore = stem.lastIndex(of: "_"), let drawer = Int(stem[stem.index(after: underscore)...]), drawer > 0 else {
        throw DatasetError.unexpectedFile(name: "\(url.lastPathComponent):\(file.path)", reason: "file name is not <id>_<drawer>.png")
      }
      entries.append((parts[1], parts[2], file.path, drawer))
    }
    let pixels = try decodeInk(files.map { ("\(url.lastPathComponent):\($0.path)", $0.bytes) }, size: size, resampling: resampling)
    return ImageSplit.assemble(name: split.rawValue, size: size, entries: entries, pixels: pixels)
  }

  /// Loads several splits concurrently (one archive reader per split).
  public func load(_ splits: [OmniglotSplit], size: Int = 105, resampling: ImageResampling = .area) throws -> [ImageSplit] {
    let results = ConcurrentResults<ImageSplit>(count: splits.count)
    DispatchQueue.concurrentPerform(iterations: splits.count) { i in
      results.set(i, Result { try load(splits[i], size: size, resampling: resampling) })
    }
    return try results.values()
  }

  /// Sorted PNG entries of a zip, as (path, bytes). Anything other than directories and
  /// `.png` files under `topFolder/` is an error, never a silent skip.
  func readPNGEntries(archive url: URL, topFolder: String) throws -> [(path: String, bytes: [UInt8])] {
    try requireFile(url)
    let archive = try openArchive(url)
    var files: [(path: String, bytes: [UInt8])] = []
    for entry in archive {
      if entry.type == .directory { continue }
      guard entry.type == .file, entry.path.hasPrefix(topFolder + "/"), entry.path.hasSuffix(".png") else {
        throw DatasetError.unexpectedFile(name: "\(url.lastPathComponent):\(entry.path)", reason: "only PNG images under \(topFolder)/ belong in this archive")
      }
      files.append((entry.path, try extractBounded(entry, from: archive, url: url)))
      guard files.count <= maximumEntries else {
        throw DatasetError.corruptArchive(path: url.path, entry: nil, reason: "more than \(maximumEntries) images")
      }
    }
    files.sort { utf8Less($0.path, $1.path) }
    return files
  }
}

/// The most bytes one archive entry may hold once extracted (an Omniglot PNG is ~1 KB): a
/// crafted entry claiming more is refused before any allocation.
let maximumEntryBytes = 16 << 20
/// The most images an archive may hold (Omniglot's largest has 19,280).
let maximumEntries = 1_000_000

/// An entry's bytes, refusing an entry whose size (declared or actual) exceeds `maximumEntryBytes`.
func extractBounded(_ entry: Entry, from archive: Archive, url: URL) throws -> [UInt8] {
  guard entry.uncompressedSize <= UInt64(maximumEntryBytes) else {
    throw DatasetError.corruptArchive(path: url.path, entry: entry.path, reason: "it claims \(entry.uncompressedSize) bytes, more than an image may have")
  }
  var bytes: [UInt8] = []
  bytes.reserveCapacity(Int(entry.uncompressedSize))
  do {
    _ = try archive.extract(entry, skipCRC32: false) { chunk in
      guard bytes.count + chunk.count <= maximumEntryBytes else { throw DatasetError.corruptArchive(path: url.path, entry: entry.path, reason: "it inflates beyond its size") }
      bytes.append(contentsOf: chunk)
    }
  } catch let error as DatasetError {
    throw error
  } catch {
    throw DatasetError.corruptArchive(path: url.path, entry: entry.path, reason: "\(error)")
  }
  return bytes
}

/// Decodes PNGs on all cores into one buffer of ink intensities, `size * size` bytes each.
/// The first failing image in input order is the one reported, whatever the thread timing.
func decodeInk(_ files: [(name: String, bytes: [UInt8])], size: Int, resampling: ImageResampling) throws -> [UInt8] {
  let imageBytes = size * size
  var pixels = [UInt8](repeating: 0, count: files.count * imageBytes)
  let chunks = max(1, min(files.count, ProcessInfo.processInfo.activeProcessorCount * 4))
  let errors = ConcurrentResults<Void>(count: chunks)
  pixels.withUnsafeMutableBufferPointer { out in
    let base = UncheckedPointer(out.baseAddress!)
    DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
      let range = (files.count * chunk / chunks)..<(files.count * (chunk + 1) / chunks)
      errors.set(
        chunk,
        Result {
          for i in range {
            var image = try GrayImage.decodePNG(files[i].bytes, name: files[i].name)
            if image.width != size || image.height != size { image = image.resized(width: size, height: size, resampling: resampling) }
            let target = base.pointer + i * imageBytes
            image.pixels.withUnsafeBufferPointer { src in
              for j in 0..<imageBytes { target[j] = 255 &- src[j] }
            }
          }
        })
    }
  }
  _ = try errors.values()
  return pixels
}

/// Opens a zip for reading; an unreadable archive is a `DatasetError` naming the path.
func openArchive(_ url: URL) throws -> Archive {
  do {
    return try Archive(url: url, accessMode: .read)
  } catch {
    throw DatasetError.corruptArchive(path: url.path, entry: nil, reason: "\(error)")
  }
}

/// An export that `stop` ended (SIGINT, SIGTERM): nothing was left at the target.
public struct ExportStopped: Error {}

extension OmniglotDataset {
  /// Writes a split as a folder of your own would be laid out, `folder/<alphabet>/<character>/
  /// <id>_<drawer>.png`, each PNG byte for byte as the archive holds it; returns the number of
  /// images. `folder` must not exist or be an empty folder: nothing is ever replaced. The images
  /// go to a hidden folder beside it, renamed to `folder` once all are written, so that an
  /// interrupted export leaves no partial folder for `dataset verify` to pass, and of two exports
  /// into one folder exactly one lands (issue #45, cause J). `progress` hears the images written
  /// so far and the total, after each character's folder.
  @discardableResult
  public func export(_ split: OmniglotSplit, to folder: URL, progress: ((Int, Int) -> Void)? = nil, stop: () -> Bool = { false }) throws -> Int {
    let fm = FileManager.default
    let folder = folder.standardizedFileURL
    func problem(_ text: String) -> DatasetError { .folderProblem(root: folder.path, problem: text) }
    var isDirectory: ObjCBool = false
    if fm.fileExists(atPath: folder.path, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else {
        throw problem("it \(UserFile.problem(folder.path, maximumBytes: Int.max) ?? "is a file"), not a folder; export into a new or empty folder")
      }
      let present = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? ["?"]
      guard present.isEmpty else { throw problem("the folder is not empty; export into a new or empty folder (nothing is replaced)") }
    }
    let files = try readPNGEntries(archive: archiveURL(split), topFolder: split.folder)
    let parent = folder.deletingLastPathComponent()
    do { try fm.createDirectory(at: parent, withIntermediateDirectories: true) } catch {
      throw problem("cannot create it (\(failureReason(error, creatingFolder: parent.path))); choose a folder that can be made")
    }
    let staging = parent.appendingPathComponent(".\(folder.lastPathComponent).partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    var made = Set<String>()
    do {
      try fm.createDirectory(at: staging, withIntermediateDirectories: false)
      for (written, file) in files.enumerated() {
        if stop() { throw ExportStopped() }
        // `<split folder>/<alphabet>/<character>/<file>.png`, checked by the reader.
        let parts = file.path.split(separator: "/").dropFirst().map(String.init)
        guard parts.count == 3, !parts.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) else {
          throw DatasetError.unexpectedFile(name: file.path, reason: "expected \(split.folder)/<alphabet>/<character>/<id>_<drawer>.png")
        }
        let directory = staging.appendingPathComponent(parts[0]).appendingPathComponent(parts[1])
        do {
          if made.insert(directory.path).inserted {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
            progress?(written, files.count)
          }
          try Data(file.bytes).write(to: directory.appendingPathComponent(parts[2]), options: .withoutOverwriting)
        } catch {
          throw problem("cannot write \(parts.joined(separator: "/")) (\(failureReason(error))); choose a writable folder")
        }
      }
      // rename(2) puts the whole folder in place at once; it fails if another export filled it first.
      if rename(staging.path, folder.path) != 0 {
        let reason = errno == ENOTEMPTY || errno == EEXIST ? "another export filled it first; this one kept nothing" : String(cString: strerror(errno))
        throw problem("cannot move the exported images into it (\(reason))")
      }
    } catch {
      try? fm.removeItem(at: staging)
      throw error
    }
    progress?(files.count, files.count)
    return files.count
  }
}
