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

/// Why a protocol's episodes can be paired across the two sides, or why not (nil: they can).
func pairingProblem(_ name: String, _ a: ComparisonSide, _ b: ComparisonSide) -> String? {
  let runs = a.runs + b.runs
  let digests = Set(runs.map { $0.tags[TagKey.episodes(name)] ?? "unknown" })
  if digests.count == 1 && !digests.contains("unknown") { return nil }
  // Episode i is a pure function of the sequence (split, spec, seed) and the data: runs of one
  // sequence share their first episodes even when they scored different numbers of them.
  let sequences = Set(runs.map { $0.tags[TagKey.sequence(name)] ?? "unknown" })
  let data = Set(runs.map { $0.provenance["dataset_fingerprint"] ?? "unknown" })
  if sequences.count == 1 && !sequences.contains("unknown") && data.count == 1 { return nil }
  if digests.contains("unknown") && sequences.contains("unknown") { return "not every run records which episodes it scored (older runs)" }
  if data.count > 1 { return "the runs read different data" }
  return "the runs drew different episodes (another seed, spec or split)"
}

/// The comparison as markdown: one row per protocol both sides scored on the same episodes,
/// a line for each protocol skipped and why, and the notes that qualify it. Refused only when
/// no protocol can be compared.
public func renderComparison(_ a: ComparisonSide, _ b: ComparisonSide, store: ResultsStore) throws -> String {
  let names = Set(a.runs.flatMap { $0.results.keys }).intersection(b.runs.flatMap { $0.results.keys }).sorted()
  guard !names.isEmpty else { throw ReportError("\(a.name) and \(b.name) share no protocol") }
  var rows: [[String]] = []
  var skipped: [String] = []
  for name in names {
    if let problem = pairingProblem(name, a, b) {
      skipped.append("\(name): \(problem)")
      continue
    }
    let scoresA = try a.episodeScores(name, store: store), scoresB = try b.episodeScores(name, store: store)
    let shared = Set(scoresA.keys).intersection(scoresB.keys).sorted()
    guard shared.count >= 2 else {
      skipped.append("\(name): fewer than two episodes both sides scored")
      continue
    }
    rows.append(comparisonRow(name, shared: shared, scoresA, scoresB, pooled: a.isGroup || b.isGroup))
  }
  guard !rows.isEmpty else {
    throw ReportError("\(a.name) and \(b.name) share no protocol scored on the same episodes (\(skipped.joined(separator: "; ")))")
  }
  func mark(_ side: ComparisonSide) -> String { side.runs.contains(where: \.transductive) ? " (\(transductiveMark))" : "" }
  var out = "A = \(a.name)\(mark(a))\nB = \(b.name)\(mark(b))\n\n"
  out += markdownTable(["protocol", "A", "B", "A - B (95% CI, points)", "test", "verdict"], rows)
  out += "\n\nA and B: accuracy over the episodes both scored."
  if !skipped.isEmpty { out += "\n\nNot compared: " + skipped.joined(separator: "; ") + "." }
  out += comparisonNote(a, b)
  if a.runs.contains(where: \.transductive) != b.runs.contains(where: \.transductive) { out += "\n\n" + transductiveLegend + ": one side is transductive, the other inductive." }
  return out
}

/// One protocol's row: accuracies over the shared episodes and the paired test.
func comparisonRow(_ name: String, shared: [Int], _ scoresA: [Int: (accuracy: Double, correct: Int, total: Int)], _ scoresB: [Int: (accuracy: Double, correct: Int, total: Int)], pooled: Bool) -> [String] {
  let accuracyA = Statistics.mean(shared.map { scoresA[$0]!.accuracy }), accuracyB = Statistics.mean(shared.map { scoresB[$0]!.accuracy })
  let d = Statistics.paired(shared.map { scoresA[$0]!.accuracy }, shared.map { scoresB[$0]!.accuracy })
  var verdict = d.pValue < 0.05 ? (d.mean > 0 ? "A better" : "B better") : "no significant difference"
  var test = String(format: "paired t, p = %.3g", d.pValue)
  if !pooled && shared.allSatisfy({ scoresA[$0]!.total == 1 && scoresB[$0]!.total == 1 }) {
    let onlyA = shared.filter { scoresA[$0]!.correct == 1 && scoresB[$0]!.correct == 0 }.count
    let onlyB = shared.filter { scoresA[$0]!.correct == 0 && scoresB[$0]!.correct == 1 }.count
    let p = Statistics.mcNemarP(onlyA: onlyA, onlyB: onlyB)
    test = String(format: "McNemar, p = %.3g", p)
    verdict = p < 0.05 ? (onlyA > onlyB ? "A better" : "B better") : "no significant difference"
  }
  return [
    name, String(format: "%.2f%%", 100 * accuracyA), String(format: "%.2f%%", 100 * accuracyB), String(format: "%+.2f [%+.2f, %+.2f]", 100 * d.mean, 100 * d.low, 100 * d.high),
    "\(shared.count) shared episodes, \(test)", verdict,
  ]
}

/// What the test covers, for these two sides.
func comparisonNote(_ a: ComparisonSide, _ b: ComparisonSide) -> String {
  if a.isGroup || b.isGroup {
    return "\n\nEach episode's score is the mean over a group's seeds; the test pairs episodes, so its interval covers episode sampling with training noise averaged over the seeds."
  }
  if a.runs[0].summary.id == b.runs[0].summary.id { return "\n\nA and B are the same run: every difference is zero by construction." }
  if a.runs[0].group == b.runs[0].group && a.runs[0].params["seed"] != b.runs[0].params["seed"] {
    return "\n\nThese two runs differ only by seed: the test covers the sampling of episodes, not training noise, so it says nothing about the recipe. For a claim about a recipe, compare seed groups (`report --group-seeds`, then `compare GROUP_A GROUP_B`)."
  }
  return ""
}
