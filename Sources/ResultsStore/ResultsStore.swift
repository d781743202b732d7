import CSQLite
import Foundation
import Support

/// What can go wrong with the store, in words a user can act on.
public enum StoreError: Error, CustomStringConvertible, LocalizedError {
  /// The file exists but is not a SQLite database.
  case notADatabase(path: String)
  /// The database was written by a newer harness.
  case newerSchema(path: String, found: Int, supported: Int)
  /// The file or its folder cannot be written.
  case readOnly(path: String, reason: String)
  /// The disk is full.
  case diskFull(path: String)
  /// Another process held the write lock longer than the busy timeout.
  case locked(path: String)
  /// No run has this id (or prefix).
  case noSuchRun(String)
  /// The PostgreSQL server refused or could not be reached.
  case server(url: String, reason: String)
  /// The server stayed out of reach longer than the store waits (`StoreOutage.limit`).
  case outage(url: String, seconds: Double, reason: String)
  /// A completed run cannot be claimed (resumed) again.
  case alreadyCompleted(String)
  /// `store copy`: the two stores disagree about a completed run.
  case copyConflict(id: String, detail: String)
  /// Another live process owns the run (it is training or evaluating it).
  case runInUse(id: String, owner: String, secondsSinceHeartbeat: Int)
  /// The run was claimed by another process while this one worked on it.
  case leaseLost(id: String, owner: String)
  /// A sweep task's claim of its configuration passed to another owner (or was removed) before
  /// the task wrote its run.
  case claimLost(experiment: String, owner: String?)
  /// A run copied from another store while it ran there: that store's to finish.
  case runElsewhere(id: String, source: String)
  /// A store named by a libpq keyword string, not a URL.
  case keywordString
  /// A PostgreSQL database holds no store (a reading command does not create one).
  case noStore(url: String)
  /// A new run's id is taken by another run (a run id given twice).
  case runExists(String)
  /// A signal asked the process to stop while it waited for the server.
  case stoppedWaiting(url: String, signal: Int32)
  /// A run-id prefix matches several runs.
  case ambiguousRun(String, matches: Int)
  /// Any other SQLite failure.
  case sqlite(path: String, SQLiteError)

  public var description: String {
    switch self {
    case .notADatabase(let path):
      return "\(path) is not a SQLite database; pass --store with another path (or move the file away)"
    case .newerSchema(let path, let found, let supported):
      return "\(path) has schema version \(found), newer than this oneshot-bench supports (\(supported)); upgrade oneshot-bench or use another --store. Nothing was written"
    case .readOnly(let path, let reason):
      return "cannot write the results store \(path) (\(reason)); check the folder's permissions or pass --store with a writable path"
    case .diskFull(let path):
      return "the disk holding \(path) is full; free space and rerun (nothing half-written was kept)"
    case .locked(let path):
      return "\(path) stayed locked by another process beyond the busy timeout; retry when it finishes"
    case .noSuchRun(let id):
      return "no run '\(id)' in the store; `oneshot-bench report` lists the runs"
    case .server(let url, let reason):
      if StoreOutage.isTransient(reason) && !StoreError.isFull(reason) {
        return "cannot reach the PostgreSQL store \(url): \(reason); check that the server runs and that the URL names its host and port"
      }
      return "cannot use the PostgreSQL store \(url): \(StoreError.shortened(reason)); \(StoreError.advice(reason))"
    case .alreadyCompleted(let id):
      return "run \(id) already completed; nothing to resume (`oneshot-bench report --run \(id)` shows it)"
    case .copyConflict(let id, let detail):
      return "the two stores disagree about completed run \(id) (\(detail.prefix(300))); nothing of it was copied: find out which store is right and delete the run from the other (`oneshot-bench run delete \(id)`)"
    case .outage(let url, let seconds, let reason):
      return "the PostgreSQL store \(url) was unreachable for \(StoreOutage.shown(seconds)), more than the \(StoreOutage.shown(StoreOutage.limit)) the store waits (ONESHOT_STORE_OUTAGE_SECONDS); last: \(StoreError.shortened(reason)). What was recorded before is kept: resume once the server is back"
    case .runInUse(let id, let owner, let seconds):
      return "run \(id) is being worked on by \(owner) (last heartbeat \(seconds) s ago); wait for it to finish or stop that process, then resume"
    case .leaseLost(let id, let owner):
      return "run \(id) was taken over by \(owner) while this process worked on it; this process stops without writing more"
    case .claimLost(let experiment, let owner):
      return "this task's claim of a configuration of \(experiment) passed to \(owner ?? "nobody") while the task was starting (a stall longer than the lease, ONESHOT_LEASE_SECONDS); it leaves the configuration to its new owner and writes nothing"
    case .runElsewhere(let id, let source):
      return "run \(id) was copied here from \(source) while it ran there; it is that store's to finish, not this one's: copy again once it has finished (or delete it here to start the configuration over)"
    case .keywordString:
      return "--store looks like a libpq keyword string (host=... dbname=...), which the harness does not take; give a URL: postgresql://user:password@host:port/database (nothing was created)"
    case .noStore(let url):
      return "the PostgreSQL database \(url) holds no results store yet (nothing was created); run an experiment into it first, or pass another --store"
    case .runExists(let id):
      return "the store already has a run \(id), of another configuration or owner; nothing was written (give the new run another id)"
    case .stoppedWaiting(let url, let signal):
      return "stopped by signal \(signal) while waiting for the PostgreSQL store \(url); what was recorded before is kept"
    case .ambiguousRun(let id, let matches):
      return "run id prefix '\(id)' matches \(matches) runs; give more characters"
    case .sqlite(let path, let error):
      return "results store \(path): \(error)"
    }
  }
  public var errorDescription: String? { description }

