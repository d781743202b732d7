import Foundation
import ResultsStore
import Support
import XCTest

@testable import Reports

/// `report --leaderboard` (issue #42): one row per recipe, ranked by 20-way 1-shot, the mean over
/// seeds, the paired difference from the best row on the same episodes, the published figure of
/// the method, and the transductive mark, in every format.
final class LeaderboardTests: XCTestCase {
  /// Two recipes on the same 20-way 1-shot episodes of the Vinyals test split: prototypical with
  /// seeds 1 and 2 (episode i right 19 of 20 times, or 18 on odd i, for seed 2), and matching
  /// with one seed (17 of 20), marked transductive.
  func makeStore() throws -> (ResultsStore, URL) {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("leaderboard-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let store = try ResultsStore(path: folder.appendingPathComponent("s.sqlite").path)
    for (experiment, objective, seed, correct) in [("proto", "prototypical", 1, { (_: Int) in 19 }), ("proto", "prototypical", 2, { (i: Int) in i % 2 == 0 ? 19 : 18 }), ("match", "matching", 1, { (_: Int) in 17 })] {
      let config = "{\"name\": \"\(experiment)\", \"seed\": \(seed)}"
      let id = try store.beginRun(
        NewRun(experiment: experiment, configJSON: config, configHash: SHA256.hex(Array(config.utf8)), params: [("seed", String(seed)), ("training.objective", objective)]))
      let episodes = (0..<10).map { EpisodeRow(episode: $0, alphabet: nil, correct: correct($0), total: 20) }
      let accuracy = Double(episodes.reduce(0) { $0 + $1.correct }) / 200
      try store.recordResult(
        run: id, ProtocolResult(protocolName: "test-20w1s", split: "vinyals/test", ways: 20, shots: 1, queries: 1, episodes: 10, accuracy: accuracy, ciLow: 0, ciHigh: 1, seconds: 1),
        episodes: episodes)
      try store.setTag(run: id, key: TagKey.episodes("test-20w1s"), value: "same-episodes")
      if objective == "matching" { try store.setTag(run: id, key: TagKey.transductive, value: "yes") }
      try store.finishRun(id, status: .completed)
      usleep(2_000)  // runs are ordered by their start time, recorded to the millisecond
    }
    return (store, folder)
  }

  func testRecipesAreRankedAndPairedAgainstTheBest() throws {
    let (store, folder) = try makeStore()
    defer { try? FileManager.default.removeItem(at: folder) }
    let (rows, protocols) = try reportRows(store: store, runs: try store.listRuns())
    let board = try leaderboard(rows, protocols: protocols, store: store)
    XCTAssertEqual(board.headline, "test-20w1s")
    XCTAssertEqual(board.rows.map(\.group.experiment), ["proto", "match"])
    XCTAssertEqual(board.rows.map(\.method), ["prototypical", "matching"])
    let best = try XCTUnwrap(board.rows[0].cells["test-20w1s"])
    XCTAssertEqual(best.aggregate.mean, (0.95 + 0.925) / 2, accuracy: 1e-12)
    XCTAssertEqual(best.aggregate.seeds, 2)
    XCTAssertNil(best.difference)
    XCTAssertEqual(best.published, 0.960)
    // matching against the pooled prototypical episodes: 0.85 - (0.95 + 0.925) / 2.
    let other = try XCTUnwrap(board.rows[1].cells["test-20w1s"])
    XCTAssertEqual(try XCTUnwrap(other.difference).mean, 0.85 - 0.9375, accuracy: 1e-12)
    XCTAssertEqual(other.published, 0.938)
    XCTAssertTrue(board.rows[1].transductive)
    XCTAssertFalse(board.rows[0].transductive)

    let table = renderLeaderboard(board, protocols: protocols, format: .table)
    XCTAssert(table.contains("match (transductive)") && table.contains("-8.75 [") && table.contains("96.0%") && table.contains("best"), table)
    XCTAssert(renderLeaderboard(board, protocols: protocols, format: .markdown).contains("| 1 | proto | prototypical | 1,2 |"))
    let csv = renderLeaderboard(board, protocols: protocols, format: .csv)
    XCTAssert(csv.contains("2,") && csv.contains("matching,yes,1,0.8500"), csv)
    let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(renderLeaderboard(board, protocols: protocols, format: .json).utf8)) as? [String: Any])
    let jsonRows = try XCTUnwrap(json["rows"] as? [[String: Any]])
    XCTAssertEqual(jsonRows.map { $0["transductive"] as? Bool }, [false, true])
    let html = renderLeaderboard(board, protocols: protocols, format: .html)
    XCTAssert(html.hasPrefix("<!DOCTYPE html>") && html.contains("match (transductive)") && html.contains("<table>"))
  }

  /// An outside scorer's row is named by the model it declared, and marked when it said it is
  /// transductive (protocol version 2).
  func testAnOutsideScorersRowNamesItsModel() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("leaderboard-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try ResultsStore(path: folder.appendingPathComponent("s.sqlite").path)
    let id = try store.beginRun(NewRun(experiment: "proto", configJSON: "{}", configHash: "h"))
    for (key, value) in [(TagKey.mode, RunMode.external.rawValue), ("scorer.model", "easyfsl-tim-conv4"), (TagKey.scorerTransductive, "yes")] { try store.setTag(run: id, key: key, value: value) }
    try store.recordResult(
      run: id, ProtocolResult(protocolName: "p", split: "vinyals/test", ways: 20, shots: 1, queries: 1, episodes: 2, accuracy: 0.5, ciLow: 0, ciHigh: 1, seconds: 1),
      episodes: [EpisodeRow(episode: 0, alphabet: nil, correct: 1, total: 1), EpisodeRow(episode: 1, alphabet: nil, correct: 0, total: 1)])
    try store.finishRun(id, status: .completed)
    let (rows, protocols) = try reportRows(store: store, runs: try store.listRuns())
    let board = try leaderboard(rows, protocols: protocols, store: store)
    XCTAssertEqual(board.rows.map(\.method), ["outside: easyfsl-tim-conv4"])
    XCTAssertTrue(board.rows[0].transductive)
    XCTAssert(renderLeaderboard(board, protocols: protocols, format: .table).contains("proto (transductive)"))
  }

  /// An eval-only run's row names the method that scored its checkpoint (the tag the harness
  /// writes from the checkpoint), not its file's objective: `evaluate --folder` writes a file
  /// without a training section, and a MAML checkpoint scored with a prototypical file was
  /// listed as prototypical with that method's published figure.
  func testAnEvalOnlyRowNamesTheMethodThatScoredIt() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("leaderboard-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try ResultsStore(path: folder.appendingPathComponent("s.sqlite").path)
    let id = try store.beginRun(NewRun(experiment: "scored", configJSON: "{}", configHash: "h", params: [("training.objective", "prototypical")]))
    for (key, value) in [(TagKey.mode, RunMode.evalOnly.rawValue), (TagKey.scoringMethod, "maml")] { try store.setTag(run: id, key: key, value: value) }
    try store.recordResult(
      run: id, ProtocolResult(protocolName: "evaluation-20way-1shot", split: "vinyals/test", ways: 20, shots: 1, queries: 1, episodes: 1, accuracy: 1, ciLow: 0, ciHigh: 1, seconds: 1),
      episodes: [EpisodeRow(episode: 0, alphabet: nil, correct: 1, total: 1)])
    try store.finishRun(id, status: .completed)
    let (rows, protocols) = try reportRows(store: store, runs: try store.listRuns())
    let board = try leaderboard(rows, protocols: protocols, store: store)
    XCTAssertEqual(board.rows.map(\.method), ["maml"])
  }

  /// Lake's 20 runs have a published figure for the pairs method (Koch et al.'s 92.0%); a pairs
  /// run's Vinyals-split protocol and a prototypical run's Lake runs have none.
  func testLakesRunsShowKochsPublishedFigureBesideThePairsMethod() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("leaderboard-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try ResultsStore(path: folder.appendingPathComponent("s.sqlite").path)
    for (experiment, objective) in [("koch", "pairs"), ("proto-lake", "prototypical")] {
      let id = try store.beginRun(NewRun(experiment: experiment, configJSON: "{\"name\": \"\(experiment)\"}", configHash: experiment, params: [("training.objective", objective)]))
      for (name, split) in [("lake20", "lake20"), ("test-20w1s", "vinyals/test")] {
        try store.recordResult(
          run: id, ProtocolResult(protocolName: name, split: split, ways: 20, shots: 1, queries: 1, episodes: 2, accuracy: 0.5, ciLow: 0, ciHigh: 1, seconds: 1),
          episodes: [EpisodeRow(episode: 0, alphabet: nil, correct: 1, total: 1), EpisodeRow(episode: 1, alphabet: nil, correct: 0, total: 1)])
      }
      try store.finishRun(id, status: .completed)
      usleep(2_000)
    }
    let (rows, protocols) = try reportRows(store: store, runs: try store.listRuns())
    let board = try leaderboard(rows, protocols: protocols, store: store)
    let koch = try XCTUnwrap(board.rows.first { $0.method == "pairs" })
    XCTAssertEqual(koch.cells["lake20"]?.published, 0.920)
    XCTAssertNil(koch.cells["test-20w1s"]?.published)
    XCTAssertEqual(koch.publishedSource, "Koch et al. 2015 on Lake's runs")
    let proto = try XCTUnwrap(board.rows.first { $0.method == "prototypical" })
    XCTAssertNil(proto.cells["lake20"]?.published)
    XCTAssertEqual(proto.cells["test-20w1s"]?.published, 0.960)
    XCTAssertEqual(proto.publishedSource, "Snell et al. 2017")
    let table = renderLeaderboard(board, protocols: protocols, format: .table)
    XCTAssert(table.contains("92.0%") && table.contains("Koch et al. 2015 on Lake's runs") && table.contains("Snell et al. 2017"), table)
  }

  /// Re-scoring a trained run's own checkpoint on the same episodes to the same figures (an
  /// eval-only run, e.g. before scoring it with test-time copies) is not a second recipe: the
  /// leaderboard folds it into the trained row and says so. It listed the network twice, and the
  /// copy that scored one protocol could rank first against its own training run. A re-scoring
  /// with other figures, or with test-time copies, stays a row of its own.
  func testARescoringOfARowsOwnCheckpointIsFoldedIntoIt() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("leaderboard-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try ResultsStore(path: folder.appendingPathComponent("s.sqlite").path)
    func record(_ config: String, mode: RunMode?, params: [(String, String)], results: [(String, [Int])]) throws -> String {
      let id = try store.beginRun(NewRun(experiment: "proto", configJSON: config, configHash: SHA256.hex(Array(config.utf8)), params: params))
      if let mode { try store.setTag(run: id, key: TagKey.mode, value: mode.rawValue) }
      try store.setCheckpoint(run: id, path: "best.safetensors", hash: "ckpt-a")
      for (name, correct) in results {
        let episodes = correct.enumerated().map { EpisodeRow(episode: $0.offset, alphabet: nil, correct: $0.element, total: 20) }
        let accuracy = Double(correct.reduce(0, +)) / Double(20 * correct.count)
        try store.recordResult(
          run: id, ProtocolResult(protocolName: name, split: "vinyals/test", ways: 20, shots: 1, queries: 1, episodes: correct.count, accuracy: accuracy, ciLow: 0, ciHigh: 1, seconds: 1),
          episodes: episodes)
        try store.setTag(run: id, key: TagKey.episodes(name), value: "episodes-of-\(name)")
      }
      try store.finishRun(id, status: .completed)
      usleep(2_000)
      return id
    }
    let objective = ("training.objective", "prototypical")
    _ = try record("{\"seed\": 1}", mode: nil, params: [("seed", "1"), objective], results: [("a-20w1s", [19, 18, 19]), ("b-5w1s", [20, 20, 19])])
    let repeat1 = try record("{\"e\": 1}", mode: .evalOnly, params: [objective], results: [("a-20w1s", [19, 18, 19])])
    // Another build's arithmetic moved one query: a measurement of its own.
    _ = try record("{\"e\": 2}", mode: .evalOnly, params: [objective], results: [("a-20w1s", [19, 19, 19])])
    _ = try record("{\"e\": 3}", mode: .evalOnly, params: [objective, ("evaluation.0.augmentedCopies", "8")], results: [("a-20w1s", [19, 18, 19])])
    let (rows, protocols) = try reportRows(store: store, runs: try store.listRuns())
    let board = try leaderboard(rows, protocols: protocols, store: store)
    XCTAssertEqual(board.rows.count, 3, board.rows.map(\.group.key).description)
    let trained = try XCTUnwrap(board.rows.first { $0.cells["b-5w1s"] != nil })
    XCTAssertEqual(trained.rescoredBy, [repeat1])
    XCTAssertEqual(board.rows.filter { $0.testTimeCopies == 8 }.count, 1)
    XCTAssertEqual(board.rows.filter { !$0.rescoredBy.isEmpty }.count, 1)
    let table = renderLeaderboard(board, protocols: protocols, format: .table)
    XCTAssert(table.contains("not listed: eval-only runs that scored a listed row's own checkpoint again") && table.contains(String(repeat1.prefix(8))), table)
    XCTAssert(renderLeaderboard(board, protocols: protocols, format: .csv).contains(repeat1))
    XCTAssert(renderLeaderboard(board, protocols: protocols, format: .json).contains(repeat1))
  }

  /// Every row names the machines its runs were recorded on (the CPU decides bf16 or fp32
  /// training, and every speed), in every format; the run listing names each run's.
  func testRowsAndRunsNameTheirMachine() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("leaderboard-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try ResultsStore(path: folder.appendingPathComponent("s.sqlite").path)
    for (seed, cpu) in [(1, "Intel(R) Xeon(R) Processor x2 (AVX-512 + bf16 + AMX; oneDNN 2.6.3)"), (2, "AMD EPYC 7B13 x2 (AVX2; oneDNN 2.6.3)")] {
      let config = "{\"seed\": \(seed)}"
      var run = NewRun(experiment: "proto", configJSON: config, configHash: SHA256.hex(Array(config.utf8)), params: [("seed", String(seed)), ("training.objective", "prototypical")])
      run.cpu = cpu
      let id = try store.beginRun(run)
      try store.recordResult(
        run: id, ProtocolResult(protocolName: "p", split: "vinyals/test", ways: 20, shots: 1, queries: 1, episodes: 2, accuracy: 0.5, ciLow: 0, ciHigh: 1, seconds: 1),
        episodes: [EpisodeRow(episode: 0, alphabet: nil, correct: 1, total: 1), EpisodeRow(episode: 1, alphabet: nil, correct: 0, total: 1)])
      try store.finishRun(id, status: .completed)
      usleep(2_000)
    }
    let (rows, protocols) = try reportRows(store: store, runs: try store.listRuns())
    let board = try leaderboard(rows, protocols: protocols, store: store)
    XCTAssertEqual(board.rows.count, 1)
    let both = "AMD EPYC 7B13 x2 (AVX2; oneDNN 2.6.3); Intel Xeon x2 (AVX-512 + bf16 + AMX; oneDNN 2.6.3)"
    for format in [ReportFormat.table, .markdown, .csv, .html] {
      XCTAssert(renderLeaderboard(board, protocols: protocols, format: format).contains(both), "\(format)")
    }
    XCTAssert(renderLeaderboard(board, protocols: protocols, format: .json).contains("Intel Xeon x2 (AVX-512 + bf16 + AMX; oneDNN 2.6.3)"))
    for format in [ReportFormat.csv, .json] {
      let listing = renderReport(rows, protocols: protocols, format: format)
      XCTAssert(listing.contains("Intel Xeon x2 (AVX-512 + bf16 + AMX; oneDNN 2.6.3)") && listing.contains("AMD EPYC 7B13 x2 (AVX2; oneDNN 2.6.3)"), "\(format)")
    }
    XCTAssert(renderReport(rows, protocols: protocols, format: .table, wide: true).contains("AMD EPYC 7B13 x2 (AVX2"))
  }
}
