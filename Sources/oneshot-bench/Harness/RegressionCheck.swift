import Episodes
import Foundation
import Reports
import ResultsStore
import Support

/// A run's results frozen into a file for CI: `experiments/baselines/NAME.json`, written by
/// `check --write-baseline`, with the per-episode outcomes so later runs compare pair by pair.
struct Baseline: Codable, Equatable {
  struct ProtocolEntry: Codable, Equatable {
    var result: ProtocolResult
    /// (episode, correct, total) per episode.
    var episodes: [[Int]]
  }
  var formatVersion: Int
  var experiment: String
  var run: String
  var configHash: String
  var gitCommit: String?
  /// `train` or `eval-only`: `check --latest` takes the newest run of this mode (nil in
  /// baselines written before it was recorded: any mode).
  var mode: String?
  var protocols: [ProtocolEntry]

  static func from(store: ResultsStore, runID: String) throws -> Baseline {
    let detail = try store.run(runID)
    let entries = try detail.results.map { result in
      ProtocolEntry(result: result, episodes: try store.episodeRows(runID: runID, protocolName: result.protocolName).map { [$0.episode, $0.correct, $0.total] })
    }
    return Baseline(
      formatVersion: 1, experiment: detail.summary.experiment, run: detail.summary.id, configHash: detail.summary.configHash,
      gitCommit: detail.provenance.first { $0.key == "git_commit" }?.value, mode: detail.tags.first { $0.key == "mode" }?.value ?? "train", protocols: entries)
  }

  static func load(_ path: String) throws -> Baseline {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw UserFacingError("cannot read baseline \(path); write one with `oneshot-bench check --run ID --write-baseline \(path)`")
    }
    do {
      return try JSONDecoder().decode(Baseline.self, from: data)
    } catch {
      throw UserFacingError("baseline \(path) is not a oneshot-bench baseline (\(error)); rewrite it with `oneshot-bench check --write-baseline`")
    }
  }

  func write(_ path: String) throws {
    let encoder = JSONEncoder.canonical(pretty: true)
    let url = URL(fileURLWithPath: path)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try encoder.encode(self).write(to: url, options: .atomic)
  }
}

/// The verdict on one protocol.
struct ProtocolVerdict {
  let protocolName: String
  let baseline: Double
  let current: Double
  let difference: Double
  let low: Double
  let high: Double
  let paired: Bool
  let regressed: Bool
}

/// Compares a run with a baseline. A protocol regresses when its accuracy fell by more than
/// `tolerance` and the fall is significant: with paired episodes, the 95% CI of the mean
/// per-episode difference lies below zero; otherwise the two runs' 95% intervals do not overlap.
func compareWithBaseline(_ baseline: Baseline, store: ResultsStore, runID: String, tolerance: Double) throws -> [ProtocolVerdict] {
  let results = try store.results(runID: runID)
  var verdicts: [ProtocolVerdict] = []
  for entry in baseline.protocols {
    let base = entry.result
    guard let current = results.first(where: { $0.protocolName == base.protocolName }) else {
      throw UserFacingError("run \(runID) has no result for protocol \(base.protocolName) that the baseline has; did the experiment file change?")
    }
    let rows = try store.episodeRows(runID: runID, protocolName: base.protocolName)
    let baseByEpisode = Dictionary(uniqueKeysWithValues: entry.episodes.map { ($0[0], ($0[1], $0[2])) })
    let pairedRows = rows.compactMap { row -> (Double, Double)? in
      guard let b = baseByEpisode[row.episode], b.1 == row.total else { return nil }
      return (Double(row.correct) / Double(row.total), Double(b.0) / Double(b.1))
    }
    let difference = current.accuracy - base.accuracy
    if pairedRows.count == rows.count && rows.count == entry.episodes.count && rows.count >= 2 {
      let d = Statistics.paired(pairedRows.map(\.0), pairedRows.map(\.1))
      verdicts.append(
        ProtocolVerdict(
          protocolName: base.protocolName, baseline: base.accuracy, current: current.accuracy, difference: d.mean, low: d.low, high: d.high, paired: true,
          regressed: d.mean < -tolerance && d.high < 0))
    } else {
      let halfWidth = ((current.ciHigh - current.accuracy) * (current.ciHigh - current.accuracy) + (base.ciHigh - base.accuracy) * (base.ciHigh - base.accuracy)).squareRoot()
      verdicts.append(
        ProtocolVerdict(
          protocolName: base.protocolName, baseline: base.accuracy, current: current.accuracy, difference: difference, low: difference - halfWidth, high: difference + halfWidth,
          paired: false, regressed: difference < -tolerance && current.ciHigh < base.ciLow))
    }
  }
  return verdicts
}

/// The gate's decision: whether the run passes, and the markdown summary that says so. Both
/// come from the same verdicts, so the summary and the exit code cannot disagree.
struct GateDecision {
  let verdicts: [ProtocolVerdict]
  /// `--exact`: any change of accuracy, up or down, fails (a fixed model must reproduce).
  let exact: Bool

  /// Protocols whose accuracy changed at all, when that matters.
  var moved: [ProtocolVerdict] { exact ? verdicts.filter { $0.current != $0.baseline } : [] }
  var regressed: [ProtocolVerdict] { verdicts.filter(\.regressed) }
  var passed: Bool { regressed.isEmpty && moved.isEmpty }

  /// The markdown summary for a pull-request comment.
  func markdown(runID: String, baselineName: String, tolerance: Double) -> String {
    let headline = passed ? "passed" : (regressed.isEmpty ? "failed: not exact" : "failed: REGRESSION")
    var lines = ["### oneshot-bench accuracy check: \(headline)", ""]
    let rule = exact ? "exact: every accuracy must equal the baseline's" : "tolerance \(String(format: "%.1f", 100 * tolerance)) points"
    lines.append("Run `\(runID)` against baseline `\(baselineName)` (\(rule)).")
    lines.append("")
    let movedNames = Set(moved.map(\.protocolName))
    let rows = verdicts.map { v in
      [
        v.protocolName, String(format: "%.2f%%", 100 * v.baseline), String(format: "%.2f%%", 100 * v.current),
        String(format: "%+.2f [%+.2f, %+.2f]", 100 * v.difference, 100 * v.low, 100 * v.high), v.paired ? "paired episodes" : "intervals",
        v.regressed ? "**regressed**" : (movedNames.contains(v.protocolName) ? "**changed**" : "ok"),
      ]
    }
    lines.append(markdownTable(["protocol", "baseline", "this run", "difference (95% CI, points)", "test", "verdict"], rows))
    return lines.joined(separator: "\n")
  }
}