  /// Whether the store could not be written for now (an outage past the limit, or a signal
  /// while waiting one out): a run that meets it is left as it is, resumable, never marked
  /// failed (a failed run is trained again from step 0).
  public var isUnavailable: Bool {
    switch self {
    case .outage, .stoppedWaiting: return true
    default: return false
    }
  }

  /// A server's reason of at most 500 characters (it may quote a whole value).
  static func shortened(_ reason: String) -> String { reason.count > 500 ? reason.prefix(500) + "... (\(reason.count - 500) more characters)" : reason }

  /// Whether the server refused for want of a free connection (SQLSTATE 53300).
  static func isFull(_ reason: String) -> Bool {
    ["too many clients", "too many connections", "remaining connection slots", "SQLSTATE 53300"].contains { reason.contains($0) }
  }

  /// What to do about a server's refusal, by its SQLSTATE where it gave one, else by libpq's words.
  static func advice(_ reason: String) -> String {
    let state = reason.range(of: #"SQLSTATE ([0-9A-Z]{5})"#, options: .regularExpression).map { String(reason[$0].suffix(5)) }
    switch state {
    case "53300"?: return "the server has no free connection slots (max_connections); retry when other clients have finished, or raise max_connections"
    case "42501"?: return "the role lacks a privilege this store needs (creating and writing its tables); grant it, or use a role that has it"
    case "57014"?: return "the server cancelled the statement (statement_timeout or an administrator); raise the timeout for this role, or retry"
    case "22021"?, "22P05"?: return "a recorded text holds a character PostgreSQL cannot store (a NUL byte or invalid UTF-8); remove it from the name, description, tag or note"
    case "23505"?: return "the row already exists (a write the server had committed before its reply was lost?); rerun the command, which skips what is recorded"
    case "28P01"?, "28000"?: return "check the user and the password (postgresql://user:password@host:port/database, or ONESHOT_STORE)"
    case "3D000"?: return "the database does not exist; create it (createdb) or fix the URL's database name"
    default: break
    }
    let lower = reason.lowercased()
    if lower.contains("percent-encoded") || lower.contains("invalid uri") || lower.contains("invalid connection option") {
      return "percent-encode the URL's special characters (% as %25, @ as %40, / as %2F, : as %3A, a space as %20) and check its keywords"
    }
    if lower.contains("password authentication") || lower.contains("authentication failed") || lower.contains("no password supplied") || lower.contains("role") && lower.contains("does not exist") {
      return "check the user and the password (postgresql://user:password@host:port/database, or ONESHOT_STORE)"
    }
    if isFull(reason) {
      return "the server has no free connection slots (max_connections); retry when other clients have finished, or raise max_connections"
    }
    return "check the URL's host, port and database name (postgresql://user:password@host:port/database)"
  }

  static func wrap(_ error: Error, path: String) -> Error {
    // The server's words and SQLSTATE; the statement itself is for debugging, not the user's line.
    if let error = error as? PostgresError { return StoreError.server(url: path, reason: error.state.isEmpty ? error.message : "\(error.message) (SQLSTATE \(error.state))") }
    guard let error = error as? SQLiteError else { return error }
    switch error.code & 0xff {
    case SQLITE_NOTADB: return StoreError.notADatabase(path: path)
    case SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_PERM: return StoreError.readOnly(path: path, reason: error.message)
    case SQLITE_FULL: return StoreError.diskFull(path: path)
    case SQLITE_BUSY, SQLITE_LOCKED: return StoreError.locked(path: path)
    default: return StoreError.sqlite(path: path, error)
    }
  }
}

/// The harness's memory: runs, their parameters, metric history, results and per-episode
/// outcomes in one SQLite file (WAL mode, busy timeout, one transaction per multi-row write).
/// Not thread-safe: use one store per thread or process; several processes may share a file.
public final class ResultsStore {
  /// The database path, or `:memory:`.
  public let path: String
  let db: any SQLConnection
  /// Which database this store is.
  public var backend: StoreBackend { db.backend }
  private var pendingMetrics: [(run: String, point: MetricPoint)] = []
  private var lastFlush = Date()
  /// Buffered metrics are committed at least this often (seconds).
  public var metricFlushInterval: TimeInterval = 2

  /// Whether `path` names a PostgreSQL server (`postgresql://...`) rather than a SQLite file.
  public static func isServerURL(_ path: String) -> Bool { PostgresConnection.isURL(path) }

