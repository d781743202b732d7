import Foundation
import ResultsStore

/// Output formats of `report`.
public enum ReportFormat: String, CaseIterable {
  case table, csv, json, markdown, html
}

/// One row of the run listing.
public struct ReportRow {
  public let summary: RunSummary
  public let params: [String: String]
  public let results: [String: ProtocolResult]
  /// The run's best validation accuracy and its step (the checkpoint it evaluated), if it validated.
  public let bestValidation: MetricPoint?
  /// Tags (`mode`, an ensemble's members) and provenance (commit, host, checkpoint hash...).
  public let tags: [String: String]
  public let provenance: [String: String]
  /// The seed group: runs whose resolved configurations differ only by `seed` share it.
  public let group: String
  /// The validation targets the run reached (`training.targets`), lowest first.
  public var targets: [TargetReached] = []
  /// Whether its method used each episode's queries together (`TagKey.isTransductive`).
  public var transductive: Bool { TagKey.isTransductive(tags) }
}

/// The words every report puts beside a transductive run, and what they mean.
public let transductiveMark = "transductive"
public let transductiveLegend = "transductive: the method used each episode's queries together; its figures are not comparable with inductive ones"

/// The targets any of `rows` reached, lowest first.
public func targetColumns(_ rows: [ReportRow]) -> [Double] { Array(Set(rows.flatMap { $0.targets.map(\.target) })).sorted() }

/// The highest target a run reached as the table shows it: `85%: 4m12s` (training time).
func targetText(_ row: ReportRow) -> String {
  guard let top = row.targets.last else { return "-" }
  return "\(TargetReached.text(100 * top.target))%: \(formatDuration(top.trainingSeconds))"
}

/// The best point of a validation history: highest accuracy, the earliest step on a tie (the
/// trainer keeps the first checkpoint that reached it).
public func bestValidation(_ history: [MetricPoint]) -> MetricPoint? {
  history.reduce(nil) { best, point in (best.map { point.value > $0.value } ?? true) ? point : best }
}

/// The hyperparameters shown in listings (the full set is in `report --run`).
public let keyParameters = [
  "model.backbone", "model.inputSize", "model.width", "model.batchNorm", "training.steps", "training.pairsPerStep",
  "training.optimizer.kind", "training.optimizer.learningRate", "training.precision", "seed",
]

/// The parameters that differ among runs of one experiment in `rows` (a sweep's axes, say) and
/// that the listing does not show anyway: every recorded key whose value is not the same in all
/// of an experiment's rows (a key one row lacks counts as differing), leaving out the seed, the name, the description, the thread count and
/// the evaluation entries (the protocols are columns of their own). Sorted.
public func varyingParameters(_ rows: [ReportRow], shown: [String] = keyParameters) -> [String] {
  // Within each experiment: runs of different experiments differ in everything, which says nothing.
  let skipped = Set(shown + ["seed", "name", "description", "threads"])
  var out = Set<String>()
  for runs in Dictionary(grouping: rows, by: \.summary.experiment).values where runs.count >= 2 {
    for key in Set(runs.flatMap(\.params.keys)) where !skipped.contains(key) && !key.hasPrefix("evaluation.") {
      if Set(runs.map { $0.params[key] ?? "" }).count > 1 { out.insert(key) }
    }
  }
  return out.sorted()
}

/// `key=value` of each of `keys` that `row` records, the key cut to its last two parts.
func varyingText(_ row: ReportRow, _ keys: [String]) -> String {
  keys.compactMap { key in row.params[key].map { "\(key.split(separator: ".").suffix(2).joined(separator: "."))=\($0)" } }.joined(separator: " ")
}

/// Values a configuration leaves out because they are the default (and runs recorded before
/// the key existed), shown as what they were.
public let parameterDefaults = ["training.precision": "fp32"]

extension ReportRow {
  /// A recorded hyperparameter, or its default when the configuration left it out.
  public func parameter(_ key: String) -> String? { params[key] ?? parameterDefaults[key] }

  /// Whether the run trained or scored a given checkpoint.
  public var mode: RunMode { RunMode(tags: tags) }

