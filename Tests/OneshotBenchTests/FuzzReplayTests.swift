import Experiments
import Foundation
import OneshotCLI
import XCTest

/// Replays every committed fuzz input (the corpus that `scripts/fuzz` grew, and every input
/// that once crashed a reader) through the same entry point libFuzzer calls: none may crash,
/// and the seeds a user would write must still be accepted.
final class FuzzReplayTests: XCTestCase {
  func testEveryCommittedFuzzInputIsHandled() throws {
    var replayed = 0
    for target in FuzzTarget.allCases {
      let folder = repositoryRoot.appendingPathComponent("Tests/Fuzz/\(target.rawValue)")
      let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
      XCTAssertFalse(files.isEmpty, "no corpus for \(target)")
      for file in files {
        let bytes = [UInt8](try Data(contentsOf: folder.appendingPathComponent(file)))
        let accepted = fuzzInput(target, bytes)
        replayed += 1
        // The seeds (real files) must stay valid; fuzzer-made inputs may be refused.
        if !file.hasPrefix("crash-") && [".json", ".safetensors", ".png", ".zip", ".argv", ".lines", ".names", ".tag"].contains(where: { file.hasSuffix($0) }) {
          XCTAssertTrue(accepted, "\(target) seed \(file) is refused")
        }
      }
    }
    print("replayed \(replayed) fuzz inputs")
  }
}
