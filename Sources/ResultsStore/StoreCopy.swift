import Foundation

// `oneshot-bench store copy SRC DST`: runs copied between any two stores (SQLite files,
// PostgreSQL servers), keyed by run id, so that an offline node's file can be merged into the
// shared server later. Copying again adds nothing new; a run the destination has in an earlier
// state (running, interrupted, failed, or with less work done) is brought up to the source's
// state: its row, and its metric points, results, episodes and tags keyed, never duplicated. Two
// stores that disagree about a completed run are refused. Rows go in batches.

/// Everything recorded about one run.
public struct RunRecord: Sendable {
  public var experiment: String
  /// The `runs` row: column name -> value (owner and heartbeat are not copied: the copy is
  /// nobody's work in progress).
  public var columns: [(name: String, value: SQLValue)]
  public var params: [[SQLValue]]
  public var metrics: [[SQLValue]]
  public var results: [[SQLValue]]
  public var episodes: [[SQLValue]]
  public var tags: [[SQLValue]]
}

extension ResultsStore {
  static let copiedRunColumns = [
    "id", "status", "started_at", "finished_at", "duration_seconds", "config_json", "config_hash", "git_commit", "git_dirty", "dataset_fingerprint",
    "checkpoint_path", "checkpoint_hash", "host", "cpu", "harness_version", "swift_version", "error",
  ]

  /// One run in full.
  public func exportRun(_ id: String) throws -> RunRecord {
    try read {
      let columns = ResultsStore.copiedRunColumns.map { "r.\($0)" }.joined(separator: ", ")
      guard let row = try db.query("SELECT e.name, \(columns) FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?", [.text(id)]).first else {
        throw StoreError.noSuchRun(id)
      }
      func rows(_ sql: String) throws -> [[SQLValue]] { try db.query(sql, [.text(id)]) }
      return RunRecord(
        experiment: row[0].text ?? "", columns: Array(zip(ResultsStore.copiedRunColumns, row.dropFirst())).map { (name: $0.0, value: $0.1) },
        params: try rows("SELECT key, value FROM params WHERE run_id = ? ORDER BY key"),
        metrics: try rows("SELECT key, step, value, time FROM metrics WHERE run_id = ? ORDER BY key, step"),
        results: try rows("SELECT protocol, split, ways, shots, queries, episodes, accuracy, ci_low, ci_high, seconds FROM results WHERE run_id = ? ORDER BY protocol"),
        episodes: try rows("SELECT protocol, episode, alphabet, correct, total FROM episode_results WHERE run_id = ? ORDER BY protocol, episode"),
        tags: try rows("SELECT key, value FROM tags WHERE run_id = ? ORDER BY key"))
    }
  }

  /// What importing a run did.
  public enum ImportOutcome: Equatable, Sendable {
    /// The destination lacked the run.
    case added
    /// The destination had it in an earlier state and now has the source's.
    case updated
    /// The destination had it as the source has it, or in a later state (or a live process works on it there).
    case unchanged
  }

  /// Writes `record` in one transaction: a run the store lacks is added; one it has in an
  /// earlier state is brought up to `record`'s (see the file's comment); two completed runs
  /// with the same id and different results are refused (`StoreError.copyConflict`).
  /// A run still `running` in the source arrives owned by `copy:<source>`: it is the source's
  /// process's work, so it is never resumed here (`claimRun` refuses it with `runElsewhere`; a
  /// sweep leaves it), until a later copy brings its end (issue #46, cause 9: a sweep here took
  /// it for a run stopped before its first checkpoint and trained the configuration again).
  @discardableResult
  public func importRun(_ record: RunRecord, from source: String = "another store") throws -> ImportOutcome {
    guard let id = record.columns.first(where: { $0.name == "id" })?.value else { throw StoreError.noSuchRun("?") }
    func column(_ name: String) -> SQLValue { record.columns.first { $0.name == name }?.value ?? .null }
    // What an attempt that may have committed meant to do: when its COMMIT's reply is lost, the
    // retry finds the run exactly as the record has it, and reports that attempt's outcome, not
    // "already there" (issue #46, cause 3: `store copy` said "copied 0 ... 1 already there").
    var attempted: ImportOutcome?
    let outcome: ImportOutcome = try write {
      let result = try importAttempt(record, id: id, column: column, source: source)
      if result == .unchanged, let attempted, try holds(record, id: id, column: column) { return attempted }
      attempted = result == .unchanged ? nil : result
      return result
    }
    return outcome
  }

  /// Whether the store has the run as `record` has it: its status, recorded time and results.
  private func holds(_ record: RunRecord, id: SQLValue, column: (String) -> SQLValue) throws -> Bool {
    guard let row = try db.query("SELECT status, duration_seconds FROM runs WHERE id = ?", [id]).first else { return false }
    let results = try db.query("SELECT protocol, accuracy FROM results WHERE run_id = ? ORDER BY protocol", [id]).map { "\($0[0].text ?? "") \($0[1].real ?? -1)" }
    return row[0].text == column("status").text && row[1].real == column("duration_seconds").real
      && results == record.results.map { "\($0[0].text ?? "") \($0[6].real ?? -1)" }
  }

