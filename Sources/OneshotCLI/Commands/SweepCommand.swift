import ArgumentParser
import Experiments
import Foundation
import Reports
import ResultsStore

/// `oneshot-bench sweep FILE --grid key=v1,v2 [--seeds 1-5]`: list or run an experiment's
/// configurations; with `--task I --tasks N` only every N-th from I (a job array's task).
struct SweepCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sweep",
    abstract: "Expand an experiment over a grid of values and seeds; list the configurations, or run them (all, or one job-array task's share).",
    discussion: """
      Order: the --grid keys in the order given, the last varying fastest, seeds innermost; the same list on every machine. \
      A configuration already completed in the store is skipped, an interrupted one resumed, one that another live process runs left to it, \
      so a job array can be submitted again safely. Tasks: --task I --tasks T runs configurations I, I+T, ...; \
      a Slurm array that is a range (--array=0-3, 1-4, 0-10:2) is COUNT tasks, each its position in the range (1-based arrays work); \
      an array that is not a range (--array=1,3, resubmitting failed indices; or a single index) names configurations by task index; \
      a Kubernetes Indexed Job's JOB_COMPLETION_INDEX is index I of --tasks (default: one task per configuration). \
      A mapping that would leave a configuration to no task is refused.
      """)

  @Argument(help: "Experiment file, e.g. experiments/ci-smoke.json.") var experiment: String
  @Option(
    name: .customLong("grid"), help: ArgumentHelp("Values of a key (repeatable), e.g. --grid training.optimizer.learningRate=0.001,0.003.", valueName: "key.path=v1,v2"),
    transform: { try SweepAxis($0) })
  var grids: [SweepAxis] = []
  @Option(help: "Seeds of every configuration: 1-5, 1,2,7 or 3.", transform: { try parseSeeds($0) }) var seeds: [UInt64]?
  @Flag(help: "Print the configurations (index, configuration hash, assignments, and what the store holds of each) and run nothing.") var list = false
  @Option(help: "Run only this task's share (0-based).") var task: Int?
  @Option(help: "Number of tasks the configurations are shared among.") var tasks: Int?
  @OptionGroup var running: RunningOptions

  func run() throws {
    let items = try Sweep(file: experiment, axes: grids, seeds: seeds).items()
    if list {
      let rows = try items.map { [String($0.index), String($0.config.hash.prefix(12)), try storeState(of: $0), $0.overrides.map(\.text).joined(separator: " ")] }
      print(textTable(["index", "config", "in the store", "assignments"], rows))
      return
    }
    let assignment = try TaskAssignment(configurations: items.count, task: task, tasks: tasks, environment: ProcessInfo.processInfo.environment)
    let share = assignment.configurations
    printNote("sweep: \(items.count) configurations; \(assignment.description) runs \(share.count): \(share.map(String.init).joined(separator: ","))")
    var failures = 0, leftToOthers = 0
    for index in share {
      switch try runConfiguration(items[index]) {
      case .done: continue
      case .leftToAnother: leftToOthers += 1
      case .ran(let outcome):
        if outcome.isInterrupted { throw ExitCode(outcome.exitCode) }
        if outcome.exitCode != 0 { failures += 1 }
      }
    }
    if failures > 0 { throw ExitCode(1) }
    if leftToOthers > 0 {
      // Not done by this task, perhaps never (the other owner may be a dead task on another node
      // whose lease has not run out): a scheduler that retries failed tasks tries again later.
      printError(
        "\(leftToOthers) configuration\(leftToOthers == 1 ? " is" : "s are") being run by another process; this task leaves them and exits 75 (EX_TEMPFAIL) so that it is retried; a dead owner's run is taken over once its lease (ONESHOT_LEASE_SECONDS, \(Int(Lease.seconds)) s) runs out")
      throw ExitCode(75)
    }
  }

  /// What became of one configuration in this task.
  enum ConfigurationResult {
    /// Completed before (skipped).
    case done
    /// Another live process runs it (left to it).
    case leftToAnother
    /// This task ran (or resumed) it.
    case ran(RunOutcome)
  }

  /// The store's runs of `item`'s configuration (none when the store does not exist yet; it is
  /// not created by looking).
  func previousRuns(of item: Sweep.Item) throws -> [RunSummary] {
    guard ResultsStore.exists(running.store.path) else { return [] }
    return try ResultsStore(path: running.store.path).listRuns(experiment: item.config.name).filter { $0.configHash == item.config.hash }
  }

  /// What a sweep would do with `item`, as `--list` shows it: `done <run>`, `resume <run>`
  /// (interrupted, or running if its owner has died), or `to run`.
  func storeState(of item: Sweep.Item) throws -> String {
    let previous = try previousRuns(of: item)
    if let done = previous.first(where: { $0.status == .completed }) { return "done \(done.id.prefix(8))" }
    if let unfinished = previous.first(where: { $0.status == .interrupted || $0.status == .running }) { return "\(unfinished.status.rawValue) \(unfinished.id.prefix(8))" }
    return "to run"
  }

  /// Runs one configuration unless it is done or another live process runs it.
  /// Completed: skip. Interrupted (or killed): resume. Another live process: leave it.
  func runConfiguration(_ item: Sweep.Item) throws -> ConfigurationResult {
    let label = "[\(item.index)] \(item.overrides.map(\.text).joined(separator: " "))"
    let storePath = running.store.path
    let previous = try previousRuns(of: item)
    if let done = previous.first(where: { $0.status == .completed }) {
      printNote("sweep \(label): completed as run \(done.id); skipped")
      return .done
    }
    let fresh = { try runExperiment(try RunPlan(.fresh, experiment: experiment, options: running.runOptions(overrides: item.overrides))) }
    guard let unfinished = previous.first(where: { $0.status == .interrupted || $0.status == .running }) else {
      // Claimed in one transaction before any work (data loading takes seconds), so that two
      // tasks started at once never both run it; missing data is said first, creating no store.
      var options = running.runOptions(overrides: item.overrides)
      options.holdsConfigurationClaim = true
      var plan = try RunPlan(.fresh, experiment: experiment, options: options)
      try plan.requireData()
      let store = try ResultsStore(path: storePath)
      plan.use(store)  // one connection: the claim's is the run's
      let owner = RunRecording.thisProcess
      switch try store.claimConfiguration(experiment: item.config.name, configHash: item.config.hash, owner: owner, staleAfter: Lease.seconds, isAlive: RunRecording.isAlive) {
      case .done(let id):
        printNote("sweep \(label): completed as run \(id); skipped")
        return .done
      case .taken(let other):
        printNote("sweep \(label): claimed by \(other), which is starting it; left to it")
        return .leftToAnother
      case .claimed:
        // Renewed until the run's row exists (its own heartbeat keeps it from there).
        let heartbeat = ClaimHeartbeat(storePath: storePath, experiment: item.config.name, configHash: item.config.hash, owner: owner)
        plan.options.onRunRecorded = { heartbeat.stop() }
        defer {
          heartbeat.stop()
          try? store.releaseClaim(experiment: item.config.name, configHash: item.config.hash, owner: owner)
        }
        printNote("sweep \(label): starting")
        do {
          return .ran(try runExperiment(plan))
        } catch StoreError.claimLost(_, let other) {
          printNote("sweep \(label): taken over by \(other ?? "another task") while this task was starting; left to it")
          return .leftToAnother
        }
      }
    }
    printNote("sweep \(label): resuming run \(unfinished.id)")
    do {
      return .ran(try runExperiment(try RunPlan(.resume(runID: unfinished.id), experiment: nil, options: running.runOptions())))
    } catch StoreError.runInUse(let id, let owner, _) {
      printNote("sweep \(label): run \(id) is being run by \(owner); left to it")
      return .leftToAnother
    } catch StoreError.runElsewhere(let id, let source) {
      printNote("sweep \(label): run \(id) is running in \(source) (copied here while it ran); left to it")
      return .leftToAnother
    } catch StoreError.alreadyCompleted(let id) {
      // Another task finished it between the listing and the claim.
      printNote("sweep \(label): completed as run \(id) meanwhile; skipped")
      return .done
    } catch let missing as NoCheckpointToResume {
      // Stopped before its first checkpoint: nothing to resume, so it starts again, and the
      // old row is closed as failed so that no later sweep tries to resume it again (and,
      // finding no checkpoint, starts the configuration a third time).
      printNote("sweep \(label): run \(missing.runID) stopped before its first checkpoint; starting again")
      try ResultsStore(path: storePath).finishRun(missing.runID, status: .failed, error: "stopped before its first checkpoint; the sweep started the configuration again as a new run")
      return .ran(try fresh())
    }
  }
}