  /// The most distorted copies any of the run's protocols averaged each image over at test
  /// time (`augmentedCopies`), or nil when none did: shown beside the run, whose protocols keep
  /// their names.
  public var testTimeCopies: Int? {
    params.filter { $0.key.hasPrefix("evaluation.") && $0.key.hasSuffix(".augmentedCopies") }.compactMap { Int($0.value) }.max()
  }

  /// A setting as listings show it: training settings only for runs that trained (an eval-only
  /// run's file may carry a training section it never used).
  public func shownParameter(_ key: String) -> String? {
    if mode != .train && (key.hasPrefix("training.") || key == "seed") { return nil }
    // `auto` is shown with what it resolved to on the run's machine.
    if key == "training.precision", parameter(key) == "auto", let resolved = tags["precision.resolved"] { return "auto (\(resolved))" }
    return parameter(key)
  }
}

/// What an evaluation scored, for its seed group: the checkpoint's SHA-256, or what an outside
/// scorer said its model is; nil for a trained run.
func evaluatedModel(mode: RunMode, tags: [String: String], provenance: [String: String]) -> String? {
  switch mode {
  case .train: return nil
  case .evalOnly: return provenance["checkpoint_hash"] ?? ""
  case .external: return "external:" + (tags["scorer.model"] ?? "")
  }
}

/// The machine a run recorded (`cpu`: model name, cores, instruction-set class, oneDNN) without
/// the vendor's trademark marks: "Intel Xeon x2 (AVX-512 + bf16 + AMX; oneDNN 2.6.3)". Every
/// speed figure depends on it, and so can an accuracy (bf16 or fp32 training, chosen there).
func machineLabel(_ cpu: String?) -> String {
  guard let cpu, !cpu.isEmpty else { return "" }
  var label = cpu
  for mark in ["(R)", "(TM)", "(tm)", " Processor", " CPU"] { label = label.replacingOccurrences(of: mark, with: "") }
  return label.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
}

extension ReportRow {
  /// `machineLabel` of the run's recorded CPU ("" for a run recorded without one).
  public var machine: String { machineLabel(provenance["cpu"]) }
}

/// Builds the rows and the protocol columns (union over the runs, sorted).
public func reportRows(store: ResultsStore, runs: [RunSummary]) throws -> (rows: [ReportRow], protocols: [String]) {
  var rows: [ReportRow] = []
  var protocols = Set<String>()
  for run in runs {
    let detail = try store.run(run.id)
    var params: [String: String] = [:]
    for p in detail.params { params[p.key] = p.value }
    var results: [String: ProtocolResult] = [:]
    for r in detail.results {
      results[r.protocolName] = r
      protocols.insert(r.protocolName)
    }
    let validation = bestValidation(try store.metrics(runID: run.id, key: MetricKey.validationAccuracy))
    let tags = Dictionary(detail.tags.map { ($0.key, $0.value) }) { $1 }
    let provenance = Dictionary(detail.provenance.map { ($0.key, $0.value) }) { $1 }
    var row = ReportRow(
      summary: run, params: params, results: results, bestValidation: validation, tags: tags, provenance: provenance,
      group: seedGroupKey(configJSON: detail.configJSON, evaluatedCheckpoint: evaluatedModel(mode: RunMode(tags: tags), tags: tags, provenance: provenance)))
    row.targets = TargetReached.from(try store.metrics(runID: run.id, keyPrefix: TargetReached.prefix))
    rows.append(row)
  }
  return (rows, protocols.sorted())
}