  /// One attempt of `importRun`'s transaction.
  private func importAttempt(_ record: RunRecord, id: SQLValue, column: (String) -> SQLValue, source: String) throws -> ImportOutcome {
    if let existing = try db.query("SELECT status, duration_seconds, owner FROM runs WHERE id = ?", [id]).first {
      let (status, duration) = (existing[0].text ?? "", existing[1].real ?? 0)
      let sourceStatus = column("status").text ?? ""
      if status == RunStatus.completed.rawValue {
        guard sourceStatus == RunStatus.completed.rawValue else { return .unchanged }
        let here = try db.query("SELECT protocol, accuracy, episodes FROM results WHERE run_id = ? ORDER BY protocol", [id]).map { "\($0[0].text ?? "") \($0[1].real ?? -1) \($0[2].integer ?? -1)" }
        let there = record.results.map { "\($0[0].text ?? "") \($0[6].real ?? -1) \($0[5].integer ?? -1)" }
        guard here == there else { throw StoreError.copyConflict(id: id.text ?? "?", detail: "results \(there.joined(separator: "; ")) against \(here.joined(separator: "; "))") }
        return .unchanged
      }
      // Not completed here: the source's state wins when it is completed or has done more work,
      // unless a live process works on the run here (its owner is set).
      let later = sourceStatus == RunStatus.completed.rawValue || (column("duration_seconds").real ?? 0) > duration
      let copied = existing[2].text?.hasPrefix(ResultsStore.copyOwnerPrefix) ?? false
      guard later, existing[2].text == nil || copied || status != RunStatus.running.rawValue else { return .unchanged }
      let names = record.columns.map(\.name).filter { $0 != "id" }
      try db.query(
        "UPDATE runs SET \(names.map { "\($0) = ?" }.joined(separator: ", ")), owner = ? WHERE id = ?", names.map(column) + [copyOwner(sourceStatus, source), id])
      try insertRecords(record, id: id, replacing: true)
      return .updated
    }
    try db.query("INSERT INTO experiments(name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING", [.text(record.experiment), .text(now())])
    let experiment = try db.query("SELECT id FROM experiments WHERE name = ?", [.text(record.experiment)]).first?.first ?? .null
    let names = record.columns.map(\.name)
    try db.query(
      "INSERT INTO runs(experiment_id, owner, \(names.joined(separator: ", "))) VALUES (?, ?\(String(repeating: ", ?", count: names.count)))",
      [experiment, copyOwner(column("status").text ?? "", source)] + record.columns.map(\.value))
    try insertRecords(record, id: id, replacing: false)
    return .added
  }

  /// The owner a copied run gets: `copy:<source>` while it runs there, else none.
  private func copyOwner(_ status: String, _ source: String) -> SQLValue {
    status == RunStatus.running.rawValue ? .text(ResultsStore.copyOwnerPrefix + source) : .null
  }

  /// The run's parameters, metric points, results, episodes and tags, in batches of rows; keyed
  /// rows the store has already are updated (`replacing`) or kept.
  private func insertRecords(_ record: RunRecord, id: SQLValue, replacing: Bool) throws {
    try insertBatches("params", ["run_id", "key", "value"], record.params, id: id, conflict: "(run_id, key) DO NOTHING")
    try insertBatches(
      "metrics", ["run_id", "key", "step", "value", "time"], record.metrics, id: id,
      conflict: replacing ? "(run_id, key, step) DO UPDATE SET value = excluded.value, time = excluded.time" : "(run_id, key, step) DO NOTHING")
    try insertBatches(
      "results", ["run_id", "protocol", "split", "ways", "shots", "queries", "episodes", "accuracy", "ci_low", "ci_high", "seconds"], record.results, id: id,
      conflict: "(run_id, protocol) DO NOTHING")
    try insertBatches("episode_results", ["run_id", "protocol", "episode", "alphabet", "correct", "total"], record.episodes, id: id, conflict: "(run_id, protocol, episode) DO NOTHING")
    try insertBatches("tags", ["run_id", "key", "value"], record.tags, id: id, conflict: "(run_id, key) DO UPDATE SET value = excluded.value")
  }

  /// `INSERT INTO table(columns) VALUES (...), (...) ON CONFLICT conflict`, 500 rows a statement.
  private func insertBatches(_ table: String, _ columns: [String], _ rows: [[SQLValue]], id: SQLValue, conflict: String) throws {
    let placeholders = "(" + Array(repeating: "?", count: columns.count).joined(separator: ", ") + ")"
    var start = 0
    while start < rows.count {
      let batch = rows[start..<min(rows.count, start + 500)]
      let sql = "INSERT INTO \(table)(\(columns.joined(separator: ", "))) VALUES " + Array(repeating: placeholders, count: batch.count).joined(separator: ", ") + " ON CONFLICT \(conflict)"
      try db.query(sql, batch.flatMap { [id] + $0 })
      start += batch.count
    }
  }

  /// What `copyRuns` did.
  public struct CopySummary: Sendable {
    public var copied = 0, updated = 0, skipped = 0
    /// Runs the destination refused (a conflicting completed run, a value it cannot store),
    /// with the reason; every other run was copied all the same.
    public var notCopied: [(id: String, reason: String)] = []
  }

  /// Copies every run of this store to `destination`: those it lacks, and those it has in an
  /// earlier state. A run the destination refuses is named in `notCopied` and the copy goes on
  /// with the next (issue #46, cause 8); only the destination being away (an outage past its
  /// limit, a signal) ends the copy, since every later run would fail the same way.
  public func copyRuns(to destination: ResultsStore) throws -> CopySummary {
    var summary = CopySummary()
    for run in try listRuns().reversed() {
      do {
        switch try destination.importRun(try exportRun(run.id), from: displayPath) {
        case .added: summary.copied += 1
        case .updated: summary.updated += 1
        case .unchanged: summary.skipped += 1
        }
      } catch let error as StoreError where error.isUnavailable {
        throw error
      } catch {
        summary.notCopied.append((run.id, "\(error)"))
      }
    }
    return summary
  }
}
