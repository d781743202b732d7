import CSQLite
import Foundation

/// A failed SQLite call: its result code, SQLite's message and the SQL that was running.
public struct SQLiteError: Error, CustomStringConvertible, LocalizedError {
  /// The (extended) result code.
  public let code: Int32
  /// sqlite3_errmsg at the time of the failure.
  public let message: String
  /// The statement, if any.
  public let sql: String?

  public var description: String {
    let base = "SQLite error \(code) (\(String(cString: sqlite3_errstr(code)))): \(message)"
    return sql.map { "\(base) [in: \($0)]" } ?? base
  }
  public var errorDescription: String? { description }
}

/// SQLite's transient destructor: bound text and blobs are copied before the call returns.
let transient = csqlite_transient()

/// A thin connection over the sqlite3 C API: every result code goes through `check`,
/// statements are finalized when released, values are always bound, never spliced into SQL.
final class Database {
  let handle: OpaquePointer
  let path: String

  /// Opens (or creates) the database file at `path`, or an in-memory database for `:memory:`.
  init(path: String, readOnly: Bool = false) throws {
    var db: OpaquePointer?
    let flags = (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_NOMUTEX
    let rc = sqlite3_open_v2(path, &db, flags, nil)
    guard rc == SQLITE_OK, let db else {
      let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
      if let db { sqlite3_close_v2(db) }
      throw SQLiteError(code: rc, message: message, sql: nil)
    }
    handle = db
    self.path = path
    sqlite3_extended_result_codes(db, 1)
  }

  deinit { sqlite3_close_v2(handle) }

  /// Throws a `SQLiteError` unless `code` is `SQLITE_OK` or one of `accepted`.
  @discardableResult
  func check(_ code: Int32, sql: String? = nil, accepted: (Int32, Int32) = (SQLITE_OK, SQLITE_OK)) throws -> Int32 {
    guard code == accepted.0 || code == accepted.1 else {
      throw SQLiteError(code: code, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }
    return code
  }

  /// Runs one or more statements without results.
  func execute(_ sql: String) throws {
    try check(sqlite3_exec(handle, sql, nil, nil, nil), sql: sql)
  }

  /// Prepares a statement.
  func prepare(_ sql: String) throws -> Statement { try Statement(database: self, sql: sql) }

  /// Runs `sql` with `values` bound and returns every row.
  @discardableResult
  func query(_ sql: String, _ values: [SQLValue] = []) throws -> [[SQLValue]] {
    let statement = try prepare(sql)
    try statement.bind(values)
    return try statement.all()
  }

  /// Runs `body` in one IMMEDIATE transaction; rolls back if it throws.
  func transaction<T>(_ body: () throws -> T) throws -> T {
    try execute("BEGIN IMMEDIATE")
    do {
      let value = try body()
      try execute("COMMIT")
      return value
    } catch {
      try? execute("ROLLBACK")
      throw error
    }
  }

  /// The row id of the last insert.
  var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
}

/// A value bound to or read from SQLite.
public enum SQLValue: Equatable, Sendable {
  case null
  case integer(Int64)
  case real(Double)
  case text(String)
  case blob([UInt8])

  /// The value as text, if it is text.
  public var text: String? { if case .text(let s) = self { return s } else { return nil } }
  /// The value as an integer (reals are truncated).
  public var integer: Int64? {
    switch self {
    case .integer(let v): return v
    case .real(let v): return Int64(v)
    default: return nil
    }
  }
  /// The value as a Double.
  public var real: Double? {
    switch self {
    case .real(let v): return v
    case .integer(let v): return Double(v)
    default: return nil
    }
  }
}

/// A prepared statement, finalized when released.
final class Statement {
  let handle: OpaquePointer
  unowned let database: Database
  let sql: String

  init(database: Database, sql: String) throws {
    var statement: OpaquePointer?
    try database.check(sqlite3_prepare_v2(database.handle, sql, -1, &statement, nil), sql: sql)
    guard let statement else { throw SQLiteError(code: SQLITE_MISUSE, message: "empty statement", sql: sql) }
    self.handle = statement
    self.database = database
    self.sql = sql
  }

  deinit { sqlite3_finalize(handle) }

  /// Resets the statement and binds `values` to its parameters 1...n.
  func bind(_ values: [SQLValue]) throws {
    sqlite3_reset(handle)
    sqlite3_clear_bindings(handle)
    for (i, value) in values.enumerated() {
      let index = Int32(i + 1)
      let rc: Int32
      switch value {
      case .null: rc = sqlite3_bind_null(handle, index)
      case .integer(let v): rc = sqlite3_bind_int64(handle, index, v)
      case .real(let v): rc = sqlite3_bind_double(handle, index, v)
      // With its byte length: a NUL inside the text is kept, never a silent end of string.
      case .text(let v): rc = sqlite3_bind_text(handle, index, v, Int32(clamping: v.utf8.count), transient)
      case .blob(let v): rc = v.withUnsafeBytes { sqlite3_bind_blob(handle, index, $0.baseAddress, Int32($0.count), transient) }
      }
      try database.check(rc, sql: sql)
    }
  }

  /// Steps once: true when a row is available.
  func step() throws -> Bool {
    let rc = sqlite3_step(handle)
    try database.check(rc, sql: sql, accepted: (SQLITE_ROW, SQLITE_DONE))
    return rc == SQLITE_ROW
  }

  /// Binds and runs a statement that returns no rows.
  func run(_ values: [SQLValue]) throws {
    try bind(values)
    while try step() {}
  }

  /// Column `i` of the current row.
  func column(_ i: Int32) -> SQLValue {
    switch sqlite3_column_type(handle, i) {
    case SQLITE_INTEGER: return .integer(sqlite3_column_int64(handle, i))
    case SQLITE_FLOAT: return .real(sqlite3_column_double(handle, i))
    case SQLITE_TEXT:
      // By byte count, so that text with a NUL inside reads back whole.
      let count = Int(sqlite3_column_bytes(handle, i))
      guard count > 0, let pointer = sqlite3_column_text(handle, i) else { return .text("") }
      return .text(String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self))
    case SQLITE_BLOB:
      let count = Int(sqlite3_column_bytes(handle, i))
      guard count > 0, let pointer = sqlite3_column_blob(handle, i) else { return .blob([]) }
      return .blob([UInt8](UnsafeRawBufferPointer(start: pointer, count: count)))
    default: return .null
    }
  }

  /// Every remaining row.
  func all() throws -> [[SQLValue]] {
    var rows: [[SQLValue]] = []
    let columns = sqlite3_column_count(handle)
    while try step() { rows.append((0..<columns).map { column($0) }) }
    return rows
  }
}