/// Renders the run listing in one of the formats.
public func renderReport(_ rows: [ReportRow], protocols: [String], format: ReportFormat, wide: Bool = false) -> String {
  let varying = varyingParameters(rows)
  let targets = targetColumns(rows)
  var header = ["run", "experiment", "mode", "transductive", "ensemble_members", "status", "started", "duration_s"] + keyParameters + varying + ["validation.best", "validation.best_step"]
  for t in targets { header += ["target@\(TargetReached.text(t)).training_s", "target@\(TargetReached.text(t)).wall_s", "target@\(TargetReached.text(t)).step"] }
  for p in protocols { header += ["\(p).accuracy", "\(p).ci_low", "\(p).ci_high"] }
  header += ["note", "machine"]
  func cells(_ row: ReportRow) -> [String] {
    var out = [
      row.summary.id, row.summary.experiment, row.mode.rawValue, row.transductive ? "yes" : "no", row.tags["ensemble_members"] ?? "", row.summary.status.rawValue, row.summary.startedAt,
      row.summary.durationSeconds.map { String(format: "%.1f", $0) } ?? "",
    ]
    out += keyParameters.map { row.shownParameter($0) ?? "" }
    out += varying.map { row.params[$0] ?? "" }
    out += [row.bestValidation.map { String(format: "%.4f", $0.value) } ?? "", row.bestValidation.map { String($0.step) } ?? ""]
    for t in targets {
      if let reached = row.targets.first(where: { $0.target == t }) {
        out += [String(format: "%.1f", reached.trainingSeconds), String(format: "%.1f", reached.wallSeconds), String(reached.step)]
      } else {
        out += ["", "", ""]
      }
    }
    for p in protocols {
      if let r = row.results[p] {
        out += [String(format: "%.4f", r.accuracy), String(format: "%.4f", r.ciLow), String(format: "%.4f", r.ciHigh)]
      } else {
        out += ["", "", ""]
      }
    }
    return out + [row.tags[TagKey.note] ?? "", row.machine]
  }
  switch format {
  case .csv:
    return csvDocument(header, rows.map(cells))
  case .json:
    let objects: [[String: Any]] = rows.map { row in
      var object: [String: Any] = [
        "run": row.summary.id, "experiment": row.summary.experiment, "mode": row.mode.rawValue, "transductive": row.transductive, "status": row.summary.status.rawValue,
        "started": row.summary.startedAt, "machine": row.machine,
        "durationSeconds": row.summary.durationSeconds as Any? ?? NSNull(), "error": row.summary.error as Any? ?? NSNull(),
      ]
      if let members = row.tags["ensemble_members"] { object["ensembleMembers"] = Int(members) ?? members }
      object["tags"] = row.tags
      var params: [String: String] = [:]
      for key in keyParameters + varying { if let v = row.shownParameter(key) { params[key] = v } }
      object["params"] = params
      object["bestValidation"] = row.bestValidation.map { ["accuracy": $0.value, "step": $0.step] as [String: Any] } ?? NSNull()
      if !row.targets.isEmpty {
        object["targets"] = row.targets.map {
          ["target": $0.target, "step": $0.step, "trainingSeconds": $0.trainingSeconds, "wallSeconds": $0.wallSeconds, "pairs": $0.pairs, "images": $0.images] as [String: Any]
        }
      }
      var results: [String: Any] = [:]
      for (name, r) in row.results {
        results[name] = [
          "accuracy": r.accuracy, "ciLow": r.ciLow, "ciHigh": r.ciHigh, "episodes": r.episodes, "split": r.split, "ways": r.ways, "shots": r.shots, "queries": r.queries,
        ]
      }
      object["results"] = results
      return object
    }
    let data = (try? JSONSerialization.data(withJSONObject: objects, options: [.prettyPrinted, .sortedKeys])) ?? Data("[]".utf8)
    return String(decoding: data, as: UTF8.self)
  case .markdown, .table, .html:
    // The default table fits 120 columns for a few protocols (short protocol names, the main
    // settings); `wide` shows every listed setting and the full names.
    let shortNames = shortProtocolNames(protocols)
    let header =
      wide
      ? ["run", "experiment", "mode", "status", "started", "backbone", "input", "steps", "pairs/step", "optimizer", "lr", "precision", "seed"] + (varying.isEmpty ? [] : ["differs"])
        + ["validation"] + (targets.isEmpty ? [] : ["to target"]) + protocols + ["duration", "machine"]
      : ["run", "experiment", "mode", "status", "steps", "lr", "seed"] + (varying.isEmpty ? [] : ["differs"]) + ["validation"] + (targets.isEmpty ? [] : ["to target"]) + shortNames
    let body = rows.map { row -> [String] in
      let trained = row.mode == .train
      let mode =
        (trained ? "train" : row.mode == .external ? "external" : (row.tags["ensemble_members"].map { "eval x\($0)" } ?? "eval"))
        + (row.testTimeCopies.map { ", \($0) test-time copies" } ?? "") + (row.transductive ? ", \(transductiveMark)" : "")
      // The store's words, as `--status`, CSV, JSON and `report --run` say them.
      let status = row.summary.status.rawValue
      let experiment = wide || row.summary.experiment.count <= 18 ? row.summary.experiment : String(row.summary.experiment.prefix(17)) + "…"
      func training(_ key: String) -> String { trained ? row.shownParameter(key) ?? "" : "-" }
      var out = [String(row.summary.id.prefix(8)), experiment, mode, status]
      if wide {
        out += [String(row.summary.startedAt.prefix(16)).replacingOccurrences(of: "T", with: " "), row.params["model.backbone"] ?? "", row.params["model.inputSize"] ?? ""]
        out += ["training.steps", "training.pairsPerStep", "training.optimizer.kind", "training.optimizer.learningRate", "training.precision", "seed"].map(training)
        if !varying.isEmpty { out.append(varyingText(row, varying)) }
        out.append(row.bestValidation.map { String(format: "%.2f%% @%d", 100 * $0.value, $0.step) } ?? "-")
      } else {
        out += ["training.steps", "training.optimizer.learningRate", "seed"].map(training)
        if !varying.isEmpty { out.append(varyingText(row, varying)) }
        out.append(row.bestValidation.map { String(format: "%.1f@%d", 100 * $0.value, $0.step) } ?? "-")
      }
      if !targets.isEmpty { out.append(targetText(row)) }
      for p in protocols {
        if let r = row.results[p] { out.append(String(format: "%.2f±%.2f", 100 * r.accuracy, 100 * (r.ciHigh - r.ciLow) / 2)) } else { out.append("-") }
      }
      if wide { out += [row.summary.durationSeconds.map(formatDuration) ?? "-", row.machine] }
      return out
    }
    let legend = rows.contains(where: \.transductive) ? "\n\n" + transductiveLegend : ""
    guard format == .table && !wide else { return (format == .markdown ? markdownTable(header, body) : textTable(header, body)) + legend }
    // Columns go, least telling first, until the table fits: settings, then the protocols
    // evaluated last (the first stays); every one left out is named below the table.
    let (fitted, left) = fitToWidth(header, body, width: 120, droppable: ["lr", "steps", "seed", "differs", "to target"] + shortNames.dropFirst().reversed())
    var table = fitted + "\n\naccuracy % ± half the width of its 95% interval (Wilson's); validation: best % @ step"
    if body.contains(where: { $0[2].hasPrefix("eval x") }) { table += "\neval xN: eval-only of an N-member ensemble" }
    if !legend.isEmpty { table += "\n" + transductiveLegend }
    if !targets.isEmpty { table += "\nto target: the highest validation target reached, and the training time until its first validation (report --run ID: every target)" }
    if !varying.isEmpty { table += "\ndiffers: the settings that differ among these runs (\(varying.joined(separator: ", ")))" }
    table += left.isEmpty ? "\n--wide for every column" : "\n" + wrapped("\(left.joined(separator: ", ")) left out to fit 120 columns: --wide for every column", width: 120)
    for (name, short) in zip(protocols, shortNames) where short != name { table += "\n\(short) = \(name)" }
    return table
  }
}

