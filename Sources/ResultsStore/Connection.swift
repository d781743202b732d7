import CPostgres
import CSQLite
import Foundation
import Support

// The store speaks SQL through one small interface with two implementations: SQLite (a file,
// one machine) and PostgreSQL (a server many workers record into, through libpq). The queries
// are written once with `?` placeholders and portable upserts; the schema and the few
// statements that differ are chosen by `backend`.

/// Which database a store is.
public enum StoreBackend: String, Sendable {
  case sqlite, postgresql
}

/// A connection the store runs its SQL on.
protocol SQLConnection: AnyObject {
  var backend: StoreBackend { get }
  /// Runs one statement with `values` bound to its `?` placeholders; returns every row.
  @discardableResult func query(_ sql: String, _ values: [SQLValue]) throws -> [[SQLValue]]
  /// Runs statements without parameters or results (DDL).
  func execute(_ sql: String) throws
  /// Runs `body` in one transaction (SQLite: IMMEDIATE; PostgreSQL: SERIALIZABLE); rolls back
  /// if it throws.
  func transaction<T>(_ body: () throws -> T) throws -> T
  /// Rows changed by the last statement.
  var changes: Int { get }
  /// The schema version recorded in the database (0: none).
  func schemaVersion() throws -> Int
  /// Records the schema version (inside the migration's transaction).
  func setSchemaVersion(_ version: Int) throws
  /// Whether `error` is worth retrying: a lock held too long, a serialization failure, a lost
  /// connection (which `retrying` re-opens).
  func isRetryable(_ error: any Error) -> Bool
  /// Whether `error` means the server is out of reach (connection lost, server shutting down or
  /// starting up): the store waits such an outage out (`StoreOutage`), re-opening the connection.
  func isOutage(_ error: any Error) -> Bool
  /// Re-opens a lost connection (one attempt; throws while the server is still away).
  func reconnect() throws
}

/// How long the store waits out a server outage, and how: exponential back-off with jitter
/// between attempts (0.25 s doubling to at most 10 s, each between half and the whole), for at
/// most `limit` seconds: `ONESHOT_STORE_OUTAGE_SECONDS`, by default 600 (ten minutes; 0 turns
/// the waiting off). A run's writes wait meanwhile (training pauses at its next write and goes on
/// when the server is back). Opening a store waits at most `connectLimit`.
public enum StoreOutage {
  public static let defaultLimit: Double = 600
  public static var limit: Double {
    ProcessInfo.processInfo.environment["ONESHOT_STORE_OUTAGE_SECONDS"].flatMap(Double.init).flatMap { $0.isFinite && $0 >= 0 ? $0 : nil } ?? defaultLimit
  }
  /// How long opening a store waits for a server that is away: `limit`, at most 30 s, since a
  /// refused first connection is as often a wrong port as a restart.
  public static var connectLimit: Double { min(limit, 30) }
  /// Where the store says that it waits and that the server is back (standard error, redacted).
  public nonisolated(unsafe) static var report: (String) -> Void = { line in
    StandardError.write((Secrets.redacted(line) + "\n"))
  }

  /// The signal that asks the process to stop (SIGINT, SIGTERM), or 0: a wait for the server
  /// ends at once when it is set (a preempted Slurm task has 120 s, a Kubernetes pod 30 s), with
  /// `StoreError.stoppedWaiting`. The run harness points it at its signal flag.
  public nonisolated(unsafe) static var stopSignal: () -> Int32 = { 0 }

  /// Sleeps `seconds` in slices of 0.1 s, throwing `StoreError.stoppedWaiting` as soon as a
  /// signal asks the process to stop.
  static func pause(_ seconds: Double, url: String) throws {
    let end = Date().addingTimeInterval(seconds)
    while true {
      let signal = stopSignal()
      if signal != 0 { throw StoreError.stoppedWaiting(url: url, signal: signal) }
      let left = end.timeIntervalSinceNow
      if left <= 0 { return }
      usleep(useconds_t(min(left, 0.1) * 1_000_000))
    }
  }

