import Foundation
import ResultsStore
import Support

// `report --leaderboard`: the methods side by side (issue #42). One row per recipe (a seed
// group: completed runs whose configurations differ only by seed) with its method, seeds, and
// per protocol the mean over seeds with its interval, the paired difference against the best
// row on the same episodes (pooled over seeds, as `compare` pools them), and the published
// figure of the method where one exists for the protocol.

/// Published figures on Omniglot's Vinyals split (rotations as classes, 28x28; 1,000-episode
/// protocols), by method (`training.objective`) and protocol shape: only those RESULTS.md quotes
/// with their source. A method without an entry shows none.
let publishedVinyalsFigures: [String: (source: String, figures: [String: Double])] = [
  "prototypical": ("Snell et al. 2017", ["5-way 1-shot": 0.988, "5-way 5-shot": 0.997, "20-way 1-shot": 0.960, "20-way 5-shot": 0.989]),
  "matching": ("Vinyals et al. 2016", ["5-way 1-shot": 0.981, "5-way 5-shot": 0.989, "20-way 1-shot": 0.938, "20-way 5-shot": 0.985]),
  "matching-scaled": ("Vinyals et al. 2016 (matching networks; the scale is not theirs)", ["5-way 1-shot": 0.981, "5-way 5-shot": 0.989, "20-way 1-shot": 0.938, "20-way 5-shot": 0.985]),
  "relation": ("Sung et al. 2018", ["5-way 1-shot": 0.996, "5-way 5-shot": 0.998, "20-way 1-shot": 0.976, "20-way 5-shot": 0.991]),
  // The harness's MAML is first-order and inductive: Nichol et al.'s first-order figures, not Finn
  // et al.'s second-order transductive 98.7 / 99.9 / 95.8 / 98.9 (RESULTS.md quotes both).
  "maml": ("Nichol et al. 2018 (first-order MAML)", ["5-way 1-shot": 0.983, "5-way 5-shot": 0.992, "20-way 1-shot": 0.894, "20-way 5-shot": 0.979]),
]

/// Published figures on Lake's 20 runs (the `lake20` protocol: 20-way 1-shot within an
/// alphabet, trained on the background alphabets), by method: only those RESULTS.md quotes with
/// their source. Koch et al.'s convolutional Siamese net is the pairs method.
let publishedLakeFigures: [String: (source: String, figure: Double)] = [
  "pairs": ("Koch et al. 2015 on Lake's runs", 0.920)
]

/// One recipe's line for one protocol.
public struct LeaderboardCell: Sendable {
  public let aggregate: SeedAggregate
  /// Paired difference against the protocol's best row over the episodes both scored (points as
  /// fractions); nil for the best row itself, or when the two cannot be paired (`unpaired` says why).
  public let difference: PairedDifference?
  public let unpaired: String?
  /// The method's published figure for this protocol, if any.
  public let published: Double?
}

/// A recipe's row.
public struct LeaderboardRow {
  public let group: SeedGroup
  /// `training.objective` (`pairs` when not recorded; `outside: MODEL` for a scorer's run).
  public let method: String
  public let transductive: Bool
  /// Test-time copies the row's runs averaged each image over (`augmentedCopies`), or nil.
  public var testTimeCopies: Int? = nil
  public let cells: [String: LeaderboardCell]
  /// Where the published figures come from.
  public let publishedSource: String?
  /// Eval-only runs folded into this row: each scored this row's own checkpoint again, with the
  /// same test-time settings, on the same episodes, to the same figures (`foldedRescorings`).
  public var rescoredBy: [String] = []
}

