import Foundation
import ResultsStore
import Support

// A recipe is reported as the mean over seeds, with an interval across seeds (few-shot papers
// do), beside the interval over the pooled episodes. Runs form a seed group when their resolved
// configurations differ only by `seed`; an eval-only run also by the checkpoint it scored.

/// The seed group of a run: 12 hex digits of SHA-256 over its configuration without `seed`,
/// `threads` and `description` (prose: a description edited after a seed trained does not
/// split the recipe's seeds), and, for an eval-only run, with the checkpoint's SHA-256.
public func seedGroupKey(configJSON: String, evaluatedCheckpoint: String?) -> String {
  var object = (try? JSONSerialization.jsonObject(with: Data(configJSON.utf8))) as? [String: Any] ?? ["unreadable": configJSON]
  object.removeValue(forKey: "seed")
  // Threads are not part of an experiment's identity (ExperimentConfig.identityJSON).
  object.removeValue(forKey: "threads")
  object.removeValue(forKey: "description")
  if let evaluatedCheckpoint { object["#evaluated"] = evaluatedCheckpoint }
  let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data(configJSON.utf8)
  return String(SHA256.hex(data).prefix(12))
}

/// One protocol's accuracy over the seeds of a group.
public struct SeedAggregate: Sendable, Equatable {
  /// Seeds (runs) with a result for the protocol.
  public let seeds: Int
  /// Mean of the runs' accuracies.
  public let mean: Double
  /// 95% interval of the mean across seeds (Student t with seeds - 1 degrees of freedom, kept
  /// inside [0, 1]); nil for a single seed.
  public let acrossSeeds: (low: Double, high: Double)?
  /// 95% interval over every episode of every seed pooled (sampling of episodes only; Wilson's
  /// score interval with the episodes' effective trials, `Statistics.accuracyInterval95`).
  public let pooledEpisodes: (low: Double, high: Double)
  /// Episodes pooled.
  public let episodes: Int

  public static func == (a: SeedAggregate, b: SeedAggregate) -> Bool {
    a.seeds == b.seeds && a.mean == b.mean && a.acrossSeeds?.low == b.acrossSeeds?.low && a.acrossSeeds?.high == b.acrossSeeds?.high
      && a.pooledEpisodes == b.pooledEpisodes && a.episodes == b.episodes
  }

  /// The aggregate of run accuracies and the pooled per-episode accuracies (`trials`: the
  /// queries those episodes scored, which bounds the effective trials of the pooled interval as
  /// it does a single run's; by default one per episode).
  public init(runAccuracies: [Double], episodeAccuracies: [Double], trials: Int? = nil) {
    seeds = runAccuracies.count
    mean = Statistics.mean(runAccuracies)
    if runAccuracies.count >= 2 {
      let half = Statistics.studentQuantile975(Double(runAccuracies.count - 1)) * Statistics.standardError(runAccuracies)
      acrossSeeds = (max(0, mean - half), min(1, mean + half))
    } else {
      acrossSeeds = nil
    }
    episodes = episodeAccuracies.count
    pooledEpisodes = Statistics.accuracyInterval95(episodeAccuracies, pooled: Statistics.mean(episodeAccuracies), trials: trials)
  }
}

/// Time to one validation target over the seeds of a group.
public struct TargetAggregate: Sendable, Equatable {
  /// Seeds that reached it, of `seeds`.
  public let reached: Int
  public let seeds: Int
  /// Mean training seconds to it over the seeds that reached it.
  public let meanSeconds: Double
  /// 95% interval of that mean (Student t), nil below two seeds.
  public let interval: ClosedRange<Double>?

  public init(seconds: [Double], seeds: Int) {
    reached = seconds.count
    self.seeds = seeds
    meanSeconds = Statistics.mean(seconds)
    if seconds.count >= 2 {
      let half = Statistics.studentQuantile975(Double(seconds.count - 1)) * Statistics.standardError(seconds)
      interval = max(0, meanSeconds - half)...(meanSeconds + half)
    } else {
      interval = nil
    }
  }
}

/// Completed runs of one recipe.
public struct SeedGroup {
  /// The group key (see `seedGroupKey`).
  public let key: String
  /// The experiment name of its runs.
  public let experiment: String
  /// Its runs, oldest first: one per seed (the newest run of a seed recorded more than once).
  public let runs: [ReportRow]
  /// Per protocol.
  public let protocols: [String: SeedAggregate]
  /// Older runs of a seed already in `runs` (a configuration run twice), left out of the
  /// aggregate so that a repeat never counts as a second seed.
  public var repeats: [ReportRow] = []

