import Experiments
import ArgumentParser
import Episodes
import Foundation
import Reports
import Support
import ResultsStore

extension RunMode: ExpressibleByArgument {}

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
  @Option(help: "With --latest: the newest run of this mode, train, eval-only or external (default: the baseline's run's mode).") var mode: RunMode?

  func validate() throws {
    if (runID == nil) == (latest == nil) { throw ValidationError("give exactly one of --run ID or --latest EXPERIMENT") }
    if (baseline == nil) == (writeBaseline == nil) { throw ValidationError("give --baseline FILE|RUN_ID to check, or --write-baseline FILE to write one") }
    if !(0..<1).contains(tolerance) { throw ValidationError("--tolerance is a fraction in [0, 1), e.g. 0.02") }
    if mode != nil && latest == nil { throw ValidationError("--mode chooses among runs for --latest") }
  }

  func run() throws {
    let database = try store.existing()
    var reference: Baseline? = nil
    if let baseline {
      reference = try FileManager.default.fileExists(atPath: baseline) ? Baseline.load(baseline) : Baseline.from(store: database, runID: try database.resolveRunID(baseline))
    }
    let runID: String
    if let given = self.runID {
      runID = try database.resolveRunID(given)
    } else {
      let wanted = mode ?? reference?.mode
      let candidates = try database.listRuns(experiment: latest!, status: .completed)
      guard let found = try candidates.first(where: { run in try wanted == nil || RunMode(tags: try database.run(run.id).tags) == wanted }) else {
        throw UserFacingError("no completed \(wanted.map { "\($0.rawValue) " } ?? "")run of experiment \(latest!) in \(store.path)\(wanted != nil && !candidates.isEmpty ? "; pass --mode to check a run of another mode" : "")")
      }
      runID = found.id
    }
    if let writeBaseline {
      let frozen = try Baseline.from(store: database, runID: runID)
      guard !frozen.protocols.isEmpty else { throw UserFacingError("run \(runID) has no results to freeze") }
      try frozen.write(writeBaseline, inputs: [store.path] + (baseline.map { [$0] } ?? []))
      print(
        "wrote baseline \(writeBaseline) from run \(runID): "
          + frozen.protocols.map { String(format: "%@ %.2f%%", $0.result.protocolName, 100 * $0.result.accuracy) }.joined(separator: ", "))
      return
    }
    let verdicts = try compareWithBaseline(reference!, store: database, runID: runID, tolerance: tolerance)
    let decision = GateDecision(verdicts: verdicts, exact: exact)
    print(decision.markdown(runID: runID, baselineName: baseline!, tolerance: tolerance))
    guard decision.passed else {
      if let moved = decision.moved.first, decision.regressed.isEmpty {
        printError(
          String(
            format: "%@ moved from %.4f to %.4f: run %@ does not reproduce baseline %@ exactly (--exact)", moved.protocolName, moved.baseline, moved.current, runID,
            baseline!))
      }
      throw ExitCode(1)
    }
  }
}

/// `oneshot-bench compare A B`: the paired difference of two runs, or of two seed groups, per protocol.
struct CompareCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "compare", abstract: "Paired per-protocol difference of two runs (or two seed groups, pooled across seeds) with its 95% CI and significance.")

  @OptionGroup var store: StoreOptions
  @Argument(help: "First run (id or prefix), or a seed group (its key from report --group-seeds, or an experiment name with one group).") var runA: String
  @Argument(help: "Second run or seed group.") var runB: String

  func run() throws {
    let database = try store.existing()
    print(try renderComparison(try ComparisonSide.resolve(runA, store: database), try ComparisonSide.resolve(runB, store: database), store: database))
  }
}