/// `text` broken at spaces into lines of at most `width` characters (a longer word stays whole).
func wrapped(_ text: String, width: Int) -> String {
  var lines: [String] = [], current = ""
  for word in text.split(separator: " ", omittingEmptySubsequences: false) {
    if !current.isEmpty && current.count + 1 + word.count > width {
      lines.append(current)
      current = String(word)
    } else {
      current = current.isEmpty ? String(word) : current + " " + word
    }
  }
  return (lines + [current]).joined(separator: "\n")
}

/// A protocol's name in the narrow table: `evaluation-20way-1shot-within` -> `eval 20w1s`.
public func shortProtocolName(_ name: String) -> String {
  let parts = name.split(separator: "-").map(String.init)
  guard parts.count >= 3, parts[1].hasSuffix("way"), parts[2].hasSuffix("shot") else { return name.count > 18 ? String(name.prefix(17)) + "…" : name }
  let split = ["evaluation": "eval", "validation": "val"][parts[0]] ?? parts[0]
  var out = "\(split) \(parts[1].dropLast(3))w\(parts[2].dropLast(4))s"
  for extra in parts.dropFirst(3) where extra != "within" { out += " \(extra.prefix(4))" }
  return out
}

/// The narrow table's column names for `names` (distinct protocols): each one's short name, or,
/// where two would read the same (`validation-20way-200` and `validation-20way-1000` both cut to
/// `validation-20way-…`), its beginning and end around an ellipsis, or else its full name, so no
/// two columns ever share a heading.
public func shortProtocolNames(_ names: [String]) -> [String] {
  func middle(_ name: String) -> String { name.count > 18 ? String(name.prefix(8)) + "…" + String(name.suffix(9)) : name }
  func collisions(_ shown: [String]) -> Set<Int> {
    let counts = shown.reduce(into: [String: Int]()) { $0[$1, default: 0] += 1 }
    return Set(shown.indices.filter { counts[shown[$0]]! > 1 })
  }
  var shown = names.map(shortProtocolName)
  for i in collisions(shown) { shown[i] = middle(names[i]) }
  // Full names are distinct, so this ends once every clashing heading is its full name.
  var clashing = collisions(shown)
  while !clashing.isEmpty {
    let before = shown
    for i in clashing { shown[i] = names[i] }
    if shown == before { break }
    clashing = collisions(shown)
  }
  return shown
}

