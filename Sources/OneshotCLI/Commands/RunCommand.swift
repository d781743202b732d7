import ArgumentParser
import Experiments
import Foundation
import Reports
import ResultsStore

/// `oneshot-bench run FILE`: train, validate, evaluate and record one experiment; `run tag`,
/// `run note`, `run delete`: what a user does to a recorded run afterwards.
struct RunCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run", abstract: "Train and evaluate an experiment file, recording everything in the results store; or tag, note or delete a recorded run.",
    subcommands: [RunExperimentCommand.self, RunTagCommand.self, RunNoteCommand.self, RunDeleteCommand.self], defaultSubcommand: RunExperimentCommand.self)
}

/// `oneshot-bench run FILE` (the default of `run`).
struct RunExperimentCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "experiment", abstract: "Train and evaluate an experiment file, recording everything in the results store (the default: `run FILE` is `run experiment FILE`).")

  @Argument(help: "Experiment file, e.g. experiments/vgg105.json (not needed with --resume).") var experiment: String?
  @OptionGroup var running: RunningOptions
  @Option(help: "Seed of training: short for --set seed=N (recorded in the run's configuration, so a second seed of a recipe is one command).") var seed: UInt64?
  @Option(
    name: .customLong("set"),
    help: ArgumentHelp("Override a key of the experiment file, e.g. --set training.optimizer.learningRate=0.005 (repeatable; checked like the file, recorded in the run's configuration).", valueName: "key.path=value"),
    transform: { try ConfigOverride($0) })
  var overrides: [ConfigOverride] = []
  @Flag(help: "Skip training; evaluate --checkpoint.") var evalOnly = false
  @Option(help: ArgumentHelp("Checkpoint to evaluate with --eval-only (default: the shipped model, \(shippedModelPath)).", valueName: "path")) var checkpoint: String?
  @Option(help: "Continue an interrupted run from its last checkpoint.") var resume: String?
  @Option(
    help: ArgumentHelp(
      "With --eval-only: score a model outside the harness through this command, which speaks the line protocol of docs/SCORER_PROTOCOL.md (e.g. 'python3 examples/scorers/twin_scorer.py CHECKPOINT'); replaces the file's \"scorer\".",
      valueName: "command")) var scorer: String?

  /// `--set` assignments with `--seed` as the one it is short for.
  var assignments: [ConfigOverride] {
    get throws { try overrides + (seed.map { [try ConfigOverride("seed=\($0)")] } ?? []) }
  }

  func validate() throws {
    if checkpoint != nil && !evalOnly { throw ValidationError("--checkpoint is only used with --eval-only") }
    if scorer != nil && !evalOnly { throw ValidationError("--scorer is only used with --eval-only") }
    if scorer != nil && checkpoint != nil { throw ValidationError("--scorer and --checkpoint exclude each other: the outside scorer loads its own model") }
    if resume != nil && evalOnly { throw ValidationError("--resume and --eval-only exclude each other") }
    if resume == nil && experiment == nil { throw ValidationError("give an experiment file, e.g. experiments/ci-smoke.json") }
    if resume != nil && experiment != nil { throw ValidationError("a resumed run keeps its recorded configuration; drop the experiment file") }
    let assigned = try assignments
    if resume != nil && !assigned.isEmpty { throw ValidationError("a resumed run keeps its recorded configuration; drop --set and --seed") }
  }

  func run() throws {
    var mode: RunPlan.Mode = resume.map { .resume(runID: $0) } ?? (evalOnly ? .evalOnly(checkpoint: checkpoint ?? shippedModelPath) : .fresh)
    if evalOnly, let scorer {
      mode = .external(command: scorer)
    } else if evalOnly, checkpoint == nil, let experiment, (try? ExperimentConfig.load(experiment, overrides: try assignments))?.scorer != nil {
      // The file names its outside scorer: --eval-only scores it (--checkpoint would score a checkpoint).
      mode = .external(command: nil)
    }
    let plan = try RunPlan(mode, experiment: experiment, options: running.runOptions(overrides: try assignments))
    try finish(try runExperiment(plan))
  }
}

/// Ends a command with the exit code of a run's outcome (0 when it completed).
func finish(_ outcome: RunOutcome) throws {
  if outcome.exitCode != 0 { throw ExitCode(outcome.exitCode) }
}

/// `oneshot-bench run tag RUN key=value ...`.
struct RunTagCommand: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "tag", abstract: "Set tags on a recorded run (shown by report --run, report --format json and the HTML page).")

  @Argument(help: ArgumentHelp("Run id (or a unique prefix of at least 4 characters).", valueName: "run")) var runID: String
  @Argument(help: ArgumentHelp("Tags to set, e.g. reviewed=yes.", valueName: "key=value")) var assignments: [String]
  @OptionGroup var store: StoreOptions

  func run() throws {
    let pairs = try assignments.map { text -> (String, String) in
      guard let equals = text.firstIndex(of: "=") else { throw UserFacingError("'\(visible(text))' is not key=value; e.g. run tag \(runID) reviewed=yes") }
      return (String(text[..<equals]), String(text[text.index(after: equals)...]))
    }
    let results = try store.existing()
    for (key, value) in pairs { try RunAdmin.tag(runID, key: key, value: value, store: results) }
    printNote("run \(try results.resolveRunID(runID)): \(pairs.count) tag\(pairs.count == 1 ? "" : "s") set")
  }
}

/// `oneshot-bench run note RUN TEXT`.
struct RunNoteCommand: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "note", abstract: "Write a note on a recorded run (replacing its earlier note; an empty note removes nothing but reads empty).")

  @Argument(help: ArgumentHelp("Run id (or a unique prefix of at least 4 characters).", valueName: "run")) var runID: String
  @Argument(help: "The note, e.g. \"lr too high: diverged after step 4000\".") var text: String
  @OptionGroup var store: StoreOptions

  func run() throws {
    let results = try store.existing()
    let id = try results.resolveRunID(runID)
    try results.setTag(run: id, key: TagKey.note, value: text)
    printNote("run \(id): note written")
  }
}

/// `oneshot-bench run delete RUN [--files]`.
struct RunDeleteCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "delete",
    abstract: "Delete a recorded run from the store, in one transaction (refused while a live process runs it); with --files also its folder of checkpoints.")

  @Argument(help: ArgumentHelp("Run id (or a unique prefix of at least 4 characters).", valueName: "run")) var runID: String
  @Flag(help: "Also remove the run's checkpoint folder (runs/<run id>/; a checkpoint elsewhere, such as the shipped model an eval-only run scored, is never touched).") var files = false
  @Option(help: "The folder of run folders the run was started with (--runs; default: runs), where a run without a best checkpoint keeps its last one.") var runs = "runs"
  @OptionGroup var store: StoreOptions

  func run() throws {
    let (id, removed) = try RunAdmin.delete(runID, files: files, store: try store.existing(), runsFolder: runs)
    printNote("run \(id) deleted from the store" + (removed.map { "; removed \($0)" } ?? (files ? "; it had no checkpoint folder of its own" : "")))
  }
}
