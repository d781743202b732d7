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

  func testSHA256KnownVectors() {
    XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    XCTAssertEqual(
      SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    var streamed = SHA256()
    let million = [UInt8](repeating: 0x61, count: 1_000_000)
    for start in stride(from: 0, to: million.count, by: 777) { streamed.update(million[start..<min(start + 777, million.count)]) }
    XCTAssertEqual(hexString(streamed.finalize()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
  }
}
