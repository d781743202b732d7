import Foundation

// `oneshot-bench store copy SRC DST`: runs copied between any two stores (SQLite files,
// PostgreSQL servers), keyed by run id, so that an offline node's file can be merged into the
// shared server later. Copying again adds nothing; a run the destination has is left as it is.

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

  /// Writes `record` in one transaction unless the store has a run with its id; returns
  /// whether it was written.
  @discardableResult
  public func importRun(_ record: RunRecord) throws -> Bool {
    guard let id = record.columns.first(where: { $0.name == "id" })?.value else { throw StoreError.noSuchRun("?") }
    return try write {
      if try !db.query("SELECT 1 FROM runs WHERE id = ?", [id]).isEmpty { return false }
      try db.query("INSERT INTO experiments(name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING", [.text(record.experiment), .text(now())])
      let experiment = try db.query("SELECT id FROM experiments WHERE name = ?", [.text(record.experiment)]).first?.first ?? .null
      let names = record.columns.map(\.name)
      try db.query(
        "INSERT INTO runs(experiment_id, \(names.joined(separator: ", "))) VALUES (?\(String(repeating: ", ?", count: names.count)))", [experiment] + record.columns.map(\.value))
      for row in record.params { try db.query("INSERT INTO params(run_id, key, value) VALUES (?, ?, ?)", [id] + row) }
      for row in record.metrics { try db.query("INSERT INTO metrics(run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?)", [id] + row) }
      for row in record.results {
        try db.query("INSERT INTO results(run_id, protocol, split, ways, shots, queries, episodes, accuracy, ci_low, ci_high, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [id] + row)
      }
      for row in record.episodes { try db.query("INSERT INTO episode_results(run_id, protocol, episode, alphabet, correct, total) VALUES (?, ?, ?, ?, ?, ?)", [id] + row) }
      for row in record.tags { try db.query("INSERT INTO tags(run_id, key, value) VALUES (?, ?, ?)", [id] + row) }
      return true
    }
  }

  /// Copies every run of this store that `destination` lacks; returns (copied, already there).
  public func copyRuns(to destination: ResultsStore) throws -> (copied: Int, skipped: Int) {
    var copied = 0, skipped = 0
    for run in try listRuns().reversed() {
      if try destination.importRun(try exportRun(run.id)) { copied += 1 } else { skipped += 1 }
    }
    return (copied, skipped)
  }
}
