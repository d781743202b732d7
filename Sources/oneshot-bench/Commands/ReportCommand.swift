import ArgumentParser
import Foundation
import Reports
import ResultsStore

extension ReportFormat: ExpressibleByArgument {}
extension RunStatus: ExpressibleByArgument {}

/// `oneshot-bench report`: the recorded runs as a table, CSV, JSON or markdown.
struct ReportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "report", abstract: "List recorded runs with their hyperparameters and accuracies, or one run in full.")

  @OptionGroup var store: StoreOptions
  @Option(help: "table, csv (RFC 4180), json or markdown.") var format: ReportFormat = .table
  @Option(help: "Only runs of this experiment.") var experiment: String?
  @Option(help: "Only runs with this status: running, completed, failed, interrupted.") var status: RunStatus?
  @Option(help: "Only the newest N runs.") var last: Int?
  @Option(name: .customLong("run"), help: "One run in full (id or unique prefix), with per-alphabet breakdowns.") var runID: String?

  func validate() throws {
    if let last, last < 1 { throw ValidationError("--last must be at least 1") }
  }

  func run() throws {
    guard FileManager.default.fileExists(atPath: store.path) else {
      throw UserFacingError("no results store at \(store.path); run an experiment first (oneshot-bench run experiments/ci-smoke.json) or pass --store")
    }
    let database = try ResultsStore(path: store.path)
    if let runID {
      let detail = try database.run(runID)
      if format == .csv {
        let (rows, protocols) = try reportRows(store: database, runs: [detail.summary])
        print(renderReport(rows, protocols: protocols, format: .csv), terminator: "")
      } else {
        print(try renderRunDetail(detail, store: database, format: format))
      }
      return
    }
    let runs = try database.listRuns(experiment: experiment, status: status, last: last)
    let (rows, protocols) = try reportRows(store: database, runs: runs)
    print(renderReport(rows, protocols: protocols, format: format), terminator: format == .csv ? "" : "\n")
  }
}