/// An RFC 4180 document: fields with commas, quotes or line breaks quoted, CRLF line ends. A
/// text field that a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, a tab
/// or a carriage return, and is not a number) gets a leading `'`, as OWASP advises for CSV files.
public func csvDocument(_ header: [String], _ rows: [[String]]) -> String {
  func field(_ raw: String) -> String {
    let s = raw.first.map { "=+-@\t\r".contains($0) } == true && Double(raw) == nil ? "'" + raw : raw
    return s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
  }
  return ([header] + rows).map { $0.map(field).joined(separator: ",") }.joined(separator: "\r\n") + "\r\n"
}

/// Text for a terminal: control characters (escape sequences, carriage returns, NUL) shown as
/// `\u{1B}`, so that no recorded name can rewrite or hide what is printed.
public func visible(_ text: String) -> String { visible(text, keepingLayout: false) }

/// `visible(text)`, letting line breaks and tabs through when `keepingLayout`.
public func visible(_ text: String, keepingLayout: Bool) -> String {
  func hidden(_ scalar: Unicode.Scalar) -> Bool {
    scalar.properties.generalCategory == .control && !(keepingLayout && (scalar == "\n" || scalar == "\t" || scalar == "\r"))
  }
  guard text.unicodeScalars.contains(where: hidden) else { return text }
  var out = ""
  for scalar in text.unicodeScalars {
    if hidden(scalar) { out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}" } else { out.unicodeScalars.append(scalar) }
  }
  return out
}

/// A GitHub-flavoured markdown table. Every cell, headings included, is one markdown cell
/// whatever it holds: control characters made visible, `|` and `\\` escaped, and `<`, `>` and
/// `&` as HTML entities, so a run or protocol name can neither break the columns nor carry HTML.
public func markdownTable(_ header: [String], _ rows: [[String]]) -> String {
  var lines = ["| " + header.map(markdownCell).joined(separator: " | ") + " |", "|" + header.map { _ in "---" }.joined(separator: "|") + "|"]
  for row in rows { lines.append("| " + row.map(markdownCell).joined(separator: " | ") + " |") }
  return lines.joined(separator: "\n")
}

/// One markdown table cell's text (see `markdownTable`).
public func markdownCell(_ text: String) -> String {
  visible(text).replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "&", with: "&amp;")
    .replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}

/// A plain table with aligned columns.
public func textTable(_ header: [String], _ allRows: [[String]]) -> String {
  let header = header.map(visible), rows = allRows.map { $0.map(visible) }
  var widths = header.map(\.count)
  for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
  func line(_ cells: [String]) -> String {
    cells.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ").replacingOccurrences(of: " +$", with: "", options: .regularExpression)
  }
  return ([line(header)] + rows.map(line)).joined(separator: "\n")
}

