import ArgumentParser
import Experiments
import Foundation
import Reports
import ResultsStore
import Support

/// `oneshot-bench export`: recorded runs in another tool's format.
struct ExportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "export", abstract: "Write recorded runs in another tool's format (mlflow: MLflow's file store, for `mlflow ui`).",
    subcommands: [ExportMLflowCommand.self])
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
