import ResultsStore
import XCTest

@testable import Reports

/// The listing's selection column: which validation point `report` calls a run's best.
final class ReportingTests: XCTestCase {
  func testBestValidationIsTheHighestAndTheEarliestOnATie() {
    let history = [0.70, 0.81, 0.79, 0.81, 0.80].enumerated().map { MetricPoint(key: "validation.accuracy", step: 1000 * ($0.offset + 1), value: $0.element) }
    XCTAssertEqual(bestValidation(history)?.step, 2000)
    XCTAssertEqual(bestValidation(history)?.value, 0.81)
    XCTAssertNil(bestValidation([]))
  }
}
