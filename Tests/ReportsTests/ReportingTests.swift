import ResultsStore
import XCTest

@testable import Reports

/// The listing's columns: which validation point `report` calls a run's best, and the narrow
/// table's protocol headings.
final class ReportingTests: XCTestCase {
  func testBestValidationIsTheHighestAndTheEarliestOnATie() {
    let history = [0.70, 0.81, 0.79, 0.81, 0.80].enumerated().map { MetricPoint(key: "validation.accuracy", step: 1000 * ($0.offset + 1), value: $0.element) }
    XCTAssertEqual(bestValidation(history)?.step, 2000)
    XCTAssertEqual(bestValidation(history)?.value, 0.81)
    XCTAssertNil(bestValidation([]))
  }

  func testNarrowHeadingsAreShortAndNeverShared() {
    let names = [
      "evaluation-20way-1shot-within", "evaluation-5way-5shot-within", "lake20", "validation-20way-1000", "validation-20way-200",
      "my-own-characters-set", "my-own-characters-set-b",
    ]
    let shown = shortProtocolNames(names)
    XCTAssertEqual(shown[0], "eval 20w1s")
    XCTAssertEqual(shown[1], "eval 5w5s")
    XCTAssertEqual(shown[2], "lake20")
    // These two both cut to `validation-20way-…`; the heading keeps each one's ending.
    XCTAssertEqual(shown[3], "validati…0way-1000")
    XCTAssertEqual(shown[4], "validati…20way-200")
    XCTAssertEqual(Set(shown).count, names.count, "\(shown)")
    XCTAssert(shown.allSatisfy { $0.count <= 18 }, "\(shown)")
    // When even the ends agree, the full names are shown.
    let alike = ["a-very-long-name-x-and-the-same-end", "a-very-long-name-y-and-the-same-end"]
    XCTAssertEqual(shortProtocolNames(alike), alike)
    // A protocol literally named like another's short heading keeps both apart.
    let tricky = ["eval 20w1s", "evaluation-20way-1shot-within"]
    XCTAssertEqual(Set(shortProtocolNames(tricky)).count, 2)
  }
}