/// `textTable(header, rows)`, leaving out the `droppable` columns (in that order) while the table
/// is wider than `width`; returns the table and the headings left out.
func fitToWidth(_ header: [String], _ rows: [[String]], width: Int, droppable: [String]) -> (table: String, left: [String]) {
  var header = header, rows = rows, left: [String] = []
  var table = textTable(header, rows)
  for name in droppable {
    guard table.split(separator: "\n").contains(where: { $0.count > width }), let i = header.firstIndex(of: name) else { continue }
    header.remove(at: i)
    rows = rows.map { var r = $0; if i < r.count { r.remove(at: i) }; return r }
    left.append(name)
    table = textTable(header, rows)
  }
  return (table, left)
}

/// One run in full: provenance, parameters, results with per-alphabet breakdowns, metrics.
public func renderRunDetail(_ detail: RunDetail, store: ResultsStore, format: ReportFormat) throws -> String {
  let mode = RunMode(tags: detail.tags)
  let transductive = TagKey.isTransductive(Dictionary(detail.tags.map { ($0.key, $0.value) }) { $1 })
  let evalOnly = mode != .train
  // Lake's runs are fixed episodes: the episode settings a lake20 entry carries (defaults of the
  // configuration) played no part in it, so they are not shown (they stay in the configuration).
  let lakeEntries = detail.params.filter { $0.key.hasPrefix("evaluation.") && $0.key.hasSuffix(".protocol") && $0.value == "lake20" }.map { String($0.key.dropLast("protocol".count)) }
  let shown = detail.params.filter { entry in
    if evalOnly && (entry.key.hasPrefix("training.") || entry.key == "seed") { return false }
    return !lakeEntries.contains { entry.key.hasPrefix($0) && entry.key != $0 + "protocol" && entry.key != $0 + "name" }
  }
  var perAlphabet: [String: [(String, Double, Int)]] = [:]
  for result in detail.results {
    let rows = try store.episodeRows(runID: detail.summary.id, protocolName: result.protocolName)
    var groups: [String: (Int, Int, Int)] = [:]
    for row in rows { if let a = row.alphabet { let g = groups[a] ?? (0, 0, 0); groups[a] = (g.0 + row.correct, g.1 + row.total, g.2 + 1) } }
    if !groups.isEmpty { perAlphabet[result.protocolName] = groups.keys.sorted().map { ($0, Double(groups[$0]!.0) / Double(groups[$0]!.1), groups[$0]!.2) } }
  }
  let validation = try store.metrics(runID: detail.summary.id, key: MetricKey.validationAccuracy)
  let targets = TargetReached.from(try store.metrics(runID: detail.summary.id, keyPrefix: TargetReached.prefix))
  if format == .json {
    var object: [String: Any] = [
      "run": detail.summary.id, "experiment": detail.summary.experiment, "status": detail.summary.status.rawValue,
      "started": detail.summary.startedAt, "finished": detail.summary.finishedAt as Any? ?? NSNull(),
      "durationSeconds": detail.summary.durationSeconds as Any? ?? NSNull(), "error": detail.summary.error as Any? ?? NSNull(),
      "configHash": detail.summary.configHash,
    ]
    object["provenance"] = Dictionary(uniqueKeysWithValues: detail.provenance.map { ($0.key, $0.value) })
    object["params"] = Dictionary(uniqueKeysWithValues: shown.map { ($0.key, $0.value) })
    object["mode"] = mode.rawValue
    object["transductive"] = transductive
    object["tags"] = Dictionary(uniqueKeysWithValues: detail.tags.map { ($0.key, $0.value) })
    object["results"] = detail.results.map { r -> [String: Any] in
      var o: [String: Any] = [
        "protocol": r.protocolName, "split": r.split, "ways": r.ways, "shots": r.shots, "queries": r.queries, "episodes": r.episodes, "accuracy": r.accuracy, "ciLow": r.ciLow,
        "ciHigh": r.ciHigh, "seconds": r.seconds,
      ]
      if let groups = perAlphabet[r.protocolName] { o["byAlphabet"] = Dictionary(uniqueKeysWithValues: groups.map { ($0.0, $0.1) }) }
      return o
    }
    object["validation"] = validation.map { ["step": $0.step, "accuracy": $0.value] }
    // Everything a notebook wants in one call (`pandas.json_normalize`, `pd.DataFrame`): every
    // metric's history with steps and times, and every protocol's per-episode rows.
    var histories: [String: [[String: Any]]] = [:]
    for point in try store.metrics(runID: detail.summary.id, keyPrefix: "") {
      histories[point.key, default: []].append(["step": point.step, "value": point.value, "time": point.time])
    }
    object["metrics"] = histories
    var episodes: [String: [[String: Any]]] = [:]
    for result in detail.results {
      episodes[result.protocolName] = try store.episodeRows(runID: detail.summary.id, protocolName: result.protocolName).map { row -> [String: Any] in
        ["episode": row.episode, "alphabet": row.alphabet as Any? ?? NSNull(), "correct": row.correct, "total": row.total]
      }
    }
    object["episodes"] = episodes
    object["targets"] = targets.map {
      ["target": $0.target, "step": $0.step, "trainingSeconds": $0.trainingSeconds, "wallSeconds": $0.wallSeconds, "pairs": $0.pairs, "images": $0.images] as [String: Any]
    }
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])) ?? Data()
    return String(decoding: data, as: UTF8.self)
  }
  var lines: [String] = []
  let s = detail.summary
  // A recorded value is one value on its line: a note's line break or carriage return cannot
  // forge a `tag reviewed: yes` line or overwrite one on a terminal, and in markdown no tag or
  // model id carries HTML (issue #45, causes F and G).
  func field(_ text: String) -> String { format == .markdown ? markdownCell(text) : visible(text) }
  lines.append("run \(field(s.id))")
  lines.append(
    "  experiment \(field(s.experiment)), \(mode == .train ? "trained" : mode.rawValue), \(s.status.rawValue), started \(field(s.startedAt))\(s.durationSeconds.map { ", took \(formatDuration($0))" } ?? "")")
  if transductive { lines.append("  \(transductiveLegend)") }
  if let error = s.error { lines.append("  error: \(field(error))") }
  for p in detail.provenance { lines.append("  \(field(p.key)): \(field(p.value))") }
  for t in detail.tags { lines.append("  tag \(field(t.key)): \(field(t.value))") }
  lines.append("")
  let resultRows = detail.results.map { r in
    [
      r.protocolName, r.split, "\(r.ways)-way \(r.shots)-shot", String(r.episodes), String(format: "%.2f%%", 100 * r.accuracy),
      String(format: "[%.2f, %.2f]", 100 * r.ciLow, 100 * r.ciHigh),
    ]
  }
  let resultHeader = ["protocol", "split", "task", "episodes", "accuracy", "95% CI"]
  lines.append(format == .markdown ? markdownTable(resultHeader, resultRows) : textTable(resultHeader, resultRows))
  for (name, groups) in perAlphabet.sorted(by: { $0.key < $1.key }) {
    lines.append("")
    lines.append("\(name) by alphabet:")
    let rows = groups.map { [$0.0, String(format: "%.2f%%", 100 * $0.1), String($0.2)] }
    lines.append(format == .markdown ? markdownTable(["alphabet", "accuracy", "episodes"], rows) : textTable(["alphabet", "accuracy", "episodes"], rows))
  }
  if !validation.isEmpty {
    lines.append("")
    lines.append("validation accuracy: " + validation.map { String(format: "%d: %.2f%%", $0.step, 100 * $0.value) }.joined(separator: ", "))
  }
  if !targets.isEmpty {
    lines.append("")
    let rows = targets.map {
      [TargetReached.text(100 * $0.target) + "%", String($0.step), formatDuration($0.trainingSeconds), formatDuration($0.wallSeconds), String(format: "%.0f", $0.pairs), String(format: "%.0f", $0.images)]
    }
    let header = ["validation target", "step", "training time", "wall time", "pairs", "images"]
    lines.append(format == .markdown ? markdownTable(header, rows) : textTable(header, rows))
  }
  lines.append("")
  lines.append(evalOnly ? "parameters (a run that did no training: its training settings are left out):" : "parameters:")
  for p in shown { lines.append("  \(p.key) = \(p.value)") }
  return lines.joined(separator: "\n")
}

/// Formats seconds as `1h02m`, `3m05s` or `42s`.
public func formatDuration(_ seconds: Double) -> String {
  guard seconds.isFinite, seconds >= 0 else { return "?" }
  let s = Int(seconds.rounded())
  if s >= 3600 { return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60) }
  if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
  return "\(s)s"
}
