import ArgumentParser
import Foundation
import ResultsStore

/// Options shared by every command that reads or writes the results store.
struct StoreOptions: ParsableArguments {
  @Option(name: .customLong("store"), help: "Results store: a SQLite file or postgresql://user:password@host:port/database (default: $ONESHOT_STORE or results/oneshot.sqlite).")
  var storePath: String?

  init() {}

  /// Options naming `path`.
  init(storePath: String?) { self.storePath = storePath }

  /// The database path (or PostgreSQL URL) to use.
  var path: String { storePath ?? ProcessInfo.processInfo.environment["ONESHOT_STORE"] ?? ResultsStore.defaultPath }

  /// A store that must already exist (reading commands never create one): a SQLite file, or a
  /// PostgreSQL server (whose database the URL names).
  func existing() throws -> ResultsStore {
    guard ResultsStore.isServerURL(path) || FileManager.default.fileExists(atPath: path) else {
      throw UserFacingError("no results store at \(path); run an experiment first (oneshot-bench run experiments/ci-smoke.json) or pass --store")
    }
    return try ResultsStore(path: path)
  }
}

/// `oneshot-bench run FILE`: train, validate, evaluate and record one experiment.
struct RunCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run", abstract: "Train and evaluate an experiment file, recording everything in the results store.")

  @Argument(help: "Experiment file, e.g. experiments/vgg105.json (not needed with --resume).") var experiment: String?
  @OptionGroup var store: StoreOptions
  @Option(help: "Threads (overrides the experiment file).") var threads: Int?
  @Option(help: "Seed of training (overrides the experiment file's; recorded in the run's configuration, so a second seed of a recipe is one command).") var seed: UInt64?
  @Option(
    name: .customLong("set"),
    help: ArgumentHelp("Override a key of the experiment file, e.g. --set training.optimizer.learningRate=0.005 (repeatable; checked like the file, recorded in the run's configuration).", valueName: "key.path=value"))
  var overrides: [String] = []
  @Flag(help: "Skip training; evaluate --checkpoint.") var evalOnly = false
  @Option(help: "Checkpoint to evaluate with --eval-only (default: the shipped model, \(shippedModelPath)).") var checkpoint: String?
  @Option(help: "Continue an interrupted run from its last checkpoint.") var resume: String?
  @Option(name: .customLong("data"), help: "Dataset folder (overrides the experiment file).") var dataPath: String?
  @Option(help: "Folder for run checkpoints (runs/<run-id>/).") var runs: String = "runs"

  func validate() throws {
    if checkpoint != nil && !evalOnly { throw ValidationError("--checkpoint is only used with --eval-only") }
    if resume != nil && evalOnly { throw ValidationError("--resume and --eval-only exclude each other") }
    if resume == nil && experiment == nil { throw ValidationError("give an experiment file, e.g. experiments/ci-smoke.json") }
    if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    if seed != nil && resume != nil { throw ValidationError("a resumed run keeps its recorded seed; drop --seed") }
    if !overrides.isEmpty && resume != nil { throw ValidationError("a resumed run keeps its recorded configuration; drop --set") }
  }

  func run() throws {
    let code = try runExperiment(
      configPath: experiment,
      options: RunOptions(
        storePath: store.path, threads: threads, seed: seed, overrides: try overrides.map(ConfigOverride.init), evalOnlyCheckpoint: evalOnly ? (checkpoint ?? shippedModelPath) : nil, resumeRunID: resume, dataPath: dataPath, runsFolder: runs))
    if code != 0 { throw ExitCode(code) }
  }
}
