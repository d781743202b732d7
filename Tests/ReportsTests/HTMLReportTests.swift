import Episodes
import Foundation
import ResultsStore
import Support
import XCTest

@testable import Reports

/// A small store: recipe A with seeds 1-3, recipe B (another learning rate) with one seed, and
/// an eval-only run; per-episode rows with alphabets, training metrics, validation points.
func makeStore(_ test: XCTestCase) throws -> (store: ResultsStore, path: String, runs: [String]) {
  let folder = FileManager.default.temporaryDirectory.appendingPathComponent("reports-test-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
  test.addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
  let path = folder.appendingPathComponent("store.sqlite").path
  let store = try ResultsStore(path: path)
  var ids: [String] = []
  let recipes: [(seed: Int, lr: Double, accuracy: Double, evalOnly: Bool)] = [
    (1, 0.001, 0.80, false), (2, 0.001, 0.84, false), (3, 0.001, 0.82, false), (1, 0.003, 0.70, false), (1, 0.001, 0.90, true),
  ]
  for (n, recipe) in recipes.enumerated() {
    let config = #"{"name": "tiny", "seed": \#(recipe.seed), "training": {"optimizer": {"kind": "adam", "learningRate": \#(recipe.lr)}, "pairsPerStep": 32}}"#
    var run = NewRun(
      experiment: recipe.evalOnly ? "tiny-eval" : "tiny", configJSON: config, configHash: SHA256.hex(Array(config.utf8)),
      params: [("seed", String(recipe.seed)), ("training.optimizer.learningRate", String(recipe.lr)), ("training.pairsPerStep", "32"), ("model.backbone", "vgg16")])
    run.gitCommit = "c0ffee"
    run.host = "test-host"
    let id = try store.beginRun(run)
    if recipe.evalOnly {
      try store.setTag(run: id, key: "mode", value: "eval-only")
    } else {
      for step in stride(from: 10, through: 100, by: 10) {
        try store.logMetric(run: id, MetricPoint(key: MetricKey.trainingLoss, step: step, value: 0.7 - Double(step) / 400 + Double(n) * 0.01))
      }
      for step in [50, 100] { try store.logMetric(run: id, MetricPoint(key: MetricKey.validationAccuracy, step: step, value: recipe.accuracy - 0.1 + Double(step) / 1000)) }
      try store.flushMetrics()
    }
    // 10 episodes of 5 queries over two alphabets: `accuracy` of them right, spread evenly.
    let correct = Int((recipe.accuracy * 50).rounded())
    let episodes = (0..<10).map { EpisodeRow(episode: $0, alphabet: $0 % 2 == 0 ? "Tengwar" : "Futurama", correct: correct / 10 + ($0 < correct % 10 ? 1 : 0), total: 5) }
    let accuracy = Double(episodes.map(\.correct).reduce(0, +)) / 50
    try store.recordResult(
      run: id, ProtocolResult(protocolName: "evaluation-5way", split: "evaluation", ways: 5, shots: 1, queries: 5, episodes: 10, accuracy: accuracy, ciLow: accuracy - 0.05, ciHigh: accuracy + 0.05, seconds: 1),
      episodes: episodes)
    try store.setCheckpoint(run: id, path: "runs/\(id)/best.safetensors", hash: "ab\(n)")
    try store.finishRun(id, status: .completed, durationSeconds: 60)
    ids.append(id)
  }
  return (store, path, ids)
}

final class HTMLReportTests: XCTestCase {
  func testSeedGroupsIgnoreOnlyTheSeed() throws {
    let (store, _, ids) = try makeStore(self)
    let (rows, _) = try reportRows(store: store, runs: try store.listRuns())
    let groups = try seedGroups(rows, store: store)
    XCTAssertEqual(groups.count, 3, "A (three seeds), B (another learning rate), the eval-only run")
    let a = try XCTUnwrap(groups.first { $0.runs.count == 3 })
    XCTAssertEqual(Set(a.runs.map(\.summary.id)), Set(ids[0..<3]))
    XCTAssertEqual(a.seeds.sorted(), ["1", "2", "3"])
    let aggregate = try XCTUnwrap(a.protocols["evaluation-5way"])
    // Seed accuracies 0.80, 0.84, 0.82: mean 0.82, sd 0.02, t(2) = 4.303: half-width 0.0497.
    XCTAssertEqual(aggregate.mean, 0.82, accuracy: 1e-12)
    XCTAssertEqual(aggregate.acrossSeeds!.high - aggregate.mean, 4.302653 * 0.02 / 3.0.squareRoot(), accuracy: 1e-5)
    XCTAssertEqual(aggregate.episodes, 30)
    // Pooled episodes: Wilson's interval around the seeds' mean (equal episode counts), inside [0, 1].
    XCTAssert(aggregate.pooledEpisodes.low < 0.82 && 0.82 < aggregate.pooledEpisodes.high && aggregate.pooledEpisodes.low >= 0 && aggregate.pooledEpisodes.high <= 1)
    XCTAssertNil(groups.first { $0.runs.count == 1 && $0.experiment == "tiny" }!.protocols["evaluation-5way"]!.acrossSeeds, "one seed has no interval across seeds")
    // Every text format lists the groups.
    let csv = renderSeedGroups(groups, protocols: ["evaluation-5way"], format: .csv)
    XCTAssertEqual(csv.split(separator: "\r\n").count, 4)
    XCTAssert(csv.hasPrefix("group,experiment,seeds,runs,evaluation-5way.mean,"), csv)
    let table = renderSeedGroups(groups, protocols: ["evaluation-5way"], format: .table)
    XCTAssert(table.contains("82.00%  [77.03, 86.97]"), table)
    XCTAssert(table.split(separator: "\n").allSatisfy { $0.count <= 120 }, table)
    let json = try JSONSerialization.jsonObject(with: Data(renderSeedGroups(groups, protocols: ["evaluation-5way"], format: .json).utf8)) as? [[String: Any]]
    XCTAssertEqual(json?.count, 3)
  }

  func testThePageHasEveryChartWithOneSeriesPerRun() throws {
    let (store, _, ids) = try makeStore(self)
    let (rows, protocols) = try reportRows(store: store, runs: try store.listRuns())
    let html = try renderHTMLReport(
      store: store, rows: rows, protocols: protocols, groups: try seedGroups(rows, store: store),
      options: HTMLReportOptions(storeDescription: "test.sqlite", selection: "", focus: [ids[0], ids[3]]))
    let counts = chartSeriesCounts(html)
    XCTAssertEqual(counts["loss-by-pairs"], 4, "four runs trained; the eval-only run has no curve")
    XCTAssertEqual(counts["validation-by-pairs"], 4)
    XCTAssertEqual(counts["loss-by-time"], 4)
    XCTAssertEqual(counts["protocol-evaluation-5way"], 5)
    XCTAssertEqual(counts["alphabets-evaluation-5way"], 2, "two compared runs")
    XCTAssertEqual(counts["groups-evaluation-5way"], 3)
    XCTAssertEqual(html.components(separatedBy: "class=\"bar\"").count - 1, 4, "two alphabets x two runs")
    XCTAssertFalse(html.contains("http://") && html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http://"), "no external resources")
    XCTAssertFalse(html.contains("<script src"))
  }

  func testEscapingAndTicks() {
    XCTAssertEqual(xmlEscaped("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;")
    XCTAssertEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    XCTAssertEqual(niceTicks(0, 96_000), [0, 20_000, 40_000, 60_000, 80_000, 100_000].filter { $0 <= 96_000 })
    XCTAssertEqual(tickLabel(96_000), "96k")
    XCTAssertEqual(tickLabel(1_500_000), "1.5M")
    XCTAssertEqual(smoothed([1, 1, 1]), [1, 1, 1])
  }

  /// A line's lowest and highest points lie inside the plot, not on its frame (the validation
  /// chart's line ran along the bottom and top edges, as if it left the plot).
  func testALineStaysInsideItsFrame() throws {
    let series = LineSeries(label: "run", run: "r", style: .forIndex(0), points: [(8_000, 7.95), (16_000, 21.0), (57_600, 45.1)])
    let svg = lineChart(id: "v", title: "Validation", xLabel: "pairs", yLabel: "%", series: [series])
    let points = try XCTUnwrap(svg.range(of: #"points="([^"]+)""#, options: .regularExpression).map { String(svg[$0].dropFirst(8).dropLast()) })
    let ys = points.split(separator: " ").compactMap { Double($0.split(separator: ",")[1]) }
    // The frame: top 10, plot height 248.
    XCTAssertEqual(ys.count, 3)
    XCTAssert(ys.allSatisfy { $0 > 10.5 && $0 < 257.5 }, "\(ys)")
  }

  /// Protocol panels share one accuracy scale (a narrow interval must not look as wide as a
  /// wide one), and a run's label is not cut at the experiment's name.
  func testPanelsShareTheirScaleAndLabelsAreWhole() {
    func row(_ label: String, _ value: Double, _ half: Double) -> DotRow {
      DotRow(label: label, run: label, style: .forIndex(0), value: value, low: value - half, high: value + half)
    }
    let narrow = [row("1f82c017 omniglot52-eval (eval-only)", 98.1, 0.4)], wide = [row("9830556d ci-smoke s1", 65.5, 6.7)]
    let scale = sharedAccuracyRange([narrow, wide])
    XCTAssertEqual(scale.map { $0.lowerBound < 58.8 && $0.upperBound > 98.5 && $0.upperBound <= 100 }, true)
    // The x tick labels, in order: `text-anchor="middle">60</text>`.
    let ticks = { (svg: String) in svg.components(separatedBy: "text-anchor=\"middle\">").dropFirst().map { $0.prefix { $0 != "<" } } }
    let a = dotWhiskerChart(id: "a", title: "a", xLabel: "accuracy (%)", rows: narrow, range: scale)
    let b = dotWhiskerChart(id: "b", title: "b", xLabel: "accuracy (%)", rows: wide, range: scale)
    XCTAssertEqual(ticks(a), ticks(b))
    XCTAssert(ticks(a).contains("60") && ticks(a).contains("90"), "\(ticks(a))")
    XCTAssert(a.contains(">1f82c017 omniglot52-eval (eval-only)</text>"), a)
    XCTAssertNil(sharedAccuracyRange([[], []]))
  }

  /// Headless Chromium renders the page: it loads with no console message, its script runs,
  /// every chart has its series, and the screenshot is not blank.
  func testChromiumRendersTheReport() throws {
    guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
      throw XCTSkip("chromium is not installed (.ci/run installs it: apt-get install chromium)")
    }
    let (store, path, _) = try makeStore(self)
    let (rows, protocols) = try reportRows(store: store, runs: try store.listRuns())
    let html = try renderHTMLReport(
      store: store, rows: rows, protocols: protocols, groups: try seedGroups(rows, store: store), options: HTMLReportOptions(storeDescription: path, selection: ""))
    let page = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("report.html")
    try Data(html.utf8).write(to: page)
    let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
    let dom = try runProcess(chromium, flags + ["--dump-dom", page.absoluteString])
    XCTAssertEqual(dom.code, 0, dom.error)
    XCTAssert(dom.output.contains("data-ready=\"yes\""), "the page's script ran to its end")
    let consoleLines = dom.error.split(separator: "\n").filter { $0.contains(":CONSOLE") }
    XCTAssertEqual(consoleLines, [], "console messages")
    let counts = chartSeriesCounts(dom.output)
    XCTAssertEqual(counts["loss-by-pairs"], 4)
    XCTAssertEqual(counts["validation-by-time"], 4)
    XCTAssertEqual(counts["protocol-evaluation-5way"], 5)
    XCTAssertEqual(counts["alphabets-evaluation-5way"], 1, "the newest completed run by default")
    XCTAssertEqual(counts["groups-evaluation-5way"], 3)
    let shot = page.deletingLastPathComponent().appendingPathComponent("report.png")
    let screenshot = try runProcess(chromium, flags + ["--window-size=1200,1600", "--screenshot=\(shot.path)", page.absoluteString])
    XCTAssertEqual(screenshot.code, 0, screenshot.error)
    let image = try GrayImage.decodePNG([UInt8](try Data(contentsOf: shot)), name: shot.path)
    XCTAssertEqual(image.width, 1200)
    let inked = image.pixels.filter { $0 < 200 }.count
    XCTAssertGreaterThan(Double(inked) / Double(image.pixels.count), 0.01, "the screenshot is (nearly) blank")
    XCTAssertGreaterThan(Set(image.pixels).count, 16, "the screenshot has no charts or text")
  }
}

/// `data-series` of every chart, by its id, counted from `<g class="series"` inside it.
func chartSeriesCounts(_ html: String) -> [String: Int] {
  var counts: [String: Int] = [:]
  for part in html.components(separatedBy: "<svg id=\"").dropFirst() {
    guard let quote = part.firstIndex(of: "\"") else { continue }
    let id = String(part[..<quote])
    let svg = part.components(separatedBy: "</svg>")[0]
    counts[id] = svg.components(separatedBy: "class=\"series").count - 1
  }
  return counts
}

/// Runs a program and returns its exit code, standard output and standard error.
func runProcess(_ executable: String, _ arguments: [String]) throws -> (code: Int32, output: String, error: String) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: executable)
  process.arguments = arguments
  let folder = FileManager.default.temporaryDirectory
  let out = folder.appendingPathComponent("proc-out-\(UUID().uuidString)"), err = folder.appendingPathComponent("proc-err-\(UUID().uuidString)")
  _ = FileManager.default.createFile(atPath: out.path, contents: nil)
  _ = FileManager.default.createFile(atPath: err.path, contents: nil)
  defer {
    try? FileManager.default.removeItem(at: out)
    try? FileManager.default.removeItem(at: err)
  }
  process.standardOutput = try FileHandle(forWritingTo: out)
  process.standardError = try FileHandle(forWritingTo: err)
  process.standardInput = FileHandle.nullDevice
  try process.run()
  process.waitUntilExit()
  return (process.terminationStatus, (try? String(contentsOf: out, encoding: .utf8)) ?? "", (try? String(contentsOf: err, encoding: .utf8)) ?? "")
}
