import ArgumentParser
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
      so a job array can be submitted again safely. The task index comes from --task, else SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX; \
      the task count from --tasks, else SLURM_ARRAY_TASK_COUNT (default: one task per configuration).
      """)

  @Argument(help: "Experiment file, e.g. experiments/ci-smoke.json.") var experiment: String
  @Option(name: .customLong("grid"), help: ArgumentHelp("Values of a key (repeatable), e.g. --grid training.optimizer.learningRate=0.001,0.003.", valueName: "key.path=v1,v2"))
  var grids: [String] = []
  @Option(help: "Seeds of every configuration: 1-5, 1,2,7 or 3.") var seeds: String?
  @Flag(help: "Print the configurations (index, configuration hash, assignments) and run nothing.") var list = false
  @Option(help: "Run only this task's share (0-based).") var task: Int?
  @Option(help: "Number of tasks the configurations are shared among.") var tasks: Int?
  @OptionGroup var store: StoreOptions
  @Option(help: "Folder for run checkpoints (runs/<run-id>/).") var runs: String = "runs"
  @Option(name: .customLong("data"), help: "Dataset folder (overrides the experiment file).") var dataPath: String?
  @Option(help: "Threads (overrides the experiment file).") var threads: Int?

  func run() throws {
    let sweep = Sweep(file: experiment, axes: try grids.map(SweepAxis.init), seeds: try seeds.map(parseSeeds))
    let items = try sweep.items()
    if list {
      print(textTable(["index", "config", "assignments"], items.map { [String($0.index), String($0.config.hash.prefix(12)), $0.overrides.map(\.text).joined(separator: " ")] }))
      return
    }
    let environment = ProcessInfo.processInfo.environment
    let taskText = task.map(String.init) ?? environment["SLURM_ARRAY_TASK_ID"] ?? environment["JOB_COMPLETION_INDEX"]
    let taskIndex = try taskText.map { text -> Int in
      guard let value = Int(text) else { throw UserFacingError("task index '\(text)' is not a number; give --task N (0-based) or unset SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX") }
      return value
    }
    let taskCount = try (tasks.map(String.init) ?? environment["SLURM_ARRAY_TASK_COUNT"]).map { text -> Int in
      guard let value = Int(text), value >= 1 else { throw UserFacingError("task count '\(text)' is not a positive number") }
      return value
    } ?? (taskIndex == nil ? 1 : items.count)
    if let taskIndex, !(0..<taskCount).contains(taskIndex) {
      throw UserFacingError("task \(taskIndex) is out of range: \(taskCount) task\(taskCount == 1 ? "" : "s") (0...\(taskCount - 1)) share \(items.count) configurations")
    }
    let share = taskShare(count: items.count, task: taskIndex ?? 0, tasks: taskCount)
    FileHandle.standardError.write(Data("sweep: \(items.count) configurations; this task runs \(share.count): \(share.map(String.init).joined(separator: ","))\n".utf8))
    var failures = 0
    for index in share {
      let item = items[index]
      let options = RunOptions(storePath: store.path, threads: threads, overrides: item.overrides, evalOnlyCheckpoint: nil, resumeRunID: nil, dataPath: dataPath, runsFolder: runs)
      let label = "[\(index)] \(item.overrides.map(\.text).joined(separator: " "))"
      // Completed: skip. Interrupted (or killed): resume. Another live process: leave it.
      let previous = ResultsStore.isServerURL(store.path) || FileManager.default.fileExists(atPath: store.path)
        ? try ResultsStore(path: store.path).listRuns(experiment: item.config.name).filter { $0.configHash == item.config.hash } : []
      if let done = previous.first(where: { $0.status == .completed }) {
        FileHandle.standardError.write(Data("sweep \(label): completed as run \(done.id); skipped\n".utf8))
        continue
      }
      let code: Int32
      if let unfinished = previous.first(where: { $0.status == .interrupted || $0.status == .running }) {
        FileHandle.standardError.write(Data("sweep \(label): resuming run \(unfinished.id)\n".utf8))
        var resume = options
        resume.overrides = []
        resume.resumeRunID = unfinished.id
        do {
          code = try runExperiment(configPath: nil, options: resume)
        } catch StoreError.runInUse(let id, let owner, _) {
          FileHandle.standardError.write(Data("sweep \(label): run \(id) is being run by \(owner); left to it\n".utf8))
          continue
        } catch let missing as NoCheckpointToResume {
          // Stopped before its first checkpoint: nothing to resume, so it starts again, and the
          // old row is closed as failed so that no later sweep tries to resume it again (and,
          // finding no checkpoint, starts the configuration a third time).
          FileHandle.standardError.write(Data("sweep \(label): run \(missing.runID) stopped before its first checkpoint; starting again\n".utf8))
          try ResultsStore(path: store.path).finishRun(
            missing.runID, status: .failed, error: "stopped before its first checkpoint; the sweep started the configuration again as a new run")
          code = try runExperiment(configPath: experiment, options: options)
        }
      } else {
        FileHandle.standardError.write(Data("sweep \(label): starting\n".utf8))
        code = try runExperiment(configPath: experiment, options: options)
      }
      if code == 130 || code == 143 { throw ExitCode(code) }
      if code != 0 { failures += 1 }
    }
    if failures > 0 { throw ExitCode(1) }
  }
}
