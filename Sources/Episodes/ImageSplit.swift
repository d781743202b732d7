/// One character class (an Omniglot character, or a class folder of a custom dataset).
public struct CharacterClass: Sendable, Equatable {
  /// Index into `ImageSplit.alphabets`.
  public let alphabet: Int
  /// Folder name, e.g. `character07`.
  public let name: String
  /// Index of this class's first image in `ImageSplit.images`; its images are contiguous.
  public let firstImage: Int
  /// How many images (drawings) the class has; 20 for Omniglot.
  public let imageCount: Int

  /// Indices into `ImageSplit.images` of this class's drawings, in drawer order.
  public var imageRange: Range<Int> { firstImage..<(firstImage + imageCount) }
}

/// One image's identity.
public struct ImageRecord: Sendable, Equatable {
  /// Index into `ImageSplit.characters`.
  public let character: Int
  /// Omniglot drawer (1...20, from `<id>_<drawer>.png`); for custom data, 1-based position in
  /// the class folder's sorted file list.
  public let drawer: Int
  /// Path inside the archive or below the dataset root, e.g. `images_background/Greek/character01/0394_01.png`.
  public let path: String
}

/// A split of a dataset (Omniglot background, evaluation, or a custom folder), fully decoded.
///
/// Order is platform independent: alphabets, characters and file names are sorted by their
/// UTF-8 bytes, never by directory-listing order. Pixels hold ink intensities (ink = 255,
/// background = 0; see `GrayImage.ink`), `size * size` bytes per image, in `images` order.
public struct ImageSplit: Sendable {
  /// Split name: `background`, `evaluation`, `background_small1`, ..., or `custom`.
  public let name: String
  /// Side of every (square) image in pixels.
  public let size: Int
  /// Alphabet (group) names, sorted.
  public let alphabets: [String]
  /// Classes, sorted by alphabet then name.
  public let characters: [CharacterClass]
  /// Images, grouped by class, sorted by drawer within a class.
  public let images: [ImageRecord]
  /// Ink intensities, `images.count * size * size` bytes.
  public let pixels: [UInt8]

  /// Assembles a split; `pixels` must hold `images.count` images of `size * size` bytes.
  public init(name: String, size: Int, alphabets: [String], characters: [CharacterClass], images: [ImageRecord], pixels: [UInt8]) {
    precondition(pixels.count == images.count * size * size, "ImageSplit: \(pixels.count) bytes for \(images.count) images of \(size)x\(size)")
    self.name = name
    self.size = size
    self.alphabets = alphabets
    self.characters = characters
    self.images = images
    self.pixels = pixels
  }

  /// The ink intensities of image `index` (`size * size` bytes).
  public func pixels(of index: Int) -> ArraySlice<UInt8> {
    let count = size * size
    return pixels[(index * count)..<((index + 1) * count)]
  }

  /// Indices into `characters` of the classes of alphabet `alphabet`.
  public func characters(inAlphabet alphabet: Int) -> [Int] {
    characters.indices.filter { characters[$0].alphabet == alphabet }
  }

  /// `alphabet/character/drawer` for image `index`, the form episodes print.
  public func identity(of index: Int) -> (alphabet: String, character: String, drawer: Int) {
    let record = images[index]
    let character = characters[record.character]
    return (alphabets[character.alphabet], character.name, record.drawer)
  }

  /// Builds the index from decoded images keyed by `alphabet/character/file` components.
  /// Entries must already be in sorted order (see `sortKey`).
  static func assemble(name: String, size: Int, entries: [(alphabet: String, character: String, path: String, drawer: Int)], pixels: [UInt8]) -> ImageSplit {
    var alphabets: [String] = []
    var characters: [CharacterClass] = []
    var images: [ImageRecord] = []
    images.reserveCapacity(entries.count)
    var start = 0
    while start < entries.count {
      var end = start
      while end < entries.count && entries[end].alphabet == entries[start].alphabet && entries[end].character == entries[start].character { end += 1 }
      if alphabets.last != entries[start].alphabet { alphabets.append(entries[start].alphabet) }
      let classIndex = characters.count
      characters.append(CharacterClass(alphabet: alphabets.count - 1, name: entries[start].character, firstImage: start, imageCount: end - start))
      for i in start..<end { images.append(ImageRecord(character: classIndex, drawer: entries[i].drawer, path: entries[i].path)) }
      start = end
    }
    return ImageSplit(name: name, size: size, alphabets: alphabets, characters: characters, images: images, pixels: pixels)
  }
}

/// Byte-wise ordering of paths, identical on every platform and locale.
@inline(__always) func utf8Less(_ a: String, _ b: String) -> Bool {
  a.utf8.lexicographicallyPrecedes(b.utf8)
}
