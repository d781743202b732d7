import Foundation

// Charts as inline SVG, written here so that a report is one self-contained file (no network,
// no scripts or fonts from elsewhere). Three kinds: lines (learning curves), dots with whiskers
// (accuracies with their intervals) and horizontal bars (per-alphabet accuracy). Every chart has
// a title, labelled axes with units and a legend or row labels; every series is a
// `<g class="series">` and every bar a `<rect class="bar">`, which the browser test counts.

/// One line of a line chart.
struct LineSeries {
  let label: String
  let run: String
  let style: SeriesStyle
  let points: [(x: Double, y: Double)]
  /// Points marked on the line (a validation target reached), each with its caption.
  var marks: [(x: Double, y: Double, caption: String)] = []
}

/// Colour and dash of a run's marks, the same in every chart of a report.
struct SeriesStyle {
  let color: String
  let dash: String

  /// Ten colours (Tableau 10), then the same with dashes, then dotted: 30 distinguishable runs.
  static func forIndex(_ i: Int) -> SeriesStyle {
    let colors = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#5f6b73"]
    let dashes = ["", "7 3", "2 3"]
    return SeriesStyle(color: colors[i % colors.count], dash: dashes[(i / colors.count) % dashes.count])
  }
}

/// Text for XML: the five special characters escaped, control characters dropped.
func xmlEscaped(_ text: String) -> String {
  var out = ""
  out.reserveCapacity(text.count)
  for scalar in text.unicodeScalars {
    switch scalar {
    case "&": out += "&amp;"
    case "<": out += "&lt;"
    case ">": out += "&gt;"
    case "\"": out += "&quot;"
    case "'": out += "&#39;"
    default:
      if scalar.value < 0x20 && scalar != "\n" && scalar != "\t" { continue }
      out.unicodeScalars.append(scalar)
    }
  }
  return out
}

/// About `count` round tick values covering `low...high`.
func niceTicks(_ low: Double, _ high: Double, count: Int = 5) -> [Double] {
  guard high > low, low.isFinite, high.isFinite else { return [low] }
  let raw = (high - low) / Double(max(count, 1))
  let magnitude = pow(10, floor(log10(raw)))
  let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
  // Multiples of the step, computed from integers so that 0.6 is 6 x 0.1, not 0.2 + 0.2 + 0.2.
  let first = Int(ceil(low / step - 1e-9)), last = Int(floor(high / step + 1e-9))
  guard first <= last else { return [low] }
  let (mantissa, exponent) = (step / magnitude, log10(magnitude).rounded())
  return (first...last).map { k in
    let value = Double(k) * mantissa
    return exponent >= 0 ? value * pow(10, exponent) : value / pow(10, -exponent)
  }
}

/// Compact numbers for tick labels: 950, 1.2k, 3.5M; fractions with as many digits as needed.
func tickLabel(_ value: Double) -> String {
  let a = abs(value)
  if a >= 1e6 { return trimmed(String(format: "%.2f", value / 1e6)) + "M" }
  if a >= 1e4 { return trimmed(String(format: "%.1f", value / 1e3)) + "k" }
  if a >= 100 || value == value.rounded() { return String(format: "%.0f", value) }
  return trimmed(String(format: "%.3f", value))
}

private func trimmed(_ s: String) -> String {
  guard s.contains(".") else { return s }
  var t = s
  while t.hasSuffix("0") { t.removeLast() }
  if t.hasSuffix(".") { t.removeLast() }
  return t
}

/// A plot area and its axes: maps data to pixels and draws the frame, grid, ticks and labels.
struct PlotFrame {
  let width: Double
  let height: Double
  let left: Double
  let right: Double
  let top: Double
  let bottom: Double
  let x: ClosedRange<Double>
  let y: ClosedRange<Double>

  var plotWidth: Double { width - left - right }
  var plotHeight: Double { height - top - bottom }

  func px(_ value: Double) -> Double { left + (value - x.lowerBound) / max(x.upperBound - x.lowerBound, 1e-12) * plotWidth }
  func py(_ value: Double) -> Double { top + plotHeight - (value - y.lowerBound) / max(y.upperBound - y.lowerBound, 1e-12) * plotHeight }

