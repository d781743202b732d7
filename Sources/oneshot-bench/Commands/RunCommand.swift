import ArgumentParser
import Experiments
import Foundation
import ResultsStore

/// `oneshot-bench run FILE`: train, validate, evaluate and record one experiment.
struct RunCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "run", abstract: "Train and evaluate an experiment file, recording everything in the results store.")

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

  /// `--set` assignments with `--seed` as the one it is short for.
  var assignments: [ConfigOverride] {
    get throws { try overrides + (seed.map { [try ConfigOverride("seed=\($0)")] } ?? []) }
  }

  func validate() throws {
    if checkpoint != nil && !evalOnly { throw ValidationError("--checkpoint is only used with --eval-only") }
    if resume != nil && evalOnly { throw ValidationError("--resume and --eval-only exclude each other") }
    if resume == nil && experiment == nil { throw ValidationError("give an experiment file, e.g. experiments/ci-smoke.json") }
    if resume != nil && experiment != nil { throw ValidationError("a resumed run keeps its recorded configuration; drop the experiment file") }
    let assigned = try assignments
    if resume != nil && !assigned.isEmpty { throw ValidationError("a resumed run keeps its recorded configuration; drop --set and --seed") }
  }

  func run() throws {
    let mode: RunPlan.Mode = resume.map { .resume(runID: $0) } ?? (evalOnly ? .evalOnly(checkpoint: checkpoint ?? shippedModelPath) : .fresh)
    let plan = try RunPlan(mode, experiment: experiment, options: running.runOptions(overrides: try assignments))
    try finish(try runExperiment(plan))
  }
}

/// Ends a command with the exit code of a run's outcome (0 when it completed).
func finish(_ outcome: RunOutcome) throws {
  if outcome.exitCode != 0 { throw ExitCode(outcome.exitCode) }
}
