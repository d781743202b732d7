import Foundation
import XCTest

/// A test case with a fresh temporary folder of its own for each test (`folder`, with a results
/// store path in it), removed afterwards; `ONESHOT_KEEP_TEST_FOLDER=1` keeps it and prints where.
open class TemporaryFolderTestCase: XCTestCase {
  /// This test's folder.
  public var folder: URL!

  /// A results store in the folder (created by whatever writes it first).
  open var storePath: String { folder.appendingPathComponent("results.sqlite").path }

  open override func setUpWithError() throws {
    folder = FileManager.default.temporaryDirectory.appendingPathComponent("\(type(of: self))-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
  }

  open override func tearDownWithError() throws {
    guard let folder else { return }
    if ProcessInfo.processInfo.environment["ONESHOT_KEEP_TEST_FOLDER"] != nil {
      print("kept \(folder.path)")
      return
    }
    try? FileManager.default.removeItem(at: folder)
  }
}
