import Episodes
import Foundation
import Model
import XCTest

@testable import Experiments

/// Test-time averaging (`augmentedCopies` of an evaluation protocol): each image's features are
/// the mean over the image and its distorted copies, and the copies are a function of the image
/// alone, so the same episodes give the same figures on every machine, in any batch or order.
final class TestTimeCopiesTests: XCTestCase {
  func testCopiesAreAFunctionOfTheImageAndTheCopyNumberAlone() throws {
    let setup = try MethodSetup(PrototypicalNetworks.self)
    let split = setup.split, n = split.size * split.size
    func ink(_ images: [Int]) -> [UInt8] { images.flatMap { split.pixels[($0 * n)..<(($0 + 1) * n)] } }
    let abc = ink([0, 1, 20]).withUnsafeBufferPointer { distortedInput($0, size: split.size, copy: 3) }
    let ca = ink([20, 0]).withUnsafeBufferPointer { distortedInput($0, size: split.size, copy: 3) }
    XCTAssertEqual(Array(abc.data[0..<n]), Array(ca.data[n..<(2 * n)]), "image 0's third copy depends on its batch")
    XCTAssertEqual(Array(abc.data[(2 * n)..<(3 * n)]), Array(ca.data[0..<n]), "image 20's third copy depends on its batch")
    let fourth = ink([0]).withUnsafeBufferPointer { distortedInput($0, size: split.size, copy: 4) }
    XCTAssertNotEqual(Array(abc.data[0..<n]), fourth.data, "copies 3 and 4 of an image are the same")
    // Copy 3 of images 0 and 1 (other drawings) differ, and a copy is not the image itself
    // (Koch's distortions: each of four components with probability 0.5; over copies 1-8 of an
    // image at least one moves it).
    XCTAssertNotEqual(Array(abc.data[0..<n]), Array(abc.data[n..<(2 * n)]))
    let original = ink([0]).withUnsafeBufferPointer { networkInput($0, size: split.size) }
    let moved = (1...8).filter { copy in ink([0]).withUnsafeBufferPointer { distortedInput($0, size: split.size, copy: copy) }.data != original.data }
    XCTAssertFalse(moved.isEmpty, "eight copies of an image equal to it")
    // Ink stays in [0, 1] (bilinear resampling of the image's own scale).
    XCTAssert(abc.data.allSatisfy { $0 >= 0 && $0 <= 1 + 1e-6 })
  }

  func testAnImagesFeaturesAreTheMeanOverItAndItsCopies() throws {
    let setup = try MethodSetup(PrototypicalNetworks.self)
    let model = NetworkEnsemble(members: [setup.network])
    let split = setup.split, n = split.size * split.size
    let images = [0, 20, 41]
    let ink = images.flatMap { split.pixels[($0 * n)..<(($0 + 1) * n)] }
    let copies = 3
    let averaged = try ink.withUnsafeBufferPointer {
      try NetworkScorer(model: model, method: setup.method, augmentedCopies: copies).embed($0, count: images.count, size: split.size)
    }
    let plain = try ink.withUnsafeBufferPointer { try NetworkScorer(model: model, method: setup.method).embed($0, count: images.count, size: split.size) }
    // By hand: the network's features of the image and of each copy, averaged.
    var sum = ink.withUnsafeBufferPointer { model.embed(networkInput($0, size: split.size))[0].data }
    for copy in 1...copies {
      let more = ink.withUnsafeBufferPointer { model.embed(distortedInput($0, size: split.size, copy: copy))[0].data }
      for j in sum.indices { sum[j] += more[j] }
    }
    let f = sum.count / images.count
    for (i, row) in averaged.enumerated() {
      XCTAssertEqual(row.count, f)
      for j in 0..<f { XCTAssertEqual(row[j], sum[i * f + j] / Float(copies + 1), accuracy: 1e-5 * max(1, abs(row[j]))) }
      XCTAssertNotEqual(row, plain[i], "image \(images[i]): averaging over copies changed nothing")
    }
    // The same image alone, or in another batch, gets the same averaged features.
    let alone = try Array(ink[(n * 2)..<(n * 3)]).withUnsafeBufferPointer {
      try NetworkScorer(model: model, method: setup.method, augmentedCopies: copies).embed($0, count: 1, size: split.size)
    }
    for j in 0..<f { XCTAssertEqual(alone[0][j], averaged[2][j], accuracy: 1e-5 * max(1, abs(averaged[2][j]))) }
  }

  func testTheKeyIsCheckedAndAbsentFromFilesThatDoNotUseIt() throws {
    let path = repositoryRoot.appendingPathComponent("experiments/protonet-vinyals.json").path
    let plain = try ExperimentConfig.load(path)
    XCTAssertFalse(String(decoding: try JSONEncoder().encode(plain), as: UTF8.self).contains("augmentedCopies"), "a file without the key must keep its configuration hash")
    let text = try String(contentsOfFile: path, encoding: .utf8)
    func problems(_ edit: (inout ExperimentConfig) -> Void) throws -> [String] {
      var config = try ExperimentConfig.decode(Data(text.utf8), source: path)
      edit(&config)
      return config.problems().map { "\($0.keyPath): \($0.message)" }
    }
    XCTAssertEqual(try problems { $0.evaluation[0].augmentedCopies = 8 }, [])
    XCTAssert(try problems { $0.evaluation[0].augmentedCopies = 0 }.contains { $0.hasPrefix("evaluation[0].augmentedCopies: between 1 and 64") })
    XCTAssert(try problems { $0.evaluation[1].augmentedCopies = 65 }.contains { $0.hasPrefix("evaluation[1].augmentedCopies: between 1 and 64") })
    XCTAssert(try problems {
      $0.evaluation[0].augmentedCopies = 8
      $0.scorer = "python3 examples/scorers/pixel_scorer.py"
    }.contains { $0.hasPrefix("evaluation[0].augmentedCopies: an outside scorer embeds the images it is sent") })
    let maml = try ExperimentConfig.load(repositoryRoot.appendingPathComponent("experiments/maml-vinyals.json").path)
    var adapted = maml
    adapted.evaluation[0].augmentedCopies = 4
    XCTAssert(adapted.problems().contains { $0.keyPath == "evaluation[0].augmentedCopies" && $0.message.contains("the maml objective adapts the network") }, "\(adapted.problems())")
    // Written back, the key round-trips.
    var copied = plain
    copied.evaluation[0].augmentedCopies = 8
    let decoded = try ExperimentConfig.decode(try JSONEncoder().encode(copied), source: "round trip")
    XCTAssertEqual(decoded.evaluation[0].augmentedCopies, 8)
    XCTAssertNil(decoded.evaluation[1].augmentedCopies)
  }
}