  /// Grid, ticks and axis titles.
  func axes(xLabel: String, yLabel: String?, xTicks: [Double], yTicks: [Double]) -> String {
    var out = "<g class=\"axes\" font-size=\"11\" fill=\"#333\">"
    out += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" fill=\"none\" stroke=\"#999\"/>"
    for t in xTicks where x.contains(t) {
      out += "<line x1=\"\(f(px(t)))\" x2=\"\(f(px(t)))\" y1=\"\(f(top))\" y2=\"\(f(top + plotHeight))\" stroke=\"#eee\"/>"
      out += "<text x=\"\(f(px(t)))\" y=\"\(f(top + plotHeight + 14))\" text-anchor=\"middle\">\(tickLabel(t))</text>"
    }
    for t in yTicks where y.contains(t) {
      out += "<line x1=\"\(f(left))\" x2=\"\(f(left + plotWidth))\" y1=\"\(f(py(t)))\" y2=\"\(f(py(t)))\" stroke=\"#eee\"/>"
      out += "<text x=\"\(f(left - 5))\" y=\"\(f(py(t) + 4))\" text-anchor=\"end\">\(tickLabel(t))</text>"
    }
    out += "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\" font-size=\"12\">\(xmlEscaped(xLabel))</text>"
    if let yLabel {
      out += "<text transform=\"translate(14 \(f(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">\(xmlEscaped(yLabel))</text>"
    }
    return out + "</g>"
  }
}

/// Pixel coordinates with one decimal.
func f(_ value: Double) -> String { String(format: "%.1f", value) }

/// A chart's opening tag and title; `kind` and the series count are attributes for tests.
func chartOpen(id: String, kind: String, title: String, width: Double, height: Double, series: Int) -> String {
  "<figure class=\"chart\"><figcaption>\(xmlEscaped(title))</figcaption>"
    + "<svg id=\"\(xmlEscaped(id))\" class=\"chart \(kind)\" data-series=\"\(series)\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(f(width))\" height=\"\(f(height))\" viewBox=\"0 0 \(f(width)) \(f(height))\" role=\"img\" aria-label=\"\(xmlEscaped(title))\">"
}

/// Lines of (x, y) points, one per run; points sorted by x. Empty series are left out.
func lineChart(id: String, title: String, xLabel: String, yLabel: String, series allSeries: [LineSeries], yRange: ClosedRange<Double>? = nil) -> String {
  let series = allSeries.filter { !$0.points.isEmpty }
  let xs = series.flatMap { $0.points.map(\.x) }, ys = series.flatMap { $0.points.map(\.y) }
  guard let xMin = xs.min(), let xMax = xs.max(), let yMin = ys.min(), let yMax = ys.max() else {
    return "<figure class=\"chart empty\"><figcaption>\(xmlEscaped(title))</figcaption><p class=\"note\">No recorded points for the selected runs.</p></figure>"
  }
  let xTicks = niceTicks(min(xMin, 0), xMax)
  let yPad = max((yMax - yMin) * 0.05, 1e-3)
  let yTicks = niceTicks(yRange?.lowerBound ?? (yMin - yPad), yRange?.upperBound ?? (yMax + yPad))
  let frame = PlotFrame(
    width: 520, height: 300, left: 58, right: 12, top: 10, bottom: 42, x: (xTicks.first ?? 0)...max(xTicks.last ?? 1, xMax),
    // The padding stays in the frame: a line from the lowest to the highest point would otherwise
    // run along the frame's edges, as if it left the plot.
    y: (yRange?.lowerBound ?? min(yTicks.first ?? yMin, yMin - yPad))...(yRange?.upperBound ?? max(yTicks.last ?? yMax, yMax + yPad)))
  var out = chartOpen(id: id, kind: "lines", title: title, width: frame.width, height: frame.height, series: series.count)
  out += frame.axes(xLabel: xLabel, yLabel: yLabel, xTicks: xTicks, yTicks: yTicks)
  for s in series {
    let path = s.points.map { "\(f(frame.px($0.x))),\(f(frame.py($0.y)))" }.joined(separator: " ")
    out += "<g class=\"series\" data-run=\"\(xmlEscaped(s.run))\"><title>\(xmlEscaped(s.label))</title>"
    if s.points.count == 1 {
      out += "<circle cx=\"\(f(frame.px(s.points[0].x)))\" cy=\"\(f(frame.py(s.points[0].y)))\" r=\"3\" fill=\"\(s.style.color)\"/>"
    } else {
      out += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(s.style.color)\" stroke-width=\"1.6\"\(s.style.dash.isEmpty ? "" : " stroke-dasharray=\"\(s.style.dash)\"")/>"
    }
    for mark in s.marks {
      let (x, y) = (frame.px(mark.x), frame.py(mark.y))
      out += "<path class=\"target\" d=\"M\(f(x)),\(f(y - 5)) L\(f(x + 5)),\(f(y)) L\(f(x)),\(f(y + 5)) L\(f(x - 5)),\(f(y)) Z\" fill=\"white\" stroke=\"\(s.style.color)\" stroke-width=\"1.6\"><title>\(xmlEscaped(mark.caption))</title></path>"
    }
    out += "</g>"
  }
  return out + "</svg></figure>"
}

