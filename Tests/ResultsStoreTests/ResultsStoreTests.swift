import Foundation
import TestSupport
import XCTest

@testable import ResultsStore

func sampleRun(_ experiment: String = "vgg105", hash: String = "abc") -> NewRun {
  var run = NewRun(
    experiment: experiment, configJSON: "{\"seed\": 1}", configHash: hash, params: [("model.backbone.kind", "vgg16"), ("training.optimizer.learningRate", "0.0001")])
  run.gitCommit = "deadbeef"
  run.gitDirty = false
  run.datasetFingerprint = "0d22"
  run.host = "test"
  return run
}

func temporaryStorePath(_ test: XCTestCase) throws -> String {
  let folder = FileManager.default.temporaryDirectory.appendingPathComponent("store-test-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
  test.addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
  return folder.appendingPathComponent("oneshot.sqlite").path
}

/// The store's suite: every test runs on SQLite here, and again on a PostgreSQL server in
/// `PostgresResultsStoreTests` (one suite, two backends); file-only tests skip there.
class ResultsStoreTests: XCTestCase {
  /// A new, empty store of the backend under test.
  func makeStore() throws -> ResultsStore { try ResultsStore(path: ":memory:") }
  /// True in the PostgreSQL run of the suite.
  var isServer: Bool { false }

  func testClaimsHeartbeatsAndMetricUpserts() throws {
    let store = try makeStore()
    let id = try store.beginRun(sampleRun(), owner: "host-a:1")
    // A live owner keeps the run; a stale or dead one does not.
    XCTAssertThrowsError(try store.claimRun(id, owner: "host-b:2")) { error in
      guard case StoreError.runInUse(_, let owner, _) = error else { return XCTFail("\(error)") }
      XCTAssertEqual(owner, "host-a:1")
    }
    try store.claimRun(id, owner: "host-b:2", isAlive: { _ in false })
    XCTAssertThrowsError(try store.heartbeat(id, owner: "host-a:1", durationSeconds: 5)) { error in
      guard case StoreError.leaseLost = error else { return XCTFail("\(error)") }
    }
    try store.heartbeat(id, owner: "host-b:2", durationSeconds: 7)
    XCTAssertEqual(try store.run(id).summary.durationSeconds, 7)
    try store.logMetric(run: id, MetricPoint(key: "train.loss", step: 5, value: 0.9))
    try store.flushMetrics()
    try store.logMetric(run: id, MetricPoint(key: "train.loss", step: 5, value: 0.4))
    try store.finishRun(id, status: .interrupted, durationSeconds: 8)
    XCTAssertEqual(try store.metrics(runID: id, key: "train.loss").map(\.value), [0.4], "a step logged again replaces the point")
    XCTAssertEqual(try store.claimRun(id, owner: "host-c:3"), 8, "a claim returns the time so far")
  }

  /// A completed run is never claimed again (a stale `run --resume` that started while the run
  /// trained cannot reopen it), and a claim given back leaves the run interrupted.
  func testACompletedRunCannotBeClaimedAndAReleasedClaimIsInterrupted() throws {
    let store = try makeStore()
    let id = try store.beginRun(sampleRun("claims"), owner: "a:1:00000001")
    XCTAssertThrowsError(try store.claimRun(id, owner: "b:2:00000002")) { guard case StoreError.runInUse = $0 else { return XCTFail("\($0)") } }
    try store.release(id, owner: "a:1:00000001")
    XCTAssertEqual(try store.run(id).summary.status, .interrupted)
    try store.claimRun(id, owner: "b:2:00000002")
    try store.finishRun(id, status: .completed, durationSeconds: 1)
    XCTAssertThrowsError(try store.claimRun(id, owner: "c:3:00000003")) { XCTAssert("\($0)".contains("already completed"), "\($0)") }
    XCTAssertEqual(try store.run(id).summary.status, .completed)
  }

  /// A run copied while it was running is brought up to date by the next copy (status,
  /// results, metric points, tags; nothing duplicated); a copy never moves a run backwards; two
  /// stores that disagree about a completed run are refused.
  func testCopyingAgainBringsALaterStateAcrossAndRefusesAConflict() throws {
    let store = try makeStore()
    let id = try store.beginRun(sampleRun("later"), owner: "node:1:0badf00d")
    for step in [10, 20] { try store.logMetric(run: id, MetricPoint(key: "train.loss", step: step, value: 1 / Double(step))) }
    try store.flushMetrics()
    try store.heartbeat(id, owner: "node:1:0badf00d", durationSeconds: 5)
    let copy = try ResultsStore(path: try temporaryStorePath(self))
    XCTAssertEqual(try store.copyRuns(to: copy).copied, 1)
    XCTAssertEqual(try copy.run(id).summary.status, .running)
    // Another store's run in progress is not this store's to resume (issue #46, cause 9).
    XCTAssertThrowsError(try copy.claimRun(id, owner: "sweep:2:t", staleAfter: 0)) { XCTAssert("\($0)".contains("copied here from"), "\($0)") }
    for step in [20, 30] { try store.logMetric(run: id, MetricPoint(key: "train.loss", step: step, value: 2 / Double(step))) }
    try store.recordResult(
      run: id, ProtocolResult(protocolName: "lake20", split: "lake20", ways: 20, shots: 1, queries: 1, episodes: 1, accuracy: 0.75, ciLow: 0.5, ciHigh: 0.9, seconds: 1),
      episodes: [EpisodeRow(episode: 0, alphabet: nil, correct: 15, total: 20)])
    try store.setTag(run: id, key: "note", value: "done")
    try store.finishRun(id, status: .completed, durationSeconds: 9)
    let again = try store.copyRuns(to: copy)
    XCTAssertEqual([again.copied, again.updated, again.skipped], [0, 1, 0])
    let (a, b) = (try store.run(id), try copy.run(id))
    XCTAssertEqual(b.summary.status, .completed)
    XCTAssertEqual(a.summary, b.summary)
    XCTAssertEqual(a.results, b.results)
    XCTAssertEqual(try copy.metrics(runID: id, key: "train.loss").map { "\($0.step) \($0.value)" }, ["10 0.1", "20 0.1", "30 0.06666666666666667"])
    XCTAssertEqual(b.tags.first { $0.key == "note" }?.value, "done")
    XCTAssertEqual(try store.copyRuns(to: copy).skipped, 1, "a third copy changes nothing")
    // Backwards: the completed copy is not overwritten by an older state.
    let older = try ResultsStore(path: try temporaryStorePath(self))
    var record = try store.exportRun(id)
    record.columns = record.columns.map { $0.name == "status" ? (name: "status", value: .text("interrupted")) : $0 }
    try older.importRun(record)
    XCTAssertEqual(try older.copyRuns(to: copy).skipped, 1)
    XCTAssertEqual(try copy.run(id).summary.status, .completed)
    // A conflict: the same completed run with another result.
    var forged = try store.exportRun(id)
    forged.results = forged.results.map { row in var r = row; r[6] = .real(0.5); return r }
    let other = try ResultsStore(path: try temporaryStorePath(self))
    try other.importRun(forged)
    // The conflicting run is named and not copied; every other run of the source is.
    let bystander = try other.beginRun(sampleRun("bystander"))
    try other.finishRun(bystander, status: .completed, durationSeconds: 1)
    let summary = try other.copyRuns(to: copy)
    XCTAssertEqual(summary.notCopied.map(\.id), [id])
    XCTAssert(summary.notCopied.first?.reason.contains("disagree about completed run \(id)") == true, "\(summary.notCopied)")
    XCTAssertEqual(summary.copied, 1)
    XCTAssertEqual(try copy.run(bystander).summary.status, .completed)
    XCTAssertEqual(try copy.results(runID: id).map(\.accuracy), [0.75])
  }

  func testCopyingRunsIsCompleteAndIdempotent() throws {
    let store = try makeStore()
    let id = try store.beginRun(sampleRun("copied"))
    try store.logMetric(run: id, MetricPoint(key: "validation.accuracy", step: 100, value: 0.5))
    try store.recordResult(
      run: id, ProtocolResult(protocolName: "lake20", split: "lake20", ways: 20, shots: 1, queries: 1, episodes: 2, accuracy: 0.75, ciLow: 0.5, ciHigh: 1, seconds: 1.5),
      episodes: [EpisodeRow(episode: 0, alphabet: "Tengwar", correct: 15, total: 20), EpisodeRow(episode: 1, alphabet: nil, correct: 15, total: 20)])
    try store.setTag(run: id, key: "mode", value: "eval-only")
    try store.finishRun(id, status: .completed, durationSeconds: 3)
    let file = try ResultsStore(path: try temporaryStorePath(self))
    XCTAssertEqual(try store.copyRuns(to: file).copied, 1)
    XCTAssertEqual(try store.copyRuns(to: file).copied, 0, "copying twice adds nothing")
    let back = try makeStore()
    XCTAssertEqual(try file.copyRuns(to: back).copied, 1)
    for copy in [file, back] {
      let (a, b) = (try store.run(id), try copy.run(id))
      XCTAssertEqual(a.summary, b.summary)
      XCTAssertEqual(a.params.map { "\($0.key)=\($0.value)" }, b.params.map { "\($0.key)=\($0.value)" })
      XCTAssertEqual(a.tags.map { "\($0.key)=\($0.value)" }, b.tags.map { "\($0.key)=\($0.value)" })
      XCTAssertEqual(a.results, b.results)
      XCTAssertEqual(try copy.episodeRows(runID: id, protocolName: "lake20"), try store.episodeRows(runID: id, protocolName: "lake20"))
      XCTAssertEqual(try copy.metrics(runID: id, key: "validation.accuracy"), try store.metrics(runID: id, key: "validation.accuracy"))
    }
  }

  /// Issue #46, cause 12: a step's points are committed together or not at all. A flush that
  /// falls due while they are logged waits for the last of them (it used to commit the first and
  /// leave the others buffered, lost when the process then died).
  func testAStepsMetricPointsAreCommittedTogether() throws {
    let path = isServer ? try newPostgresDatabase(self) : try temporaryStorePath(self)
    let store = try ResultsStore(path: path)
    let id = try store.beginRun(sampleRun("grouped"))
    let step = [MetricPoint(key: "train.loss", step: 50, value: 0.5), MetricPoint(key: "train.pairsPerSecond", step: 50, value: 100), MetricPoint(key: "train.learningRate", step: 50, value: 1e-3)]
    store.metricFlushInterval = 0  // a flush is due at every call
    try store.logMetrics(run: id, step)
    let reader = try ResultsStore(path: path)
    XCTAssertEqual(try step.map { try reader.metrics(runID: id, key: $0.key).count }, [1, 1, 1])
    store.metricFlushInterval = 3600  // none is due
    try store.logMetrics(run: id, step.map { MetricPoint(key: $0.key, step: 100, value: $0.value) })
    XCTAssertEqual(try step.map { try reader.metrics(runID: id, key: $0.key).count }, [1, 1, 1], "buffered: none of them yet")
    try store.flushMetrics()
    XCTAssertEqual(try step.map { try reader.metrics(runID: id, key: $0.key).count }, [2, 2, 2])
  }

  /// Issue #46, cause 3: creating a run is retried when its reply is lost after the server
  /// committed it. The retry (the same id, configuration and owner) finds its own row and
  /// succeeds, leaving one row. Any other writer's row with that id is refused untouched.
  func testARetriedRunCreationWhoseFirstAttemptCommittedSucceeds() throws {
    let store = try makeStore()
    var run = NewRun(experiment: "e", configJSON: "{}", configHash: "h1", params: [("a", "1")])
    run.id = "r-retried"
    XCTAssertEqual(try store.beginRun(run, owner: "host:1"), "r-retried")
    XCTAssertEqual(try store.beginRun(run, owner: "host:1"), "r-retried")
    XCTAssertEqual(try store.listRuns().map(\.id), ["r-retried"])
    XCTAssertThrowsError(try store.beginRun(run, owner: "other:2")) { XCTAssert("\($0)".contains("already has a run r-retried"), "\($0)") }
    var other = NewRun(experiment: "e", configJSON: "{}", configHash: "h2")
    other.id = "r-retried"
    XCTAssertThrowsError(try store.beginRun(other, owner: "host:1"))
    XCTAssertEqual(try store.listRuns().map(\.id), ["r-retried"])
  }

  /// Issue #46, cause 2: task A claims a configuration and stalls; B takes the claim over after
  /// the lease. A, going on, cannot write its run; B can: one run of the configuration.
  func testAClaimTakenOverCannotStartItsRun() throws {
    let store = try makeStore()
    XCTAssertEqual("\(try store.claimConfiguration(experiment: "e", configHash: "h", owner: "a:1"))", "claimed")
    XCTAssertEqual("\(try store.claimConfiguration(experiment: "e", configHash: "h", owner: "b:2", staleAfter: 0))", "claimed")
    let run = NewRun(experiment: "e", configJSON: "{}", configHash: "h")
    XCTAssertThrowsError(try store.beginRun(run, owner: "a:1", claim: ("e", "h"))) { XCTAssert("\($0)".contains("passed to b:2"), "\($0)") }
    XCTAssertEqual(try store.listRuns().count, 0)
    _ = try store.beginRun(run, owner: "b:2", claim: ("e", "h"))
    XCTAssertEqual(try store.listRuns().count, 1)
  }

  /// Issue #46, cause 12: a run taken over names its new host; a completed configuration keeps
  /// no claim row.
  func testATakeoverNamesItsHostAndACompletedConfigurationKeepsNoClaim() throws {
    let store = try makeStore()
    var run = NewRun(experiment: "e", configJSON: "{}", configHash: "h")
    run.host = "node-a"
    let id = try store.beginRun(run, owner: "node-a:1:t")
    try store.claimRun(id, owner: "node-b:2:t", host: "node-b", staleAfter: 0)
    XCTAssertEqual(try store.run(id).provenance.first { $0.key == "host" }?.value, "node-b")
    _ = try store.claimConfiguration(experiment: "e", configHash: "h", owner: "node-c:3:t")
    try store.finishRun(id, status: .completed)
    XCTAssertEqual("\(try store.claimConfiguration(experiment: "e", configHash: "h", owner: "node-d:4:t"))", "done(runID: \"\(id)\")")
    XCTAssertEqual("\(try store.claimConfiguration(experiment: "e", configHash: "h", owner: "node-e:5:t", staleAfter: 1e9))", "done(runID: \"\(id)\")")
    let left = try store.db.query("SELECT count(*) FROM claims", []).first?.first?.integer
    XCTAssertEqual(left, 0)
  }

  func testRunLifecycleAndQueries() throws {
    let store = try makeStore()
    XCTAssertEqual(try store.schemaVersion, Schema.current)
    let id = try store.beginRun(sampleRun())
    XCTAssertEqual(try store.listRuns().map(\.status), [.running])
    try store.logMetric(run: id, MetricPoint(key: "train.loss", step: 1, value: 0.7))
    try store.logMetric(run: id, MetricPoint(key: "train.loss", step: 2, value: 0.5))
    let result = ProtocolResult(protocolName: "lake20", split: "lake20", ways: 20, shots: 1, queries: 1, episodes: 20, accuracy: 0.9, ciLow: 0.87, ciHigh: 0.93, seconds: 1.5)
    try store.recordResult(run: id, result, episodes: (0..<20).map { EpisodeRow(episode: $0, alphabet: "Tengwar", correct: 18, total: 20) })
    try store.setTag(run: id, key: "note", value: "first")
    try store.setCheckpoint(run: id, path: "runs/x/best.safetensors", hash: "ff")
    try store.finishRun(id, status: .completed, durationSeconds: 12)

    let detail = try store.run(String(id.prefix(8)))
    XCTAssertEqual(detail.summary.status, .completed)
    XCTAssertEqual(detail.summary.durationSeconds, 12)
    XCTAssertEqual(detail.params.map(\.key), ["model.backbone.kind", "training.optimizer.learningRate"])
    XCTAssertEqual(detail.results, [result])
    XCTAssertEqual(detail.tags.first?.value, "first")
    XCTAssert(detail.provenance.contains { $0.key == "checkpoint_hash" && $0.value == "ff" })
    XCTAssert(detail.provenance.contains { $0.key == "git_dirty" && $0.value == "false" })
    XCTAssertEqual(try store.metrics(runID: id, key: "train.loss").map(\.value), [0.7, 0.5])
    XCTAssertEqual(try store.episodeRows(runID: id, protocolName: "lake20").count, 20)
    XCTAssertEqual(try store.latestCompletedRun(experiment: "vgg105")?.id, id)
    XCTAssertNil(try store.latestCompletedRun(experiment: "other"))
    XCTAssertThrowsError(try store.run("nope-nope")) { XCTAssert("\($0)".contains("no run 'nope-nope'"), "\($0)") }
  }

  func testFiltersAndAlignment() throws {
    let store = try makeStore()
    let a = try store.beginRun(sampleRun("koch"))
    let b = try store.beginRun(sampleRun("koch"))
    let c = try store.beginRun(sampleRun("vgg"))
    try store.finishRun(a, status: .completed)
    try store.finishRun(b, status: .failed, error: "NaN loss at step 7")
    try store.finishRun(c, status: .interrupted)
    XCTAssertEqual(Set(try store.listRuns(experiment: "koch").map(\.id)), [a, b])
    XCTAssertEqual(try store.listRuns(status: .failed).map(\.error), ["NaN loss at step 7"])
    XCTAssertEqual(try store.listRuns(last: 1).map(\.id), [c])
    let spec = ProtocolResult(protocolName: "p", split: "evaluation", ways: 5, shots: 1, queries: 1, episodes: 3, accuracy: 0.5, ciLow: 0.4, ciHigh: 0.6, seconds: 0)
    try store.recordResult(
      run: a, spec,
      episodes: [
        EpisodeRow(episode: 0, alphabet: nil, correct: 1, total: 5), EpisodeRow(episode: 1, alphabet: nil, correct: 2, total: 5),
        EpisodeRow(episode: 2, alphabet: nil, correct: 3, total: 5),
      ])
    try store.recordResult(run: b, spec, episodes: [EpisodeRow(episode: 1, alphabet: nil, correct: 4, total: 5), EpisodeRow(episode: 2, alphabet: nil, correct: 0, total: 5)])
    let aligned = try store.alignedEpisodes(runA: a, runB: b, protocolName: "p")
    XCTAssertEqual(aligned.map(\.episode), [1, 2])
    XCTAssertEqual(aligned[0].a.correct, 2)
    XCTAssertEqual(aligned[0].b.correct, 4)
    // Recording again replaces, never duplicates.
    try store.recordResult(run: a, spec, episodes: [EpisodeRow(episode: 0, alphabet: nil, correct: 5, total: 5)])
    XCTAssertEqual(try store.episodeRows(runID: a, protocolName: "p").count, 1)
  }

  func testOlderSchemaUpgradesInPlaceAndKeepsData() throws {
    try XCTSkipIf(isServer, "a SQLite file's behaviour")
    let path = try temporaryStorePath(self)
    do {
      let old = try Database(path: path)
      try old.execute(Schema.migrations[0])
      try old.execute("INSERT INTO experiments(name, created_at) VALUES ('old', '2025-01-01T00:00:00Z')")
      try old.execute("INSERT INTO runs(id, experiment_id, status, started_at, config_json, config_hash) VALUES ('r1', 1, 'completed', '2025-01-01T00:00:00Z', '{}', 'h')")
      try old.execute("PRAGMA user_version = 1")
    }
    let store = try ResultsStore(path: path)
    XCTAssertEqual(try store.schemaVersion, Schema.current)
    XCTAssertEqual(try store.listRuns().map(\.id), ["r1"])
    try store.setTag(run: "r1", key: "k", value: "v")  // the table added by migration 2
  }

  func testNewerSchemaIsRefusedAndNothingWritten() throws {
    try XCTSkipIf(isServer, "a SQLite file's behaviour")
    let path = try temporaryStorePath(self)
    do {
      let future = try Database(path: path)
      try future.execute("CREATE TABLE t(x); PRAGMA user_version = 99")
    }
    let before = try Data(contentsOf: URL(fileURLWithPath: path))
    XCTAssertThrowsError(try ResultsStore(path: path)) { error in
      XCTAssert("\(error)".contains("schema version 99, newer than"), "\(error)")
    }
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
    XCTAssertFalse(FileManager.default.fileExists(atPath: path + "-wal"))
  }

  func testNotADatabaseAndUnwritableLocation() throws {
    try XCTSkipIf(isServer, "a SQLite file's behaviour")
    let path = try temporaryStorePath(self)
    try Data("this is a text file, not a database, and it is long enough to look like one....".utf8).write(to: URL(fileURLWithPath: path))
    XCTAssertThrowsError(try ResultsStore(path: path)) { error in
      XCTAssert("\(error)".contains("is not a SQLite database"), "\(error)")
    }
    // A regular file where the store's folder should be.
    XCTAssertThrowsError(try ResultsStore(path: path + "/inside/store.sqlite")) { error in
      XCTAssert("\(error)".contains("cannot write the results store"), "\(error)")
    }
  }

  func testSpeedOfRecordingAndListing() throws {
    try XCTSkipIf(isServer, "a SQLite file's behaviour")
    let path = try temporaryStorePath(self)
    let store = try ResultsStore(path: path)
    store.metricFlushInterval = .infinity
    let start = Date()
    let id = try store.beginRun(sampleRun())
    for step in 0..<5_000 { try store.logMetric(run: id, MetricPoint(key: "train.loss", step: step, value: 1 / Double(step + 1))) }
    let result = ProtocolResult(
      protocolName: "evaluation-20way", split: "evaluation", ways: 20, shots: 1, queries: 1, episodes: 10_000, accuracy: 0.9, ciLow: 0.89, ciHigh: 0.91, seconds: 1)
    try store.recordResult(run: id, result, episodes: (0..<10_000).map { EpisodeRow(episode: $0, alphabet: "Tengwar", correct: $0 % 20, total: 20) })
    try store.finishRun(id, status: .completed)
    let recordSeconds = Date().timeIntervalSince(start)
    for _ in 0..<999 { try store.finishRun(try store.beginRun(sampleRun()), status: .completed) }
    let listStart = Date()
    let runs = try store.listRuns()
    let listSeconds = Date().timeIntervalSince(listStart)
    XCTAssertEqual(runs.count, 1_000)
    XCTAssertEqual(try store.episodeRows(runID: id, protocolName: "evaluation-20way").count, 10_000)
    print(String(format: "store speed: recorded 1 run with 10,000 episode rows and 5,000 metric rows in %.3f s; listed 1,000 runs in %.4f s", recordSeconds, listSeconds))
  }

  func testTimestampsAreISO8601WithMillisecondsInUTC() {
    XCTAssertEqual(ResultsStore.timestamp(Date(timeIntervalSince1970: 1_795_930_162.428)), "2026-11-29T05:29:22.428Z")
    XCTAssertEqual(ResultsStore.timestamp(Date(timeIntervalSince1970: 0.007)), "1970-01-01T00:00:00.007Z")
    XCTAssertEqual(ResultsStore.timestamp(Date(timeIntervalSince1970: 951_825_599.9999)), "2000-02-29T12:00:00.000Z")
  }
}

/// The suite again on a PostgreSQL server: ONESHOT_TEST_POSTGRES names a database to
/// administer (`.ci/run` starts a throwaway server and sets it); each test gets a new database.
final class PostgresResultsStoreTests: ResultsStoreTests {
  var databases: [String] = []

  override var isServer: Bool { true }

  override func setUpWithError() throws {
    guard ProcessInfo.processInfo.environment["ONESHOT_TEST_POSTGRES"] != nil else {
      throw XCTSkip("set ONESHOT_TEST_POSTGRES=postgresql://user@host:port/postgres (.ci/run starts a server)")
    }
  }

  override func makeStore() throws -> ResultsStore {
    try ResultsStore(path: try newPostgresDatabase(self))
  }

  // Test discovery on Linux lists the methods a class declares, not the ones it inherits: the
  // backend-neutral tests are named again here.
  override func testRunLifecycleAndQueries() throws { try super.testRunLifecycleAndQueries() }
  override func testFiltersAndAlignment() throws { try super.testFiltersAndAlignment() }
  override func testClaimsHeartbeatsAndMetricUpserts() throws { try super.testClaimsHeartbeatsAndMetricUpserts() }
  override func testCopyingRunsIsCompleteAndIdempotent() throws { try super.testCopyingRunsIsCompleteAndIdempotent() }
  override func testAStepsMetricPointsAreCommittedTogether() throws { try super.testAStepsMetricPointsAreCommittedTogether() }
  override func testARetriedRunCreationWhoseFirstAttemptCommittedSucceeds() throws { try super.testARetriedRunCreationWhoseFirstAttemptCommittedSucceeds() }
  override func testAClaimTakenOverCannotStartItsRun() throws { try super.testAClaimTakenOverCannotStartItsRun() }
  override func testATakeoverNamesItsHostAndACompletedConfigurationKeepsNoClaim() throws { try super.testATakeoverNamesItsHostAndACompletedConfigurationKeepsNoClaim() }

  /// A new database reached through a fault-injecting proxy: (the URL through the proxy, the proxy).
  func proxiedDatabase() throws -> (url: String, proxy: LoopbackProxy) {
    let url = try newPostgresDatabase(self)
    guard let match = url.range(of: #":(\d+)/"#, options: .regularExpression), let port = UInt16(url[match].dropFirst().dropLast()) else {
      throw XCTSkip("ONESHOT_TEST_POSTGRES has no port")
    }
    let proxy = try LoopbackProxy(upstreamPort: port)
    addTeardownBlock { proxy.close() }
    return (proxy.url(replacingPortOf: url), proxy)
  }

  /// Issue #46, cause 3, with the fault itself: the server commits a new run, and the reply to
  /// COMMIT is lost with the connection. The store reconnects and retries: one run, created.
  func testALostReplyToTheCommitThatCreatedARunLeavesOneRun() throws {
    let (url, proxy) = try proxiedDatabase()
    let store = try ResultsStore(path: url)
    proxy.loseReply(to: "COMMIT", after: "INSERT INTO runs")
    let id = try store.beginRun(sampleRun("lost-reply"), owner: "host:1")
    XCTAssertEqual(proxy.lostReplies, 1, "the fault happened")
    XCTAssertEqual(try store.listRuns().map(\.id), [id])
    XCTAssertEqual(try store.run(id).summary.status, .running)
    try store.finishRun(id, status: .completed)
    XCTAssertEqual(try store.listRuns(status: .completed).count, 1)
  }

  /// Issue #46, cause 3 (`store copy` said "copied 0 ... 1 already there"): a run whose copy the
  /// destination committed while the reply was lost is counted as copied, not as already there.
  func testALostReplyWhileCopyingCountsTheRunAsCopied() throws {
    let source = try ResultsStore(path: try temporaryStorePath(self))
    for name in ["first", "second"] {
      let id = try source.beginRun(sampleRun(name, hash: name))
      try source.logMetric(run: id, MetricPoint(key: "validation.accuracy", step: 10, value: 0.5))
      try source.finishRun(id, status: .completed, durationSeconds: 2)
    }
    let (url, proxy) = try proxiedDatabase()
    let destination = try ResultsStore(path: url)
    proxy.loseReply(to: "COMMIT", after: "INSERT INTO runs")
    let summary = try source.copyRuns(to: destination)
    XCTAssertEqual(proxy.lostReplies, 1, "the fault happened")
    XCTAssertEqual([summary.copied, summary.updated, summary.skipped], [2, 0, 0])
    XCTAssertEqual(try destination.listRuns().count, 2)
    let again = try source.copyRuns(to: destination)
    XCTAssertEqual([again.copied, again.updated, again.skipped], [0, 0, 2])
  }

  /// A stalled network (nothing passes for 3 s) delays a write and loses nothing.
  func testAStalledConnectionDelaysAWriteAndLosesNothing() throws {
    let (url, proxy) = try proxiedDatabase()
    let store = try ResultsStore(path: url)
    let id = try store.beginRun(sampleRun("stalled"))
    proxy.stall(seconds: 3)
    let start = Date()
    try store.logMetric(run: id, MetricPoint(key: "train.loss", step: 1, value: 0.25))
    try store.finishRun(id, status: .completed)
    XCTAssertGreaterThan(Date().timeIntervalSince(start), 2.5)
    XCTAssertEqual(try store.metrics(runID: id, key: "train.loss").map(\.value), [0.25])
    XCTAssertEqual(try store.listRuns(status: .completed).map(\.id), [id])
  }

  /// Issue #46, cause 10: a reading command on an empty database is refused, creating nothing.
  func testAnEmptyDatabaseIsNotTurnedIntoAStoreByAReader() throws {
    let url = try newPostgresDatabase(self)
    XCTAssertThrowsError(try ResultsStore(path: url, mustExist: true)) { XCTAssert("\($0)".contains("holds no results store yet"), "\($0)") }
    let tables = try PostgresConnection(url: url).query("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'", [])
    XCTAssertEqual(tables.first?.first?.integer, 0)
    _ = try ResultsStore(path: url)
    XCTAssertNoThrow(try ResultsStore(path: url, mustExist: true))
  }

  /// Issue #46, cause 7: a second version row, higher than the first, is what counts.
  func testANewerSchemaInAnyVersionRowIsRefused() throws {
    let url = try newPostgresDatabase(self)
    _ = try ResultsStore(path: url)
    try PostgresConnection(url: url).execute("INSERT INTO oneshot_schema(version) VALUES (\(Schema.current + 4))")
    XCTAssertThrowsError(try ResultsStore(path: url)) { error in
      XCTAssert("\(error)".contains("schema version \(Schema.current + 4), newer than"), "\(error)")
    }
  }
}

/// What a server's refusal tells the user to do, by its SQLSTATE (issue #46, cause 11): a role
/// without a privilege is not told to check its password, a full server is not a wrong port.
final class StoreAdviceTests: XCTestCase {
  func testAdviceFollowsTheServersReason() {
    func said(_ reason: String) -> String { StoreError.server(url: "postgresql://h/db", reason: reason).description }
    XCTAssert(said("permission denied for schema public (SQLSTATE 42501)").contains("privilege"))
    XCTAssertFalse(said("permission denied for schema public (SQLSTATE 42501)").contains("password"))
    XCTAssert(said("sorry, too many clients already (SQLSTATE 53300)").contains("max_connections"))
    XCTAssert(said("canceling statement due to statement timeout (SQLSTATE 57014)").contains("statement_timeout"))
    XCTAssert(said("invalid byte sequence for encoding \"UTF8\": 0x00 (SQLSTATE 22021)").contains("NUL"))
    XCTAssert(said("password authentication failed for user \"u\"").contains("check the user and the password"))
    XCTAssert(said("invalid percent-encoded token: \"***\"").contains("percent-encode"))
    XCTAssert(said("could not translate host name \"nohost\" to address").contains("host, port and database name"))
    let long = said(String(repeating: "x", count: 100_000) + " (SQLSTATE 22001)")
    XCTAssertLessThan(long.count, 1_000, "a 100 KB value is not echoed whole")
    XCTAssert(StoreError.outage(url: "postgresql://h/db", seconds: 0.3, reason: "refused").description.contains("unreachable for 0.3 s"))
  }
}

/// A new database on the test server, dropped when the test ends; its URL.
func newPostgresDatabase(_ test: XCTestCase) throws -> String {
  let admin = try XCTUnwrap(ProcessInfo.processInfo.environment["ONESHOT_TEST_POSTGRES"])
  let name = "oneshot_test_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "_"))"
  let connection = try PostgresConnection(url: admin)
  try connection.execute("CREATE DATABASE \(name)")
  test.addTeardownBlock { try? PostgresConnection(url: admin).execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
  guard let slash = admin.range(of: "/", options: .backwards) else { throw XCTSkip("ONESHOT_TEST_POSTGRES is not a URL") }
  return String(admin[..<slash.upperBound]) + name
}