  /// Per validation target any of its runs reached: the training seconds to it over the seeds
  /// that reached it.
  public var targets: [Double: TargetAggregate] = [:]

  /// The runs' seeds, as recorded.
  public var seeds: [String] { runs.map { $0.params["seed"] ?? "?" } }
}

/// The completed runs of `rows` grouped by recipe, in order of each group's first run.
public func seedGroups(_ rows: [ReportRow], store: ResultsStore) throws -> [SeedGroup] {
  var order: [String] = []
  var members: [String: [ReportRow]] = [:]
  for row in rows where row.summary.status == .completed {
    if members[row.group] == nil { order.append(row.group) }
    members[row.group, default: []].append(row)
  }
  return try order.map { key in
    let all = members[key]!.sorted { $0.summary.startedAt < $1.summary.startedAt }
    // One run per seed: the newest; older runs of the same seed are repeats.
    let newestOfSeed = Dictionary(all.map { ($0.params["seed"] ?? "?", $0.summary.id) }) { _, newer in newer }
    let runs = all.filter { newestOfSeed[$0.params["seed"] ?? "?"] == $0.summary.id }
    let repeats = all.filter { newestOfSeed[$0.params["seed"] ?? "?"] != $0.summary.id }
    var protocols: [String: SeedAggregate] = [:]
    for name in Set(runs.flatMap { $0.results.keys }) {
      let withResult = runs.filter { $0.results[name] != nil }
      let episodes = try withResult.flatMap { try store.episodeRows(runID: $0.summary.id, protocolName: name) }
      protocols[name] = SeedAggregate(
        runAccuracies: withResult.map { $0.results[name]!.accuracy }, episodeAccuracies: episodes.map { Double($0.correct) / Double($0.total) },
        trials: episodes.reduce(0) { $0 + $1.total })
    }
    var group = SeedGroup(key: key, experiment: runs[0].summary.experiment, runs: runs, protocols: protocols, repeats: repeats)
    for target in targetColumns(runs) {
      group.targets[target] = TargetAggregate(seconds: runs.compactMap { $0.targets.first { $0.target == target }?.trainingSeconds }, seeds: runs.count)
    }
    return group
  }
}

/// Renders seed groups in one of the text formats.
public func renderSeedGroups(_ groups: [SeedGroup], protocols: [String], format: ReportFormat) -> String {
  switch format {
  case .json:
    let objects: [[String: Any]] = groups.map { group in
      var results: [String: Any] = [:]
      for (name, a) in group.protocols {
        results[name] = [
          "seeds": a.seeds, "mean": a.mean, "acrossSeedsLow": a.acrossSeeds?.low as Any? ?? NSNull(), "acrossSeedsHigh": a.acrossSeeds?.high as Any? ?? NSNull(),
          "pooledLow": a.pooledEpisodes.low, "pooledHigh": a.pooledEpisodes.high, "episodes": a.episodes,
        ]
      }
      let targets = group.targets.sorted { $0.key < $1.key }.map { target, a -> [String: Any] in
        [
          "target": target, "reached": a.reached, "seeds": a.seeds, "meanTrainingSeconds": a.meanSeconds, "low": a.interval?.lowerBound as Any? ?? NSNull(),
          "high": a.interval?.upperBound as Any? ?? NSNull(),
        ]
      }
      return ["group": group.key, "experiment": group.experiment, "runs": group.runs.map(\.summary.id), "seeds": group.seeds, "results": results, "targets": targets]
    }
    let data = (try? JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys])) ?? Data("[]".utf8)
    return String(decoding: data, as: UTF8.self)
  case .csv:
    var header = ["group", "experiment", "seeds", "runs"]
    let targets = Array(Set(groups.flatMap(\.targets.keys))).sorted()
    for t in targets { header += ["target@\(TargetReached.text(t)).training_s.mean", "target@\(TargetReached.text(t)).training_s.low", "target@\(TargetReached.text(t)).training_s.high", "target@\(TargetReached.text(t)).reached"] }
    for p in protocols { header += ["\(p).mean", "\(p).seeds_low", "\(p).seeds_high", "\(p).pooled_low", "\(p).pooled_high", "\(p).n"] }
    let rows = groups.map { group -> [String] in
      var out = [group.key, group.experiment, group.seeds.joined(separator: " "), group.runs.map(\.summary.id).joined(separator: " ")]
      for t in targets {
        guard let a = group.targets[t] else {
          out += ["", "", "", ""]
          continue
        }
        out += [String(format: "%.1f", a.meanSeconds), a.interval.map { String(format: "%.1f", $0.lowerBound) } ?? "", a.interval.map { String(format: "%.1f", $0.upperBound) } ?? "", "\(a.reached)/\(a.seeds)"]
      }
      for p in protocols {
        guard let a = group.protocols[p] else {
          out += ["", "", "", "", "", ""]
          continue
        }
        out += [
          String(format: "%.4f", a.mean), a.acrossSeeds.map { String(format: "%.4f", $0.low) } ?? "", a.acrossSeeds.map { String(format: "%.4f", $0.high) } ?? "",
          String(format: "%.4f", a.pooledEpisodes.low), String(format: "%.4f", a.pooledEpisodes.high), String(a.seeds),
        ]
      }
      return out
    }
    return csvDocument(header, rows)
  case .table, .markdown, .html:
    let (header, rows, short) = seedGroupTable(groups, protocols: protocols)
    let table = format == .markdown ? markdownTable(header, rows) : textTable(header, rows)
    var legend = "\n\nmean over seeds; 95% across seeds: Student's t over the seeds' accuracies, clamped to [0, 100]"
    let repeated = groups.reduce(0) { $0 + $1.repeats.count }
    if repeated > 0 { legend += "\n\(repeated) older run\(repeated == 1 ? "" : "s") of a seed already listed left out (a seed counts once: its newest run)" }
    legend += "\n95% pooled episodes: Wilson's interval over every episode of every seed (the episodes' noise only)"
    for name in protocols where short[name]! != name { legend += "\n\(short[name]!) = \(name)" }
    return table + legend
  }
}