/// Eval-only groups that only repeat a trained row: every run of the group scored the best
/// checkpoint of a run in another group (same SHA-256) with the same test-time copies and
/// transduction, and each protocol it scored, that run scored on the same episodes (their
/// fingerprint) to the same accuracy. Without this, re-scoring a checkpoint (to check a build,
/// or before scoring it with test-time copies) lists the same network twice, and the copy with
/// fewer protocols can take the best place from its own training run. Keys: the repeating
/// group's key; values: the trained group's key. A re-scoring whose figures differ (another
/// build's arithmetic, other episodes) is not folded: it is a measurement of its own.
func foldedRescorings(_ groups: [SeedGroup]) -> [String: String] {
  var trainedBy: [String: (group: String, run: ReportRow)] = [:]
  for group in groups {
    for run in group.runs where run.mode == .train {
      if let hash = run.provenance["checkpoint_hash"], !hash.isEmpty { trainedBy[hash] = (group.key, run) }
    }
  }
  var folded: [String: String] = [:]
  for group in groups {
    let targets = group.runs.map { run -> String? in
      guard run.mode == .evalOnly, run.tags["ensemble_members"] == nil, let hash = run.provenance["checkpoint_hash"], let (key, trained) = trainedBy[hash],
        key != group.key, run.testTimeCopies == trained.testTimeCopies, run.transductive == trained.transductive, !run.results.isEmpty
      else { return nil }
      for (name, result) in run.results {
        guard let original = trained.results[name], let episodes = run.tags[TagKey.episodes(name)], episodes == trained.tags[TagKey.episodes(name)],
          result.accuracy == original.accuracy
        else { return nil }
      }
      return key
    }
    if let first = targets.first, let key = first, targets.allSatisfy({ $0 == key }) { folded[group.key] = key }
  }
  return folded
}

/// The leaderboard of the completed runs in `rows`: each protocol's best row is the one with
/// the highest mean; rows are ordered by the headline protocol (20-way 1-shot where scored,
/// else the first), best first.
public func leaderboard(_ rows: [ReportRow], protocols: [String], store: ResultsStore) throws -> (rows: [LeaderboardRow], headline: String?) {
  let all = try seedGroups(rows, store: store)
  let folded = foldedRescorings(all)
  let groups = all.filter { folded[$0.key] == nil }
  var best: [String: SeedGroup] = [:]
  for name in protocols {
    best[name] = groups.filter { $0.protocols[name] != nil }.max { $0.protocols[name]!.mean < $1.protocols[name]!.mean }
  }
  var out: [LeaderboardRow] = []
  for group in groups {
    let first = group.runs[0]
    // An outside scorer's row is named by the model it said it is (two scorers of one experiment
    // are two rows of one recipe name otherwise).
    let method =
      first.tags[TagKey.mode] == RunMode.external.rawValue
      ? "outside: " + String((first.tags["scorer.model"] ?? "?").prefix(48))
      // An eval-only run is scored by its checkpoint's method, which its file need not name
      // (`evaluate --folder` has no training section at all).
      : (first.tags[TagKey.scoringMethod] ?? first.params["training.objective"] ?? "pairs")
    let published = publishedVinyalsFigures[method]
    var cells: [String: LeaderboardCell] = [:]
    var sources = Set<String>()
    for name in protocols {
      guard let aggregate = group.protocols[name], let top = best[name] else { continue }
      var difference: PairedDifference? = nil, unpaired: String? = nil
      if top.key != group.key {
        let a = ComparisonSide(name: group.key, runs: group.runs, isGroup: true), b = ComparisonSide(name: top.key, runs: top.runs, isGroup: true)
        if let problem = pairingProblem(name, a, b) {
          unpaired = problem
        } else {
          let scoresA = try a.episodeScores(name, store: store), scoresB = try b.episodeScores(name, store: store)
          let shared = Set(scoresA.keys).intersection(scoresB.keys).sorted()
          if shared.count >= 2 {
            difference = Statistics.paired(shared.map { scoresA[$0]!.accuracy }, shared.map { scoresB[$0]!.accuracy })
          } else {
            unpaired = "fewer than two shared episodes"
          }
        }
      }
      let result = group.runs.compactMap { $0.results[name] }.first
      let shape = result.map { "\($0.ways)-way \($0.shots)-shot" } ?? ""
      var figure: Double? = nil
      if let split = result?.split {
        if split.hasPrefix("vinyals/test"), let published, let quoted = published.figures[shape] {
          figure = quoted
          sources.insert(published.source)
        } else if split == "lake20", let quoted = publishedLakeFigures[method] {
          figure = quoted.figure
          sources.insert(quoted.source)
        }
      }
      cells[name] = LeaderboardCell(aggregate: aggregate, difference: difference, unpaired: unpaired, published: figure)
    }
    let transductive = group.runs.contains { TagKey.isTransductive($0.tags) }
    var row = LeaderboardRow(
      group: group, method: method, transductive: transductive, testTimeCopies: group.runs.compactMap(\.testTimeCopies).max(), cells: cells,
      publishedSource: sources.isEmpty ? nil : sources.sorted().joined(separator: "; "))
    row.rescoredBy = all.filter { folded[$0.key] == group.key }.flatMap { $0.runs.map(\.summary.id) }
    out.append(row)
  }
  let headline =
    protocols.first { name in rows.contains { $0.results[name].map { $0.ways == 20 && $0.shots == 1 } ?? false } } ?? protocols.first
  if let headline { out.sort { ($0.cells[headline]?.aggregate.mean ?? -1) > ($1.cells[headline]?.aggregate.mean ?? -1) } }
  return (out, headline)
}

