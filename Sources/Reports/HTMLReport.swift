import Foundation
import ResultsStore

// `report --format html`: one self-contained page (inline CSS, inline SVG, a few lines of inline
// script for highlighting a run), readable offline and attachable to a CI job:
//   learning curves (training loss, smoothed, and validation accuracy, against pairs seen and
//   against wall time), each protocol's accuracy with its interval per run, per-alphabet bars
//   for one run or two compared runs, seed groups, and the runs with their hyperparameters and
//   provenance.

/// What the page shows besides the runs: where they came from and which runs to break down.
public struct HTMLReportOptions {
  /// The store, as given on the command line.
  public var storeDescription: String
  /// The filters that selected the runs, for the header.
  public var selection: String
  /// Runs whose per-alphabet accuracy is charted (one, or two to compare); empty: the newest
  /// completed run with per-alphabet results.
  public var focus: [String]
  /// The time the header says the page was written (default: now); an export that must write
  /// the same bytes again gives a time from the store.
  public var writtenAt: String?

  public init(storeDescription: String, selection: String, focus: [String] = [], writtenAt: String? = nil) {
    self.storeDescription = storeDescription
    self.selection = selection
    self.focus = focus
    self.writtenAt = writtenAt
  }
}

/// Smoothing of the training-loss curves: TensorBoard's exponential moving average with
/// debiasing, weight 0.6 on the past.
let lossSmoothing = 0.6

/// The exponentially smoothed values, debiased at the start (as TensorBoard draws them).
func smoothed(_ values: [Double], weight: Double = lossSmoothing) -> [Double] {
  var last = 0.0, out: [Double] = []
  for (i, v) in values.enumerated() {
    last = last * weight + (1 - weight) * v
    out.append(last / (1 - pow(weight, Double(i + 1))))
  }
  return out
}

/// A run's label in legends and row labels: short id, experiment and seed.
func runLabel(_ row: ReportRow) -> String {
  var label = "\(row.summary.id.prefix(8)) \(row.summary.experiment)"
  if row.mode != .train { return label + " (\(row.mode.rawValue)\(row.transductive ? ", \(transductiveMark)" : ""))" }
  if row.transductive { label += " (\(transductiveMark))" }
  if let seed = row.params["seed"] { label += " s\(seed)" }
  return label
}

/// Per-alphabet accuracy of one protocol of a run: (alphabet, accuracy in [0, 1]).
func perAlphabet(store: ResultsStore, runID: String, protocolName: String) throws -> [(String, Double)] {
  var groups: [String: (correct: Int, total: Int)] = [:]
  for row in try store.episodeRows(runID: runID, protocolName: protocolName) {
    guard let alphabet = row.alphabet else { continue }
    let g = groups[alphabet] ?? (0, 0)
    groups[alphabet] = (g.correct + row.correct, g.total + row.total)
  }
  return groups.map { ($0.key, Double($0.value.correct) / Double(max($0.value.total, 1))) }
}

/// The page for `rows` (the listing's selection) and their seed groups: one section each, in
/// the order a reader wants them.
public func renderHTMLReport(store: ResultsStore, rows: [ReportRow], protocols: [String], groups: [SeedGroup], options: HTMLReportOptions) throws -> String {
  let styles = Dictionary(uniqueKeysWithValues: rows.enumerated().map { ($0.element.summary.id, SeriesStyle.forIndex($0.offset)) })
  var body = reportHeader(rows: rows, options: options)
  body += legendSection(rows: rows, styles: styles)
  body += try learningCurvesSection(store: store, rows: rows, styles: styles)
  body += protocolsSection(rows: rows, protocols: protocols, styles: styles)
  body += try alphabetsSection(store: store, focus: try focusRuns(rows: rows, store: store, requested: options.focus), protocols: protocols, styles: styles)
  body += seedGroupsSection(groups: groups, protocols: protocols)
  body += runsSection(rows: rows)
  return htmlPage(title: "oneshot-bench report", body: body)
}

/// The title, the store and the selection.
func reportHeader(rows: [ReportRow], options: HTMLReportOptions) -> String {
  "<header><h1>oneshot-bench report</h1><p>\(rows.count) run\(rows.count == 1 ? "" : "s") from <code>\(xmlEscaped(options.storeDescription))</code>"
    + "\(options.selection.isEmpty ? "" : " (\(xmlEscaped(options.selection)))"); written \(xmlEscaped(options.writtenAt ?? iso8601Now())).</p></header>"
}

