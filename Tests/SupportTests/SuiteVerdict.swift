// `swift test` runs XCTest, then Swift Testing, in two processes, and its last line is Swift
// Testing's. With no @Test functions that line read "Test run with 0 tests in 0 suites passed"
// even after XCTest failures, which looks like success. So the XCTest process records its
// verdict in a file named after the `swift test` process (their common parent), and the one
// @Test below, which runs last, fails when XCTest failed or never finished: a failed suite then
// ends with a line that says it failed.

import Foundation
import Testing
import XCTest

/// Where the XCTest process leaves its verdict for the Swift Testing process of the same `swift test`.
enum SuiteVerdict {
  static var file: URL { FileManager.default.temporaryDirectory.appendingPathComponent("oneshot-bench-xctest-verdict-\(getppid())") }
}

/// Counts XCTest failures and writes "started", then "finished N" for N failures.
final class SuiteVerdictObserver: NSObject, XCTestObservation, @unchecked Sendable {
  private var failures = 0

  func testBundleWillStart(_ testBundle: Bundle) {
    try? Data("started\n".utf8).write(to: SuiteVerdict.file)
  }

  func testCase(_ testCase: XCTestCase, didFailWithDescription description: String, inFile filePath: String?, atLine lineNumber: Int) {
    failures += 1
  }

  func testBundleDidFinish(_ testBundle: Bundle) {
    try? Data("started\nfinished \(failures)\n".utf8).write(to: SuiteVerdict.file)
  }
}

@_cdecl("oneshot_suite_verdict_register")
public func registerSuiteVerdict() {
  XCTestObservationCenter.shared.addTestObserver(SuiteVerdictObserver())
}

@Test("the XCTest run of this `swift test` finished without failures")
func xctestRunOfThisSwiftTestPassed() throws {
  // No file: XCTest did not run in this `swift test` (--disable-xctest, or a filter naming no XCTest).
  guard let text = try? String(contentsOf: SuiteVerdict.file, encoding: .utf8) else { return }
  try? FileManager.default.removeItem(at: SuiteVerdict.file)
  let finished = text.split(separator: "\n").first { $0.hasPrefix("finished ") }
  guard let finished else {
    Issue.record("the XCTest run ended before its last test (a crash or a kill): THE TEST SUITE FAILED; its output above says where")
    return
  }
  let failures = Int(finished.dropFirst("finished ".count)) ?? -1
  #expect(failures == 0, "XCTest recorded \(failures) failure(s) above: THE TEST SUITE FAILED")
}
