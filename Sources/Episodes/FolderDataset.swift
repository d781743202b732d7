import Foundation
import Support

/// A dataset of the user's own: `ROOT/<group>/<class>/*.png|*.jpg|*.jpeg`, any size, gray or
/// colour (PNG through libpng, JPEG through libjpeg-turbo; EXIF orientation is not applied).
/// Images are converted to gray and resized (area averaging down, bilinear up) to `size` x
/// `size` as they are read, so only 8-bit `size` x `size` pixels are kept; dark strokes on a
/// light background, as in Omniglot. Groups play the role of alphabets, classes of characters.
/// Names starting with a dot (`.DS_Store`) are ignored.
public struct FolderDataset: Sendable {
  /// The folder holding one subfolder per group.
  public let root: URL
  /// The largest image file read (a bigger one is reported, not read).
  public static let maximumFileBytes = 64 << 20

  /// A dataset rooted at `root`.
  public init(root: URL) { self.root = root }

  /// What a scan of the folder found: every readable image, by group and class, and every
  /// problem (one line each), so that `dataset verify --folder` reports them all at once.
  public struct Scan: Sendable {
    /// One decoded image.
    public struct Image: Sendable {
      public let group: String
      public let className: String
      /// Path below the root, `group/class/file.png`.
      public let path: String
      public let image: GrayImage
      /// SHA-256 of the file.
      public let digest: String
    }
    /// Readable images, sorted by group, class and file name (UTF-8 byte order).
    public var images: [Image] = []
    /// What is wrong, one line each, in folder order.
    public var problems: [String] = []
    /// Image sizes seen (`WxH`) and how many images have each.
    public var sizes: [String: Int] = [:]

    /// Groups and their classes with image counts, in order.
    public var classes: [(group: String, name: String, images: Int)] {
      var out: [(group: String, name: String, images: Int)] = []
      for image in images {
        if let last = out.last, last.group == image.group, last.name == image.className {
          out[out.count - 1].images += 1
        } else {
          out.append((image.group, image.className, 1))
        }
      }
      return out
    }

    /// The folder's identity: SHA-256 over every image's path and content digest.
    public var fingerprint: String { SHA256.hex(Array(images.map { "\($0.path)\t\($0.digest)\n" }.joined().utf8)) }
  }

