import Foundation
import Support

/// The literature's Omniglot protocol: the split of Vinyals et al. 2016 as Snell et al. 2017
/// distribute it (`data/omniglot/splits/vinyals/{train,val,test}.txt` of
/// github.com/jakesnell/prototypical-networks, commit c9bb4d2, MIT licence; copied verbatim into
/// `dataset/omniglot/splits/vinyals/`). Characters of both Omniglot splits are pooled; each
/// listed line `Alphabet/characterNN/rotDDD` is one class: the character's 20 drawings rotated
/// counter-clockwise by DDD degrees (as PIL's `rotate`). 1,028 training, 172 validation and 423
/// test characters, four rotations each: 4,112 / 688 / 1,692 classes. Classes are drawn across
/// alphabets; no test character (in any rotation) is in the training or validation lists.
public struct VinyalsSplit: Sendable {
  /// The three lists' names, in the order they are read.
  public static let parts = ["train", "val", "test"]
  /// Where the lists live below the dataset root.
  public static let folder = "splits/vinyals"

  /// Training and validation classes, in one split named `vinyals` (so that validation episodes
  /// and training pairs index one image store).
  public let trainval: ImageSplit
  /// Indices into `trainval.characters` of the training classes.
  public let trainingClasses: [Int]
  /// Indices into `trainval.characters` of the validation classes.
  public let validationClasses: [Int]
  /// The test classes, a split named `vinyals-test`.
  public let test: ImageSplit
  /// SHA-256 of the three lists, in order (part of the episodes' identity).
  public let listsDigest: String

  /// Reads the lists below `root` and builds the classes from Omniglot's two splits (decoded at
  /// the same size). A list naming a character the splits lack, a malformed line, or a
  /// character in two lists is an error.
  public init(root: URL, background: ImageSplit, evaluation: ImageSplit) throws {
    precondition(background.size == evaluation.size, "both Omniglot splits must be decoded at one size")
    var lists: [[(alphabet: String, character: String, rotation: Int)]] = []
    var digestText = ""
    for part in VinyalsSplit.parts {
      let url = root.appendingPathComponent(VinyalsSplit.folder).appendingPathComponent(part + ".txt")
      guard let data = FileManager.default.contents(atPath: url.path), data.count < 1 << 20 else {
        throw DatasetError.missing(
          path: url.path, hint: "the Vinyals split's lists belong in \(root.path)/\(VinyalsSplit.folder) (a fresh clone has them in dataset/omniglot/\(VinyalsSplit.folder))")
      }
      digestText += SHA256.hex([UInt8](data)) + "  \(part).txt\n"
      lists.append(try VinyalsSplit.parse(String(decoding: data, as: UTF8.self), file: url.path))
    }
    listsDigest = SHA256.hex(Array(digestText.utf8))
    var owner: [String: String] = [:]
    for (part, list) in zip(VinyalsSplit.parts, lists) {
      for line in list {
        let key = "\(line.alphabet)/\(line.character)"
        if let other = owner[key], other != part {
          throw DatasetError.unexpectedFile(name: "\(VinyalsSplit.folder)/\(part).txt", reason: "character \(key) is also in \(other).txt; restore the lists from a fresh clone")
        }
        owner[key] = part
      }
    }
    let sources = [background, evaluation]
    let trainval = try VinyalsSplit.build(name: "vinyals", lists: [lists[0], lists[1]], from: sources)
    self.trainval = trainval.split
    trainingClasses = Array(0..<lists[0].count).map { trainval.classOf[$0] }
    validationClasses = Array(0..<lists[1].count).map { trainval.classOf[lists[0].count + $0] }
    test = try VinyalsSplit.build(name: "vinyals-test", lists: [lists[2]], from: sources).split
  }

  /// The training and validation pools.
  public var pools: (training: ClassPool, validation: ClassPool) {
    (ClassPool(split: trainval, name: "vinyals/train", classes: trainingClasses), ClassPool(split: trainval, name: "vinyals/val", classes: validationClasses))
  }

  /// The test pool.
  public var testPool: ClassPool { ClassPool(split: test, name: "vinyals/test", classes: Array(test.characters.indices)) }

