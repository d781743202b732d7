import XCTest

@testable import Episodes

final class RandomTests: XCTestCase {
  func testSplitMix64KnownOutputs() {
    // Reference values of SplitMix64 from state 0 (Vigna's splitmix64.c).
    var rng = SplitMix64(state: 0)
    XCTAssertEqual(rng.next(), 0xe220_a839_7b1d_cdaf)
    XCTAssertEqual(rng.next(), 0x6e78_9e6a_a1b9_65f4)
    XCTAssertEqual(rng.next(), 0x06c4_5d18_8009_454f)
  }

  func testBelowStaysInRangeAndCoversIt() {
    var rng = SplitMix64(state: 42)
    var seen = [Int](repeating: 0, count: 7)
    for _ in 0..<7000 { seen[rng.below(7)] += 1 }
    for count in seen { XCTAssert((800...1200).contains(count), "counts \(seen)") }
  }

  func testSampleIsDistinct() {
    var rng = SplitMix64(state: 7)
    for _ in 0..<100 {
      let drawn = rng.sample(20, from: 20)
      XCTAssertEqual(Set(drawn).count, 20)
    }
  }

  func testStableHashIsFixed() {
    // Must never change: episode keys are built on it.
    XCTAssertEqual(stableHash(""), SplitMix64.mix(0xcbf2_9ce4_8422_2325))
    XCTAssertNotEqual(stableHash("a"), stableHash("b"))
  }
}