/// Renders the leaderboard in any report format.
public func renderLeaderboard(_ board: (rows: [LeaderboardRow], headline: String?), protocols: [String], format: ReportFormat) -> String {
  let percent = { (x: Double) in String(format: "%.2f%%", 100 * x) }
  func interval(_ a: SeedAggregate) -> String {
    a.acrossSeeds.map { String(format: "[%.2f, %.2f] seeds", 100 * $0.low, 100 * $0.high) } ?? String(format: "[%.2f, %.2f] episodes", 100 * a.pooledEpisodes.low, 100 * a.pooledEpisodes.high)
  }
  func versusBest(_ cell: LeaderboardCell) -> String {
    if let d = cell.difference { return String(format: "%+.2f [%+.2f, %+.2f]", 100 * d.mean, 100 * d.low, 100 * d.high) }
    return cell.unpaired.map { "not paired: \($0)" } ?? "best"
  }
  // The machines a row's runs were recorded on (a seed group may span several).
  func machines(_ row: LeaderboardRow) -> [String] { Array(Set(row.group.runs.map(\.machine).filter { !$0.isEmpty })).sorted() }
  func recipe(_ row: LeaderboardRow) -> String {
    row.group.experiment + (row.testTimeCopies.map { " (\($0) test-time copies)" } ?? "") + (row.transductive ? " (transductive)" : "")
  }
  switch format {
  case .json:
    let objects: [[String: Any]] = board.rows.map { row in
      var results: [String: Any] = [:]
      for (name, cell) in row.cells {
        results[name] = [
          "mean": cell.aggregate.mean, "seeds": cell.aggregate.seeds, "low": cell.aggregate.acrossSeeds?.low ?? cell.aggregate.pooledEpisodes.low,
          "high": cell.aggregate.acrossSeeds?.high ?? cell.aggregate.pooledEpisodes.high, "interval": cell.aggregate.acrossSeeds == nil ? "pooled episodes" : "across seeds",
          "versusBest": cell.difference.map { ["mean": $0.mean, "low": $0.low, "high": $0.high, "p": $0.pValue] as [String: Any] } as Any? ?? (cell.unpaired ?? "best"),
          "published": cell.published as Any? ?? NSNull(),
        ] as [String: Any]
      }
      return [
        "group": row.group.key, "experiment": row.group.experiment, "method": row.method, "transductive": row.transductive, "seeds": row.group.seeds,
        "testTimeCopies": row.testTimeCopies as Any? ?? NSNull(),
        "runs": row.group.runs.map(\.summary.id), "rescoredBy": row.rescoredBy, "machines": machines(row), "publishedSource": row.publishedSource as Any? ?? NSNull(), "results": results,
      ]
    }
    let data = (try? JSONSerialization.data(withJSONObject: ["headline": board.headline as Any? ?? NSNull(), "rows": objects], options: [.prettyPrinted, .sortedKeys])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
  case .csv:
    var header = ["rank", "group", "experiment", "method", "transductive", "seeds"]
    for p in protocols { header += ["\(p).mean", "\(p).low", "\(p).high", "\(p).vs_best", "\(p).vs_best_low", "\(p).vs_best_high", "\(p).published"] }
    header += ["rescored_by", "machines"]
    let rows = board.rows.enumerated().map { i, row -> [String] in
      var out = [String(i + 1), row.group.key, row.group.experiment, row.method, row.transductive ? "yes" : "no", row.group.seeds.joined(separator: " ")]
      for p in protocols {
        guard let cell = row.cells[p] else {
          out += ["", "", "", "", "", "", ""]
          continue
        }
        let a = cell.aggregate
        out += [
          String(format: "%.4f", a.mean), String(format: "%.4f", a.acrossSeeds?.low ?? a.pooledEpisodes.low), String(format: "%.4f", a.acrossSeeds?.high ?? a.pooledEpisodes.high),
          cell.difference.map { String(format: "%.4f", $0.mean) } ?? (cell.unpaired == nil ? "best" : ""), cell.difference.map { String(format: "%.4f", $0.low) } ?? "",
          cell.difference.map { String(format: "%.4f", $0.high) } ?? "", cell.published.map { String(format: "%.3f", $0) } ?? "",
        ]
      }
      return out + [row.rescoredBy.joined(separator: " "), machines(row).joined(separator: "; ")]
    }
    return csvDocument(header, rows)
  case .table, .markdown, .html:
    let short = Dictionary(uniqueKeysWithValues: zip(protocols, shortProtocolNames(protocols)))
    let header = ["rank", "recipe", "method", "seeds", "protocol", "mean", "95% interval", "vs best (paired, points)", "published", "machine"]
    var rows: [[String]] = []
    for (i, row) in board.rows.enumerated() {
      let scored = protocols.filter { row.cells[$0] != nil }
      for (j, p) in scored.enumerated() {
        let cell = row.cells[p]!
        let first = j == 0
        rows.append(
          [first ? String(i + 1) : "", first ? recipe(row) : "", first ? row.method : "", first ? row.group.seeds.joined(separator: ",") : ""] + [
            short[p]!, percent(cell.aggregate.mean), interval(cell.aggregate), versusBest(cell), cell.published.map { String(format: "%.1f%%", 100 * $0) } ?? "",
            first ? machines(row).joined(separator: "; ") : "",
          ])
      }
    }
    var legend = "\n\none row per recipe (runs that differ only by seed), ranked by \(board.headline.map { short[$0] ?? $0 } ?? "the first protocol"); mean over seeds"
    legend += "\n95% interval: across seeds (Student's t), or over the episodes for one seed"
    legend += "\nvs best: paired difference from the protocol's best row on the episodes both scored (an episode's score: the mean over a row's seeds)"
    let sources = Set(board.rows.compactMap(\.publishedSource)).sorted()
    if !sources.isEmpty { legend += "\npublished: the method's figure on the same protocol: Omniglot's Vinyals split, or Lake's 20 runs (\(sources.joined(separator: "; ")))" }
    let rescorings = board.rows.flatMap { row in row.rescoredBy.map { "\($0.prefix(8)) (\(row.group.experiment))" } }
    if !rescorings.isEmpty {
      legend += "\nnot listed: eval-only runs that scored a listed row's own checkpoint again on the same episodes to the same figures: \(rescorings.joined(separator: ", "))"
    }
    if board.rows.contains(where: \.transductive) { legend += "\n(transductive): the method looked at each episode's queries together; not comparable with inductive rows" }
    for name in protocols where short[name]! != name { legend += "\n\(short[name]!) = \(name)" }
    if format == .html {
      return htmlPage(title: "oneshot-bench leaderboard", body: "<h1>Leaderboard</h1>" + htmlTable(header, rows) + "<p class=\"note\">\(xmlEscaped(legend).replacingOccurrences(of: "\n", with: "<br>"))</p>")
    }
    return (format == .markdown ? markdownTable(header, rows) : textTable(header, rows)) + legend
  }
}