  /// The server's words for an outage, without the advice of a `StoreError` sentence.
  /// Seconds as a message says them: "0.3 s", "45 s".
  static func shown(_ seconds: Double) -> String { seconds < 10 && seconds != seconds.rounded() ? String(format: "%.1f s", seconds) : "\(Int(seconds.rounded())) s" }

  static func reason(_ error: any Error) -> String {
    if case StoreError.server(_, let reason) = error { return reason }
    if let error = error as? PostgresError { return error.state.isEmpty ? error.message : "\(error.message) (SQLSTATE \(error.state))" }
    return "\(error)"
  }

  /// Opens a connection to `url`, waiting out a server that is away for now (refused, shutting
  /// down, starting up) as a lost connection is waited out; a wrong URL, user or password fails
  /// at once.
  static func connect(url: String) throws -> PostgresConnection {
    var start: Date? = nil
    var attempt = 0
    while true {
      do {
        let connection = try PostgresConnection(url: url)
        if let start { report("results store \(PostgresConnection.redacted(url)): back after \(Int(Date().timeIntervalSince(start).rounded())) s; going on") }
        return connection
      } catch StoreError.server(let shown, let reason) where isTransient(reason) && connectLimit > 0 {
        let limit = connectLimit
        let began = start ?? Date()
        if start == nil {
          start = began
          report("results store \(shown) is unreachable (\(reason)); waiting for it for up to \(StoreOutage.shown(limit))")
        }
        let waited = Date().timeIntervalSince(began)
        guard waited < limit else { throw StoreError.outage(url: shown, seconds: waited, reason: reason) }
        try pause(min(delay(attempt: attempt), max(0.05, limit - waited)), url: shown)
        attempt += 1
      }
    }
  }

  /// The pause before attempt `attempt` (0-based) of a wait.
  static func delay(attempt: Int) -> Double {
    let full = min(10, 0.25 * pow(2, Double(min(attempt, 10))))
    return full * Double.random(in: 0.5...1)
  }

  /// Whether a connection failure's text says the server is away for now (refused, shutting
  /// down, starting up, in recovery, unreachable), not that the URL, user or password is wrong.
  static func isTransient(_ reason: String) -> Bool {
    let text = reason.lowercased()
    // A full server (max_connections, a role's connection limit: SQLSTATE 53300) is waited out
    // as an outage is: other tasks' runs end and free their connections (issue #46, cause 6).
    return [
      "connection refused", "shutting down", "starting up", "in recovery", "timeout expired", "no route to host", "server closed the connection", "terminating connection",
      "too many clients", "too many connections", "remaining connection slots",
    ]
    .contains { text.contains($0) }
  }
}

extension Database: SQLConnection {
  var backend: StoreBackend { .sqlite }
  func isOutage(_ error: any Error) -> Bool { false }
  func reconnect() throws {}
  var changes: Int { Int(sqlite3_changes(handle)) }
  func schemaVersion() throws -> Int { Int(try query("PRAGMA user_version").first?.first?.integer ?? 0) }
  func setSchemaVersion(_ version: Int) throws { try execute("PRAGMA user_version = \(version)") }
  func isRetryable(_ error: any Error) -> Bool {
    guard let error = error as? SQLiteError else { return false }
    return error.code & 0xff == SQLITE_BUSY || error.code & 0xff == SQLITE_LOCKED
  }
}

/// A failed PostgreSQL call: SQLSTATE, the server's message and the statement.
public struct PostgresError: Error, CustomStringConvertible, LocalizedError {
  /// The five-character SQLSTATE (`40001` serialization failure...), empty when unknown.
  public let state: String
  public let message: String
  public let sql: String?
  public var description: String { "PostgreSQL error \(state.isEmpty ? "" : "\(state) ")\(message)" + (sql.map { " [in: \($0.prefix(120))]" } ?? "") }
  public var errorDescription: String? { description }
}

/// A connection to a PostgreSQL server through libpq. Values are always sent as parameters
/// (`$1`...), never spliced into SQL; the connection is re-opened when it is lost.
final class PostgresConnection: SQLConnection {
  private var handle: OpaquePointer
  /// The URL without its password, for messages.
  let displayURL: String
  private var lastChanges = 0

