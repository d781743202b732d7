import Foundation
import ResultsStore
import Support
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

  /// The default table fits 120 columns with the five protocols of a full omniglot52 recipe and an
  /// ensemble row, says what it left out and what `eval x2` means; `report --run` does not list
  /// episode settings under a lake20 entry, which played no part in it.
  func testTheNarrowTableFits120ColumnsAndLakeRunsShowNoEpisodeSettings() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("narrow-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try ResultsStore(path: folder.appendingPathComponent("s.sqlite").path)
    let protocols = ["lake20", "evaluation-20way-1shot-within", "evaluation-5way-1shot-within", "evaluation-5way-5shot-within", "validation-20way-1shot-within"]
    for (n, evalOnly) in [false, true].enumerated() {
      let config = "{\"name\": \"omniglot52-sgd-batch-long\", \"seed\": \(n)}"
      let params = [
        ("seed", "1"), ("training.steps", "20000"), ("training.optimizer.learningRate", "0.0125"), ("evaluation.0.protocol", "lake20"), ("evaluation.0.episodes", "1000"),
        ("evaluation.0.split", "evaluation"), ("evaluation.1.protocol", "episodes"), ("evaluation.1.episodes", "1000"),
      ]
      let id = try store.beginRun(NewRun(experiment: "omniglot52-sgd-batch-long", configJSON: config, configHash: SHA256.hex(Array(config.utf8)), params: params))
      if evalOnly {
        try store.setTag(run: id, key: "mode", value: "eval-only")
        try store.setTag(run: id, key: "ensemble_members", value: "2")
      }
      for name in protocols {
        try store.recordResult(
          run: id, ProtocolResult(protocolName: name, split: "evaluation", ways: 20, shots: 1, queries: 1, episodes: 1000, accuracy: 0.9867, ciLow: 0.9788, ciHigh: 0.9917, seconds: 1),
          episodes: [])
      }
      try store.finishRun(id, status: .completed, durationSeconds: 60)
    }
    let (rows, names) = try reportRows(store: store, runs: try store.listRuns())
    let table = renderReport(rows, protocols: names, format: .table)
    XCTAssert(table.split(separator: "\n").allSatisfy { $0.count <= 120 }, table)
    XCTAssert(table.contains("98.67±0.65"), "half the Wilson interval's width: \(table)")
    XCTAssert(table.contains("eval xN: eval-only of an N-member ensemble"), table)
    XCTAssert(table.contains("left out to fit 120 columns"), table)
    let detail = try renderRunDetail(try store.run(rows[0].summary.id), store: store, format: .table)
    XCTAssert(detail.contains("evaluation.0.protocol") && detail.contains("evaluation.1.episodes"), detail)
    XCTAssertFalse(detail.contains("evaluation.0.episodes") || detail.contains("evaluation.0.split"), detail)
  }

  /// A store of several experiments with a dozen protocols among them and settings that differ
  /// (the table was 296 columns wide): it still fits 120 columns, names every column it left out
  /// and keeps the first protocol; the status reads as the store, `--status` and CSV say it.
  func testATableOfManyExperimentsAndProtocolsFits120Columns() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("many-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try ResultsStore(path: folder.appendingPathComponent("s.sqlite").path)
    let protocols = ["lake20"] + ["evaluation", "validation", "vinyals-test"].flatMap { split in ["5way-1shot", "5way-5shot", "20way-1shot", "20way-5shot"].map { "\(split)-\($0)" } }
    for (n, experiment) in ["protonet-vinyals-aug-long-trainval", "siamese-vinyals", "omniglot52-sgd-batch-long"].enumerated() {
      let config = "{\"name\": \"\(experiment)\"}"
      let params = [("seed", "\(n)"), ("model.headHidden", "\(128 << n)"), ("model.inputSize", "\(28 + n)"), ("training.steps", "\(1000 * (n + 1))")]
      let id = try store.beginRun(NewRun(experiment: experiment, configJSON: config, configHash: SHA256.hex(Array(config.utf8)), params: params))
      for name in protocols.shuffled().prefix(9 + n) {
        try store.recordResult(
          run: id, ProtocolResult(protocolName: name, split: "evaluation", ways: 20, shots: 1, queries: 1, episodes: 1000, accuracy: 0.9867, ciLow: 0.9788, ciHigh: 0.9917, seconds: 1),
          episodes: [])
      }
      try store.finishRun(id, status: n == 2 ? .interrupted : .completed, durationSeconds: 60)
    }
    let (rows, names) = try reportRows(store: store, runs: try store.listRuns())
    let table = renderReport(rows, protocols: names, format: .table)
    XCTAssert(table.split(separator: "\n").allSatisfy { $0.count <= 120 }, table)
    XCTAssert(table.contains("left out to fit 120 columns"), table)
    let shown = table.split(separator: "\n")[0]
    let note = table.replacingOccurrences(of: "\n", with: " ")
    for short in shortProtocolNames(names) { XCTAssert(shown.contains(short) || note.contains("\(short),") || note.contains("\(short) left out"), "\(short) neither shown nor named: \(table)") }
    XCTAssert(shown.contains(shortProtocolNames(names)[0]), table)
    XCTAssert(table.contains("interrupted") && table.contains("completed") && !table.contains("stopped"), table)
  }

  /// Seed, threads and description (prose) do not split a seed group; any setting does.
  func testSeedGroupsIgnoreSeedThreadsAndDescriptionOnly() {
    let key = { (json: String) in seedGroupKey(configJSON: json, evaluatedCheckpoint: nil) }
    let base = key(#"{"name": "r", "seed": 1, "threads": 2, "description": "first words", "training": {"steps": 10}}"#)
    XCTAssertEqual(key(#"{"name": "r", "seed": 2, "threads": 1, "description": "words fixed later", "training": {"steps": 10}}"#), base)
    XCTAssertNotEqual(key(#"{"name": "r", "seed": 1, "threads": 2, "description": "first words", "training": {"steps": 11}}"#), base)
    XCTAssertNotEqual(key(#"{"name": "r2", "seed": 1, "threads": 2, "description": "first words", "training": {"steps": 10}}"#), base)
  }

  /// A seed recorded twice counts once (its newest run), so a group never shows `10,10` with an
  /// interval of zero width.
  func testARepeatedSeedCountsOnce() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("repeats-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try ResultsStore(path: folder.appendingPathComponent("s.sqlite").path)
    for (seed, accuracy) in [(10, 0.20), (10, 0.25), (11, 0.30)] {
      let config = "{\"name\": \"r\", \"seed\": \(seed)}"
      let id = try store.beginRun(NewRun(experiment: "r", configJSON: config, configHash: SHA256.hex(Array(config.utf8)), params: [("seed", String(seed))]))
      let episodes = (0..<4).map { EpisodeRow(episode: $0, alphabet: nil, correct: Int(accuracy * 20), total: 20) }
      try store.recordResult(
        run: id, ProtocolResult(protocolName: "p", split: "evaluation", ways: 5, shots: 1, queries: 4, episodes: 4, accuracy: accuracy, ciLow: 0, ciHigh: 1, seconds: 1), episodes: episodes)
      try store.finishRun(id, status: .completed)
      usleep(2_000)
    }
    let (rows, _) = try reportRows(store: store, runs: try store.listRuns())
    let groups = try seedGroups(rows, store: store)
    XCTAssertEqual(groups.count, 1)
    XCTAssertEqual(groups[0].seeds.sorted(), ["10", "11"])
    XCTAssertEqual(groups[0].repeats.count, 1)
    XCTAssertEqual(groups[0].protocols["p"]?.mean ?? 0, 0.275, accuracy: 1e-12, "the newest run of seed 10 (0.25) and seed 11 (0.30)")
    XCTAssert(renderSeedGroups(groups, protocols: ["p"], format: .table).contains("1 older run of a seed already listed left out"))
  }

  /// One escaping rule per format: a name cannot break a markdown table or carry HTML into it,
  /// and a CSV cell a spreadsheet would run as a formula is quoted as text.
  /// Issue #45, causes F and G: a recorded note, tag or model id is one value on its line in
  /// `report --run`: no forged line, no carriage return, no HTML in markdown.
  func testARunsRecordedTextCannotForgeLinesOrCarryHTML() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("forge-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try ResultsStore(path: folder.appendingPathComponent("s.sqlite").path)
    let id = try store.beginRun(NewRun(experiment: "e", configJSON: "{}", configHash: "h"))
    try store.setTag(run: id, key: "note", value: "fine\n  tag reviewed: yes")
    try store.setTag(run: id, key: "x", value: "GOOD\rEVIL")
    try store.setTag(run: id, key: "scorer.model", value: "<img src=x onerror=alert(1)>")
    try store.finishRun(id, status: .completed)
    for format in [ReportFormat.table, .markdown] {
      let text = try renderRunDetail(try store.run(id), store: store, format: format)
      XCTAssertFalse(text.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "tag reviewed: yes" }, "\(format): \(text)")
      XCTAssertFalse(text.contains("\r"), "\(format)")
      if format == .markdown { XCTAssertFalse(text.contains("<img"), text) }
    }
  }

  func testNamesCannotBreakMarkdownOrRunAsSpreadsheetFormulas() {
    let table = markdownTable(["run", "a|b"], [["x|y", "<script>alert(1)</script> & \u{1B}[31m"]])
    let lines = table.split(separator: "\n")
    XCTAssertEqual(lines.map { $0.replacingOccurrences(of: "\\|", with: "").filter { $0 == "|" }.count }, [3, 3, 3], table)
    XCTAssertFalse(table.contains("<script>") || table.contains("\u{1B}"), table)
    XCTAssert(table.contains("&lt;script&gt;") && table.contains("&amp;"), table)
    let csv = csvDocument(["name", "value"], [["=HYPERLINK(\"http://x\")", "-0.5"], ["@SUM(A1)", "+1"], ["-cmd", "plain"]])
    let rows = csv.split(separator: "\r\n").map(String.init)
    XCTAssertEqual(rows[1], "\"'=HYPERLINK(\"\"http://x\"\")\",-0.5", "numbers stay numbers")
    XCTAssertEqual(rows[2], "'@SUM(A1),+1")
    XCTAssertEqual(rows[3], "'-cmd,plain")
  }

  /// A sweep's axis shows in every listing: two runs that differ only by model.headHidden are
  /// told apart by a `differs` column (table, markdown), a column of their own (CSV), their
  /// params (JSON), and the seed groups; runs of other experiments add nothing to it.
  func testSettingsThatDifferAmongRunsAreShown() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("differs-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try ResultsStore(path: folder.appendingPathComponent("s.sqlite").path)
    for (experiment, hidden, blocks) in [("sweep", "64", "4"), ("sweep", "128", "4"), ("other", "8", "16")] {
      let config = "{\"name\": \"\(experiment)\", \"h\": \(hidden)}"
      let params = [("seed", "1"), ("model.headHidden", hidden), ("model.blocks", blocks), ("threads", hidden == "64" ? "1" : "2")]
      let id = try store.beginRun(NewRun(experiment: experiment, configJSON: config, configHash: SHA256.hex(Array(config.utf8)), params: params))
      try store.recordResult(
        run: id, ProtocolResult(protocolName: "p", split: "evaluation", ways: 5, shots: 1, queries: 1, episodes: 2, accuracy: 0.5, ciLow: 0.1, ciHigh: 0.9, seconds: 1),
        episodes: [EpisodeRow(episode: 0, alphabet: nil, correct: 1, total: 1), EpisodeRow(episode: 1, alphabet: nil, correct: 0, total: 1)])
      try store.finishRun(id, status: .completed)
    }
    let (rows, protocols) = try reportRows(store: store, runs: try store.listRuns())
    XCTAssertEqual(varyingParameters(rows), ["model.headHidden"], "threads are no setting; another experiment's blocks do not count")
    let table = renderReport(rows, protocols: protocols, format: .table)
    XCTAssert(table.contains("model.headHidden=64") && table.contains("model.headHidden=128") && table.contains("differs:"), table)
    XCTAssert(renderReport(rows, protocols: protocols, format: .csv).hasPrefix("run,experiment,mode,transductive,ensemble_members,status,started,duration_s,model.backbone"))
    XCTAssert(renderReport(rows, protocols: protocols, format: .csv).split(separator: "\r\n")[0].contains(",model.headHidden,"))
    XCTAssert(renderReport(rows, protocols: protocols, format: .markdown).contains("model.headHidden=128"))
    XCTAssert(renderReport(rows, protocols: protocols, format: .json).contains("\"model.headHidden\" : \"128\""))
    let groups = renderSeedGroups(try seedGroups(rows, store: store), protocols: protocols, format: .table)
    XCTAssert(groups.contains("differs") && groups.contains("model.headHidden=64"), groups)
  }
}
