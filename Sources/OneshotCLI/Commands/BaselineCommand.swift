import Experiments
import ArgumentParser
import Episodes
import Foundation

/// `oneshot-bench baseline lake20 --scorer mhd|pixel`: the no-learning baselines on Lake's runs.
struct BaselineCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "baseline", abstract: "Score a no-learning baseline on Lake's 20 one-shot runs.")

  enum BenchmarkProtocol: String, ExpressibleByArgument, CaseIterable { case lake20 }
  enum Scorer: String, ExpressibleByArgument, CaseIterable { case mhd, pixel }

  @Argument(help: "Protocol (lake20).") var protocolName: BenchmarkProtocol = .lake20
  @Option(help: "mhd: Modified Hausdorff distance (Lake's demo); pixel: nearest neighbour on pixels.")
  var scorer: Scorer = .mhd
  @OptionGroup var data: DataOptions

  func run() throws {
    let runs = try LakeRuns.load(from: data.dataset)
    let evaluator = Evaluator(runs: runs)
    let summary: EvaluationSummary
    switch scorer {
    case .mhd: summary = try evaluator.evaluate(ModifiedHausdorff(), episodes: runs.scoringEpisodes)
    case .pixel: summary = try evaluator.evaluate(PixelNearestNeighbour(), episodes: runs.scoringEpisodes)
    }
    print(lakeReport(summary, runs: runs, title: scorer == .mhd ? "Modified Hausdorff distance" : "pixel nearest neighbour"))
  }
}

/// Lake's per-run error table and the mean, as his demo prints it.
func lakeReport(_ summary: EvaluationSummary, runs: LakeRuns, title: String) -> String {
  var lines = ["Lake's 20-way 1-shot runs (within alphabet), \(title)"]
  for (outcome, run) in zip(summary.episodes, runs.runs) {
    let name = run.alphabet.padding(toLength: 32, withPad: " ", startingAt: 0)
    lines.append(String(format: " run %02d  ", run.number) + name + String(format: " error %5.1f%%", 100 - 100 * outcome.accuracy))
  }
  lines.append(
    String(
      format: "mean error %.2f%%  (accuracy %.2f%% [%.2f, %.2f], 95%% CI over runs; %.2f s)", summary.meanErrorPercent, 100 * summary.accuracy,
      100 * summary.interval95.low, 100 * summary.interval95.high, summary.seconds))
  return lines.joined(separator: "\n")
}
