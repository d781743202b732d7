import Experiments
import Foundation
import XCTest

@testable import ResultsStore

/// Sweeps: a fixed expansion, job-array shares, re-submission that skips what is done and
/// resumes what was cut short.
final class SweepTests: XCTestCase {
  var folder: URL!

  override func setUpWithError() throws {
    folder = FileManager.default.temporaryDirectory.appendingPathComponent("sweep-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

  var storePath: String { folder.appendingPathComponent("store.sqlite").path }

  func experiment(steps: Int) throws -> String {
    try writeTinyExperiment(in: folder, name: "sweep", seed: 3, steps: steps)
  }


  func testExpansionOrderIsFixedAndChecked() throws {
    let file = try experiment(steps: 10)
    let items = try Sweep(file: file, axes: [try SweepAxis("training.optimizer.learningRate=0.003,0.001"), try SweepAxis("model.blocks=[[4]],[[4],[8]]")], seeds: [1, 2]).items()
    XCTAssertEqual(items.count, 8)
    XCTAssertEqual(items.map { $0.overrides.map(\.text) }.prefix(3).map { $0 }, [
      ["training.optimizer.learningRate=0.003", "model.blocks=[[4]]", "seed=1"], ["training.optimizer.learningRate=0.003", "model.blocks=[[4]]", "seed=2"],
      ["training.optimizer.learningRate=0.003", "model.blocks=[[4],[8]]", "seed=1"],
    ])
    XCTAssertEqual(Set(items.map(\.config.hash)).count, 8)
    // Each configuration is the file with those --set assignments: the same hash.
    XCTAssertEqual(items[5].config.hash, try ExperimentConfig.load(file, overrides: items[5].overrides).hash)
    XCTAssertEqual(taskShare(count: 8, task: 1, tasks: 3), [1, 4, 7])
    // Job-array indices as schedulers give them (issue 30): every configuration has a task.
    func share(_ environment: [String: String], task: Int? = nil, tasks: Int? = nil, count: Int = 4) throws -> [Int] {
      try TaskAssignment(configurations: count, task: task, tasks: tasks, environment: environment).configurations
    }
    func slurm(_ id: Int, _ low: Int, _ high: Int, count: Int, step: Int = 1) -> [String: String] {
      ["SLURM_ARRAY_TASK_ID": "\(id)", "SLURM_ARRAY_TASK_MIN": "\(low)", "SLURM_ARRAY_TASK_MAX": "\(high)", "SLURM_ARRAY_TASK_COUNT": "\(count)", "SLURM_ARRAY_TASK_STEP": "\(step)"]
    }
    // --array=0-3 and the 1-based --array=1-4: each task one configuration, configuration 0 included.
    XCTAssertEqual(try (0...3).map { try share(slurm($0, 0, 3, count: 4)) }, [[0], [1], [2], [3]])
    XCTAssertEqual(try (1...4).map { try share(slurm($0, 1, 4, count: 4)) }, [[0], [1], [2], [3]])
    // --array=0-1 for 4 configurations: two each; --array=0-6:2 (4 tasks): positions 0...3.
    XCTAssertEqual(try (0...1).map { try share(slurm($0, 0, 1, count: 2)) }, [[0, 2], [1, 3]])
    XCTAssertEqual(try [0, 2, 4, 6].map { try share(slurm($0, 0, 6, count: 4, step: 2)) }, [[0], [1], [2], [3]])
    // --array=1,3 (failed indices resubmitted) and --array=3: the configurations of those indices.
    XCTAssertEqual(try [1, 3].map { try share(slurm($0, 1, 3, count: 2)) }, [[1], [3]])
    XCTAssertEqual(try share(slurm(3, 3, 3, count: 1)), [3])
    XCTAssertThrowsError(try share(slurm(7, 5, 7, count: 2))) { XCTAssert("\($0)".contains("only 4"), "\($0)") }
    // Kubernetes: the completion index of --tasks (default one per configuration).
    XCTAssertEqual(try share(["JOB_COMPLETION_INDEX": "1"], tasks: 2), [1, 3])
    XCTAssertThrowsError(try share(["JOB_COMPLETION_INDEX": "4"])) { XCTAssert("\($0)".contains("set --tasks"), "\($0)") }
    XCTAssertThrowsError(try share([:], task: 4, tasks: 2))
    XCTAssertThrowsError(try share(["SLURM_ARRAY_TASK_ID": "x"]))
    // Every range, every configuration: assigned exactly once.
    for tasks in 1...6 {
      let all = try (0..<tasks).flatMap { try share(slurm($0 + 1, 1, tasks, count: tasks), count: 5) }
      XCTAssertEqual(all.sorted(), tasks >= 2 ? [0, 1, 2, 3, 4] : [1], "\(tasks) tasks")
    }
    XCTAssertEqual(try parseSeeds("1-3,7"), [1, 2, 3, 7])
    XCTAssertThrowsError(try SweepAxis("model.blocks=[[4],[8]")) { XCTAssert("\($0)".contains("do not close"), "\($0)") }
    XCTAssertThrowsError(try Sweep(file: file, axes: [try SweepAxis("training.stepz=1,2")], seeds: nil).items()) { XCTAssert("\($0)".contains("unknown key 'stepz'"), "\($0)") }
  }

  func testTasksShareTheGridAndResubmissionSkipsOrResumes() throws {
    let file = try experiment(steps: 20)
    let grid = ["--grid", "training.optimizer.learningRate=0.003,0.001", "--seeds", "1-2", "--store", storePath, "--runs", folder.appendingPathComponent("runs").path]
    let listing = runCLI(["sweep", file, "--list"] + grid)
    XCTAssertEqual(listing.code, 0, listing.error)
    XCTAssertEqual(listing.output.split(separator: "\n").count, 5, listing.output)
    XCTAssertEqual(runCLI(["sweep", file, "--list"] + grid).output, listing.output, "the same list every time")
    XCTAssertFalse(FileManager.default.fileExists(atPath: storePath), "--list records nothing")
    // Bad input: one line, exit 2, nothing recorded.
    for bad in [["--grid", "training.stepz=1,2"], ["--grid", "training.steps=ten"], ["--task", "4", "--tasks", "2"]] {
      let refused = runCLI(["sweep", file] + grid + bad)
      XCTAssertEqual(refused.code, 2, "\(bad): \(refused.error)")
      XCTAssertEqual(refused.error.split(separator: "\n").count, 1, refused.error)
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: storePath))
    // Task 0 of 2 (the flag), then task 1 of 2 (Slurm's variables).
    let first = runCLI(["sweep", file, "--task", "0", "--tasks", "2"] + grid)
    XCTAssertEqual(first.code, 0, first.error)
    let second = runCLI(["sweep", file] + grid, environment: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"])
    XCTAssertEqual(second.code, 0, second.error)
    XCTAssert(second.error.contains("runs 2: 1,3"), second.error)
    let store = try ResultsStore(path: storePath)
    XCTAssertEqual(try store.listRuns(status: .completed).count, 4)
    XCTAssertEqual(Set(try store.listRuns().map(\.configHash)).count, 4, "every configuration once")
    // Submitted again, with another thread count (not part of a configuration): everything is skipped.
    let again = runCLI(["sweep", file, "--threads", "1"] + grid)
    XCTAssertEqual(again.code, 0, again.error)
    XCTAssertEqual(again.error.components(separatedBy: "skipped").count - 1, 4, again.error)
    XCTAssertEqual(try store.listRuns().count, 4)
    // --list says what the store holds of each configuration.
    let listed = runCLI(["sweep", file, "--list"] + grid)
    XCTAssertEqual(listed.output.components(separatedBy: "  done ").count - 1, 4, listed.output)
    XCTAssert(listing.output.contains("to run"), listing.output)
  }

  /// A sweep of one long configuration, killed (SIGKILL) once its run has a checkpoint: the
  /// sweep's arguments, its runs folder and the killed run.
  func killedSweep() throws -> (arguments: [String], runs: URL, runID: String) {
    let file = try experiment(steps: 30)
    let runs = folder.appendingPathComponent("runs")
    let arguments = ["sweep", file, "--grid", "training.optimizer.learningRate=0.003", "--store", storePath, "--runs", runs.path]
    let held = try startHeldRun(arguments, runs: runs)
    kill(held.process.processIdentifier, SIGKILL)
    held.process.waitUntilExit()
    return (arguments, runs, held.runID)
  }

  func testAKilledTaskIsResumedWithoutDuplicates() throws {
    let (arguments, _, runID) = try killedSweep()
    let store = try ResultsStore(path: storePath)
    XCTAssertEqual(try store.run(runID).summary.status, .running, "a killed run is left running, never completed")
    let rerun = runCLI(arguments)
    XCTAssertEqual(rerun.code, 0, rerun.error)
    XCTAssert(rerun.error.contains("resuming run \(runID)"), rerun.error)
    XCTAssertEqual(try store.listRuns().map(\.id), [runID], "no duplicate run")
    XCTAssertEqual(try store.run(runID).summary.status, .completed)
    let steps = try store.metrics(runID: runID, key: "train.loss").map(\.step)
    XCTAssertEqual(steps.count, Set(steps).count)
  }

  /// A task killed on another node (its owner names another host, so its pid cannot be
  /// checked): a resubmitted task leaves the run while the lease runs and exits 75 so that the
  /// scheduler retries it; once the lease (ONESHOT_LEASE_SECONDS) has run out it takes the run over.
  func testARunOwnedOnAnotherHostIsLeftUntilItsLeaseRunsOutAndExitsNonZero() throws {
    let (arguments, _, runID) = try killedSweep()
    let store = try ResultsStore(path: storePath)
    try store.db.query("UPDATE runs SET owner = ?, heartbeat_at = ? WHERE id = ?", [.text("node-b:4242:0badf00d"), .real(Date().timeIntervalSince1970), .text(runID)])
    let early = runCLI(arguments)
    XCTAssertEqual(early.code, 75, early.error)
    XCTAssert(early.error.contains("being run by node-b:4242:0badf00d") && early.error.contains("exits 75"), early.error)
    XCTAssertEqual(try store.run(runID).summary.status, .running)
    sleep(2)
    let late = runCLI(arguments, environment: ["ONESHOT_LEASE_SECONDS": "1"])
    XCTAssertEqual(late.code, 0, late.error)
    XCTAssert(late.error.contains("resuming run \(runID)"), late.error)
    XCTAssertEqual(try store.run(runID).summary.status, .completed)
    XCTAssertEqual(try store.listRuns().count, 1)
  }

  /// Issue #46, cause 2: a task whose data loads slowly (here 5 s, with a lease of 2 s) keeps its
  /// claim by renewing it: a second task started meanwhile leaves the configuration (exit 75)
  /// instead of taking it over, and the first runs it: one run, by the first task.
  func testASlowLoadingTaskKeepsItsClaimPastTheLease() throws {
    let file = try experiment(steps: 10)
    let arguments = ["sweep", file, "--grid", "training.optimizer.learningRate=0.003", "--store", storePath, "--runs", folder.appendingPathComponent("runs").path]
    let slow = Process()
    slow.executableURL = executable
    slow.arguments = arguments
    slow.environment = ProcessInfo.processInfo.environment.merging(["ONESHOT_LEASE_SECONDS": "2", "ONESHOT_TEST_STALL_BEFORE_RUN": "5"]) { $1 }
    let slowErrors = Pipe()
    slow.standardError = slowErrors
    slow.standardOutput = FileHandle.nullDevice
    try slow.run()
    // Claimed, and past the lease: without renewals the claim would be stale by now.
    let deadline = Date().addingTimeInterval(30)
    while (try? ResultsStore(path: storePath).db.query("SELECT count(*) FROM claims", []).first?.first?.integer) != 1 && Date() < deadline { usleep(50_000) }
    sleep(3)
    let second = runCLI(arguments, environment: ["ONESHOT_LEASE_SECONDS": "2"])
    XCTAssertEqual(second.code, 75, second.error)
    XCTAssert(second.error.contains("claimed by") && second.error.contains("left to it"), second.error)
    slow.waitUntilExit()
    let text = String(decoding: slowErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    XCTAssertEqual(slow.terminationStatus, 0, text)
    let store = try ResultsStore(path: storePath)
    XCTAssertEqual(try store.listRuns(status: .completed).count, 1)
    XCTAssertEqual(try store.listRuns().count, 1)
    XCTAssertEqual(try store.db.query("SELECT count(*) FROM claims", []).first?.first?.integer, 0, "the claim is given back")
  }

  /// Two whole sweeps of the same grid started at once into one store (SQLite here, and the
  /// CI server's PostgreSQL when it is there): every configuration runs exactly once; the task
  /// that found a configuration claimed leaves it and exits 75 (or skips it once completed).
  func testTwoSweepsStartedAtOnceRunEachConfigurationOnce() throws {
    let file = try experiment(steps: 20)
    var stores = [storePath]
    if let admin = ProcessInfo.processInfo.environment["ONESHOT_TEST_POSTGRES"] {
      let name = "oneshot_claims_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "_"))"
      try PostgresConnection(url: admin).execute("CREATE DATABASE \(name)")
      addTeardownBlock { try? PostgresConnection(url: admin).execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
      stores.append(String(admin[..<admin.range(of: "/", options: .backwards)!.upperBound]) + name)
    }
    for store in stores {
      let runs = folder.appendingPathComponent("runs-\(stores.firstIndex(of: store)!)")
      var logs: [URL] = []
      let processes = try (0..<2).map { _ -> Process in
        let process = Process()
        process.executableURL = executable
        process.arguments = ["sweep", file, "--seeds", "1-2", "--store", store, "--runs", runs.path]
        process.standardOutput = FileHandle.nullDevice
        let log = folder.appendingPathComponent("sweep-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        logs.append(log)
        try process.run()
        return process
      }
      for process in processes { process.waitUntilExit() }
      let errors = try logs.map { try String(contentsOf: $0, encoding: .utf8) }.joined(separator: "\n---\n")
      XCTAssert(processes.allSatisfy { [0, 75].contains($0.terminationStatus) }, "\(processes.map(\.terminationStatus)): \(errors)")
      let results = try ResultsStore(path: store)
      let all = try results.listRuns()
      XCTAssertEqual(all.count, 2, "\(store): \(all.map(\.status))")
      XCTAssertEqual(Set(all.map(\.configHash)).count, 2)
      XCTAssert(all.allSatisfy { $0.status == .completed })
    }
  }

  /// Owners are `host:pid:token`: two processes with one host name and pid (pods of one Indexed
  /// Job index, pid 1) are told apart; only this host's other pids are checked by signal.
  func testOwnersWithTheSameHostAndPidAreToldApartByTheirToken() {
    let me = RunRecording.thisProcess
    XCTAssertEqual(me.split(separator: ":").count, 3, me)
    XCTAssertEqual(RunRecording.isAlive(me), true)
    let twin = String(me[..<me.lastIndex(of: ":")!]) + ":0badf00d"
    XCTAssertNil(RunRecording.isAlive(twin), "the same host and pid in another container: the lease decides")
    XCTAssertNil(RunRecording.isAlive("node-b:\(getpid()):0badf00d"))
    XCTAssertEqual(RunRecording.isAlive("\(ProcessInfo.processInfo.hostName):999999:0badf00d"), false, "a dead pid on this host")
    XCTAssertEqual(RunRecording.isAlive("\(ProcessInfo.processInfo.hostName):\(getpid())"), true, "an owner recorded before tokens")
  }

  func testARunKilledBeforeItsFirstCheckpointIsStartedAgainOnceAndClosed() throws {
    let (arguments, runs, killed) = try killedSweep()
    // As if it had died before writing a checkpoint.
    try FileManager.default.removeItem(at: runs.appendingPathComponent(killed))
    let store = try ResultsStore(path: storePath)
    let first = runCLI(arguments)
    XCTAssertEqual(first.code, 0, first.error)
    XCTAssert(first.error.contains("run \(killed) stopped before its first checkpoint; starting again"), first.error)
    let old = try store.run(killed).summary
    XCTAssertEqual(old.status, .failed)
    XCTAssert(old.error?.contains("started the configuration again") == true, "\(old.error ?? "")")
    XCTAssertEqual(try store.listRuns().filter { $0.status == .completed }.count, 1)
    let again = runCLI(arguments)
    XCTAssertEqual(again.code, 0, again.error)
    XCTAssert(again.error.contains("skipped"), again.error)
    XCTAssertEqual(try store.listRuns().count, 2, "the configuration ran once more, not twice")
  }

  /// Several job-array tasks at once (separate processes) recording into one PostgreSQL
  /// server: every configuration exactly once; re-submitted, nothing more; a task killed with
  /// SIGKILL and re-run resumes its run; `store copy` PostgreSQL -> SQLite -> PostgreSQL keeps
  /// every row and `report` prints the same table from both.
  func testConcurrentTasksRecordIntoPostgreSQL() throws {
    guard let admin = ProcessInfo.processInfo.environment["ONESHOT_TEST_POSTGRES"] else {
      throw XCTSkip("set ONESHOT_TEST_POSTGRES=postgresql://user@host:port/postgres (.ci/run starts a server)")
    }
    func newDatabase() throws -> String {
      let name = "oneshot_sweep_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "_"))"
      try PostgresConnection(url: admin).execute("CREATE DATABASE \(name)")
      addTeardownBlock { try? PostgresConnection(url: admin).execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
      return String(admin[..<admin.range(of: "/", options: .backwards)!.upperBound]) + name
    }
    let server = try newDatabase()
    let file = try experiment(steps: 20)
    let grid = ["--grid", "training.optimizer.learningRate=0.003,0.001", "--seeds", "1-3", "--store", server, "--runs", folder.appendingPathComponent("runs").path]
    func tasks(_ count: Int) throws -> [Process] {
      try (0..<count).map { task in
        let process = Process()
        process.executableURL = executable
        // An Indexed Job of `count` completions: the index of --tasks.
        process.arguments = ["sweep", file, "--tasks", String(count)] + grid
        process.environment = ProcessInfo.processInfo.environment.merging(["JOB_COMPLETION_INDEX": String(task)]) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
      }
    }
    for process in try tasks(3) {
      process.waitUntilExit()
      XCTAssertEqual(process.terminationStatus, 0)
    }
    let store = try ResultsStore(path: server)
    XCTAssertEqual(store.backend, .postgresql)
    XCTAssertEqual(try store.listRuns(status: .completed).count, 6)
    XCTAssertEqual(Set(try store.listRuns().map(\.configHash)).count, 6)
    for process in try tasks(3) { process.waitUntilExit() }
    XCTAssertEqual(try store.listRuns().count, 6, "re-submitted: every configuration is already there")
    // A killed task: its run stays `running`, and the task run again resumes it.
    let long = try experiment(steps: 30)
    let runs = folder.appendingPathComponent("long-runs")
    let arguments = ["sweep", long, "--grid", "training.optimizer.learningRate=0.002", "--store", server, "--runs", runs.path]
    let held = try startHeldRun(arguments, runs: runs)
    let (victim, killed) = (held.process, held.runID)
    kill(victim.processIdentifier, SIGKILL)
    victim.waitUntilExit()
    XCTAssertEqual(try store.run(killed).summary.status, .running, "never visible as completed")
    let rerun = runCLI(arguments)
    XCTAssertEqual(rerun.code, 0, rerun.error)
    XCTAssertEqual(try store.run(killed).summary.status, .completed)
    XCTAssertEqual(try store.listRuns().count, 7, "no duplicate")
    // PostgreSQL -> SQLite -> PostgreSQL: every row, the same report.
    let copy = folder.appendingPathComponent("copy.sqlite").path
    XCTAssertEqual(runCLI(["store", "copy", server, copy]).code, 0)
    let again = try newDatabase()
    XCTAssertEqual(runCLI(["store", "copy", copy, again]).code, 0)
    let twice = runCLI(["store", "copy", copy, again])
    XCTAssert(twice.output.contains("copied 0 runs") && twice.output.contains("7 already there"), twice.output)
    let reports = [server, copy, again].map { runCLI(["report", "--store", $0, "--format", "csv"]).output }
    XCTAssertEqual(reports[0], reports[1])
    XCTAssertEqual(reports[0], reports[2])
    XCTAssertEqual(reports[0].components(separatedBy: "\r\n").filter { !$0.isEmpty }.count, 8)
    XCTAssertEqual(runCLI(["report", "--store", server]).output, runCLI(["report", "--store", copy]).output)
  }

  /// Issue #46, cause 6: a sweep task holds one connection, not two (its claim's and its run's),
  /// so that a server near max_connections serves twice the tasks. Through a role allowed one
  /// connection, a sweep of two configurations runs both, never waiting for a second slot.
  func testASweepTaskNeedsOneConnection() throws {
    guard let admin = ProcessInfo.processInfo.environment["ONESHOT_TEST_POSTGRES"] else {
      throw XCTSkip("set ONESHOT_TEST_POSTGRES=postgresql://user@host:port/postgres (.ci/run starts a server)")
    }
    let (url, adminURL) = try databaseOfARoleWithOneConnection(self, admin: admin)
    let file = try experiment(steps: 10)
    // A second connection would wait for a free slot and give up after 3 s.
    let result = runCLI(
      ["sweep", file, "--grid", "training.optimizer.learningRate=0.003,0.001", "--store", url, "--runs", folder.appendingPathComponent("runs").path],
      environment: ["ONESHOT_STORE_OUTAGE_SECONDS": "3"])
    XCTAssertEqual(result.code, 0, result.error)
    XCTAssertFalse(result.error.contains("too many connections"), result.error)
    XCTAssertEqual(try ResultsStore(path: adminURL).listRuns(status: .completed).count, 2)
  }

  func testPostgreSQLMistakesAreOneLineAndWriteNothing() throws {
    guard let admin = ProcessInfo.processInfo.environment["ONESHOT_TEST_POSTGRES"] else { throw XCTSkip("set ONESHOT_TEST_POSTGRES (.ci/run starts a server)") }
    let base = String(admin[..<admin.range(of: "/", options: .backwards)!.upperBound])
    let cases: [(String, String)] = [
      ("postgresql://postgres@127.0.0.1:1/oneshot", "cannot reach the PostgreSQL store postgresql://postgres@127.0.0.1:1/oneshot"),
      (base + "no_such_database", "database \"no_such_database\" does not exist"),
      ("postgresql://nobody:secret@127.0.0.1:1/x", "postgresql://nobody:***@127.0.0.1:1/x"),
      ("postgresql://[::1", "cannot use the PostgreSQL store"),
    ]
    for (url, expected) in cases {
      // Without waiting for a server that is away (a refused first connection waits up to 30 s).
      let result = runCLI(["report", "--store", url], environment: ["ONESHOT_STORE_OUTAGE_SECONDS": "0"])
      XCTAssertEqual(result.code, 2, url)
      XCTAssert(result.error.contains(expected) && result.error.split(separator: "\n").count == 1 && !result.error.contains("secret"), result.error)
    }
    // A database at a newer schema version is refused untouched.
    let name = "oneshot_newer_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "_"))"
    try PostgresConnection(url: admin).execute("CREATE DATABASE \(name)")
    addTeardownBlock { try? PostgresConnection(url: admin).execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
    try PostgresConnection(url: base + name).execute("CREATE TABLE oneshot_schema(version BIGINT NOT NULL); INSERT INTO oneshot_schema VALUES (99)")
    let newer = runCLI(["report", "--store", base + name])
    XCTAssertEqual(newer.code, 2)
    XCTAssert(newer.error.contains("schema version 99"), newer.error)
    XCTAssertEqual(try PostgresConnection(url: base + name).query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").first?.first?.integer, 1, "nothing created")
  }
}

/// A new database owned by a new role allowed one connection at a time (dropped with the test):
/// the role's URL of it, and the administrator's.
func databaseOfARoleWithOneConnection(_ test: XCTestCase, admin: String) throws -> (url: String, adminURL: String) {
  let role = "oneshot_one_\(UUID().uuidString.lowercased().prefix(8))"
  let name = "oneshot_one_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "_"))"
  let connection = try PostgresConnection(url: admin)
  try connection.execute("CREATE ROLE \(role) LOGIN CONNECTION LIMIT 1")
  try connection.execute("CREATE DATABASE \(name) OWNER \(role)")
  test.addTeardownBlock {
    try? PostgresConnection(url: admin).execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    try? PostgresConnection(url: admin).execute("DROP ROLE IF EXISTS \(role)")
  }
  let base = String(admin[..<admin.range(of: "/", options: .backwards)!.upperBound])
  return (base.replacingOccurrences(of: "://postgres@", with: "://\(role)@") + name, base + name)
}
