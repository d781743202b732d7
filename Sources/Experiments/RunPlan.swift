import Foundation
import ResultsStore
import Support

/// Options of `run` that are not in the experiment file.
package struct RunOptions {
  package var storePath: String
  /// Threads (replaces the file's `threads`).
  package var threads: Int?
  /// `key.path=value` assignments (`--set`, `--seed`, a sweep's grid), applied to the file
  /// before it is decoded and checked; recorded in the run's configuration.
  package var overrides: [ConfigOverride]
  /// The dataset folder (`--data` or ONESHOT_DATA), replacing the file's `data.path`.
  package var dataPath: String?
  package var runsFolder: String
  /// Set by a sweep that claimed this configuration for this process: the run's row is written
  /// only while the claim is still this process's (`ResultsStore.beginRun(claim:)`).
  package var holdsConfigurationClaim = false
  /// Called once the run's row is written (a sweep stops renewing its configuration claim: the
  /// run's own heartbeat keeps it from then on).
  package var onRunRecorded: (() -> Void)? = nil

  package init(storePath: String, threads: Int? = nil, overrides: [ConfigOverride] = [], dataPath: String? = nil, runsFolder: String = "runs") {
    self.storePath = storePath
    self.threads = threads
    self.overrides = overrides
    self.dataPath = dataPath
    self.runsFolder = runsFolder
  }
}

