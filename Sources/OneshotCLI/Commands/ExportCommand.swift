import ArgumentParser
import Experiments
import Foundation
import Reports
import ResultsStore
import Support

/// `oneshot-bench export`: recorded runs in another tool's format.
struct ExportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "export",
    abstract: "Write recorded runs in another tool's format (mlflow: MLflow's file store, for `mlflow ui`), or an experiment's episodes as NumPy arrays (episodes).",
    subcommands: [ExportMLflowCommand.self, ExportEpisodesCommand.self])
}

/// `oneshot-bench export episodes FILE --out DIR`: the episodes of an experiment's protocols as
/// NumPy arrays, as the harness scores them, for a library's own evaluation of the same episodes.
struct ExportEpisodesCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "episodes",
    abstract:
      "Write the episodes of an experiment's protocols as NumPy arrays (images at model.inputSize, labels, episode numbers; manifest.json), exactly as the harness scores them, so that a library can evaluate the same episodes itself.")

  @Argument(help: "Experiment file, e.g. experiments/protonet-vinyals.json.") var experiment: String
  @Option(help: "The folder to write: new, empty, or an earlier export.") var out: String
  @Option(name: .customLong("protocol"), help: "Only this protocol (its name in the experiment, e.g. evaluation-20way-1shot); repeatable.") var protocols: [String] = []
  @Option(
    name: .customLong("set"), help: ArgumentHelp("Override a key of the experiment file, as `run --set` does (e.g. evaluation.0.episodes=100).", valueName: "key.path=value"),
    transform: { try ConfigOverride($0) })
  var overrides: [ConfigOverride] = []
  @OptionGroup var data: DataOptions

  func validate() throws {
    if out.isEmpty || out.unicodeScalars.contains(where: { $0.value < 32 || $0.value == 127 }) { throw ValidationError("the export folder's name is empty or holds control characters") }
  }

  func run() throws {
    var config = try ExperimentConfig.load(experiment, overrides: overrides)
    let known = config.evaluation.map(\.name)
    if !protocols.isEmpty {
      for name in protocols where !known.contains(name) {
        throw UserFacingError("\(experiment) has no protocol '\(name)'; its protocols: \(known.joined(separator: ", "))")
      }
      config.evaluation = config.evaluation.filter { protocols.contains($0.name) }
    }
    let prepared = try ExperimentData.load(config, dataPath: data.given, training: nil).protocols
    let written = try EpisodeExport.write(prepared, to: URL(fileURLWithPath: out))
    for item in written {
      printNote("\(item.name): \(item.episodes) episodes of \(item.ways) classes x \(item.shots) shots, \(item.queries) queries -> \(out)/\(item.folder)")
    }
    printNote("wrote \(out)/\(EpisodeExport.manifestName); numpy.load(\"\(out)/\(written[0].folder)/support_images.npy\") reads an array")
  }
}

/// `oneshot-bench export mlflow DIR [filters]`.
struct ExportMLflowCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "mlflow",
    abstract: "Write the selected runs into DIR in MLflow's file-store layout (params, metric histories, results, tags, config, report and checkpoint as artifacts); `mlflow ui --backend-store-uri DIR` shows them. Exporting again is idempotent.")

  @Argument(help: "The folder to write: new, empty, or an earlier export.") var folder: String
  @OptionGroup var store: StoreOptions
  @Option(help: "Only runs of this experiment.") var experiment: String?
  @Option(help: "Only runs with this status: running, completed, failed, interrupted.") var status: RunStatus?
  @Option(help: "Only the newest N runs.") var last: Int?
  @Option(name: .customLong("run"), help: "Only this run (id or unique prefix); give it several times for several.") var runIDs: [String] = []

  func validate() throws {
    if let last, last < 1 { throw ValidationError("--last must be at least 1") }
    if folder.isEmpty || folder.unicodeScalars.contains(where: { $0.value < 32 || $0.value == 127 }) { throw ValidationError("the export folder's name is empty or holds control characters") }
  }

  func run() throws {
    let database = try store.existing()
    var runs: [RunSummary]
    if runIDs.isEmpty {
      runs = try database.listRuns(experiment: experiment, status: status, last: last)
    } else {
      runs = try runIDs.map { try database.run($0).summary }.filter { run in
        (experiment == nil || run.experiment == experiment) && (status == nil || run.status == status)
      }
    }
    var seen = Set<String>()
    runs = runs.filter { seen.insert($0.id).inserted }
    guard !runs.isEmpty else { throw UserFacingError("no runs match the selection in \(store.path); nothing written (`oneshot-bench report` lists the runs)") }
    let summary = try MLflowExport.export(runs, from: database, to: folder, storeDescription: store.path)
    printNote(
      "exported \(summary.runs) run\(summary.runs == 1 ? "" : "s") of \(summary.experiments) experiment\(summary.experiments == 1 ? "" : "s") to \(folder) (\(summary.filesWritten) files written, \(summary.filesUnchanged) unchanged); view with: mlflow ui --backend-store-uri \(folder)")
  }
}
