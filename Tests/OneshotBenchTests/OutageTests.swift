import Foundation
import TestSupport
import XCTest

@testable import ResultsStore

/// A training run rides out its PostgreSQL server going away: the server CI starts is stopped
/// while the run trains and started again seconds later; the run waits, goes on, and ends with
/// every loss point and every result equal to the same run recorded without an outage.
final class OutageTests: TemporaryFolderTestCase {



  func experiment() throws -> String {
    try writeTinyExperiment(in: folder, name: "outage", seed: 5, steps: 60)
  }


  /// `pg_ctl ACTION` on the CI server, as the user that owns it.
  func serverControl(_ action: String) throws {
    let environment = ProcessInfo.processInfo.environment
    guard let data = environment["ONESHOT_TEST_POSTGRES_DATA"], let bin = environment["ONESHOT_TEST_POSTGRES_BIN"] else { return }
    // posix_spawn and waitpid, not Process: the server pg_ctl starts outlives it and keeps the
    // descriptors Process watches, so Process.waitUntilExit would wait for the server to end.
    let arguments = ["/bin/su", "postgres", "-c", "\(bin)/pg_ctl -D \(data) -w -m fast \(action) >/dev/null 2>&1"]
    var pid: pid_t = 0
    let argv = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    XCTAssertEqual(posix_spawn(&pid, arguments[0], nil, nil, argv, environ), 0)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    XCTAssertEqual(status, 0, "pg_ctl \(action)")
  }