  static func parse(_ text: String, file: String) throws -> [(alphabet: String, character: String, rotation: Int)] {
    var out: [(alphabet: String, character: String, rotation: Int)] = []
    for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
      let parts = line.split(separator: "/", omittingEmptySubsequences: false)
      guard parts.count == 3, parts[2].hasPrefix("rot"), let degrees = Int(parts[2].dropFirst(3)), [0, 90, 180, 270].contains(degrees), !parts[0].isEmpty, !parts[1].isEmpty
      else {
        throw DatasetError.unexpectedFile(name: "\(file):\(number + 1)", reason: "expected Alphabet/characterNN/rot000|rot090|rot180|rot270; restore the list from a fresh clone")
      }
      out.append((String(parts[0]), String(parts[1]), degrees / 90))
    }
    return out
  }

  /// One split of the listed (character, rotation) classes; `classOf[i]` is the class index of
  /// list line i (lists concatenated in order). Classes are sorted by alphabet, then
  /// `characterNN/rotDDD`, like every split's.
  static func build(name: String, lists: [[(alphabet: String, character: String, rotation: Int)]], from sources: [ImageSplit]) throws -> (split: ImageSplit, classOf: [Int]) {
    var index: [String: (source: Int, character: Int)] = [:]
    for (s, source) in sources.enumerated() {
      for (c, character) in source.characters.enumerated() { index["\(source.alphabets[character.alphabet])/\(character.name)"] = (s, c) }
    }
    let lines = lists.flatMap { $0 }
    let keyed = try lines.enumerated().map { (i, line) -> (key: (alphabet: String, name: String), line: Int, source: (source: Int, character: Int)) in
      guard let source = index["\(line.alphabet)/\(line.character)"] else {
        throw DatasetError.unexpectedFile(name: "\(VinyalsSplit.folder)", reason: "\(line.alphabet)/\(line.character) is in neither Omniglot split; restore the lists and archives from a fresh clone")
      }
      return ((line.alphabet, "\(line.character)/rot\(String(format: "%03d", line.rotation * 90))"), i, source)
    }
    let sorted = keyed.sorted { a, b in a.key.alphabet == b.key.alphabet ? utf8Less(a.key.name, b.key.name) : utf8Less(a.key.alphabet, b.key.alphabet) }
    let size = sources[0].size, n = size * size
    var entries: [(alphabet: String, character: String, path: String, drawer: Int)] = []
    var pixels: [UInt8] = []
    var classOf = [Int](repeating: 0, count: lines.count)
    var previous: (String, String)? = nil
    var classIndex = -1
    for item in sorted {
      if let previous, previous == (item.key.alphabet, item.key.name) {
        throw DatasetError.unexpectedFile(name: VinyalsSplit.folder, reason: "\(item.key.alphabet)/\(item.key.name) is listed twice; restore the lists from a fresh clone")
      }
      previous = (item.key.alphabet, item.key.name)
      classIndex += 1
      classOf[item.line] = classIndex
      let source = sources[item.source.source]
      let character = source.characters[item.source.character]
      let turns = lines[item.line].rotation
      for image in character.imageRange {
        let record = source.images[image]
        entries.append((item.key.alphabet, item.key.name, "\(record.path)@rot\(turns * 90)", record.drawer))
        pixels += rotated(source.pixels(of: image), size: size, quarterTurns: turns)
      }
    }
    precondition(pixels.count == entries.count * n)
    return (ImageSplit.assemble(name: name, size: size, entries: entries, pixels: pixels), classOf)
  }

  /// A square image turned counter-clockwise by `quarterTurns` x 90 degrees (exact).
  static func rotated(_ image: ArraySlice<UInt8>, size: Int, quarterTurns: Int) -> [UInt8] {
    let source = Array(image)
    guard quarterTurns % 4 != 0 else { return source }
    var out = [UInt8](repeating: 0, count: source.count)
    for y in 0..<size {
      for x in 0..<size {
        // Counter-clockwise by 90: the pixel at (x, y) comes from (size-1-y, x) of the source.
        let (sx, sy): (Int, Int)
        switch quarterTurns % 4 {
        case 1: (sx, sy) = (size - 1 - y, x)
        case 2: (sx, sy) = (size - 1 - x, size - 1 - y)
        default: (sx, sy) = (y, size - 1 - x)
        }
        out[y * size + x] = source[sy * size + sx]
      }
    }
    return out
  }
}