/// One row of a dot-and-whisker chart.
struct DotRow {
  let label: String
  let run: String
  let style: SeriesStyle
  let value: Double
  let low: Double
  let high: Double
}

/// The accuracy axis (percent) that holds every dot and whisker of `panels`, with a margin on
/// both sides so that no dot or whisker end sits on the frame; nil when there is nothing to show.
func sharedAccuracyRange(_ panels: [[DotRow]]) -> ClosedRange<Double>? {
  let rows = panels.flatMap { $0 }
  guard let low = rows.map(\.low).min(), let high = rows.map(\.high).max() else { return nil }
  let span = max(high - low, 1)
  return max(0, low - 0.08 * span)...min(100, high + 0.08 * span)
}

/// Values with intervals, one row each, labelled at the left (accuracies in percent), on the
/// given accuracy axis (panels that are read side by side share one) or one fitted to the rows.
func dotWhiskerChart(id: String, title: String, xLabel: String, rows: [DotRow], range given: ClosedRange<Double>? = nil) -> String {
  guard !rows.isEmpty, let range = given ?? sharedAccuracyRange([rows]) else { return "" }
  let xTicks = niceTicks(range.lowerBound, range.upperBound)
  let rowHeight = 20.0
  let frame = PlotFrame(width: 760, height: 52 + rowHeight * Double(rows.count), left: 300, right: 16, top: 8, bottom: 44, x: range, y: 0...Double(rows.count))
  var out = chartOpen(id: id, kind: "dots", title: title, width: frame.width, height: frame.height, series: rows.count)
  out += frame.axes(xLabel: xLabel, yLabel: nil, xTicks: xTicks, yTicks: [])
  for (i, row) in rows.enumerated() {
    let y = frame.top + rowHeight * (Double(i) + 0.5)
    let label = row.label.count > 46 ? String(row.label.prefix(45)) + "…" : row.label
    out += "<g class=\"series\" data-run=\"\(xmlEscaped(row.run))\"><title>\(xmlEscaped(row.label)): \(String(format: "%.2f%% [%.2f, %.2f]", row.value, row.low, row.high))</title>"
    out += "<text x=\"\(f(frame.left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\" font-size=\"11\">\(xmlEscaped(label))</text>"
    out += "<line x1=\"\(f(frame.px(row.low)))\" x2=\"\(f(frame.px(row.high)))\" y1=\"\(f(y))\" y2=\"\(f(y))\" stroke=\"\(row.style.color)\" stroke-width=\"2\"/>"
    out += "<circle cx=\"\(f(frame.px(row.value)))\" cy=\"\(f(y))\" r=\"4\" fill=\"\(row.style.color)\"/></g>"
  }
  return out + "</svg></figure>"
}

/// Horizontal bars: one group per category, one bar per series, categories in the given order.
func barChart(id: String, title: String, xLabel: String, categories: [String], series: [(label: String, run: String, style: SeriesStyle, values: [Double?])]) -> String {
  guard !categories.isEmpty, !series.isEmpty else { return "" }
  let bar = 12.0, gap = 6.0
  let groupHeight = bar * Double(series.count) + gap
  let frame = PlotFrame(width: 700, height: 52 + groupHeight * Double(categories.count), left: 230, right: 16, top: 8, bottom: 44, x: 0...100, y: 0...1)
  var out = chartOpen(id: id, kind: "bars", title: title, width: frame.width, height: frame.height, series: series.count)
  out += frame.axes(xLabel: xLabel, yLabel: nil, xTicks: niceTicks(0, 100), yTicks: [])
  for (c, category) in categories.enumerated() {
    let top = frame.top + groupHeight * Double(c) + gap / 2
    let label = category.count > 34 ? String(category.prefix(33)) + "…" : category
    out += "<text x=\"\(f(frame.left - 6))\" y=\"\(f(top + bar * Double(series.count) / 2 + 4))\" text-anchor=\"end\" font-size=\"11\">\(xmlEscaped(label))</text>"
  }
  for (s, item) in series.enumerated() {
    out += "<g class=\"series\" data-run=\"\(xmlEscaped(item.run))\">"
    for (c, category) in categories.enumerated() {
      guard let value = item.values[c] else { continue }
      let top = frame.top + groupHeight * Double(c) + gap / 2 + bar * Double(s)
      out += "<rect class=\"bar\" x=\"\(f(frame.left))\" y=\"\(f(top))\" width=\"\(f(max(frame.px(value) - frame.left, 0.5)))\" height=\"\(f(bar - 1))\" fill=\"\(item.style.color)\">"
      out += "<title>\(xmlEscaped(item.label)), \(xmlEscaped(category)): \(String(format: "%.2f%%", value))</title></rect>"
    }
    out += "</g>"
  }
  return out + "</svg></figure>"
}