  var backend: StoreBackend { .postgresql }

  /// Whether `path` names a PostgreSQL store (`postgresql://` or `postgres://`).
  static func isURL(_ path: String) -> Bool { path.hasPrefix("postgresql://") || path.hasPrefix("postgres://") }

  /// libpq's message as one line: its lines joined by "; ", its tabs and runs of spaces single
  /// spaces, at most 500 characters (a server may quote a whole 100 KB value).
  static func oneLine(_ message: String) -> String {
    let lines = message.split(whereSeparator: \.isNewline).map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") }.filter { !$0.isEmpty }
    let text = lines.joined(separator: "; ")
    return text.count > 500 ? text.prefix(500) + "... (\(text.count - 500) more characters)" : text
  }

  /// `url` without its password (the one redaction, `Secrets.redacted`).
  static func redacted(_ url: String) -> String { Secrets.redacted(url) }

  init(url: String) throws {
    Secrets.register(storeURL: url)
    displayURL = PostgresConnection.redacted(url)
    // libpq would wait for a dead host for minutes; two seconds say it as well.
    let withTimeout = url.contains("connect_timeout=") ? url : url + (url.contains("?") ? "&" : "?") + "connect_timeout=5"
    guard let connection = PQconnectdb(withTimeout) else { throw StoreError.server(url: PostgresConnection.redacted(url), reason: "out of memory") }
    guard PQstatus(connection) == CONNECTION_OK else {
      // libpq may quote a part of the URL it could not parse: the password, of any length.
      let reason = Secrets.redacted(
        PostgresConnection.oneLine(String(cString: PQerrorMessage(connection))), also: Secrets.passwords(inURL: url))
      PQfinish(connection)
      throw StoreError.server(url: PostgresConnection.redacted(url), reason: reason)
    }
    handle = connection
    // Notices (e.g. "relation already exists, skipping") are not for the user's terminal.
    PQsetNoticeProcessor(handle, { _, _ in }, nil)
  }

  deinit { PQfinish(handle) }

  /// `?` placeholders as `$1`, `$2`... (outside quoted text).
  static func numbered(_ sql: String) -> String {
    var out = "", n = 0, quoted = false
    for character in sql {
      if character == "'" { quoted.toggle() }
      if character == "?" && !quoted {
        n += 1
        out += "$\(n)"
      } else {
        out.append(character)
      }
    }
    return out
  }

  @discardableResult
  func query(_ sql: String, _ values: [SQLValue]) throws -> [[SQLValue]] {
    let text = PostgresConnection.numbered(sql)
    var types: [Oid] = [], strings: [String?] = []
    types.reserveCapacity(values.count)
    strings.reserveCapacity(values.count)
    for value in values {
      let (type, text): (Oid, String?)
      switch value {
      case .null: (type, text) = (0, nil)
      case .integer(let v): (type, text) = (20, String(v))
      case .real(let v): (type, text) = (701, v.isFinite ? String(v) : (v.isNaN ? "NaN" : (v > 0 ? "Infinity" : "-Infinity")))
      case .text(let v):
        guard !v.utf8.contains(0) else { throw PostgresError(state: "22021", message: "text with a NUL byte cannot be stored in PostgreSQL", sql: sql) }
        (type, text) = (25, v)
      case .blob(let v): (type, text) = (25, v.map { String(format: "%02x", $0) }.joined())
      }
      types.append(type)
      strings.append(text)
    }
    let pointers = strings.map { $0.flatMap { strdup($0) } }
    defer { pointers.forEach { free($0) } }
    let result = pointers.map { $0.map { UnsafePointer($0) } }.withUnsafeBufferPointer { params in
      PQexecParams(handle, text, Int32(values.count), types, params.baseAddress, nil, nil, 0)
    }
    defer { PQclear(result) }
    return try rows(of: result, sql: sql)
  }

