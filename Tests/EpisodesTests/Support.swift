import Foundation
import XCTest

@testable import Episodes

/// The repository's dataset folder, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let omniglot = OmniglotDataset(root: repositoryRoot.appendingPathComponent("dataset/omniglot"))

/// Splits are loaded once per test process.
enum Loaded {
  static let background: ImageSplit = { try! omniglot.load(.background) }()
  static let evaluation: ImageSplit = { try! omniglot.load(.evaluation) }()
  static let runs: LakeRuns = { try! LakeRuns.load(from: omniglot) }()
}

/// A fresh temporary folder, removed at the end of the test.
func temporaryFolder(_ test: XCTestCase) throws -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("oneshot-test-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
  return url
}
