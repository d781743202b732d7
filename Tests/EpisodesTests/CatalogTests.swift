import Foundation
import XCTest

@testable import Episodes

final class CatalogTests: XCTestCase {
  func testOmniglotCountsAndOrder() {
    let background = Loaded.background
    XCTAssertEqual(background.alphabets.count, 30)
    XCTAssertEqual(background.characters.count, 964)
    XCTAssertEqual(background.images.count, 19_280)
    let evaluation = Loaded.evaluation
    XCTAssertEqual(evaluation.alphabets.count, 20)
    XCTAssertEqual(evaluation.characters.count, 659)
    XCTAssertEqual(evaluation.images.count, 13_180)
    XCTAssertEqual(background.alphabets, background.alphabets.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
    XCTAssertEqual(background.alphabets.first, "Alphabet_of_the_Magi")
    XCTAssertEqual(background.images.first?.path, "images_background/Alphabet_of_the_Magi/character01/0709_01.png")
    for character in evaluation.characters { XCTAssertEqual(character.imageCount, 20) }
    for (i, record) in background.images.enumerated() where i % 20 != 0 {
      XCTAssertGreaterThan(record.drawer, background.images[i - 1].drawer)
    }
  }

  func testInkConventionAndBinaryPixels() {
    let image = Loaded.background.pixels(of: 0)
    XCTAssertEqual(image.count, 105 * 105)
    let ink = image.filter { $0 == 255 }.count
    XCTAssertEqual(image.filter { $0 != 0 && $0 != 255 }.count, 0)
    // About 8% of Omniglot pixels are ink; the border is paper.
    XCTAssert(ink > 100 && ink < 3000, "ink pixels \(ink)")
    XCTAssertEqual(image[image.startIndex], 0)
  }

  func testBackgroundAndEvaluationShareNoCharacter() {
    XCTAssertTrue(Set(Loaded.background.alphabets).isDisjoint(with: Loaded.evaluation.alphabets))
  }

  func testChecksumsMatchAndFingerprintIsStable() throws {
    let checks = try omniglot.verifyChecksums()
    XCTAssertEqual(checks.count, 6)
    XCTAssertTrue(checks.allSatisfy(\.ok), "\(checks.filter { !$0.ok })")
    XCTAssertEqual(try omniglot.fingerprint(), "0d224c690e7c15dcbadbd47e108b80f8facde7a5e770ada03b2bd71326b42b73")
  }

  func testMissingArchiveNamesPathAndWhereDataShouldBe() throws {
    let folder = try temporaryFolder(self)
    XCTAssertThrowsError(try OmniglotDataset(root: folder).load(.evaluation)) { error in
      let message = "\(error)"
      XCTAssert(message.contains("images_evaluation.zip not found"), message)
      XCTAssert(message.contains("--data"), message)
    }
  }

  func testTruncatedArchiveIsAClearError() throws {
    let folder = try temporaryFolder(self)
    let bytes = try Data(contentsOf: omniglot.runsURL)
    try bytes.prefix(bytes.count / 2).write(to: folder.appendingPathComponent("all_runs.zip"))
    XCTAssertThrowsError(try LakeRuns.load(from: OmniglotDataset(root: folder))) { error in
      guard case DatasetError.corruptArchive = error else { return XCTFail("\(error)") }
    }
  }

  func testCorruptPNGNamesTheFile() throws {
    var png = try GrayImage(width: 4, height: 4, pixels: [UInt8](repeating: 200, count: 16)).encodePNG()
    png.removeLast(20)
    XCTAssertThrowsError(try GrayImage.decodePNG(png, name: "broken.png")) { error in
      XCTAssertEqual((error as? DatasetError).map { if case .corruptImage(let name, _) = $0 { return name } else { return "" } }, "broken.png")
      XCTAssert("\(error)".hasPrefix("cannot decode PNG 'broken.png'"), "\(error)")
    }
    XCTAssertThrowsError(try GrayImage.decodePNG(Array("not a png at all".utf8), name: "text.png"))
  }

  func testCMYKJPEGAndSymlinkLoopsAreOneLineProblemsNotHangs() throws {
    // An 8x8 CMYK JPEG (print colour, as Photoshop writes them; made with Pillow).
    let cmyk = [UInt8](
      Data(
        base64Encoded:
          "/9j/7gAOQWRvYmUAZAAAAAAA/9sAQwAQCwwODAoQDg0OEhEQExgoGhgWFhgxIyUdKDozPTw5Mzg3QEhcTkBEV0U3OFBtUVdfYmdoZz5NcXlwZHhcZWdj/8AAFAgACAAIBEMRAE0RAFkRAEsRAP/EAB8AAAEFAQEBAQEBAAAAAAAAAAABAgMEBQYHCAkKC//EALUQAAIBAwMCBAMFBQQEAAABfQECAwAEEQUSITFBBhNRYQcicRQygZGhCCNCscEVUtHwJDNicoIJChYXGBkaJSYnKCkqNDU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6g4SFhoeIiYqSk5SVlpeYmZqio6Slpqeoqaqys7S1tre4ubrCw8TFxsfIycrS09TV1tfY2drh4uPk5ebn6Onq8fLz9PX29/j5+v/aAA4EQwBNAFkASwAAPwD0CvQK9Arz+v/Z"
      )!)
    XCTAssertThrowsError(try GrayImage.decode(cmyk, name: "print.jpg")) { error in
      XCTAssertEqual("\(error)", "cannot decode JPEG 'print.jpg': a CMYK JPEG (print colour); save it as RGB or gray; replace or remove the file")
    }
    // A folder whose class holds a link to itself, a link loop named like an image and a link
    // back to the root: the scan goes three levels deep only, so it ends, with a line for each.
    let root = try temporaryFolder(self)
    let good = root.appendingPathComponent("script/glyph")
    try FileManager.default.createDirectory(at: good, withIntermediateDirectories: true)
    for i in 0..<2 { try Data(try GrayImage(width: 8, height: 8, pixels: [UInt8](repeating: UInt8(100 * i), count: 64)).encodePNG()).write(to: good.appendingPathComponent("\(i).png")) }
    let loops = root.appendingPathComponent("script/loops")
    try FileManager.default.createDirectory(at: loops, withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(atPath: loops.appendingPathComponent("a.png").path, withDestinationPath: loops.appendingPathComponent("b.png").path)
    try FileManager.default.createSymbolicLink(atPath: loops.appendingPathComponent("b.png").path, withDestinationPath: loops.appendingPathComponent("a.png").path)
    try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent("script/back").path, withDestinationPath: root.path)
    let scan = FolderDataset(root: root).scan()
    XCTAssertEqual(scan.images.count, 2)
    XCTAssert(scan.problems.contains("script/loops/a.png: a symbolic link that leads nowhere (or in a loop); replace it with the image"), "\(scan.problems)")
    XCTAssert(scan.problems.contains("script/back/script: not a .png, .jpg or .jpeg image; move it out of the class folder"), "\(scan.problems)")
    XCTAssert(scan.problems.allSatisfy { !$0.contains("\n") })
  }

  func testFolderDatasetConvertsAndResizes() throws {
    let root = try temporaryFolder(self)
    for (group, classes) in [("digits", ["one", "two"]), ("letters", ["a"])] {
      for name in classes {
        let folder = root.appendingPathComponent("\(group)/\(name)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for i in 0..<3 {
          // 50x40 image, black square on white.
          var pixels = [UInt8](repeating: 255, count: 50 * 40)
          for y in 10..<30 { for x in 10..<(20 + i) { pixels[y * 50 + x] = 0 } }
          try Data(GrayImage(width: 50, height: 40, pixels: pixels).encodePNG()).write(to: folder.appendingPathComponent("img\(i).png"))
        }
      }
    }
    let split = try FolderDataset(root: root).load(size: 28).split
    XCTAssertEqual(split.alphabets, ["digits", "letters"])
    XCTAssertEqual(split.characters.map(\.name), ["one", "two", "a"])
    XCTAssertEqual(split.images.count, 9)
    XCTAssertEqual(split.size, 28)
    let ink = split.pixels(of: 0)
    XCTAssertGreaterThan(ink.max() ?? 0, 200)  // black square became ink
    XCTAssertEqual(ink[ink.startIndex], 0)  // white corner is paper

    try Data("hello".utf8).write(to: root.appendingPathComponent("digits/one/notes.txt"))
    XCTAssertThrowsError(try FolderDataset(root: root).load()) { error in
      XCTAssert("\(error)".contains("notes.txt"), "\(error)")
    }
  }

  func testBilinearResizeIdentityAndConstant() {
    let image = GrayImage(width: 3, height: 2, pixels: [0, 50, 100, 150, 200, 250])
    XCTAssertEqual(image.resized(width: 3, height: 2), image)
    let flat = GrayImage(width: 7, height: 5, pixels: [UInt8](repeating: 90, count: 35)).resized(width: 3, height: 11)
    XCTAssertEqual(Set(flat.pixels), [90])
    // Area averaging: a 4x4 checkerboard of 0/200 halves to a flat 100.
    let checker = GrayImage(width: 4, height: 4, pixels: (0..<16).map { ($0 / 4 + $0 % 4) % 2 == 0 ? 0 : 200 })
    XCTAssertEqual(checker.resized(width: 2, height: 2).pixels, [100, 100, 100, 100])
    // 105 -> 52 keeps the total ink (up to rounding).
    let stroke = GrayImage(width: 105, height: 105, pixels: (0..<11025).map { ($0 % 105) / 10 == 5 ? 255 : 0 })
    let small = stroke.resized(width: 52, height: 52)
    let ratio = Double(small.pixels.reduce(0) { $0 + Int($1) }) * (105.0 * 105.0) / (52.0 * 52.0) / Double(stroke.pixels.reduce(0) { $0 + Int($1) })
    XCTAssertEqual(ratio, 1, accuracy: 0.01)
  }

  func testNearestResizeIsPILs() throws {
    // PIL's Image.resize(..., NEAREST) of 105 -> 28 takes these columns (Pillow 13.0.0, and the
    // same rule in the 4.x releases Snell et al.'s loader ran on): floor((x + 0.5) * 105 / 28).
    let pil: [UInt8] = [1, 5, 9, 13, 16, 20, 24, 28, 31, 35, 39, 43, 46, 50, 54, 58, 61, 65, 69, 73, 76, 80, 84, 88, 91, 95, 99, 103]
    let columns = GrayImage(width: 105, height: 105, pixels: (0..<11025).map { UInt8($0 % 105) })
    let rows = GrayImage(width: 105, height: 105, pixels: (0..<11025).map { UInt8($0 / 105) })
    let c = columns.resized(width: 28, height: 28, resampling: .nearest), r = rows.resized(width: 28, height: 28, resampling: .nearest)
    for y in 0..<28 {
      XCTAssertEqual(Array(c.pixels[(y * 28)..<(y * 28 + 28)]), pil)
      XCTAssertEqual(Set(r.pixels[(y * 28)..<(y * 28 + 28)]), [pil[y]])
    }
    // Enlarging repeats pixels (PIL: 3 -> 7 takes 0 0 1 1 1 2 2).
    XCTAssertEqual(GrayImage(width: 3, height: 1, pixels: [10, 20, 30]).resized(width: 7, height: 1, resampling: .nearest).pixels, [10, 10, 20, 20, 20, 30, 30])
    // Omniglot's binary drawings stay binary at 28x28 (area averaging makes grey edges).
    let nearest = try omniglot.load(.evaluation, size: 28, resampling: .nearest)
    XCTAssertEqual(Set(nearest.pixels), [0, 255])
    XCTAssertGreaterThan(Set(try omniglot.load(.evaluation, size: 28).pixels).count, 2)
  }

  func testPNGRoundTrip() throws {
    let image = GrayImage(width: 5, height: 3, pixels: (0..<15).map { UInt8($0 * 17) })
    XCTAssertEqual(try GrayImage.decodePNG(image.encodePNG(), name: "x"), image)
  }
}
