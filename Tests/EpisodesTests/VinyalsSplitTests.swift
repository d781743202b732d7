import Foundation
import XCTest

@testable import Episodes

/// The literature's Omniglot split (Vinyals et al. as Snell et al. distribute it).
final class VinyalsSplitTests: XCTestCase {
  static let split: VinyalsSplit = {
    let splits = try! omniglot.load([.background, .evaluation], size: 28)
    return try! VinyalsSplit(root: omniglot.root, background: splits[0], evaluation: splits[1])
  }()

  func characters(_ split: ImageSplit, _ classes: [Int]) -> Set<String> {
    Set(classes.map { "\(split.alphabets[split.characters[$0].alphabet])/\(split.characters[$0].name.split(separator: "/")[0])" })
  }

  func testCountsOfCharactersAndClasses() {
    let v = VinyalsSplitTests.split
    XCTAssertEqual(v.trainingClasses.count, 4112)
    XCTAssertEqual(v.validationClasses.count, 688)
    XCTAssertEqual(v.test.characters.count, 1692)
    XCTAssertEqual(characters(v.trainval, v.trainingClasses).count, 1028)
    XCTAssertEqual(characters(v.trainval, v.validationClasses).count, 172)
    XCTAssertEqual(characters(v.test, Array(v.test.characters.indices)).count, 423)
    XCTAssertEqual(v.trainval.images.count, (4112 + 688) * 20)
    XCTAssertEqual(v.test.images.count, 1692 * 20)
    XCTAssertEqual(v.test.size, 28)
    let pools = v.pools
    XCTAssertEqual(pools.training.name, "vinyals/train")
    XCTAssertEqual(pools.validation.classes.count, 688)
    XCTAssertEqual(v.testPool.classes.count, 1692)
  }

  func testNoTestCharacterInAnyRotationIsTrainedOrValidatedOn() {
    let v = VinyalsSplitTests.split
    let test = characters(v.test, Array(v.test.characters.indices))
    XCTAssertTrue(test.isDisjoint(with: characters(v.trainval, v.trainingClasses)))
    XCTAssertTrue(test.isDisjoint(with: characters(v.trainval, v.validationClasses)))
    XCTAssertTrue(characters(v.trainval, v.trainingClasses).isDisjoint(with: characters(v.trainval, v.validationClasses)))
    XCTAssertTrue(Set(v.trainingClasses).isDisjoint(with: v.validationClasses))
  }

  func testRotationsAreExactQuarterTurnsCounterClockwise() throws {
    let v = VinyalsSplitTests.split
    let size = v.test.size
    // Class order within a character: rot000, rot090, rot180, rot270.
    let c = try XCTUnwrap(v.test.characters.firstIndex { $0.name.hasSuffix("/rot000") })
    XCTAssertEqual(v.test.characters[c + 1].name, v.test.characters[c].name.replacingOccurrences(of: "rot000", with: "rot090"))
    let upright = Array(v.test.pixels(of: v.test.characters[c].firstImage))
    let quarter = Array(v.test.pixels(of: v.test.characters[c + 1].firstImage))
    XCTAssertEqual(quarter, VinyalsSplit.rotated(upright[...], size: size, quarterTurns: 1))
    XCTAssertNotEqual(quarter, upright)
    // Counter-clockwise: the top row's right end moves to the left column's top.
    var marked = [UInt8](repeating: 0, count: 9)
    marked[2] = 255  // (x 2, y 0)
    XCTAssertEqual(VinyalsSplit.rotated(marked[...], size: 3, quarterTurns: 1)[0], 255)
    var image = upright
    for _ in 0..<4 { image = VinyalsSplit.rotated(image[...], size: size, quarterTurns: 1) }
    XCTAssertEqual(image, upright)
  }

  func testAMissingOrMalformedListIsAClearError() throws {
    let folder = try temporaryFolder(self)
    let background = ImageSplit(name: "background", size: 1, alphabets: [], characters: [], images: [], pixels: [])
    XCTAssertThrowsError(try VinyalsSplit(root: folder, background: background, evaluation: background)) { error in
      XCTAssertTrue("\(error)".contains("splits/vinyals/train.txt not found"), "\(error)")
    }
    let lists = folder.appendingPathComponent(VinyalsSplit.folder)
    try FileManager.default.createDirectory(at: lists, withIntermediateDirectories: true)
    for part in VinyalsSplit.parts { try Data("Greek/character01/rot045\n".utf8).write(to: lists.appendingPathComponent(part + ".txt")) }
    XCTAssertThrowsError(try VinyalsSplit(root: folder, background: background, evaluation: background)) { error in
      XCTAssertTrue("\(error)".contains("train.txt:1") && "\(error)".contains("rot090"), "\(error)")
    }
  }
}
