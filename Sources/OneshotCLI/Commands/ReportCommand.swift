import ArgumentParser
import Experiments
import Foundation
import Reports
import ResultsStore
import Support

extension ReportFormat: ExpressibleByArgument {}
extension RunStatus: ExpressibleByArgument {}

/// `oneshot-bench report`: the recorded runs as a table, CSV, JSON, markdown or an HTML page
/// with charts; or their seed groups; or one run in full.
struct ReportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "report", abstract: "List recorded runs with their hyperparameters and accuracies (or their seed groups, or one run in full); --format html draws charts.")

  @OptionGroup var store: StoreOptions
  @Option(help: "table, csv (RFC 4180), json, markdown or html (one self-contained page with charts).") var format: ReportFormat = .table
  @Option(help: "Only runs of this experiment.") var experiment: String?
  @Option(help: "Only runs with this status: running, completed, failed, interrupted.") var status: RunStatus?
  @Option(help: "Only the newest N runs.") var last: Int?
  @Option(name: .customLong("run"), help: "One run in full (id or unique prefix), with per-alphabet breakdowns.") var runID: String?
  @Flag(help: "One row per seed group (completed runs whose configurations differ only by seed): mean over seeds, 95% interval across seeds and over the pooled episodes.")
  var groupSeeds = false
  @Flag(
    help:
      "The methods side by side: one row per recipe (seed group) with its method, the mean per protocol and its interval, the paired difference from the best row on the same episodes, and the method's published figure where one exists; in every format.")
  var leaderboard = false
  @Option(help: "With --format html: the run whose per-alphabet accuracy is charted; give it twice to compare two runs (default: the newest completed run).")
  var focus: [String] = []
  @Option(help: "Write the report to this file instead of standard output.") var output: String?
  @Flag(help: "Table and markdown: every listed setting and full protocol names (the default fits 120 columns).") var wide = false

  func validate() throws {
    if let last, last < 1 { throw ValidationError("--last must be at least 1") }
    if focus.count > 2 { throw ValidationError("--focus takes one run, or two to compare") }
    if !focus.isEmpty && format != .html { throw ValidationError("--focus is for --format html") }
    if groupSeeds && runID != nil { throw ValidationError("--group-seeds lists groups of runs; drop --run") }
    if leaderboard && (runID != nil || groupSeeds || !focus.isEmpty) { throw ValidationError("--leaderboard ranks every selected recipe; drop --run, --group-seeds and --focus") }
  }

  func run() throws {
    let database = try store.existing()
    let runs = try runID.map { [try database.run($0).summary] } ?? database.listRuns(experiment: experiment, status: status, last: last)
    let selection = [experiment.map { "experiment \($0)" }, status.map { "status \($0.rawValue)" }, last.map { "newest \($0)" }, runID.map { "run \($0)" }].compactMap { $0 }
      .joined(separator: ", ")
    if runs.isEmpty {
      // Nothing to list is the user's to know, in every format alike: one line, exit 2.
      let message = "no runs match \(selection.isEmpty ? "(the store is empty)" : selection) in \(store.path)"
      throw UserFacingError(format == .html ? "\(message); nothing to draw, nothing written" : "\(message); `oneshot-bench report` lists every run")
    }
    let (rows, protocols) = try reportRows(store: database, runs: runs)
    let text: String
    switch (format, groupSeeds, runID) {
    case _ where leaderboard:
      let completed = rows.filter { $0.summary.status == .completed }
      guard !completed.isEmpty else { throw UserFacingError("no completed run among the selected runs; a leaderboard ranks completed runs") }
      text = renderLeaderboard(try Reports.leaderboard(rows, protocols: protocols, store: database), protocols: protocols, format: format) + (format == .csv ? "" : "\n")
    case (.html, _, _):
      let hasMetrics = try rows.contains { row in try !row.results.isEmpty || !database.metrics(runID: row.summary.id, key: MetricKey.trainingLoss).isEmpty }
      guard hasMetrics else { throw UserFacingError("the selected runs have neither results nor training metrics; nothing to draw, nothing written") }
      text = try renderHTMLReport(
        store: database, rows: rows, protocols: protocols, groups: try seedGroups(rows, store: database),
        options: HTMLReportOptions(storeDescription: store.path, selection: selection, focus: focus))
    case (_, true, _):
      text = renderSeedGroups(try seedGroups(rows, store: database), protocols: protocols, format: format) + (format == .csv ? "" : "\n")
    case (.csv, false, _), (_, false, nil):
      text = renderReport(rows, protocols: protocols, format: format, wide: wide) + (format == .csv ? "" : "\n")
    case (_, false, .some(let id)):
      text = try renderRunDetail(try database.run(id), store: database, format: format) + "\n"
    }
    if let output {
      try OutputFile.write(Data(Secrets.redacted(text).utf8), to: output, inputs: [store.path])
      printNote("wrote \(output)")
    } else {
      print(text, terminator: "")
    }
  }
}
