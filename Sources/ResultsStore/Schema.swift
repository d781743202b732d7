/// The store's schema, versioned with `PRAGMA user_version`. Each migration upgrades version
/// i to i + 1 in place and keeps the data; a database from a newer harness is refused.
enum Schema {
  /// The version this build writes.
  static var current: Int { migrations.count }

  /// The migrations of a backend: the same tables and versions in each one's dialect.
  static func migrations(for backend: StoreBackend) -> [String] {
    backend == .sqlite ? migrations : postgresMigrations
  }

  /// PostgreSQL: the same schema, translated: 64-bit integers and doubles, a serial id for
  /// experiments, a `seq` column that orders runs started in the same millisecond (SQLite's
  /// rowid does that there), `ctid` for `rowid`.
  static let postgresMigrations: [String] = migrations.map { sqlite in
    sqlite.replacingOccurrences(of: "id INTEGER PRIMARY KEY", with: "id BIGSERIAL PRIMARY KEY")
      .replacingOccurrences(of: "id TEXT PRIMARY KEY,\n  experiment_id", with: "id TEXT PRIMARY KEY,\n  seq BIGSERIAL,\n  experiment_id")
      .replacingOccurrences(of: " INTEGER", with: " BIGINT")
      .replacingOccurrences(of: " REAL", with: " DOUBLE PRECISION")
      .replacingOccurrences(of: ") WITHOUT ROWID;", with: ");")
      .replacingOccurrences(of: "rowid", with: "ctid")
  }

  /// migrations[i] takes a database from version i to i + 1.
  static let migrations: [String] = [
    // 1: experiments, runs, params, metrics, results, per-episode rows.
    """
    CREATE TABLE experiments(
      id INTEGER PRIMARY KEY,
      name TEXT NOT NULL UNIQUE,
      created_at TEXT NOT NULL);
    CREATE TABLE runs(
      id TEXT PRIMARY KEY,
      experiment_id INTEGER NOT NULL REFERENCES experiments(id),
      status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'interrupted')),
      started_at TEXT NOT NULL,
      finished_at TEXT,
      config_json TEXT NOT NULL,
      config_hash TEXT NOT NULL,
      git_commit TEXT,
      git_dirty INTEGER,
      dataset_fingerprint TEXT,
      checkpoint_path TEXT,
      checkpoint_hash TEXT,
      host TEXT,
      cpu TEXT,
      harness_version TEXT,
      swift_version TEXT,
      error TEXT);
    CREATE INDEX runs_by_experiment ON runs(experiment_id, started_at);
    CREATE INDEX runs_by_status ON runs(status, started_at);
    CREATE INDEX runs_by_start ON runs(started_at);
    CREATE TABLE params(
      run_id TEXT NOT NULL REFERENCES runs(id),
      key TEXT NOT NULL,
      value TEXT NOT NULL,
      PRIMARY KEY (run_id, key)) WITHOUT ROWID;
    CREATE TABLE metrics(
      run_id TEXT NOT NULL REFERENCES runs(id),
      key TEXT NOT NULL,
      step INTEGER NOT NULL,
      value REAL NOT NULL,
      time TEXT NOT NULL);
    CREATE INDEX metrics_by_run ON metrics(run_id, key, step);
    CREATE TABLE results(
      run_id TEXT NOT NULL REFERENCES runs(id),
      protocol TEXT NOT NULL,
      split TEXT NOT NULL,
      ways INTEGER NOT NULL,
      shots INTEGER NOT NULL,
      queries INTEGER NOT NULL,
      episodes INTEGER NOT NULL,
      accuracy REAL NOT NULL,
      ci_low REAL NOT NULL,
      ci_high REAL NOT NULL,
      seconds REAL NOT NULL,
      PRIMARY KEY (run_id, protocol));
    CREATE TABLE episode_results(
      run_id TEXT NOT NULL REFERENCES runs(id),
      protocol TEXT NOT NULL,
      episode INTEGER NOT NULL,
      alphabet TEXT,
      correct INTEGER NOT NULL,
      total INTEGER NOT NULL,
      PRIMARY KEY (run_id, protocol, episode)) WITHOUT ROWID;
    """,
    // 2: free-form tags, and the run's wall time.
    """
    CREATE TABLE tags(
      run_id TEXT NOT NULL REFERENCES runs(id),
      key TEXT NOT NULL,
      value TEXT NOT NULL,
      PRIMARY KEY (run_id, key)) WITHOUT ROWID;
    ALTER TABLE runs ADD COLUMN duration_seconds REAL;
    """,
    // 3: a run is owned while it works (owner `host:pid` and a heartbeat, Unix seconds), and a
    // metric point is keyed by (run, key, step), so a resumed run replaces what a killed
    // sitting logged after its last checkpoint instead of duplicating it.
    """
    ALTER TABLE runs ADD COLUMN owner TEXT;
    ALTER TABLE runs ADD COLUMN heartbeat_at REAL;
    DELETE FROM metrics WHERE rowid NOT IN (SELECT MAX(rowid) FROM metrics GROUP BY run_id, key, step);
    DROP INDEX metrics_by_run;
    CREATE UNIQUE INDEX metrics_by_run ON metrics(run_id, key, step);
    """,
    // 4: a sweep claims a configuration (experiment, configuration hash) before it does any work,
    // so two tasks started at once never both run it.
    """
    CREATE TABLE claims(
      experiment TEXT NOT NULL,
      config_hash TEXT NOT NULL,
      owner TEXT NOT NULL,
      claimed_at REAL NOT NULL,
      PRIMARY KEY (experiment, config_hash)) WITHOUT ROWID;
    """,
  ]
}