/// Legend: one entry per run, the same colour and dash in every chart; click to highlight.
func legendSection(rows: [ReportRow], styles: [String: SeriesStyle]) -> String {
  var body = "<section><h2>Runs</h2><ul class=\"legend\">"
  for row in rows {
    let style = styles[row.summary.id]!
    body += "<li data-run=\"\(xmlEscaped(row.summary.id))\"><svg width=\"28\" height=\"10\"><line x1=\"0\" y1=\"5\" x2=\"28\" y2=\"5\" stroke=\"\(style.color)\" stroke-width=\"3\"\(style.dash.isEmpty ? "" : " stroke-dasharray=\"\(style.dash)\"")/></svg> \(xmlEscaped(runLabel(row)))</li>"
  }
  return body + "</ul><p class=\"note\">Click a run to highlight it in every chart; hover a mark for its values.</p></section>"
}

/// Training loss and validation accuracy by pairs seen and by wall time.
func learningCurvesSection(store: ResultsStore, rows: [ReportRow], styles: [String: SeriesStyle]) throws -> String {
  let formatter = ISO8601DateFormatter()
  formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
  var loss: [(pairs: LineSeries, time: LineSeries)] = [], validation: [(pairs: LineSeries, time: LineSeries)] = []
  for row in rows {
    let pairsPerStep = Double(row.params["training.pairsPerStep"] ?? "") ?? 1
    let start = formatter.date(from: row.summary.startedAt)
    func series(_ points: [MetricPoint], _ values: [Double]) -> (LineSeries, LineSeries) {
      let byPairs = zip(points, values).map { (x: Double($0.0.step) * pairsPerStep, y: $0.1) }
      let byTime = zip(points, values).compactMap { point, value -> (x: Double, y: Double)? in
        guard let start, let t = formatter.date(from: point.time) else { return nil }
        return (t.timeIntervalSince(start) / 60, value)
      }
      let style = styles[row.summary.id]!, label = runLabel(row)
      return (LineSeries(label: label, run: row.summary.id, style: style, points: byPairs), LineSeries(label: label, run: row.summary.id, style: style, points: byTime))
    }
    let lossPoints = try store.metrics(runID: row.summary.id, key: MetricKey.trainingLoss)
    loss.append(series(lossPoints, smoothed(lossPoints.map(\.value))))
    let validationPoints = try store.metrics(runID: row.summary.id, key: MetricKey.validationAccuracy)
    var curves = series(validationPoints, validationPoints.map { 100 * $0.value })
    // Each validation target at the validation that first reached it.
    for reached in row.targets {
      guard let point = validationPoints.first(where: { $0.step == reached.step }) else { continue }
      let caption = "\(runLabel(row)): validation \(TargetReached.text(100 * reached.target))% reached at step \(reached.step), after \(formatDuration(reached.trainingSeconds)) of training (\(formatDuration(reached.wallSeconds)) with validation)"
      curves.0.marks.append((Double(point.step) * pairsPerStep, 100 * point.value, caption))
      if let start, let t = formatter.date(from: point.time) { curves.1.marks.append((t.timeIntervalSince(start) / 60, 100 * point.value, caption)) }
    }
    validation.append(curves)
  }
  var body = "<section><h2>Learning curves</h2><div class=\"grid\">"
  body += lineChart(id: "loss-by-pairs", title: "Training loss (smoothed) by pairs seen", xLabel: "training pairs seen", yLabel: "BCE loss (EMA 0.6)", series: loss.map(\.pairs))
  body += lineChart(
    id: "validation-by-pairs", title: "Validation accuracy by pairs seen", xLabel: "training pairs seen", yLabel: "validation accuracy (%)", series: validation.map(\.pairs))
  body += lineChart(id: "loss-by-time", title: "Training loss (smoothed) by wall time", xLabel: "wall time since the run started (minutes)", yLabel: "BCE loss (EMA 0.6)", series: loss.map(\.time))
  body += lineChart(
    id: "validation-by-time", title: "Validation accuracy by wall time", xLabel: "wall time since the run started (minutes)", yLabel: "validation accuracy (%)",
    series: validation.map(\.time))
  let marked = rows.contains { !$0.targets.isEmpty } ? " A diamond marks the first validation that reached a target of the run (training.targets); its caption gives the time to it." : ""
  return body + "</div><p class=\"note\">Validation: episodes from the held-out background alphabets, the model-selection set. A resumed run's wall time includes the pause.\(marked)</p></section>"
}

/// Accuracy per protocol, per run.
func protocolsSection(rows: [ReportRow], protocols: [String], styles: [String: SeriesStyle]) -> String {
  var body = "<section><h2>Accuracy per protocol</h2><p class=\"note\">Dot: accuracy; whisker: 95% confidence interval over the protocol's episodes (Wilson's). "
  body += "Every panel has the same accuracy scale, so whiskers compare across protocols.</p>"
  let panels = protocols.map { name in
    rows.compactMap { row -> DotRow? in
      guard let r = row.results[name] else { return nil }
      return DotRow(label: runLabel(row), run: row.summary.id, style: styles[row.summary.id]!, value: 100 * r.accuracy, low: 100 * r.ciLow, high: 100 * r.ciHigh)
    }
  }
  let scale = sharedAccuracyRange(panels)
  for (name, dotRows) in zip(protocols, panels) { body += dotWhiskerChart(id: "protocol-\(name)", title: name, xLabel: "accuracy (%)", rows: dotRows, range: scale) }
  return body + "</section>"
}