/// The seed-group table, one line per group and protocol, so it keeps its width (about 100
/// columns) however many protocols the runs scored; with each protocol's short heading.
func seedGroupTable(_ groups: [SeedGroup], protocols: [String]) -> (header: [String], rows: [[String]], short: [String: String]) {
  // What tells groups of one experiment apart (a sweep's axes), beside their hash keys.
  let varying = varyingParameters(groups.compactMap(\.runs.first))
  let header = ["group", "experiment", "runs", "seeds"] + (varying.isEmpty ? [] : ["differs"]) + ["protocol", "mean", "95% across seeds", "95% pooled episodes"]
  let short = Dictionary(uniqueKeysWithValues: zip(protocols, shortProtocolNames(protocols)))
  var rows: [[String]] = []
  for group in groups {
    let experiment = group.experiment.count <= 18 ? group.experiment : String(group.experiment.prefix(17)) + "…"
    let scored = protocols.filter { group.protocols[$0] != nil }
    for (i, p) in scored.enumerated() {
      let a = group.protocols[p]!
      let first = i == 0
      let identity = [first ? group.key : "", first ? experiment : "", first ? String(group.runs.count) : "", first ? group.seeds.joined(separator: ",") : ""]
      let differs = varying.isEmpty ? [] : [first ? varyingText(group.runs[0], varying) : ""]
      rows.append(
        identity + differs + [
          short[p]!, String(format: "%.2f%%", 100 * a.mean), a.acrossSeeds.map { String(format: "[%.2f, %.2f]", 100 * $0.low, 100 * $0.high) } ?? "one seed",
          String(format: "[%.2f, %.2f]", 100 * a.pooledEpisodes.low, 100 * a.pooledEpisodes.high),
        ])
    }
    // Time to each validation target: mean training time over the seeds that reached it.
    for (target, a) in group.targets.sorted(by: { $0.key < $1.key }) {
      let first = scored.isEmpty && rows.last?.first != group.key
      rows.append(
        [first ? group.key : "", first ? experiment : "", "", ""] + (varying.isEmpty ? [] : [""]) + [
          "to \(TargetReached.text(100 * target))% val", formatDuration(a.meanSeconds),
          a.interval.map { "[\(formatDuration($0.lowerBound)), \(formatDuration($0.upperBound))]" } ?? "one seed", "\(a.reached) of \(a.seeds) seeds reached it",
        ])
    }
  }
  return (header, rows, short)
}
