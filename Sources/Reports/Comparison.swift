import Foundation
import ResultsStore
import Support

// `compare A B`: the paired difference of two runs, or of two seed groups, per protocol, over
// the episodes both sides scored. A group's episode score is the mean over its seeds, so the
// difference is pooled across seeds.

/// One side of a comparison: a run, or the runs of a seed group.
public struct ComparisonSide {
  /// How it is named in the output: a run id, or `group KEY (experiment, N seeds)`.
  public let name: String
  /// Its completed runs (one for a run).
  public let runs: [ReportRow]
  /// True for a seed group.
  public let isGroup: Bool

  /// Resolves `text`: a run id or unique prefix first; else a seed-group key (or prefix), or
  /// an experiment name whose completed runs form one group.
  public static func resolve(_ text: String, store: ResultsStore) throws -> ComparisonSide {
    do {
      let id = try store.resolveRunID(text)
      let (rows, _) = try reportRows(store: store, runs: [try store.run(id).summary])
      return ComparisonSide(name: id, runs: rows, isGroup: false)
    } catch StoreError.noSuchRun {
      let (rows, _) = try reportRows(store: store, runs: try store.listRuns(status: .completed))
      let groups = try seedGroups(rows, store: store)
      var matches = groups.filter { $0.key.hasPrefix(text) && text.count >= 4 }
      if matches.isEmpty { matches = groups.filter { $0.experiment == text } }
      guard !matches.isEmpty else {
        throw ReportError("\(text) names no run, seed group or experiment with completed runs; `oneshot-bench report --group-seeds` lists the groups")
      }
      guard matches.count == 1 else {
        throw ReportError("\(text) matches \(matches.count) seed groups (\(matches.map(\.key).joined(separator: ", "))); give one group key from `report --group-seeds`")
      }
      let group = matches[0]
      return ComparisonSide(name: "group \(group.key) (\(group.experiment), seeds \(group.seeds.joined(separator: ",")))", runs: group.runs, isGroup: true)
    }
  }

  /// Per episode index, the mean accuracy over this side's runs; only episodes every run scored.
  func episodeScores(_ protocolName: String, store: ResultsStore) throws -> [Int: (accuracy: Double, correct: Int, total: Int)] {
    var sums: [Int: (accuracy: Double, correct: Int, total: Int, runs: Int)] = [:]
    for run in runs {
      for row in try store.episodeRows(runID: run.summary.id, protocolName: protocolName) {
        let s = sums[row.episode] ?? (0, 0, 0, 0)
        sums[row.episode] = (s.accuracy + Double(row.correct) / Double(row.total), s.correct + row.correct, s.total + row.total, s.runs + 1)
      }
    }
    return sums.filter { $0.value.runs == runs.count }.mapValues { ($0.accuracy / Double($0.runs), $0.correct, $0.total) }
  }
}

/// The comparison as markdown: one row per shared protocol, and the notes that qualify it.
public func renderComparison(_ a: ComparisonSide, _ b: ComparisonSide, store: ResultsStore) throws -> String {
  let names = Set(a.runs.flatMap { $0.results.keys }).intersection(b.runs.flatMap { $0.results.keys }).sorted()
  guard !names.isEmpty else { throw ReportError("\(a.name) and \(b.name) share no protocol") }
  var rows: [[String]] = []
  for name in names {
    let accuracyA = Statistics.mean(a.runs.compactMap { $0.results[name]?.accuracy }), accuracyB = Statistics.mean(b.runs.compactMap { $0.results[name]?.accuracy })
    // Episodes are paired by index only when both sides drew the same episodes.
    let digests = Set((a.runs + b.runs).map { $0.tags[TagKey.episodes(name)] ?? "unknown" })
    guard digests.count == 1, !digests.contains("unknown") else {
      throw ReportError(
        "protocol \(name): \(a.name) and \(b.name) \(digests.contains("unknown") ? "do not all record which episodes they scored (older runs)" : "scored different episodes (another seed or spec)"), so their episodes cannot be paired")
    }
    let scoresA = try a.episodeScores(name, store: store), scoresB = try b.episodeScores(name, store: store)
    let shared = Set(scoresA.keys).intersection(scoresB.keys).sorted()
    let cells = [name, String(format: "%.2f%%", 100 * accuracyA), String(format: "%.2f%%", 100 * accuracyB)]
    guard shared.count >= 2 else {
      rows.append(cells + [String(format: "%+.2f", 100 * (accuracyA - accuracyB)), "no shared episodes", "intervals only"])
      continue
    }
    let d = Statistics.paired(shared.map { scoresA[$0]!.accuracy }, shared.map { scoresB[$0]!.accuracy })
    var verdict = d.pValue < 0.05 ? (d.mean > 0 ? "A better" : "B better") : "no significant difference"
    var test = String(format: "paired t, p = %.3g", d.pValue)
    if !a.isGroup && !b.isGroup && shared.allSatisfy({ scoresA[$0]!.total == 1 && scoresB[$0]!.total == 1 }) {
      let onlyA = shared.filter { scoresA[$0]!.correct == 1 && scoresB[$0]!.correct == 0 }.count
      let onlyB = shared.filter { scoresA[$0]!.correct == 0 && scoresB[$0]!.correct == 1 }.count
      let p = Statistics.mcNemarP(onlyA: onlyA, onlyB: onlyB)
      test = String(format: "McNemar, p = %.3g", p)
      verdict = p < 0.05 ? (onlyA > onlyB ? "A better" : "B better") : "no significant difference"
    }
    rows.append(cells + [String(format: "%+.2f [%+.2f, %+.2f]", 100 * d.mean, 100 * d.low, 100 * d.high), "\(shared.count) shared episodes, \(test)", verdict])
  }
  var out = "A = \(a.name)\nB = \(b.name)\n\n"
  out += markdownTable(["protocol", "A", "B", "A - B (95% CI, points)", "test", "verdict"], rows)
  if a.isGroup || b.isGroup {
    out += "\n\nEach episode's score is the mean over a group's seeds; the test pairs episodes, so its interval covers episode sampling with training noise averaged over the seeds."
  } else if a.runs[0].group == b.runs[0].group {
    out += "\n\nThese two runs differ only by seed: the test covers the sampling of episodes, not training noise, so it says nothing about the recipe. For a claim about a recipe, compare seed groups (`report --group-seeds`, then `compare GROUP_A GROUP_B`)."
  }
  return out
}