/// Per-alphabet breakdown of one or two runs (nothing when no run has one).
func alphabetsSection(store: ResultsStore, focus: [ReportRow], protocols: [String], styles: [String: SeriesStyle]) throws -> String {
  guard !focus.isEmpty else { return "" }
  var body = "<section><h2>Per-alphabet accuracy</h2><p class=\"note\">\(focus.map { xmlEscaped(runLabel($0)) }.joined(separator: " vs ")); sorted by the first run's accuracy.</p>"
  for name in protocols {
    let tables = try focus.map { try perAlphabet(store: store, runID: $0.summary.id, protocolName: name) }
    guard let first = tables.first, !first.isEmpty else { continue }
    let lookup = tables.map { Dictionary($0, uniquingKeysWith: { a, _ in a }) }
    let categories = Set(tables.flatMap { $0.map(\.0) }).sorted { (lookup[0][$0] ?? -1, $1) > (lookup[0][$1] ?? -1, $0) }
    body += barChart(
      id: "alphabets-\(name)", title: "\(name) by alphabet", xLabel: "accuracy (%)", categories: categories,
      series: zip(focus, lookup).map { row, values in (runLabel(row), row.summary.id, styles[row.summary.id]!, categories.map { values[$0].map { 100 * $0 } }) })
  }
  return body + "</section>"
}

/// Seed groups: the table and one chart per protocol.
func seedGroupsSection(groups: [SeedGroup], protocols: [String]) -> String {
  var body =
    "<section><h2>Seed groups</h2><p class=\"note\">Completed runs whose configurations differ only by seed. Mean over seeds; whisker: 95% interval across seeds (Student t); one seed: the pooled-episode interval.</p>"
  let (header, rows, short) = seedGroupTable(groups, protocols: protocols)
  body += htmlTable(header, rows)
  let names = protocols.filter { short[$0]! != $0 }.map { "\(short[$0]!) = \($0)" }
  if !names.isEmpty { body += "<p class=\"note\">\(xmlEscaped(names.joined(separator: "; ")))</p>" }
  let panels = protocols.map { name in
    groups.enumerated().compactMap { i, group -> DotRow? in
      guard let a = group.protocols[name] else { return nil }
      let interval = a.acrossSeeds ?? a.pooledEpisodes
      return DotRow(
        label: "\(group.key) \(group.experiment) (\(a.seeds) seed\(a.seeds == 1 ? "" : "s"))", run: group.key, style: .forIndex(i), value: 100 * a.mean, low: 100 * interval.low,
        high: 100 * interval.high)
    }
  }
  let scale = sharedAccuracyRange(panels)
  for (name, dotRows) in zip(protocols, panels) {
    body += dotWhiskerChart(id: "groups-\(name)", title: "\(name), mean over seeds (same scale in every panel)", xLabel: "accuracy (%)", rows: dotRows, range: scale)
  }
  return body + "</section>"
}

/// The runs table with their settings, and every run's provenance and tags.
func runsSection(rows: [ReportRow]) -> String {
  var body = "<section><h2>Runs and hyperparameters</h2>"
  let columns = [
    "run", "experiment", "status", "mode", "group", "backbone", "input", "steps", "pairs/step", "optimizer", "lr", "precision", "seed", "best validation", "time to target", "duration",
    "note",
  ]
  // Training settings through the listings' one definition (eval-only runs show "-", auto
  // precision shows what it resolved to).
  let settings = ["training.steps", "training.pairsPerStep", "training.optimizer.kind", "training.optimizer.learningRate", "training.precision", "seed"]
  let tableRows = rows.map { row -> String in
    let cells =
      [String(row.summary.id.prefix(8)), row.summary.experiment, row.summary.status.rawValue, runMode(row), row.group, row.params["model.backbone"] ?? "", row.params["model.inputSize"] ?? ""]
      + settings.map { row.mode == .train ? row.shownParameter($0) ?? "" : "-" }
      + [
        row.bestValidation.map { String(format: "%.2f%% @%d", 100 * $0.value, $0.step) } ?? "-",
        row.targets.map { "\(TargetReached.text(100 * $0.target))%: \(formatDuration($0.trainingSeconds))" }.joined(separator: ", "),
        row.summary.durationSeconds.map(formatDuration) ?? "-", row.tags[TagKey.note] ?? "",
      ]
    let provenance = row.provenance.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "\n")
    return "<tr data-run=\"\(xmlEscaped(row.summary.id))\" title=\"\(xmlEscaped("run \(row.summary.id)\nstarted \(row.summary.startedAt)\n" + provenance))\">"
      + cells.map { "<td>\(xmlEscaped($0))</td>" }.joined() + "</tr>"
  }
  body += "<table><thead><tr>\(columns.map { "<th>\(xmlEscaped($0))</th>" }.joined())</tr></thead><tbody>\(tableRows.joined())</tbody></table>"
  if rows.contains(where: \.transductive) { body += "<p class=\"note\">\(xmlEscaped(transductiveLegend)).</p>" }
  body += "<details><summary>Provenance of every run</summary>"
  for row in rows {
    body += "<h3>\(xmlEscaped(row.summary.id)) \(xmlEscaped(row.summary.experiment))</h3>"
    body += htmlTable(["key", "value"], row.provenance.sorted { $0.key < $1.key }.map { [$0.key, $0.value] } + row.tags.sorted { $0.key < $1.key }.map { ["tag \($0.key)", $0.value] })
  }
  return body + "</details></section>"
}

