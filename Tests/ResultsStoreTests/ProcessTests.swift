import Foundation
import XCTest

@testable import ResultsStore

/// Tests that run writers in child processes: this test binary started again with a filter
/// selecting `ChildWriter` and the job described in environment variables.
final class ProcessTests: XCTestCase {
  func spawnChild(store: String, experiment: String, rows: Int, flushEvery: Int, readyFile: String? = nil) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    process.arguments = ["ResultsStoreTests.ChildWriter/testWriteWhenAsked"]
    var environment = ProcessInfo.processInfo.environment
    environment["ONESHOT_CHILD_STORE"] = store
    environment["ONESHOT_CHILD_EXPERIMENT"] = experiment
    environment["ONESHOT_CHILD_ROWS"] = String(rows)
    environment["ONESHOT_CHILD_FLUSH_EVERY"] = String(flushEvery)
    environment["ONESHOT_CHILD_READY"] = readyFile ?? ""
    process.environment = environment
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
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
    store.metricFlushInterval = .infinity
    let id = try store.beginRun(sampleRun(experiment))
    for step in 0..<rows {
      try store.logMetric(run: id, MetricPoint(key: "train.loss", step: step, value: Double(step)))
      if (step + 1) % flushEvery == 0 { try store.flushMetrics() }
      if step + 1 == 100 && !ready.isEmpty { FileManager.default.createFile(atPath: ready, contents: nil) }
    }
    try store.finishRun(id, status: .completed)
  }
}
