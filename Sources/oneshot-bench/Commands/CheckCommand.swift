import ArgumentParser
import Episodes
import Foundation
import Reports
import Support
import ResultsStore

/// `oneshot-bench check`: the CI accuracy gate. Exit 0 nothing regressed, 1 a regression,
/// 2 a harness error (missing run, unreadable baseline).
struct CheckCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "check", abstract: "Compare a run's accuracy with a baseline; exit 1 on a regression (for CI).")

  @OptionGroup var store: StoreOptions
  @Option(name: .customLong("run"), help: "The run to check (id or unique prefix).") var runID: String?
  @Option(help: "Check the newest completed run of this experiment.") var latest: String?
  @Option(help: "Baseline: a JSON file from --write-baseline, or a run id in the store.") var baseline: String?
  @Option(help: "Accuracy drop (fraction) tolerated before a significant drop counts as a regression.") var tolerance: Double = 0.02
  @Option(help: "Write the run's results as a baseline file instead of checking.") var writeBaseline: String?
  @Flag(help: "Fail when any protocol's accuracy differs from the baseline at all, up or down (for a fixed shipped model).")
  var exact = false

  func validate() throws {
    if (runID == nil) == (latest == nil) { throw ValidationError("give exactly one of --run ID or --latest EXPERIMENT") }
    if (baseline == nil) == (writeBaseline == nil) { throw ValidationError("give --baseline FILE|RUN_ID to check, or --write-baseline FILE to write one") }
    if !(0..<1).contains(tolerance) { throw ValidationError("--tolerance is a fraction in [0, 1), e.g. 0.02") }
  }

  func run() throws {
    guard FileManager.default.fileExists(atPath: store.path) else { throw UserFacingError("no results store at \(store.path); pass --store") }
    let database = try ResultsStore(path: store.path)
    let runID: String
    if let given = self.runID {
      runID = try database.resolveRunID(given)
    } else {
      guard let found = try database.latestCompletedRun(experiment: latest!) else { throw UserFacingError("no completed run of experiment \(latest!) in \(store.path)") }
      runID = found.id
    }
    if let writeBaseline {
      let frozen = try Baseline.from(store: database, runID: runID)
      guard !frozen.protocols.isEmpty else { throw UserFacingError("run \(runID) has no results to freeze") }
      try frozen.write(writeBaseline)
      print(
        "wrote baseline \(writeBaseline) from run \(runID): "
          + frozen.protocols.map { String(format: "%@ %.2f%%", $0.result.protocolName, 100 * $0.result.accuracy) }.joined(separator: ", "))
      return
    }
    let reference: Baseline
    if let baseline, FileManager.default.fileExists(atPath: baseline) {
      reference = try Baseline.load(baseline)
    } else {
      reference = try Baseline.from(store: database, runID: try database.resolveRunID(baseline!))
    }
    let verdicts = try compareWithBaseline(reference, store: database, runID: runID, tolerance: tolerance)
    print(verdictMarkdown(verdicts, runID: runID, baselineName: baseline!, tolerance: tolerance))
    if verdicts.contains(where: \.regressed) { throw ExitCode(1) }
    if exact, let moved = verdicts.first(where: { $0.current != $0.baseline }) {
      printError(String(format: "%@ moved from %.4f to %.4f; the shipped model's numbers must not change", moved.protocolName, moved.baseline, moved.current))
      throw ExitCode(1)
    }
  }
}

/// `oneshot-bench compare A B`: the paired difference of two runs per protocol.
struct CompareCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "compare", abstract: "Paired per-protocol difference of two runs with its 95% CI and significance.")

  @OptionGroup var store: StoreOptions
  @Argument(help: "First run (id or prefix).") var runA: String
  @Argument(help: "Second run (id or prefix).") var runB: String

  func run() throws {
    guard FileManager.default.fileExists(atPath: store.path) else { throw UserFacingError("no results store at \(store.path); pass --store") }
    let database = try ResultsStore(path: store.path)
    let a = try database.resolveRunID(runA), b = try database.resolveRunID(runB)
    let resultsA = try database.results(runID: a), resultsB = try database.results(runID: b)
    var rows: [[String]] = []
    for ra in resultsA {
      guard let rb = resultsB.first(where: { $0.protocolName == ra.protocolName }) else { continue }
      let aligned = try database.alignedEpisodes(runA: a, runB: b, protocolName: ra.protocolName)
      let diff = String(format: "%+.2f", 100 * (ra.accuracy - rb.accuracy))
      if aligned.count >= 2 {
        let d = Statistics.paired(aligned.map { Double($0.a.correct) / Double($0.a.total) }, aligned.map { Double($0.b.correct) / Double($0.b.total) })
        var verdict = d.pValue < 0.05 ? (d.mean > 0 ? "A better" : "B better") : "no significant difference"
        var test = String(format: "paired t, p = %.3g", d.pValue)
        if aligned.allSatisfy({ $0.a.total == 1 && $0.b.total == 1 }) {
          let onlyA = aligned.filter { $0.a.correct == 1 && $0.b.correct == 0 }.count, onlyB = aligned.filter { $0.a.correct == 0 && $0.b.correct == 1 }.count
          let p = Statistics.mcNemarP(onlyA: onlyA, onlyB: onlyB)
          test = String(format: "McNemar, p = %.3g", p)
          verdict = p < 0.05 ? (onlyA > onlyB ? "A better" : "B better") : "no significant difference"
        }
        rows.append([
          ra.protocolName, String(format: "%.2f%%", 100 * ra.accuracy), String(format: "%.2f%%", 100 * rb.accuracy),
          String(format: "%+.2f [%+.2f, %+.2f]", 100 * d.mean, 100 * d.low, 100 * d.high), "\(aligned.count) shared episodes, \(test)", verdict,
        ])
      } else {
        rows.append([ra.protocolName, String(format: "%.2f%%", 100 * ra.accuracy), String(format: "%.2f%%", 100 * rb.accuracy), diff, "no shared episodes", "intervals only"])
      }
    }
    guard !rows.isEmpty else { throw UserFacingError("runs \(a) and \(b) share no protocol") }
    print("A = \(a)\nB = \(b)\n")
    print(markdownTable(["protocol", "A", "B", "A - B (95% CI, points)", "test", "verdict"], rows))
  }
}
