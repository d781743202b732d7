import Episodes
import Foundation
import Reports
import ResultsStore
import Support

/// A run's results frozen into a file for CI: `experiments/baselines/NAME.json`, written by
/// `check --write-baseline`, with the per-episode outcomes so later runs compare pair by pair.
package struct Baseline: Codable, Equatable {
  package struct ProtocolEntry: Codable, Equatable {
    package var result: ProtocolResult
    /// (episode, correct, total) per episode.
    package var episodes: [[Int]]
    /// SHA-256 of the episodes' images (see `PreparedProtocol.episodeDigest`): a run is
    /// compared only on the same episodes.
    package var episodesDigest: String?
  }
  package var formatVersion: Int
  package var experiment: String
  package var run: String
  package var configHash: String
  package var gitCommit: String?
  /// The data the run read (Omniglot's archives, or an image folder).
  package var datasetFingerprint: String?
  /// `train` or `eval-only`: `check --latest` takes the newest run of this mode.
  package var mode: RunMode?
  package var protocols: [ProtocolEntry]

  /// Baselines written now; version 1 recorded no episode identity and is refused.
  package static let currentVersion = 2

  package static func from(store: ResultsStore, runID: String) throws -> Baseline {
    let detail = try store.run(runID)
    let tags = Dictionary(detail.tags.map { ($0.key, $0.value) }) { $1 }
    let entries = try detail.results.map { result in
      ProtocolEntry(
        result: result, episodes: try store.episodeRows(runID: runID, protocolName: result.protocolName).map { [$0.episode, $0.correct, $0.total] },
        episodesDigest: tags[TagKey.episodes(result.protocolName)])
    }
    return Baseline(
      formatVersion: currentVersion, experiment: detail.summary.experiment, run: detail.summary.id, configHash: detail.summary.configHash,
      gitCommit: detail.provenance.first { $0.key == "git_commit" }?.value, datasetFingerprint: detail.provenance.first { $0.key == "dataset_fingerprint" }?.value,
      mode: RunMode(tags: tags), protocols: entries)
  }

  package static func load(_ path: String) throws -> Baseline {
    if let problem = UserFile.problem(path, maximumBytes: 256 << 20) {
      throw UserFacingError("baseline \(path) \(problem); write one with `oneshot-bench check --run ID --write-baseline \(path)`")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw UserFacingError("cannot read baseline \(path); write one with `oneshot-bench check --run ID --write-baseline \(path)`")
    }
    return try decode(data, path: path)
  }

  /// Parses and checks baseline bytes; `path` names them in errors.
  package static func decode(_ data: Data, path: String) throws -> Baseline {
    if let problem = JSONScan.firstProblem([UInt8](data)) {
      throw UserFacingError("baseline \(path): \(problem.keyPath): \(problem.message); rewrite it with `oneshot-bench check --write-baseline`")
    }
    let baseline: Baseline
    do {
      baseline = try JSONDecoder().decode(Baseline.self, from: data)
    } catch {
      if case .dataCorrupted(let context)? = error as? DecodingError, context.codingPath.isEmpty,
        let problem = JSONScan.firstUnfittingNumber([UInt8](data), as: Baseline.self)
      {
        throw UserFacingError("baseline \(path): \(problem.keyPath): \(problem.message); rewrite it with `oneshot-bench check --write-baseline`")
      }
      throw UserFacingError("baseline \(path) is not a oneshot-bench baseline (\(describeDecodingError(error))); rewrite it with `oneshot-bench check --write-baseline`")
    }
    if let problem = baseline.problem() { throw UserFacingError("baseline \(path): \(problem); rewrite it with `oneshot-bench check --write-baseline`") }
    return baseline
  }

  /// What makes the baseline unusable, if anything: a gate must never pass on an empty or
  /// malformed baseline.
  package func problem() -> String? {
    guard formatVersion == Baseline.currentVersion else {
      return "format version \(formatVersion); this oneshot-bench reads version \(Baseline.currentVersion) (which records the episodes and data compared)"
    }
    guard !protocols.isEmpty else { return "it lists no protocol, so it would pass any run" }
    var names = Set<String>()
    for entry in protocols {
      let name = entry.result.protocolName
      guard names.insert(name).inserted else { return "protocol \(name) is listed twice" }
      guard entry.episodesDigest != nil else { return "protocol \(name) does not say which episodes it scored" }
      guard !entry.episodes.isEmpty, entry.episodes.count == entry.result.episodes else { return "protocol \(name) lists \(entry.episodes.count) episodes for \(entry.result.episodes)" }
      guard (0...1).contains(entry.result.accuracy) else { return "protocol \(name) has accuracy \(entry.result.accuracy)" }
      var seen = Set<Int>()
      for (i, e) in entry.episodes.enumerated() {
        guard e.count == 3, e[2] > 0, (0...e[2]).contains(e[1]), seen.insert(e[0]).inserted else {
          return "protocol \(name), episode entry \(i) is not [episode, correct, total] with 0 <= correct <= total, total > 0, each episode once"
        }
      }
      // The summary a reader sees must be the one the episodes give: the gate compares
      // episodes, so an edited accuracy or interval would show one baseline and test another.
      let outcomes = entry.episodes.map { EpisodeOutcome(index: $0[0], group: nil, correct: $0[1], total: $0[2]) }
      let summary = EvaluationSummary(episodes: outcomes, seconds: 0, embeddedImages: 0)
      guard abs(entry.result.accuracy - summary.accuracy) <= 1e-9 else {
        return "protocol \(name) says accuracy \(percent(entry.result.accuracy)) but its episodes add up to \(percent(summary.accuracy))"
      }
      let (low, high) = summary.interval95
      guard abs(entry.result.ciLow - low) <= 1e-9, abs(entry.result.ciHigh - high) <= 1e-9 else {
        return "protocol \(name) says 95% interval [\(percent(entry.result.ciLow)), \(percent(entry.result.ciHigh))] but its episodes give [\(percent(low)), \(percent(high))]"
      }
    }
    return nil
  }

  private func percent(_ value: Double) -> String { String(format: "%.4f%%", 100 * value) }

  package func write(_ path: String, inputs: [String] = []) throws {
    do {
      try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
    } catch {
      throw UserFacingError("cannot write baseline \(path) (\(failureReason(error, creatingFolder: URL(fileURLWithPath: path).deletingLastPathComponent().path))); choose a writable path")
    }
    try OutputFile.write(try JSONEncoder.canonical(pretty: true).encode(self), to: path, inputs: inputs)
  }
}