/// What `run` will do, decided and checked before any data is read or anything is written:
/// the mode and the resolved configuration (the file's, or the resumed run's stored one, with
/// the command line's overrides), checked the same way on every path.
package struct RunPlan {
  package enum Mode {
    /// Train from scratch, then evaluate the best checkpoint.
    case fresh
    /// Continue an interrupted run from its last checkpoint (an id or a unique prefix; the
    /// plan holds the full id).
    case resume(runID: String)
    /// Evaluate a checkpoint (a network or an ensemble) without training.
    case evalOnly(checkpoint: String)
    /// Evaluate a model outside the harness through an outside scorer's command (the file's
    /// `scorer` when nil).
    case external(command: String?)
  }

  package let mode: Mode
  package let config: ExperimentConfig
  package var options: RunOptions
  /// The store, already open when resuming (the configuration comes from it), or given by
  /// `use(_:)`.
  private var openedStore: ResultsStore?

  /// A plan for `mode`; `experiment` is the file of a fresh or eval-only run (a resumed run's
  /// configuration comes from the store).
  package init(_ mode: Mode, experiment: String?, options: RunOptions) throws {
    self.options = options
    var config: ExperimentConfig
    let source: String
    if case .resume(let given) = mode {
      let store = try ResultsStore(path: options.storePath)
      let id = try store.resolveRunID(given)
      let detail = try store.run(id)
      // The store's own error, so that a sweep whose other task finished the run between its
      // listing and this check skips it as done (the same as when the claim finds it completed).
      guard detail.summary.status != .completed else { throw StoreError.alreadyCompleted(id) }
      // An evaluation keeps no checkpoint to resume from (issue #45, cause U). One left `running`
      // by a process that ended is closed here (failed, with the reason), so that no row stays
      // `running` for good; one whose process lives is refused by the claim.
      let recordedMode = RunMode(tags: detail.tags)
      if recordedMode != .train {
        var closed = ""
        if detail.summary.status == .running {
          try store.claimRun(id, owner: RunRecording.thisProcess, staleAfter: Lease.seconds, isAlive: RunRecording.isAlive)
          try store.finishRun(id, status: .failed, error: "left running by an evaluation whose process ended; closed by run --resume")
          closed = " (it was left running by a process that ended, and is now marked failed)"
        }
        throw UserFacingError(
          "run \(id) is an evaluation (\(recordedMode.rawValue)), which keeps no checkpoint to resume\(closed): evaluate again with `oneshot-bench run FILE --eval-only` (`oneshot-bench report --run \(id)` shows what it scored)")
      }
      source = "run \(id)'s stored configuration"
      config = try ExperimentConfig.decode(Data(detail.configJSON.utf8), source: source)
      self.mode = .resume(runID: id)
      openedStore = store
    } else {
      guard let experiment else { throw UserFacingError("give an experiment file (e.g. experiments/vgg105.json) or --resume RUN_ID") }
      source = experiment
      config = try ExperimentConfig.load(experiment, overrides: options.overrides)
      self.mode = mode
      openedStore = nil
    }
    if let threads = options.threads { config.threads = threads }
    if case .external(let command?) = mode { config.scorer = command }
    try config.check(source: source)
    if case .external = mode, config.scorer == nil {
      throw ConfigError(file: source, keyPath: "scorer", message: "missing; give the outside scorer's command with --scorer 'COMMAND' or the file's \"scorer\" key")
    }
    self.config = config
    if config.training == nil && trains {
      throw ConfigError(file: source, keyPath: "training", message: "missing; a file without a training section can only evaluate a checkpoint (run it with --eval-only)")
    }
  }

  /// An eval-only plan for a configuration built on the command line (`evaluate`).
  package init(evaluating config: ExperimentConfig, checkpoint: String, options: RunOptions) throws {
    try config.check(source: "the evaluate command")
    self.config = config
    self.options = options
    mode = .evalOnly(checkpoint: checkpoint)
    openedStore = nil
  }

  /// True when the run trains (fresh or resumed).
  package var trains: Bool {
    if case .evalOnly = mode { return false }
    if case .external = mode { return false }
    return true
  }

  /// Records into `store`, already open (a sweep task's, which claimed the configuration on it),
  /// instead of opening a second connection to the same store (issue #46, cause 6: each sweep
  /// task held two connections for its whole run).
  package mutating func use(_ store: ResultsStore) {
    precondition(store.path == options.storePath, "RunPlan.use: another store than the plan records into")
    openedStore = store
  }

  /// The results store (opened only once the data is known to load, so that a refused run
  /// creates no database).
  package func store() throws -> ResultsStore {
    try openedStore ?? ResultsStore(path: options.storePath)
  }

  /// Refuses, before any row is written, a runs folder where checkpoints cannot be written.
  package func checkRunsFolder() throws {
    let folder = URL(fileURLWithPath: options.runsFolder)
    let probe = folder.appendingPathComponent(".write-check-\(getpid())")
    do {
      try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
      try Data().write(to: probe)
      try FileManager.default.removeItem(at: probe)
    } catch {
      throw UserFacingError("cannot write checkpoints into \(folder.path) (\((error as NSError).localizedDescription)); choose a writable folder with --runs DIR")
    }
  }

  /// Fails when a file or folder the plan reads is missing (see `ExperimentData.requireFiles`).
  package func requireData() throws {
    try ExperimentData.requireFiles(config, dataPath: options.dataPath, trains: trains)
  }

  /// The run's folder of checkpoints.
  package func folder(runID: String) -> URL {
    URL(fileURLWithPath: options.runsFolder).appendingPathComponent(runID)
  }

  /// The command that continues run `id` with the options this one used (store, runs folder,
  /// data and threads), so that it finds the same store and checkpoints. A store URL with a
  /// password is never printed: the hint names `$ONESHOT_STORE` instead (and says to set it when
  /// this run was not given the URL that way), since hints land in Slurm and pod logs.
  package func resumeCommand(_ id: String) -> String {
    let secret = Secrets.redacted(options.storePath) != options.storePath
    let fromEnvironment = ProcessInfo.processInfo.environment["ONESHOT_STORE"] == options.storePath
    var words = ["oneshot-bench", "run", "--resume", id, "--store", secret ? "\"$ONESHOT_STORE\"" : options.storePath]
    if options.runsFolder != "runs" { words += ["--runs", options.runsFolder] }
    if let data = options.dataPath { words += ["--data", data] }
    if let threads = options.threads { words += ["--threads", String(threads)] }
    let command = words.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
    return secret && !fromEnvironment ? command + " (with ONESHOT_STORE set to the store's URL, password included)" : command
  }
}
