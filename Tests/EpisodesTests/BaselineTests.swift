import XCTest
import Support

@testable import Episodes

final class BaselineTests: XCTestCase {
  func testLakeRunsLayout() {
    let runs = Loaded.runs
    XCTAssertEqual(runs.runs.count, 20)
    XCTAssertEqual(runs.pixels.count, 800 * 105 * 105)
    XCTAssertEqual(runs.runs[0].alphabet, "Atlantean")
    XCTAssertEqual(runs.runs[19].alphabet, "Tibetan")
    // run01/test/item01.png's class is class08 (class_labels.txt, first line).
    XCTAssertEqual(runs.runs[0].answers[0], 7)
    XCTAssertEqual(runs.names[runs.runs[0].test[0]], "run01/test/item01.png")
  }

  func testModifiedHausdorffReproducesLakesPublishedError() throws {
    let runs = Loaded.runs
    let summary = try Evaluator(runs: runs).evaluate(ModifiedHausdorff(), episodes: runs.scoringEpisodes)
    XCTAssertEqual(summary.episodes.count, 20)
    XCTAssertEqual(summary.embeddedImages, 800)
    XCTAssertEqual(summary.meanErrorPercent, 38.8, accuracy: 0.1)
  }

  func testPixelNearestNeighbourOnLake() throws {
    let runs = Loaded.runs
    let summary = try Evaluator(runs: runs).evaluate(PixelNearestNeighbour(), episodes: runs.scoringEpisodes)
    XCTAssertEqual(summary.meanErrorPercent, 81.0, accuracy: 0.01)
  }

  func testModifiedHausdorffDistanceOfKnownSets() throws {
    // Two single-pixel images: both centred on their own mean, so the distance is 0.
    var pixels = [UInt8](repeating: 0, count: 2 * 25)
    pixels[6] = 255
    pixels[25 + 18] = 255
    let sets = try pixels.withUnsafeBufferPointer { try ModifiedHausdorff().embed($0, count: 2, size: 5) }
    XCTAssertEqual(ModifiedHausdorff.distance(sets[0], sets[1]), 0)
    // A horizontal bar of 3 vs. a vertical bar of 3, both centred at the middle pixel:
    // from the bar's ends the nearest point of the other bar is at distance 1 -> mean 2/3.
    var bars = [UInt8](repeating: 0, count: 2 * 25)
    for x in 1...3 { bars[2 * 5 + x] = 255 }
    for y in 1...3 { bars[25 + y * 5 + 2] = 255 }
    let barSets = try bars.withUnsafeBufferPointer { try ModifiedHausdorff().embed($0, count: 2, size: 5) }
    XCTAssertEqual(ModifiedHausdorff.distance(barSets[0], barSets[1]), 2.0 / 3.0, accuracy: 1e-12)
  }

  func testEvaluatorEmbedsEachImageOnceAndScoresSampledEpisodes() throws {
    let pool = ClassPool(split: Loaded.evaluation)
    let sampler = try EpisodeSampler(pool: pool, spec: EpisodeSpec(ways: 5, shots: 1, queries: 2), seed: 1)
    let episodes = sampler.episodes(count: 40).map { $0.scoring(in: pool.split) }
    let summary = try Evaluator(split: pool.split).evaluate(PixelNearestNeighbour(), episodes: episodes)
    XCTAssertEqual(summary.episodes.count, 40)
    XCTAssertLessThanOrEqual(summary.embeddedImages, 40 * 15)
    XCTAssertGreaterThan(summary.accuracy, 0.25)  // better than 5-way chance
    XCTAssertGreaterThan(summary.halfWidth95, 0)
    XCTAssertEqual(summary.byGroup.reduce(0) { $0 + $1.episodes }, 40)
  }
}

final class StatisticsTests: XCTestCase {
  func testStudentQuantilesAndPValues() {
    XCTAssertEqual(Statistics.studentQuantile975(1), 12.706, accuracy: 1e-3)
    XCTAssertEqual(Statistics.studentQuantile975(19), 2.093, accuracy: 1e-3)
    XCTAssertEqual(Statistics.studentQuantile975(1000), 1.962, accuracy: 1e-3)
    XCTAssertEqual(Statistics.studentTwoSidedP(2.093, 19), 0.05, accuracy: 1e-4)
    XCTAssertEqual(Statistics.studentTwoSidedP(0, 10), 1, accuracy: 1e-12)
  }

  func testPairedDifference() {
    let a = [0.9, 0.8, 0.85, 0.95, 0.9], b = [0.8, 0.7, 0.8, 0.85, 0.8]
    let d = Statistics.paired(a, b)
    XCTAssertEqual(d.mean, 0.09, accuracy: 1e-12)
    XCTAssertLessThan(d.pValue, 0.01)
    XCTAssertGreaterThan(d.low, 0)
    let same = Statistics.paired(a, a)
    XCTAssertEqual(same.mean, 0)
    XCTAssertEqual(same.pValue, 1)
  }

  func testMcNemar() {
    XCTAssertEqual(Statistics.mcNemarP(onlyA: 0, onlyB: 0), 1)
    XCTAssertEqual(Statistics.mcNemarP(onlyA: 10, onlyB: 0), 2 * pow(0.5, 10), accuracy: 1e-12)
    XCTAssertEqual(Statistics.mcNemarP(onlyA: 5, onlyB: 5), 1)
  }
}