  /// Reads the folder and decodes every image; never throws: whatever is wrong is a problem in
  /// the result (a missing root, a file where a folder belongs, a non-PNG file, an unreadable
  /// or corrupt or oversized image, a class with fewer than two images, no classes at all).
  public func scan(resizeTo size: Int? = nil, resampling: ImageResampling = .area) -> Scan {
    var scan = Scan()
    let fm = FileManager.default
    func isFolder(_ url: URL) -> Bool {
      var flag: ObjCBool = false
      return fm.fileExists(atPath: url.path, isDirectory: &flag) && flag.boolValue
    }
    // `label` names the folder in problems (relative to the root; empty for the root).
    func children(_ url: URL, _ label: String) -> [String]? {
      guard let names = try? fm.contentsOfDirectory(atPath: url.path) else {
        scan.problems.append("\(url.path): cannot list the folder (check its permissions)")
        return nil
      }
      let prefix = label.isEmpty ? "" : label + "/"
      var kept: [String] = []
      var byName: [String: [String]] = [:]  // Swift's String equality is canonical equivalence
      for name in names where !name.hasPrefix(".") {
        // A name that is not valid UTF-8 reaches us with replacement characters, and the path
        // made from it names nothing (issue #45, cause M): said as such, not as a permission.
        if name.unicodeScalars.contains("\u{FFFD}") || (try? fm.attributesOfItem(atPath: url.appendingPathComponent(name).path)) == nil {
          scan.problems.append("\(prefix)\(name): the name is not valid UTF-8 (or cannot be read back); rename it")
          continue
        }
        byName[name, default: []].append(name)
        kept.append(name)
      }
      // Two names that differ only in Unicode normalisation (`café` composed and decomposed)
      // would be one class or group (issue #45, cause L): both are refused.
      var clashing = Set<[UInt8]>()
      for (_, same) in byName where same.count > 1 {
        let shown = same.map { "'\($0)' (\($0.utf8.map { String(format: "%02x", $0) }.joined()))" }.joined(separator: " and ")
        scan.problems.append("\(prefix)\(same[0]): the names \(shown) differ only in Unicode normalisation and would be one; rename one of them")
        for name in same { clashing.insert(Array(name.utf8)) }
      }
      return kept.filter { !clashing.contains(Array($0.utf8)) }.sorted(by: utf8Less)
    }
    guard isFolder(root) else {
      scan.problems.append("\(root.path) is not a folder; an image folder is laid out as ROOT/<group>/<class>/*.png")
      return scan
    }
    for group in children(root, "") ?? [] {
      let groupURL = root.appendingPathComponent(group)
      guard isFolder(groupURL) else {
        scan.problems.append("\(group): only group folders belong in \(root.path) (layout ROOT/<group>/<class>/*.png); move the file out")
        continue
      }
      let classNames = children(groupURL, group) ?? []
      if classNames.isEmpty { scan.problems.append("\(group): the group has no class folders") }
      for className in classNames {
        let classURL = groupURL.appendingPathComponent(className)
        guard isFolder(classURL) else {
          scan.problems.append("\(group)/\(className): only class folders belong in a group folder; move the file out")
          continue
        }
        var readable = 0
        for file in children(classURL, "\(group)/\(className)") ?? [] {
          let path = "\(group)/\(className)/\(file)"
          let url = classURL.appendingPathComponent(file)
          guard GrayImage.isImageFileName(file), !isFolder(url) else {
            scan.problems.append("\(path): not a .png, .jpg or .jpeg image; move it out of the class folder")
            continue
          }
          let bytes = (try? fm.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0
          guard bytes <= FolderDataset.maximumFileBytes else {
            scan.problems.append("\(path): \(bytes / (1 << 20)) MB is larger than the \(FolderDataset.maximumFileBytes >> 20) MB an image may have; shrink it")
            continue
          }
          guard let data = fm.contents(atPath: url.path) else {
            let dangling = (try? fm.destinationOfSymbolicLink(atPath: url.path)) != nil && !fm.fileExists(atPath: url.path)
            scan.problems.append(dangling ? "\(path): a symbolic link that leads nowhere (or in a loop); replace it with the image" : "\(path): cannot read the file (check its permissions)")
            continue
          }
          do {
            var image = try GrayImage.decode([UInt8](data), name: path)
            scan.sizes["\(image.width)x\(image.height)", default: 0] += 1
            if let size, image.width != size || image.height != size { image = image.resized(width: size, height: size, resampling: resampling) }
            scan.images.append(Scan.Image(group: group, className: className, path: path, image: image, digest: SHA256.hex(data)))
            readable += 1
          } catch {
            scan.problems.append("\(error)")
          }
        }
        if readable < 2 {
          scan.problems.append("\(group)/\(className): \(readable) readable image\(readable == 1 ? "" : "s"); a class needs at least 2 (one to support, one to query)")
        }
      }
    }
    if scan.images.isEmpty { scan.problems.append("\(root.path) holds no readable images in ROOT/<group>/<class>/*.png") }
    return scan
  }

  /// Image files in `ROOT/<group>/<class>/`, counted without reading them (the memory bound is
  /// checked with it before any image is decoded).
  public func countImageFiles() -> Int {
    let fm = FileManager.default
    func names(_ url: URL) -> [String] { ((try? fm.contentsOfDirectory(atPath: url.path)) ?? []).filter { !$0.hasPrefix(".") } }
    var count = 0
    for group in names(root) {
      for className in names(root.appendingPathComponent(group)) {
        count += names(root.appendingPathComponent(group).appendingPathComponent(className)).filter(GrayImage.isImageFileName).count
      }
    }
    return count
  }

  /// The most bytes a folder's decoded images may take while it loads: half of the machine's
  /// memory. Loading keeps each image once at `size` x `size` (8-bit) and then copies them into
  /// the split, so it needs about 2 x images x size^2 bytes (100,000 images at 105x105: 2.2 GB).
  public static var memoryBound: Int { Int(min(ProcessInfo.processInfo.physicalMemory / 2, UInt64(Int.max))) }

  /// The images as a split at `size` x `size`, and the folder's fingerprint. The first problem
  /// of the scan is the error (`dataset verify --folder` lists them all).
  public func load(size: Int = 105, name: String = "folder", resampling: ImageResampling = .area) throws -> (split: ImageSplit, fingerprint: String) {
    let files = countImageFiles()
    let (need, overflow) = files.multipliedReportingOverflow(by: 2 * size * size)
    guard !overflow, need <= FolderDataset.memoryBound else {
      throw DatasetError.folderProblem(
        root: root.path,
        problem: "\(files) images at \(size)x\(size) need about \(need >> 20) MB to load, more than half of this machine's memory (\(FolderDataset.memoryBound >> 20) MB); use fewer images or a smaller model.inputSize")
    }
    let scan = scan(resizeTo: size, resampling: resampling)
    if let problem = scan.problems.first {
      let more = scan.problems.count > 1 ? " (and \(scan.problems.count - 1) more: `oneshot-bench dataset verify --folder \(root.path)` lists them)" : ""
      throw DatasetError.folderProblem(root: root.path, problem: problem + more)
    }
    var pixels = [UInt8](repeating: 0, count: scan.images.count * size * size)
    var drawers: [String: Int] = [:]
    var entries: [(alphabet: String, character: String, path: String, drawer: Int)] = []
    for (i, item) in scan.images.enumerated() {
      for j in 0..<(size * size) { pixels[i * size * size + j] = 255 &- item.image.pixels[j] }
      let key = "\(item.group)/\(item.className)"
      drawers[key, default: 0] += 1
      entries.append((item.group, item.className, item.path, drawers[key]!))
    }
    return (ImageSplit.assemble(name: name, size: size, entries: entries, pixels: pixels), scan.fingerprint)
  }
}