  /// Whether there is a store at `path` to read: a SQLite file that exists, or a server URL
  /// (whose database is checked when it is opened).
  /// Whether `path` is a libpq keyword string (`host=h dbname=d`) rather than a file or a URL.
  public static func isKeywordString(_ path: String) -> Bool {
    !PostgresConnection.isURL(path)
      && path.range(of: #"(^|\s)(host|hostaddr|dbname|user|password|port|sslmode|service)\s*="#, options: [.regularExpression, .caseInsensitive]) != nil
  }

  public static func exists(_ path: String) -> Bool { isServerURL(path) || FileManager.default.fileExists(atPath: path) }

  /// The path, or the server's URL without its password, for messages.
  public var displayPath: String { PostgresConnection.isURL(path) ? PostgresConnection.redacted(path) : path }

  /// A file of zeros next to a SQLite store (`<store>.reserve`), held while runs record: when
  /// the disk fills up mid-run, deleting it frees the room the store needs to mark the run
  /// failed with the reason, instead of leaving its row `running` with nothing said. Nil for
  /// PostgreSQL (its disk is the server's) and in-memory stores.
  public var reservePath: String? { backend == .sqlite && path != ":memory:" ? path + ".reserve" : nil }
  /// The reserve's size: far more than the few pages that end a run.
  public static let reserveBytes = 1 << 20

  /// Writes the reserve if it is not there; a disk too full for it is not an error (yet).
  public func holdReserve() {
    guard let reservePath else { return }
    if let size = (try? FileManager.default.attributesOfItem(atPath: reservePath))?[.size] as? Int, size >= ResultsStore.reserveBytes { return }
    if (try? Data(count: ResultsStore.reserveBytes).write(to: URL(fileURLWithPath: reservePath))) == nil { try? FileManager.default.removeItem(atPath: reservePath) }
  }

  /// Deletes the reserve (the disk is full): the next write has its room.
  public func releaseReserve() {
    guard let reservePath else { return }
    try? FileManager.default.removeItem(atPath: reservePath)
  }

  /// The default location, `results/oneshot.sqlite` under the current directory.
  public static let defaultPath = "results/oneshot.sqlite"

  /// Opens or creates the store at `path` (creating its folder), upgrading an older schema in
  /// place. `:memory:` gives a private in-memory store.
  /// Opens (and, unless `mustExist`, creates or upgrades) the store. With `mustExist`, a
  /// PostgreSQL database without a store is refused untouched, as a missing SQLite file is by
  /// the commands that read (issue #46, cause 10: `report` created the nine tables).
  public init(path: String, busyTimeoutMilliseconds: Int32 = 10_000, mustExist: Bool = false) throws {
    self.path = path
    if PostgresConnection.isURL(path) { Secrets.register(storeURL: path) }
    // `host=... dbname=...` is libpq's other way to name a server: taken as a file name it would
    // create files named after the password (issue #45, cause V).
    if ResultsStore.isKeywordString(path) { throw StoreError.keywordString }
    do {
      if path != ":memory:" && !PostgresConnection.isURL(path) {
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent()
        do {
          try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
          throw StoreError.readOnly(path: path, reason: "cannot create folder \(folder.path)")
        }
      }
      if PostgresConnection.isURL(path) {
        db = try StoreOutage.connect(url: path)
        if mustExist, try db.schemaVersion() == 0 { throw StoreError.noStore(url: PostgresConnection.redacted(path)) }
      } else {
        let file = try Database(path: path)
        sqlite3_busy_timeout(file.handle, busyTimeoutMilliseconds)
        // Two processes opening a new file at once: switching it to WAL can be refused at once
        // (SQLITE_BUSY without the busy handler), so the opening steps are retried as writes are.
        var attempt = 0
        while true {
          do {
            // Read the version before writing anything: a newer schema is refused untouched.
            let version = try file.schemaVersion()
            if version > Schema.current { throw StoreError.newerSchema(path: path, found: version, supported: Schema.current) }
            if path != ":memory:" {
              let mode = try file.query("PRAGMA journal_mode=WAL").first?.first?.text ?? ""
              if mode.lowercased() != "wal" { throw StoreError.readOnly(path: path, reason: "cannot switch to WAL mode (journal mode \(mode))") }
            }
            break
          } catch where file.isRetryable(error) && attempt < 50 {
            attempt += 1
            usleep(useconds_t(20_000 * min(attempt, 10)))
          }
        }
        try file.execute("PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL")
        db = file
      }
      try migrate()
    } catch {
      throw StoreError.wrap(error, path: PostgresConnection.isURL(path) ? PostgresConnection.redacted(path) : path)
    }
  }

  deinit { try? flushMetrics() }

  /// The schema version of the open file.
  public var schemaVersion: Int {
    get throws { try db.schemaVersion() }
  }

  private func migrate() throws {
    try withRetry {
      // One migrating process at a time on a server: a session lock taken before the
      // transaction, so that its snapshot sees what the previous holder committed.
      if db.backend == .postgresql { try db.query("SELECT pg_advisory_lock(7305514)", []) }
      defer { if db.backend == .postgresql { _ = try? db.query("SELECT pg_advisory_unlock(7305514)", []) } }
      try db.transaction {
        let version = try db.schemaVersion()
        if version > Schema.current { throw StoreError.newerSchema(path: displayPath, found: version, supported: Schema.current) }
        guard version < Schema.current else { return }
        let migrations = Schema.migrations(for: db.backend)
        for step in version..<Schema.current { try db.execute(migrations[step]) }
        try db.setSchemaVersion(Schema.current)
      }
    }
  }

  /// Runs `body`, retrying when another process holds the lock beyond the busy timeout or a
  /// serialization conflict aborts it (20 attempts), and waiting out a server outage with
  /// back-off for up to `StoreOutage.limit` seconds (re-opening the connection), after which it
  /// throws `StoreError.outage`, which names the outage.
  func withRetry<T>(_ body: () throws -> T) throws -> T {
    var attempt = 0
    var outageStart: Date? = nil
    var outageAttempt = 0
    while true {
      do {
        let value = try body()
        if let outageStart { StoreOutage.report("results store \(displayPath): back after \(Int(Date().timeIntervalSince(outageStart).rounded())) s; going on") }
        return value
      } catch where db.isOutage(error) && StoreOutage.limit > 0 {
        let start = outageStart ?? Date()
        if outageStart == nil {
          outageStart = start
          StoreOutage.report("results store \(displayPath) is unreachable (\(StoreOutage.reason(error))); waiting for it for up to \(StoreOutage.shown(StoreOutage.limit))")
        }
        let waited = Date().timeIntervalSince(start)
        guard waited < StoreOutage.limit else {
          throw StoreError.outage(url: displayPath, seconds: waited, reason: StoreOutage.reason(error))
        }
        try StoreOutage.pause(min(StoreOutage.delay(attempt: outageAttempt), max(0.05, StoreOutage.limit - waited)), url: displayPath)
        outageAttempt += 1
        try? db.reconnect()
      } catch where db.isRetryable(error) && attempt < 20 {
        attempt += 1
        usleep(useconds_t(20_000 * attempt))
      }
    }
  }

  @discardableResult func write<T>(_ body: () throws -> T) throws -> T {
    do {
      return try withRetry { try db.transaction(body) }
    } catch {
      throw StoreError.wrap(error, path: displayPath)
    }
  }

  func read<T>(_ body: () throws -> T) throws -> T {
    do { return try withRetry(body) } catch { throw StoreError.wrap(error, path: displayPath) }
  }

  /// The current time in ISO 8601 with milliseconds (UTC), e.g. 2026-11-29T05:09:22.428Z.
  /// Formatted with gmtime_r, not Foundation's ISO8601DateFormatter: that one is slow to create
  /// per row, and a cached one crashed inside ICU when released at the end of an interrupted run.
  func now() -> String { Self.timestamp(Date()) }

  static func timestamp(_ date: Date) -> String {
    let seconds = date.timeIntervalSince1970
    var whole = time_t(seconds.rounded(.down))
    var millis = Int(((seconds - Double(whole)) * 1000).rounded())
    if millis >= 1000 { whole += 1; millis -= 1000 }
    var parts = tm()
    gmtime_r(&whole, &parts)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(ms)Z"
  }

  // MARK: Writing

  /// Records a new run as `running` and commits at once, so a crash leaves a visible trace.
  /// Returns its id.
  @discardableResult
  /// With `claim` (a sweep's configuration claim, issue #46 cause 2), the row is written only if
  /// `owner` still holds that claim, in the same transaction: a task that stalled past its lease
  /// while another took the configuration over gets `claimLost` and writes nothing.
  public func beginRun(_ run: NewRun, owner: String? = nil, claim: (experiment: String, configHash: String)? = nil) throws -> String {
    let id = run.id ?? UUID().uuidString.lowercased()
    let now = now()
    try write {
      if let claim, let owner {
        let holder = try db.query("SELECT owner FROM claims WHERE experiment = ? AND config_hash = ?", [.text(claim.experiment), .text(claim.configHash)]).first?.first?.text
        if holder != owner { throw StoreError.claimLost(experiment: claim.experiment, owner: holder) }
      }
      // A retried attempt whose first one committed before its reply was lost (a dropped
      // connection, issue #46 cause 3) finds its own row: the write is done. The id is drawn once,
      // outside the retries, so nobody else's row can match it.
      if let existing = try db.query("SELECT config_hash, owner FROM runs WHERE id = ?", [.text(id)]).first {
        guard existing[0].text == run.configHash && existing[1].text == owner else { throw StoreError.runExists(id) }
        return
      }
      try db.query("INSERT INTO experiments(name, created_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING", [.text(run.experiment), .text(now)])
      let experiment = try db.query("SELECT id FROM experiments WHERE name = ?", [.text(run.experiment)]).first?.first ?? .null
      try db.query(
        """
        INSERT INTO runs(id, experiment_id, status, started_at, config_json, config_hash, git_commit, git_dirty,
          dataset_fingerprint, host, cpu, harness_version, swift_version, owner, heartbeat_at)
        VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
          .text(id), experiment, .text(now), .text(run.configJSON), .text(run.configHash), optional(run.gitCommit),
          run.gitDirty.map { .integer($0 ? 1 : 0) } ?? .null, optional(run.datasetFingerprint), optional(run.host), optional(run.cpu),
          optional(run.harnessVersion), optional(run.swiftVersion), optional(owner), .real(Date().timeIntervalSince1970),
        ])
      for param in run.params { try db.query("INSERT INTO params(run_id, key, value) VALUES (?, ?, ?)", [.text(id), .text(param.key), .text(param.value)]) }
    }
    return id
  }

  /// Marks an existing run `running` again for `owner` (resuming it), in one transaction: a
  /// run another process still works on is refused (`runInUse`) while its heartbeat is younger
  /// than `staleAfter` seconds, unless `isAlive` says its owner is gone (a killed process).
  /// Returns the run's recorded wall time so far.
  @discardableResult
  /// With `host`, the run's `host` becomes the claiming machine's: a run taken over by another
  /// machine names where it runs now (issue #46, cause 12).
  public func claimRun(_ id: String, owner: String, host: String? = nil, staleAfter: TimeInterval = 600, isAlive: (String) -> Bool? = { _ in nil }) throws -> Double {
    try write {
      guard let row = try db.query("SELECT status, owner, heartbeat_at, duration_seconds FROM runs WHERE id = ?", [.text(id)]).first else {
        throw StoreError.noSuchRun(id)
      }
      if row[0].text == RunStatus.completed.rawValue { throw StoreError.alreadyCompleted(id) }
      try ResultsStore.refuseIfOwned(id, row, by: owner, staleAfter: staleAfter, isAlive: isAlive)
      try db.query(
        "UPDATE runs SET status = 'running', finished_at = NULL, error = NULL, owner = ?, heartbeat_at = ?, host = COALESCE(?, host) WHERE id = ?",
        [.text(owner), .real(Date().timeIntervalSince1970), host.map { .text($0) } ?? .null, .text(id)])
      return row[3].real ?? 0
    }
  }

  /// What a sweep task found when it claimed a configuration.
  public enum ConfigurationClaim: Equatable, Sendable {
    /// This owner holds the claim now: it runs the configuration.
    case claimed
    /// A completed run of the configuration exists.
    case done(runID: String)
    /// Another live owner claimed it (within its lease).
    case taken(owner: String)
  }

  /// Claims the configuration `(experiment, configHash)` for `owner` in one transaction, before
  /// any work: refused (`taken`) while another owner's claim is younger than `staleAfter` and
  /// `isAlive` does not say that owner is gone; `done` when a completed run exists. Two tasks
  /// started at once: exactly one gets `claimed`.
  public func claimConfiguration(experiment: String, configHash: String, owner: String, staleAfter: TimeInterval = 600, isAlive: (String) -> Bool? = { _ in nil }) throws
    -> ConfigurationClaim
  {
    try write {
      let completed = try db.query(
        "SELECT r.id FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE e.name = ? AND r.config_hash = ? AND r.status = 'completed' LIMIT 1",
        [.text(experiment), .text(configHash)])
      if let id = completed.first?[0].text {
        // Done: any claim left on it (a task killed after its run completed) goes (issue #46, cause 12).
        try db.query("DELETE FROM claims WHERE experiment = ? AND config_hash = ?", [.text(experiment), .text(configHash)])
        return .done(runID: id)
      }
      let now = Date().timeIntervalSince1970
      if let row = try db.query("SELECT owner, claimed_at FROM claims WHERE experiment = ? AND config_hash = ?", [.text(experiment), .text(configHash)]).first,
        let current = row[0].text, current != owner, now - (row[1].real ?? 0) < staleAfter, isAlive(current) != false
      {
        return .taken(owner: current)
      }
      try db.query(
        "INSERT INTO claims(experiment, config_hash, owner, claimed_at) VALUES (?, ?, ?, ?) ON CONFLICT(experiment, config_hash) DO UPDATE SET owner = excluded.owner, claimed_at = excluded.claimed_at",
        [.text(experiment), .text(configHash), .text(owner), .real(now)])
      return .claimed
    }
  }

  /// Renews `owner`'s claim of a configuration (its age starts again), so that a task still
  /// loading its data keeps it past the lease; false when the claim is no longer `owner`'s.
  @discardableResult
  public func renewClaim(experiment: String, configHash: String, owner: String) throws -> Bool {
    try write {
      try db.query(
        "UPDATE claims SET claimed_at = ? WHERE experiment = ? AND config_hash = ? AND owner = ?",
        [.real(Date().timeIntervalSince1970), .text(experiment), .text(configHash), .text(owner)])
      return db.changes > 0
    }
  }

  /// Gives up `owner`'s claim of a configuration (its run exists now, or it failed to start).
  public func releaseClaim(experiment: String, configHash: String, owner: String) throws {
    try write {
      try db.query("DELETE FROM claims WHERE experiment = ? AND config_hash = ? AND owner = ?", [.text(experiment), .text(configHash), .text(owner)])
    }
  }

  /// Gives back `owner`'s claim of a run it could not go on with (it failed before recording an
  /// outcome): the run is interrupted again, its recorded time kept.
  public func release(_ id: String, owner: String) throws {
    try write {
      try db.query("UPDATE runs SET status = 'interrupted', owner = NULL WHERE id = ? AND owner = ? AND status = 'running'", [.text(id), .text(owner)])
    }
  }

  /// Throws `runInUse` when the run (its `status, owner, heartbeat_at` in `row`) is running for
  /// another owner than `owner` whose heartbeat is younger than `staleAfter` seconds, unless
  /// `isAlive` says that owner is gone.
  /// The owner prefix of a run copied from another store while it ran there.
  static let copyOwnerPrefix = "copy:"

  private static func refuseIfOwned(_ id: String, _ row: [SQLValue], by owner: String?, staleAfter: TimeInterval, isAlive: (String) -> Bool?, deleting: Bool = false) throws {
    guard row[0].text == RunStatus.running.rawValue, let current = row[1].text, current != owner else { return }
    if current.hasPrefix(copyOwnerPrefix) {
      // Another store's run in progress, copied here: never resumed here; deleting it is allowed.
      if deleting { return }
      throw StoreError.runElsewhere(id: id, source: String(current.dropFirst(copyOwnerPrefix.count)))
    }
    let age = Date().timeIntervalSince1970 - (row[2].real ?? 0)
    if age < staleAfter && isAlive(current) != false { throw StoreError.runInUse(id: id, owner: current, secondsSinceHeartbeat: Int(age)) }
  }

  /// Deletes a run and everything recorded of it (parameters, metrics, results, episodes, tags)
  /// in one transaction; a run another live process works on is refused (`runInUse`), as
  /// `claimRun` refuses it. Returns the run's checkpoint path, for a caller that removes files.
  @discardableResult
  public func deleteRun(_ id: String, staleAfter: TimeInterval = 600, isAlive: (String) -> Bool? = { _ in nil }) throws -> String? {
    try write {
      guard let row = try db.query("SELECT status, owner, heartbeat_at, checkpoint_path FROM runs WHERE id = ?", [.text(id)]).first else {
        throw StoreError.noSuchRun(id)
      }
      try ResultsStore.refuseIfOwned(id, row, by: nil, staleAfter: staleAfter, isAlive: isAlive, deleting: true)
      for table in ["episode_results", "results", "metrics", "params", "tags"] { try db.query("DELETE FROM \(table) WHERE run_id = ?", [.text(id)]) }
      try db.query("DELETE FROM runs WHERE id = ?", [.text(id)])
      return row[3].text
    }
  }

  /// The owner's sign of life: the heartbeat and the wall time so far (so a run killed without
  /// a word keeps the time it had worked). Throws `leaseLost` when another process claimed it.
  public func heartbeat(_ id: String, owner: String, durationSeconds: Double) throws {
    try write {
      try db.query(
        "UPDATE runs SET heartbeat_at = ?, duration_seconds = ? WHERE id = ? AND owner = ?", [.real(Date().timeIntervalSince1970), .real(durationSeconds), .text(id), .text(owner)])
      if db.changes != 1 {
        let current = try db.query("SELECT owner FROM runs WHERE id = ?", [.text(id)]).first?.first?.text ?? "nobody"
        throw StoreError.leaseLost(id: id, owner: current)
      }
    }
  }

  /// Buffers a metric point; buffered points are committed together every
  /// `metricFlushInterval` seconds, and always by `flushMetrics` and `finishRun`.
  public func logMetric(run: String, _ point: MetricPoint) throws { try logMetrics(run: run, [point]) }

  /// Buffers the points of one step together: a flush due in their midst waits until all are
  /// buffered, so that a step's points are committed together or not at all (issue #46, cause
  /// 12: a run that failed right after a flush between them kept a partial set of its last step).
  public func logMetrics(run: String, _ points: [MetricPoint]) throws {
    let time = now()
    for var point in points {
      if point.time.isEmpty { point.time = time }
      pendingMetrics.append((run, point))
    }
    if Date().timeIntervalSince(lastFlush) >= metricFlushInterval { try flushMetrics() }
  }

  /// Commits every buffered metric point in one transaction.
  public func flushMetrics() throws {
    lastFlush = Date()
    guard !pendingMetrics.isEmpty else { return }
    let points = pendingMetrics
    try write {
      for (run, point) in points {
        try db.query(
          "INSERT INTO metrics(run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?) ON CONFLICT(run_id, key, step) DO UPDATE SET value = excluded.value, time = excluded.time",
          [.text(run), .text(point.key), .integer(Int64(point.step)), .real(point.value), .text(point.time)])
      }
    }
    pendingMetrics.removeAll(keepingCapacity: true)
  }

  /// Records a protocol's result and its per-episode rows in one transaction (replacing an
  /// earlier result of the same protocol for this run).
  public func recordResult(run: String, _ result: ProtocolResult, episodes: [EpisodeRow]) throws {
    try write {
      try db.query("DELETE FROM episode_results WHERE run_id = ? AND protocol = ?", [.text(run), .text(result.protocolName)])
      try db.query(
        """
        INSERT INTO results(run_id, protocol, split, ways, shots, queries, episodes, accuracy, ci_low, ci_high, seconds)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(run_id, protocol) DO UPDATE SET split = excluded.split, ways = excluded.ways, shots = excluded.shots, queries = excluded.queries,
          episodes = excluded.episodes, accuracy = excluded.accuracy, ci_low = excluded.ci_low, ci_high = excluded.ci_high, seconds = excluded.seconds
        """,
        [
          .text(run), .text(result.protocolName), .text(result.split), .integer(Int64(result.ways)), .integer(Int64(result.shots)),
          .integer(Int64(result.queries)), .integer(Int64(result.episodes)), .real(result.accuracy), .real(result.ciLow),
          .real(result.ciHigh), .real(result.seconds),
        ])
      for row in episodes {
        try db.query("INSERT INTO episode_results(run_id, protocol, episode, alphabet, correct, total) VALUES (?, ?, ?, ?, ?, ?)", [
          .text(run), .text(result.protocolName), .integer(Int64(row.episode)), optional(row.alphabet), .integer(Int64(row.correct)),
          .integer(Int64(row.total)),
        ])
      }
    }
  }

  /// Sets a tag on a run.
  public func setTag(run: String, key: String, value: String) throws {
    try write {
      try db.query("INSERT INTO tags(run_id, key, value) VALUES (?, ?, ?) ON CONFLICT(run_id, key) DO UPDATE SET value = excluded.value", [.text(run), .text(key), .text(value)])
    }
  }

  /// Records where the run's checkpoint is and its hash.
  public func setCheckpoint(run: String, path: String, hash: String) throws {
    try write {
      try db.query("UPDATE runs SET checkpoint_path = ?, checkpoint_hash = ? WHERE id = ?", [.text(path), .text(hash), .text(run)])
    }
  }

  /// Ends a run with its status (and the error of a failed run); flushes buffered metrics first.
  public func finishRun(_ id: String, status: RunStatus, error: String? = nil, durationSeconds: Double? = nil) throws {
    try flushMetrics()
    try write {
      try db.query(
        "UPDATE runs SET status = ?, finished_at = ?, error = ?, duration_seconds = ?, owner = NULL WHERE id = ?",
        // Redacted as recorded: `report` and `store copy` carry the text to other stores and people.
        [.text(status.rawValue), .text(now()), optional(error.map { Secrets.redacted($0) }), durationSeconds.map { .real($0) } ?? .null, .text(id)])
      guard db.changes == 1 else { throw StoreError.noSuchRun(id) }
    }
  }

  // MARK: Reading

  private static let summaryColumns = """
    SELECT r.id, e.name, r.status, r.started_at, r.finished_at, r.duration_seconds, r.config_hash, r.error
    FROM runs r JOIN experiments e ON e.id = r.experiment_id
    """

  private static func summary(_ row: [SQLValue]) -> RunSummary {
    RunSummary(
      id: row[0].text ?? "", experiment: row[1].text ?? "", status: RunStatus(rawValue: row[2].text ?? "") ?? .failed,
      startedAt: row[3].text ?? "", finishedAt: row[4].text, durationSeconds: row[5].real, configHash: row[6].text ?? "", error: row[7].text)
  }

  /// Runs, newest first, optionally only of one experiment or status, at most `last`.
  public func listRuns(experiment: String? = nil, status: RunStatus? = nil, last: Int? = nil) throws -> [RunSummary] {
    var sql = ResultsStore.summaryColumns + " WHERE 1 = 1"
    var values: [SQLValue] = []
    if let experiment {
      sql += " AND e.name = ?"
      values.append(.text(experiment))
    }
    if let status {
      sql += " AND r.status = ?"
      values.append(.text(status.rawValue))
    }
    sql += db.backend == .sqlite ? " ORDER BY r.started_at DESC, r.rowid DESC" : " ORDER BY r.started_at DESC, r.seq DESC"
    if let last {
      sql += " LIMIT ?"
      values.append(.integer(Int64(last)))
    }
    return try read { try db.query(sql, values).map(ResultsStore.summary) }
  }

  /// The full id of the run `idOrPrefix` names (a unique prefix of at least 4 characters works).
  public func resolveRunID(_ idOrPrefix: String) throws -> String {
    let rows = try read {
      try db.query("SELECT id FROM runs WHERE id = ? OR (length(?) >= 4 AND substr(id, 1, length(?)) = ?) LIMIT 2", Array(repeating: .text(idOrPrefix), count: 4))
    }
    if rows.count == 1, let id = rows[0][0].text { return id }
    if rows.isEmpty { throw StoreError.noSuchRun(idOrPrefix) }
    if let exact = rows.first(where: { $0[0].text == idOrPrefix })?[0].text { return exact }
    throw StoreError.ambiguousRun(idOrPrefix, matches: rows.count)
  }

  /// One run in full.
  public func run(_ idOrPrefix: String) throws -> RunDetail {
    let id = try resolveRunID(idOrPrefix)
    return try read {
      guard let row = try db.query(ResultsStore.summaryColumns + " WHERE r.id = ?", [.text(id)]).first else { throw StoreError.noSuchRun(id) }
      let extra = try db.query(
        "SELECT config_json, git_commit, git_dirty, dataset_fingerprint, checkpoint_path, checkpoint_hash, host, cpu, harness_version, swift_version FROM runs WHERE id = ?",
        [.text(id)])[0]
      let names = ["git_commit", "git_dirty", "dataset_fingerprint", "checkpoint_path", "checkpoint_hash", "host", "cpu", "harness_version", "swift_version"]
      var provenance: [(key: String, value: String)] = []
      for (i, name) in names.enumerated() {
        switch extra[i + 1] {
        case .text(let v): provenance.append((name, v))
        case .integer(let v): provenance.append((name, name == "git_dirty" ? (v != 0 ? "true" : "false") : String(v)))
        default: break
        }
      }
      let params = try db.query("SELECT key, value FROM params WHERE run_id = ? ORDER BY key", [.text(id)]).map { ($0[0].text ?? "", $0[1].text ?? "") }
      let tags = try db.query("SELECT key, value FROM tags WHERE run_id = ? ORDER BY key", [.text(id)]).map { ($0[0].text ?? "", $0[1].text ?? "") }
      return RunDetail(
        summary: ResultsStore.summary(row), configJSON: extra[0].text ?? "", params: params, results: try results(runID: id), tags: tags, provenance: provenance)
    }
  }

  /// A run's results, sorted by protocol.
  public func results(runID: String) throws -> [ProtocolResult] {
    try read {
      try db.query(
        "SELECT protocol, split, ways, shots, queries, episodes, accuracy, ci_low, ci_high, seconds FROM results WHERE run_id = ? ORDER BY protocol",
        [.text(runID)]
      ).map { r in
        ProtocolResult(
          protocolName: r[0].text ?? "", split: r[1].text ?? "", ways: Int(r[2].integer ?? 0), shots: Int(r[3].integer ?? 0),
          queries: Int(r[4].integer ?? 0), episodes: Int(r[5].integer ?? 0), accuracy: r[6].real ?? 0, ciLow: r[7].real ?? 0,
          ciHigh: r[8].real ?? 0, seconds: r[9].real ?? 0)
      }
    }
  }

  /// A run's metric history for `key`, by step.
  public func metrics(runID: String, key: String) throws -> [MetricPoint] {
    try read {
      try db.query("SELECT key, step, value, time FROM metrics WHERE run_id = ? AND key = ? ORDER BY step", [.text(runID), .text(key)]).map {
        MetricPoint(key: $0[0].text ?? "", step: Int($0[1].integer ?? 0), value: $0[2].real ?? 0, time: $0[3].text ?? "")
      }
    }
  }

  /// A run's metric points whose key starts with `prefix` (no `%` or `_` in it), by key then step.
  public func metrics(runID: String, keyPrefix prefix: String) throws -> [MetricPoint] {
    precondition(!prefix.contains("%") && !prefix.contains("_"), "a metric key prefix without LIKE's wildcards")
    return try read {
      try db.query("SELECT key, step, value, time FROM metrics WHERE run_id = ? AND key LIKE ? ORDER BY key, step", [.text(runID), .text(prefix + "%")]).map {
        MetricPoint(key: $0[0].text ?? "", step: Int($0[1].integer ?? 0), value: $0[2].real ?? 0, time: $0[3].text ?? "")
      }
    }
  }

  /// A run's per-episode rows for one protocol, by episode.
  public func episodeRows(runID: String, protocolName: String) throws -> [EpisodeRow] {
    try read {
      try db.query("SELECT episode, alphabet, correct, total FROM episode_results WHERE run_id = ? AND protocol = ? ORDER BY episode", [.text(runID), .text(protocolName)]).map {
        EpisodeRow(episode: Int($0[0].integer ?? 0), alphabet: $0[1].text, correct: Int($0[2].integer ?? 0), total: Int($0[3].integer ?? 0))
      }
    }
  }

  /// The newest completed run of an experiment, if any.
  public func latestCompletedRun(experiment: String) throws -> RunSummary? {
    try listRuns(experiment: experiment, status: .completed, last: 1).first
  }

  /// The per-episode rows two runs share for a protocol, aligned by episode number.
  public func alignedEpisodes(runA: String, runB: String, protocolName: String) throws -> [AlignedEpisode] {
    try read {
      try db.query(
        """
        SELECT a.episode, a.alphabet, a.correct, a.total, b.correct, b.total
        FROM episode_results a JOIN episode_results b ON b.run_id = ? AND b.protocol = a.protocol AND b.episode = a.episode
        WHERE a.run_id = ? AND a.protocol = ? ORDER BY a.episode
        """,
        [.text(runB), .text(runA), .text(protocolName)]
      ).map {
        AlignedEpisode(
          episode: Int($0[0].integer ?? 0), alphabet: $0[1].text, a: (Int($0[2].integer ?? 0), Int($0[3].integer ?? 0)),
          b: (Int($0[4].integer ?? 0), Int($0[5].integer ?? 0)))
      }
    }
  }

  /// `PRAGMA integrity_check`'s verdict ("ok" when sound).
  public func integrityCheck() throws -> String {
    try read { db.backend == .sqlite ? try db.query("PRAGMA integrity_check", []).map { $0.first?.text ?? "" }.joined(separator: "; ") : "ok" }
  }
}

private func optional(_ text: String?) -> SQLValue { text.map { .text($0) } ?? .null }