/// `train`, `external`, `eval-only`, or `eval-only, ensemble of N`; `, transductive` after it
/// for a run that used each episode's queries together.
func runMode(_ row: ReportRow) -> String {
  let mode: String
  if row.mode != .evalOnly {
    mode = row.mode.rawValue
  } else if let members = row.tags["ensemble_members"] {
    mode = "eval-only, ensemble of \(members)"
  } else {
    mode = "eval-only"
  }
  return mode + (row.transductive ? ", \(transductiveMark)" : "")
}

/// The runs to break down by alphabet: those asked for, or the newest completed run that has
/// per-alphabet results.
func focusRuns(rows: [ReportRow], store: ResultsStore, requested: [String]) throws -> [ReportRow] {
  if !requested.isEmpty {
    return try requested.map { id in
      let full = try store.resolveRunID(id)
      guard let row = rows.first(where: { $0.summary.id == full }) else { throw ReportError("run \(id) is not among the selected runs; drop the filters or choose another --focus") }
      return row
    }
  }
  for row in rows.sorted(by: { $0.summary.startedAt > $1.summary.startedAt }) where row.summary.status == .completed {
    for name in row.results.keys where try !perAlphabet(store: store, runID: row.summary.id, protocolName: name).isEmpty { return [row] }
  }
  return []
}

/// A report that cannot be made as asked: one line for the user.
public struct ReportError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

func htmlTable(_ header: [String], _ rows: [[String]]) -> String {
  "<table><thead><tr>\(header.map { "<th>\(xmlEscaped($0))</th>" }.joined())</tr></thead><tbody>"
    + rows.map { "<tr>\($0.map { "<td>\(xmlEscaped($0))</td>" }.joined())</tr>" }.joined() + "</tbody></table>"
}

func iso8601Now() -> String {
  let formatter = ISO8601DateFormatter()
  return formatter.string(from: Date())
}

func htmlPage(title: String, body: String) -> String {
  """
  <!DOCTYPE html>
  <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
  <title>\(xmlEscaped(title))</title>
  <style>
  body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; margin: 24px auto; max-width: 1120px; color: #222; padding: 0 12px; }
  h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; } h3 { font-size: 13px; }
  .note { color: #666; font-size: 12px; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px; }
  figure.chart { margin: 8px 0; } figcaption { font-size: 13px; font-weight: 600; margin-bottom: 2px; }
  ul.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12px; }
  ul.legend li { cursor: pointer; } ul.legend li.on { font-weight: 700; }
  table { border-collapse: collapse; font-size: 12px; margin: 8px 0; } th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; } th { background: #f4f4f4; }
  tr.on td { background: #fff6d5; }
  svg .series.dim { opacity: 0.15; }
  </style></head>
  <body>
  \(body)
  <script>
  (function () {
    var chosen = null;
    function show(run) {
      chosen = chosen === run ? null : run;
      document.querySelectorAll('svg .series').forEach(function (g) { g.classList.toggle('dim', chosen !== null && g.dataset.run !== chosen); });
      document.querySelectorAll('[data-run]').forEach(function (e) { if (!e.classList.contains('series')) { e.classList.toggle('on', e.dataset.run === chosen); } });
    }
    document.querySelectorAll('ul.legend li, tbody tr[data-run]').forEach(function (e) { e.addEventListener('click', function () { show(e.dataset.run); }); });
    document.body.dataset.ready = 'yes';
  })();
  </script>
  </body></html>

  """
}
