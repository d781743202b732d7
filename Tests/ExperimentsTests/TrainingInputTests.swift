import Episodes
import Experiments
import Model
import XCTest

/// A training step's input is prepared image by image on the loops' threads (issue #44: it was
/// 4.4% of a prototypical step on one thread); what each image becomes must not depend on how
/// many threads there are, or a run resumed with another `--threads` would train otherwise.
final class TrainingInputTests: XCTestCase {
  func testTheInputIsTheSameOnOneThreadAndOnTwo() {
    let size = 40, count = 70
    var generator = SplitMix64(seed: 5, key: 1, index: 0)
    let stock = (0..<(count * size * size)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
    let images = (0..<50).map { ($0 * 7) % count }
    let before = ComputeThreads.loops
    defer { ComputeThreads.set(before) }
    var inputs: [[Float]] = []
    for threads in [1, 2] {
      ComputeThreads.set(threads)
      for augmentation in [AffineAugmentation.koch, nil] {
        inputs.append(Trainer.input(images, step: 3, pixels: stock, size: size, augmentation: augmentation, seed: 11).data)
      }
    }
    XCTAssertEqual(inputs[0], inputs[2], "distorted on one thread and on two")
    XCTAssertEqual(inputs[1], inputs[3], "undistorted on one thread and on two")
    XCTAssertNotEqual(inputs[0], inputs[1], "the distortion did something")
    // Slot s holds image images[s], whichever thread wrote it: undistorted, its ink scaled.
    let n = size * size
    for slot in [0, 24, 25, 49] {
      var expected = [Float](repeating: 0, count: n)
      stock[(images[slot] * n)..<((images[slot] + 1) * n)].withUnsafeBufferPointer { source in
        expected.withUnsafeMutableBufferPointer { GrayImage.scaleInk(source, into: $0) }
      }
      XCTAssertEqual(Array(inputs[3][(slot * n)..<((slot + 1) * n)]), expected, "slot \(slot)")
    }
  }
}
