import Foundation
import XCTest

@testable import ResultsStore

/// Tests that run writers in child processes: this test binary started again with a filter
/// selecting `ChildWriter` and the job described in environment variables.
final class ProcessTests: XCTestCase {
  func spawnChild(store: String, experiment: String, rows: Int, flushEvery: Int, readyFile: String? = nil, runs: Int = 0, episodes: Int = 0) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    process.arguments = ["ResultsStoreTests.ChildWriter/testWriteWhenAsked"]
    var environment = ProcessInfo.processInfo.environment
    environment["ONESHOT_CHILD_STORE"] = store
    environment["ONESHOT_CHILD_EXPERIMENT"] = experiment
    environment["ONESHOT_CHILD_ROWS"] = String(rows)
    environment["ONESHOT_CHILD_FLUSH_EVERY"] = String(flushEvery)
    environment["ONESHOT_CHILD_READY"] = readyFile ?? ""
    environment["ONESHOT_CHILD_RUNS"] = String(runs)
    environment["ONESHOT_CHILD_EPISODES"] = String(episodes)
    process.environment = environment
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
  }

  /// The figure of the scale issue: 100 runs of 1,000 per-episode rows each, recorded by 8
  /// processes at once, into SQLite and (when a server is given) PostgreSQL; nothing is lost.
  func testEightProcessesRecordAHundredRuns() throws {
    var stores = [("SQLite", try temporaryStorePath(self))]
    if ProcessInfo.processInfo.environment["ONESHOT_TEST_POSTGRES"] != nil { stores.append(("PostgreSQL", try newPostgresDatabase(self))) }
    for (name, path) in stores {
      _ = try ResultsStore(path: path)
      let started = Date()
      let children = try (0..<8).map { i in
        try spawnChild(store: path, experiment: "w\(i)", rows: 0, flushEvery: 1, runs: i < 4 ? 13 : 12, episodes: 1_000)
      }
      for child in children {
        child.waitUntilExit()
        XCTAssertEqual(child.terminationStatus, 0, name)
      }
      let seconds = Date().timeIntervalSince(started)
      let store = try ResultsStore(path: path)
      let runs = try store.listRuns(status: .completed)
      XCTAssertEqual(runs.count, 100, name)
      var rows = 0
      for run in runs { rows += try store.episodeRows(runID: run.id, protocolName: "p").count }
      XCTAssertEqual(rows, 100_000, "\(name): every episode row")
      print(String(format: "store concurrency (%@): 8 processes recorded 100 runs x 1,000 episode rows in %.2f s, %.0f rows/s, nothing lost", name, seconds, Double(rows) / seconds))
    }
  }

  func testTwoProcessesWriteConcurrentlyAndKeepEveryRow() throws {
    let path = try temporaryStorePath(self)
    _ = try ResultsStore(path: path)
    let a = try spawnChild(store: path, experiment: "a", rows: 1_000, flushEvery: 1)
    let b = try spawnChild(store: path, experiment: "b", rows: 1_000, flushEvery: 1)
    a.waitUntilExit()
    b.waitUntilExit()
    XCTAssertEqual(a.terminationStatus, 0)
    XCTAssertEqual(b.terminationStatus, 0)
    let store = try ResultsStore(path: path)
    for experiment in ["a", "b"] {
      let runs = try store.listRuns(experiment: experiment)
      XCTAssertEqual(runs.map(\.status), [.completed])
      XCTAssertEqual(try store.metrics(runID: runs[0].id, key: "train.loss").count, 1_000)
    }
    XCTAssertEqual(try store.integrityCheck(), "ok")
  }

  func testKilledWriterLeavesASoundFileAndCommittedRows() throws {
    let path = try temporaryStorePath(self)
    let store = try ResultsStore(path: path)
    let earlier = try store.beginRun(sampleRun("earlier"))
    try store.finishRun(earlier, status: .completed)
    let ready = path + ".ready"
    let child = try spawnChild(store: path, experiment: "victim", rows: 10_000_000, flushEvery: 50, readyFile: ready)
    let deadline = Date().addingTimeInterval(60)
    while !FileManager.default.fileExists(atPath: ready) && Date() < deadline { usleep(10_000) }
    XCTAssertTrue(FileManager.default.fileExists(atPath: ready), "child never became ready")
    usleep(200_000)
    kill(child.processIdentifier, SIGKILL)
    child.waitUntilExit()
    XCTAssertEqual(child.terminationReason, .uncaughtSignal)

    let after = try ResultsStore(path: path)
    XCTAssertEqual(try after.integrityCheck(), "ok")
    XCTAssertEqual(try after.listRuns(experiment: "earlier").map(\.status), [.completed])
    let victim = try after.listRuns(experiment: "victim")
    XCTAssertEqual(victim.map(\.status), [.running], "a crashed run stays visible as running")
    // The child marks the ready file after its first 100 committed rows.
    XCTAssertGreaterThanOrEqual(try after.metrics(runID: victim[0].id, key: "train.loss").count, 100)
  }
}

/// The writer run inside child processes; skipped in a normal test run.
final class ChildWriter: XCTestCase {
  func testWriteWhenAsked() throws {
    let environment = ProcessInfo.processInfo.environment
    guard let path = environment["ONESHOT_CHILD_STORE"], let experiment = environment["ONESHOT_CHILD_EXPERIMENT"],
      let rows = Int(environment["ONESHOT_CHILD_ROWS"] ?? ""), let flushEvery = Int(environment["ONESHOT_CHILD_FLUSH_EVERY"] ?? "")
    else { throw XCTSkip("runs only inside the child processes of ProcessTests") }
    let ready = environment["ONESHOT_CHILD_READY"] ?? ""
    let store = try ResultsStore(path: path)
    // Whole runs with per-episode rows (the concurrency figure).
    let runs = Int(environment["ONESHOT_CHILD_RUNS"] ?? "") ?? 0, episodes = Int(environment["ONESHOT_CHILD_EPISODES"] ?? "") ?? 0
    if runs > 0 {
      for _ in 0..<runs {
        let id = try store.beginRun(sampleRun(experiment))
        let rows = (0..<episodes).map { EpisodeRow(episode: $0, alphabet: "a\($0 % 20)", correct: $0 % 5, total: 5) }
        try store.recordResult(
          run: id, ProtocolResult(protocolName: "p", split: "evaluation", ways: 5, shots: 1, queries: 5, episodes: episodes, accuracy: 0.4, ciLow: 0.3, ciHigh: 0.5, seconds: 1),
          episodes: rows)
        try store.finishRun(id, status: .completed, durationSeconds: 1)
      }
      return
    }
    store.metricFlushInterval = .infinity
    let id = try store.beginRun(sampleRun(experiment))
    for step in 0..<rows {
      try store.logMetric(run: id, MetricPoint(key: "train.loss", step: step, value: Double(step)))
      if (step + 1) % flushEvery == 0 { try store.flushMetrics() }
      if step + 1 == 100 && !ready.isEmpty { _ = FileManager.default.createFile(atPath: ready, contents: nil) }
    }
    try store.finishRun(id, status: .completed)
  }
}
