import Foundation

/// A dataset of the user's own: `ROOT/<group>/<class>/*.png`, any size, gray or colour.
/// Images are converted to gray and resized (bilinear) to `size` x `size`; dark strokes on a
/// light background, as in Omniglot. Groups play the role of alphabets.
public struct FolderDataset: Sendable {
  /// The folder holding one subfolder per group.
  public let root: URL

  /// A dataset rooted at `root`.
  public init(root: URL) { self.root = root }

  /// Reads, decodes and indexes every image. Non-PNG files and files at the wrong depth are
  /// errors that name the file.
  public func load(size: Int = 105) throws -> ImageSplit {
    let fm = FileManager.default
    var isDirectory: ObjCBool = false
    guard fm.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
      throw DatasetError.missing(path: root.path, hint: "a custom dataset is a folder laid out as ROOT/<group>/<class>/*.png")
    }
    func children(_ url: URL) throws -> [String] {
      try fm.contentsOfDirectory(atPath: url.path).sorted(by: utf8Less)
    }
    func isFolder(_ url: URL) -> Bool {
      var flag: ObjCBool = false
      return fm.fileExists(atPath: url.path, isDirectory: &flag) && flag.boolValue
    }
    var entries: [(alphabet: String, character: String, path: String, drawer: Int)] = []
    var files: [(name: String, bytes: [UInt8])] = []
    for group in try children(root) {
      let groupURL = root.appendingPathComponent(group)
      guard isFolder(groupURL) else {
        throw DatasetError.unexpectedFile(name: groupURL.path, reason: "only group folders belong in \(root.path) (layout ROOT/<group>/<class>/*.png)")
      }
      for className in try children(groupURL) {
        let classURL = groupURL.appendingPathComponent(className)
        guard isFolder(classURL) else {
          throw DatasetError.unexpectedFile(name: classURL.path, reason: "only class folders belong in a group folder (layout ROOT/<group>/<class>/*.png)")
        }
        var drawer = 0
        for file in try children(classURL) {
          let fileURL = classURL.appendingPathComponent(file)
          guard file.lowercased().hasSuffix(".png"), !isFolder(fileURL) else {
            throw DatasetError.unexpectedFile(name: fileURL.path, reason: "only .png images belong in a class folder; move it out")
          }
          guard let data = fm.contents(atPath: fileURL.path) else {
            throw DatasetError.corruptImage(name: fileURL.path, reason: "cannot read the file")
          }
          drawer += 1
          entries.append((group, className, "\(group)/\(className)/\(file)", drawer))
          files.append((fileURL.path, [UInt8](data)))
        }
      }
    }
    guard !files.isEmpty else {
      throw DatasetError.missing(path: root.path + "/<group>/<class>/*.png", hint: "the folder holds no images")
    }
    let pixels = try decodeInk(files, size: size)
    return ImageSplit.assemble(name: "custom", size: size, entries: entries, pixels: pixels)
  }
}