  func execute(_ sql: String) throws {
    let result = PQexec(handle, sql)
    defer { PQclear(result) }
    _ = try rows(of: result, sql: sql)
  }

  private func rows(of result: OpaquePointer?, sql: String) throws -> [[SQLValue]] {
    let status = result.map(PQresultStatus) ?? PGRES_FATAL_ERROR
    guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
      let state = result.flatMap { PQresultErrorField($0, 67 /* PG_DIAG_SQLSTATE 'C' */) }.map { String(cString: $0) } ?? ""
      let message = PostgresConnection.oneLine(String(cString: PQerrorMessage(handle)))
      throw PostgresError(state: state, message: message, sql: sql)
    }
    lastChanges = Int(String(cString: PQcmdTuples(result))) ?? 0
    guard status == PGRES_TUPLES_OK, let result else { return [] }
    let (rowCount, columnCount) = (PQntuples(result), PQnfields(result))
    let types = (0..<columnCount).map { PQftype(result, $0) }
    return (0..<rowCount).map { r in
      (0..<columnCount).map { c -> SQLValue in
        if PQgetisnull(result, r, c) != 0 { return .null }
        let text = String(cString: PQgetvalue(result, r, c))
        switch types[Int(c)] {
        case 20, 21, 23: return Int64(text).map { .integer($0) } ?? .text(text)
        case 700, 701, 1700: return Double(text).map { .real($0) } ?? .text(text)
        default: return .text(text)
        }
      }
    }
  }

  var changes: Int { lastChanges }

  func transaction<T>(_ body: () throws -> T) throws -> T {
    try reconnectIfLost()
    try execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
    do {
      let value = try body()
      try execute("COMMIT")
      return value
    } catch {
      _ = PQexec(handle, "ROLLBACK").map { PQclear($0) }
      throw error
    }
  }

  /// Re-opens a connection the server or the network dropped.
  func reconnectIfLost() throws {
    guard PQstatus(handle) != CONNECTION_OK else { return }
    PQreset(handle)
    guard PQstatus(handle) == CONNECTION_OK else {
      throw StoreError.server(url: displayURL, reason: "lost the connection and could not re-open it: " + PostgresConnection.oneLine(String(cString: PQerrorMessage(handle))))
    }
  }

  func schemaVersion() throws -> Int {
    let exists = try query("SELECT to_regclass('oneshot_schema') IS NOT NULL", [])
    guard exists.first?.first?.text == "t" else { return 0 }
    // The highest row: a second row (another version's writer, a hand edit) must not hide a
    // newer schema behind the first one (issue #46, cause 7).
    return Int(try query("SELECT COALESCE(MAX(version), 0) FROM oneshot_schema", []).first?.first?.integer ?? 0)
  }

  func setSchemaVersion(_ version: Int) throws {
    try execute("CREATE TABLE IF NOT EXISTS oneshot_schema(version BIGINT NOT NULL)")
    try execute("DELETE FROM oneshot_schema")
    try query("INSERT INTO oneshot_schema(version) VALUES (?)", [.integer(Int64(version))])
  }

  func isRetryable(_ error: any Error) -> Bool {
    guard let error = error as? PostgresError else { return false }
    // Serialization failure, deadlock.
    return error.state == "40001" || error.state == "40P01"
  }

  func isOutage(_ error: any Error) -> Bool {
    if PQstatus(handle) != CONNECTION_OK { return true }
    if case StoreError.server(_, let reason) = error { return StoreOutage.isTransient(reason) }
    guard let error = error as? PostgresError else { return false }
    // The connection classes (08xxx), and the server shutting down (57P01 admin shutdown,
    // 57P02 crash shutdown, 57P03 cannot connect now).
    return error.state.hasPrefix("08") || error.state.hasPrefix("57P0") || error.state == "53300" || (error.state.isEmpty && StoreOutage.isTransient(error.message))
  }

  func reconnect() throws { try reconnectIfLost() }
}

extension SQLConnection {
  /// A statement without parameters.
  @discardableResult func query(_ sql: String) throws -> [[SQLValue]] { try query(sql, []) }
}