  /// Issue #46, causes 4 and 5: an outage longer than the limit ends the command with 75 (a
  /// scheduler retries), and SIGTERM while waiting one out ends it at once with 143; neither
  /// marks the run failed, and each resumes to the uninterrupted run's results.
  func testAnOutagePastTheLimitOrASignalWhileWaitingLeavesTheRunResumable() throws {
    let environment = ProcessInfo.processInfo.environment
    guard let admin = environment["ONESHOT_TEST_POSTGRES"], environment["ONESHOT_TEST_POSTGRES_DATA"] != nil, environment["ONESHOT_TEST_POSTGRES_BIN"] != nil else {
      throw XCTSkip("set ONESHOT_TEST_POSTGRES, ONESHOT_TEST_POSTGRES_DATA and ONESHOT_TEST_POSTGRES_BIN (.ci/run starts a server it may stop)")
    }
    let file = try experiment()
    let reference = folder.appendingPathComponent("reference.sqlite").path
    let uninterrupted = runCLI(["run", file, "--store", reference, "--runs", folder.appendingPathComponent("reference-runs").path])
    XCTAssertEqual(uninterrupted.code, 0, uninterrupted.error)
    let expected = try ResultsStore(path: reference).results(runID: try ResultsStore(path: reference).listRuns()[0].id).map(\.accuracy)
    for (how, limit) in [("limit", "2"), ("signal", "600")] {
      let name = "oneshot_outage_\(how)_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "_"))"
      try PostgresConnection(url: admin).execute("CREATE DATABASE \(name)")
      addTeardownBlock { try? PostgresConnection(url: admin).execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
      let server = String(admin[..<admin.range(of: "/", options: .backwards)!.upperBound]) + name
      let runs = folder.appendingPathComponent("runs-\(how)")
      let held = try startHeldRun(["run", file, "--store", server, "--runs", runs.path], runs: runs, environment: ["ONESHOT_STORE_OUTAGE_SECONDS": limit])
      try serverControl("stop")
      var restarted = false
      defer { if !restarted { try? serverControl("restart") } }
      kill(held.process.processIdentifier, SIGUSR1)
      let started = Date()
      if how == "signal" {
        sleep(4)
        XCTAssert(held.process.isRunning, "the run waits for the server: \(held.errorText)")
        kill(held.process.processIdentifier, SIGTERM)
      }
      let signalled = Date()
      held.process.waitUntilExit()
      if how == "signal" {
        XCTAssertLessThan(Date().timeIntervalSince(signalled), 5, "SIGTERM ends the wait at once")
        XCTAssertEqual(held.process.terminationStatus, 143, held.errorText)
        XCTAssert(held.errorText.contains("stopped by signal 15 while waiting"), held.errorText)
      } else {
        XCTAssertEqual(held.process.terminationStatus, 75, held.errorText)
        XCTAssertLessThan(Date().timeIntervalSince(started), 20, "one wait of the limit, not three: \(held.errorText)")
      }
      XCTAssert(held.errorText.contains("left resumable") && held.errorText.contains("Continue with:"), held.errorText)
      try serverControl("restart")
      restarted = true
      XCTAssertNotEqual(try ResultsStore(path: server).listRuns()[0].status, .failed, "\(how): the run is not marked failed")
      let resumed = runCLI(["run", "--resume", held.runID, "--store", server, "--runs", runs.path])
      XCTAssertEqual(resumed.code, 0, "\(how): \(resumed.error)")
      XCTAssertEqual(try ResultsStore(path: server).results(runID: held.runID).map(\.accuracy), expected, how)
    }
  }

  /// Issue #46, cause 6: a full server (here a role's connection limit, SQLSTATE 53300) is
  /// waited out with back-off, not fatal at open.
  func testAFullServerIsWaitedOut() throws {
    guard let admin = ProcessInfo.processInfo.environment["ONESHOT_TEST_POSTGRES"] else {
      throw XCTSkip("set ONESHOT_TEST_POSTGRES (.ci/run starts a server)")
    }
    let url = try databaseOfARoleWithOneConnection(self, admin: admin).url
    do {  // the store and one run, while the role's one slot is free
      let store = try ResultsStore(path: url)
      let id = try store.beginRun(NewRun(experiment: "full", configJSON: "{}", configHash: "h"))
      try store.finishRun(id, status: .completed)
    }
    var holder: PostgresConnection? = try PostgresConnection(url: url)  // the one slot, taken
    let process = Process()
    process.executableURL = executable
    process.arguments = ["report", "--store", url]
    process.environment = ProcessInfo.processInfo.environment.merging(["ONESHOT_STORE_OUTAGE_SECONDS": "20"]) { $1 }
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    sleep(2)
    XCTAssert(process.isRunning, "report waits for a free connection")
    holder = nil  // the slot is freed
    XCTAssertNil(holder)
    process.waitUntilExit()
    let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    XCTAssertEqual(process.terminationStatus, 0, text)
    XCTAssert(text.contains("too many connections") && text.contains("back after"), text)
  }

  func testATrainingRunRidesOutAServerStopAndGivesTheUninterruptedResult() throws {
    let environment = ProcessInfo.processInfo.environment
    guard let admin = environment["ONESHOT_TEST_POSTGRES"], environment["ONESHOT_TEST_POSTGRES_DATA"] != nil, environment["ONESHOT_TEST_POSTGRES_BIN"] != nil else {
      throw XCTSkip("set ONESHOT_TEST_POSTGRES, ONESHOT_TEST_POSTGRES_DATA and ONESHOT_TEST_POSTGRES_BIN (.ci/run starts a server it may stop)")
    }
    let name = "oneshot_outage_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "_"))"
    try PostgresConnection(url: admin).execute("CREATE DATABASE \(name)")
    addTeardownBlock { try? PostgresConnection(url: admin).execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
    let server = String(admin[..<admin.range(of: "/", options: .backwards)!.upperBound]) + name
    let file = try experiment()
    // The same run without an outage, into a file.
    let reference = folder.appendingPathComponent("reference.sqlite").path
    let uninterrupted = runCLI(["run", file, "--store", reference, "--runs", folder.appendingPathComponent("reference-runs").path])
    XCTAssertEqual(uninterrupted.code, 0, uninterrupted.error)
    // Held at step 10, the server stops; the run goes on training; the server is back 8 s later.
    let runs = folder.appendingPathComponent("runs")
    let held = try startHeldRun(["run", file, "--store", server, "--runs", runs.path], runs: runs)
    try serverControl("stop")
    var restarted = false
    defer { if !restarted { try? serverControl("restart") } }
    kill(held.process.processIdentifier, SIGUSR1)
    sleep(8)
    XCTAssert(held.process.isRunning, "the run waits for the server: \(held.errorText)")
    try serverControl("restart")
    restarted = true
    held.process.waitUntilExit()
    XCTAssertEqual(held.process.terminationStatus, 0, held.errorText)
    XCTAssert(held.errorText.contains("is unreachable") && held.errorText.contains("back after"), held.errorText)
    XCTAssertFalse(held.errorText.lowercased().contains("password"), "an outage is not a password problem: \(held.errorText)")
    // Every loss point and result as without the outage.
    let a = try ResultsStore(path: reference), b = try ResultsStore(path: server)
    let (runA, runB) = (try a.listRuns()[0], try b.listRuns()[0])
    XCTAssertEqual(runB.status, .completed)
    for key in ["train.loss", "validation.accuracy"] {
      let pointsA = try a.metrics(runID: runA.id, key: key).map { "\($0.step) \($0.value)" }
      let pointsB = try b.metrics(runID: runB.id, key: key).map { "\($0.step) \($0.value)" }
      XCTAssertEqual(pointsA, pointsB, key)
      XCTAssertFalse(pointsA.isEmpty)
    }
    XCTAssertEqual(try a.results(runID: runA.id).map(\.accuracy), try b.results(runID: runB.id).map(\.accuracy))
  }
}