/// A decoding error in one line.
package func describeDecodingError(_ error: any Error) -> String {
  guard let error = error as? DecodingError else { return "\(error)" }
  switch error {
  case .keyNotFound(let key, let context): return "missing \((context.codingPath + [key]).map(\.stringValue).joined(separator: "."))"
  case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
    return context.codingPath.isEmpty ? "not valid JSON" : "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
  @unknown default: return "\(error)"
  }
}

/// The verdict on one protocol.
package struct ProtocolVerdict {
  package let protocolName: String
  package let baseline: Double
  package let current: Double
  package let difference: Double
  package let low: Double
  package let high: Double
  package let paired: Bool
  package let regressed: Bool
}

/// Compares a run with a baseline. A protocol regresses when its accuracy fell by more than
/// `tolerance` and the fall is significant: with paired episodes, the 95% CI of the mean
/// per-episode difference lies below zero; otherwise the two runs' 95% intervals do not overlap.
package func compareWithBaseline(_ baseline: Baseline, store: ResultsStore, runID: String, tolerance: Double) throws -> [ProtocolVerdict] {
  if let problem = baseline.problem() { throw UserFacingError("baseline of run \(baseline.run): \(problem)") }
  let detail = try store.run(runID)
  try refuseIncomparable(detail, baseline: baseline, runID: runID)
  let results = detail.results
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
    let linesUp = pairedRows.count == rows.count && rows.count == entry.episodes.count
    if !linesUp, rows.count >= 2 || entry.episodes.count >= 2 {
      // Same episodes (the digests agree), so the rows must line up; falling back to a weaker
      // test here would let an edited baseline or store slip through.
      throw UserFacingError(
        "protocol \(base.protocolName): run \(runID)'s \(rows.count) per-episode results do not line up with the baseline's \(entry.episodes.count) (episode numbers or sizes differ); rewrite the baseline with `oneshot-bench check --write-baseline` from a run you trust")
    }
    if rows.count >= 2 {
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

/// Refuses a run the baseline cannot judge: not completed, another experiment, configuration or
/// data, a protocol the baseline lacks (the configuration hash ties the protocols to the run, so
/// a baseline with one deleted is edited), or other episodes than the baseline's.
func refuseIncomparable(_ detail: RunDetail, baseline: Baseline, runID: String) throws {
  guard detail.summary.status == .completed else {
    throw UserFacingError("run \(runID) is \(detail.summary.status.rawValue), not completed; the gate judges finished runs (finish it with `oneshot-bench run --resume \(runID)`)")
  }
  let tags = Dictionary(detail.tags.map { ($0.key, $0.value) }) { $1 }
  // The same experiment, configuration, data and episodes, or the comparison means nothing.
  guard detail.summary.experiment == baseline.experiment else {
    throw UserFacingError("run \(runID) is of experiment \(detail.summary.experiment), the baseline of \(baseline.experiment); check a run of \(baseline.experiment), or use `compare`")
  }
  guard detail.summary.configHash == baseline.configHash else {
    throw UserFacingError(
      "run \(runID) has another configuration (hash \(detail.summary.configHash.prefix(12))) than the baseline's run \(baseline.run) (\(baseline.configHash.prefix(12))); write a new baseline for the new configuration, or use `compare`")
  }
  let fingerprint = detail.provenance.first { $0.key == "dataset_fingerprint" }?.value
  if let expected = baseline.datasetFingerprint, let fingerprint, fingerprint != expected {
    throw UserFacingError("run \(runID) read other data (fingerprint \(fingerprint.prefix(12))) than the baseline's run (\(expected.prefix(12))); restore the dataset or write a new baseline")
  }
  for entry in baseline.protocols {
    guard let digest = tags[TagKey.episodes(entry.result.protocolName)] else {
      throw UserFacingError("run \(runID) does not record which episodes protocol \(entry.result.protocolName) scored (an older oneshot-bench recorded it); run it again")
    }
    if digest != entry.episodesDigest {
      throw UserFacingError("protocol \(entry.result.protocolName) of run \(runID) scored other episodes than the baseline's (another seed or spec); its results cannot be paired")
    }
  }
  let judged = Set(baseline.protocols.map(\.result.protocolName))
  let unjudged = detail.results.map(\.protocolName).filter { !judged.contains($0) }
  guard unjudged.isEmpty else {
    throw UserFacingError(
      "the baseline has no entry for protocol\(unjudged.count == 1 ? "" : "s") \(unjudged.joined(separator: ", ")) that run \(runID) evaluated under the same configuration; the baseline was edited: rewrite it with `oneshot-bench check --write-baseline` from a run you trust")
  }
}

/// The gate's decision: whether the run passes, and the markdown summary that says so. Both
/// come from the same verdicts, so the summary and the exit code cannot disagree.
package struct GateDecision {
  package let verdicts: [ProtocolVerdict]
  /// `--exact`: any change of accuracy, up or down, fails (a fixed model must reproduce).
  package let exact: Bool

  package init(verdicts: [ProtocolVerdict], exact: Bool) {
    self.verdicts = verdicts
    self.exact = exact
  }

  /// Protocols whose accuracy changed at all, when that matters.
  package var moved: [ProtocolVerdict] { exact ? verdicts.filter { $0.current != $0.baseline } : [] }
  package var regressed: [ProtocolVerdict] { verdicts.filter(\.regressed) }
  package var passed: Bool { regressed.isEmpty && moved.isEmpty }

  /// The markdown summary for a pull-request comment.
  package func markdown(runID: String, baselineName: String, tolerance: Double) -> String {
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
