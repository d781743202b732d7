import Foundation
import ResultsStore
import Support

/// Writes recorded runs in MLflow's file-store layout (the `mlruns` folder `mlflow ui
/// --backend-store-uri DIR` and `mlflow.search_runs` read), so that runs of the harness can be
/// looked at beside a user's other runs in the tracking UI they already use.
///
/// Layout, as MLflow's `FileStore` reads it:
///
///     DIR/0/meta.yaml                          the Default experiment FileStore expects
///     DIR/<experiment id>/meta.yaml            one experiment per experiment name
///     DIR/<experiment id>/<run id>/meta.yaml   status, start and end times, artifact location
///        params/<key>                          every setting of the configuration, flattened
///        metrics/<key>                         "timestamp-ms value step" per recorded point
///        tags/<key>                            tags, provenance (`oneshot.*`) and mlflow.runName
///        artifacts/                            config.json, report.html, run.json, the checkpoint
///
/// Identifiers are derived from the store, never from the clock: an experiment's id from its
/// name, a run's from its id (the UUID without dashes), every timestamp from the store. So
/// exporting the same runs again writes the same bytes (files whose bytes are unchanged are not
/// rewritten), and a run exported twice is one run. A marker file says the folder is an export
/// of this harness; a folder that holds anything else is refused.
public enum MLflowExport {
  /// Written at the folder's top: MLflow lists only folders there, so it does not see it.
  public static let markerName = ".oneshot-bench-export"
  /// Which files the export wrote in each run's folder (`<experiment id>/<run id>` to relative
  /// paths, JSON): a later export removes only those of them the run no longer has, never what a
  /// user added with MLflow's own client (issue #45, cause I).
  public static let manifestName = ".oneshot-bench-export-files.json"
  static let markerText = "oneshot-bench MLflow file-store export (format 1); `oneshot-bench export mlflow` rewrites the runs it wrote here\n"

  /// What one export did, for the command's summary line.
  public struct Summary: Sendable, Equatable {
    public var experiments = 0
    public var runs = 0
    public var filesWritten = 0
    public var filesUnchanged = 0
  }

  /// Exports `runs` of `store` into `folder`.
  public static func export(_ runs: [RunSummary], from store: ResultsStore, to folder: String, storeDescription: String) throws -> Summary {
    let root = URL(fileURLWithPath: folder).standardizedFileURL
    try prepare(root)
    var summary = Summary()
    var writer = Writer()
    try writer.write(root.appendingPathComponent(markerName), Data(markerText.utf8))
    // What earlier exports wrote; a folder exported before the manifest existed has none, and
    // then nothing of a run's folder is removed.
    var manifest: [String: [String]] =
      (try? Data(contentsOf: root.appendingPathComponent(manifestName))).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: [String]] } ?? [:]
    // The Default experiment (id 0) FileStore creates in a new folder: MLflow's UI opens on it.
    try writer.write(root.appendingPathComponent("0/meta.yaml"), experimentMeta(id: "0", name: "Default", root: root, time: 0))
    let byExperiment = Dictionary(grouping: runs, by: \.experiment)
    for name in byExperiment.keys.sorted() {
      let members = byExperiment[name]!
      let id = experimentID(name)
      let created = members.compactMap { milliseconds($0.startedAt) }.min() ?? 0
      try writer.write(root.appendingPathComponent("\(id)/meta.yaml"), experimentMeta(id: id, name: name, root: root, time: created))
      try writer.write(root.appendingPathComponent("\(id)/tags/oneshot.store"), Data(Secrets.redacted(storeDescription).utf8))
      summary.experiments += 1
      for run in members {
        let folderKey = "\(id)/\(runID(run.id))"
        manifest[folderKey] = try exportRun(run, experimentID: id, store: store, root: root, writer: &writer, previous: manifest[folderKey].map(Set.init) ?? [])
        summary.runs += 1
      }
    }
    let listing = try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys])
    try writer.write(root.appendingPathComponent(manifestName), listing)
    summary.filesWritten = writer.written
    summary.filesUnchanged = writer.unchanged
    return summary
  }

  /// MLflow's id of an experiment of this name: decimal digits of its name's SHA-256, stable
  /// across exports and machines (MLflow's own ids are decimal strings too).
  public static func experimentID(_ name: String) -> String {
    let value = UInt64(SHA256.hex(Array(name.utf8)).prefix(16), radix: 16)! & ((1 << 53) - 1)
    return String(max(value, 1))
  }

  /// MLflow's id of a run: the store's UUID without its dashes.
  public static func runID(_ id: String) -> String { id.replacingOccurrences(of: "-", with: "").lowercased() }

  /// A key as MLflow accepts it for params, metrics and tags: letters, digits, `_ - . / :` and
  /// spaces; anything else becomes `_` (`target@0.8.wall_s` becomes `target_0.8.wall_s`).
  public static func key(_ raw: String) -> String {
    var out = String(raw.unicodeScalars.prefix(250).map { s -> Character in
      let ok = (s.value < 128 && (CharacterSet.alphanumerics.contains(s) || "_-./: ".unicodeScalars.contains(s)))
      return ok ? Character(s) : "_"
    })
    // No empty, `.`, `..`, absolute or non-normal path: MLflow refuses those names.
    let parts = out.split(separator: "/", omittingEmptySubsequences: false).map { part -> String in
      part.isEmpty || part == "." || part == ".." ? "_" : String(part)
    }
    out = parts.joined(separator: "/")
    return out
  }

  // MARK: - one run

  /// Writes one run's folder; returns the files written there (relative paths, sorted).
  static func exportRun(_ run: RunSummary, experimentID: String, store: ResultsStore, root: URL, writer: inout Writer, previous: Set<String>) throws -> [String] {
    let detail = try store.run(run.id)
    let id = runID(run.id)
    let dir = root.appendingPathComponent("\(experimentID)/\(id)")
    var files: [String: Data] = [:]
    let start = milliseconds(run.startedAt) ?? 0
    let end = run.finishedAt.flatMap(milliseconds)
    let seed = detail.params.first { $0.key == "seed" }?.value
    let runName = "\(run.experiment)\(seed.map { " seed \($0)" } ?? "") \(run.id.prefix(8))"
    files["meta.yaml"] = runMeta(id: id, experimentID: experimentID, name: runName, status: run.status, start: start, end: end, artifacts: dir.appendingPathComponent("artifacts"))

    // Each key is a file under params/, metrics/ or tags/, and a `/` in a key is a folder: a key
    // that would be a file where another key made a folder (`p` beside `p/q`), or a folder where
    // another is a file, has its `/` written `_`, then a number if it is still taken (issue #45,
    // cause H: such keys failed every export of the store).
    var usedFiles = Set<String>(), usedFolders = Set<String>()
    // `a/b/c`: `a/b`, `a`.
    func folders(above path: String) -> [String] {
      var out: [String] = [], parent = path
      while let slash = parent.lastIndex(of: "/") {
        parent = String(parent[..<slash])
        out.append(parent)
      }
      return out
    }
    func clashes(_ path: String) -> Bool {
      usedFiles.contains(path) || usedFolders.contains(path) || folders(above: path).contains(where: usedFiles.contains)
    }
    func unique(_ folder: String, _ raw: String) -> String {
      var name = key(raw)
      if clashes(folder + "/" + name) { name = name.replacingOccurrences(of: "/", with: "_") }
      let base = name
      var n = 2
      while clashes(folder + "/" + name) { name = base + "_\(n)"; n += 1 }
      let path = folder + "/" + name
      usedFiles.insert(path)
      usedFolders.formUnion(folders(above: path))
      return path
    }
    for param in detail.params { files[unique("params", param.key)] = Data(Secrets.redacted(param.value).utf8) }

    // Metric histories, point by point, with the store's steps and times.
    var lines: [String: [String]] = [:]
    var order: [String] = []
    for point in try store.metrics(runID: run.id, keyPrefix: "") {
      if lines[point.key] == nil { order.append(point.key) }
      lines[point.key, default: []].append("\(milliseconds(point.time) ?? start) \(number(point.value)) \(point.step)")
    }
    for metric in order { files[unique("metrics", metric)] = Data((lines[metric]!.joined(separator: "\n") + "\n").utf8) }
    // Each protocol's result, as metrics at the run's end (step 0).
    let resultTime = end ?? start
    for result in detail.results {
      let base = "result." + result.protocolName
      for (field, value) in [("accuracy", result.accuracy), ("ci_low", result.ciLow), ("ci_high", result.ciHigh), ("episodes", Double(result.episodes)), ("seconds", result.seconds)] {
        files[unique("metrics", base + "." + field)] = Data("\(resultTime) \(number(value)) 0\n".utf8)
      }
    }

    // Tags: the run's own, its provenance, and MLflow's (run name, commit, note).
    var tags: [(String, String)] = detail.tags.map { ($0.key, $0.value) }
    tags += detail.provenance.map { ("oneshot." + $0.key, $0.value) }
    tags += [
      ("oneshot.run", run.id), ("oneshot.experiment", run.experiment), ("oneshot.config_hash", run.configHash), ("oneshot.status", run.status.rawValue),
      ("mlflow.runName", runName), ("mlflow.source.type", "LOCAL"), ("mlflow.source.name", "oneshot-bench"),
    ]
    if let error = run.error { tags.append(("oneshot.error", error)) }
    if let commit = detail.provenance.first(where: { $0.key == "git_commit" })?.value { tags.append(("mlflow.source.git.commit", commit)) }
    if let note = detail.tags.first(where: { $0.key == TagKey.note })?.value { tags.append(("mlflow.note.content", note)) }
    for (k, v) in tags { files[unique("tags", k)] = Data(Secrets.redacted(v).utf8) }

    // Artifacts: the configuration, the run's own report page, per-episode rows and the loss
    // history in one JSON file a notebook reads in one call, and the checkpoint.
    files["artifacts/config.json"] = Data(Secrets.redacted(detail.configJSON).utf8)
    files["artifacts/run.json"] = Data(Secrets.redacted(try renderRunDetail(detail, store: store, format: .json) + "\n").utf8)
    let (rows, protocols) = try reportRows(store: store, runs: [run])
    let hasMetrics = !detail.results.isEmpty || !(lines[MetricKey.trainingLoss] ?? []).isEmpty
    if hasMetrics {
      let page = try renderHTMLReport(
        store: store, rows: rows, protocols: protocols, groups: [],
        options: HTMLReportOptions(storeDescription: "MLflow export", selection: "run \(run.id)", focus: [run.id], writtenAt: run.finishedAt ?? run.startedAt))
      files["artifacts/report.html"] = Data(Secrets.redacted(page).utf8)
    }
    if let path = detail.provenance.first(where: { $0.key == "checkpoint_path" })?.value, UserFile.problem(path, maximumBytes: 1 << 34) == nil,
      let checkpoint = FileManager.default.contents(atPath: path)
    {
      files["artifacts/checkpoint/" + URL(fileURLWithPath: path).lastPathComponent] = checkpoint
    }
    try writer.sync(dir, files, previous: previous)
    return files.keys.sorted()
  }

  // MARK: - YAML, numbers, times

  static func experimentMeta(id: String, name: String, root: URL, time: Int64) -> Data {
    let text = """
      artifact_location: \(yaml(URL(fileURLWithPath: root.path + "/" + id, isDirectory: false).absoluteString))
      creation_time: \(time)
      experiment_id: \(yaml(id))
      last_update_time: \(time)
      lifecycle_stage: active
      name: \(yaml(name))

      """
    return Data(text.utf8)
  }

  static func runMeta(id: String, experimentID: String, name: String, status: RunStatus, start: Int64, end: Int64?, artifacts: URL) -> Data {
    // MLflow's RunStatus numbers: RUNNING 1, FINISHED 3, FAILED 4, KILLED 5.
    let code: Int
    switch status {
    case .running: code = 1
    case .completed: code = 3
    case .failed: code = 4
    case .interrupted: code = 5
    }
    let text = """
      artifact_uri: \(yaml(URL(fileURLWithPath: artifacts.path, isDirectory: false).absoluteString))
      deleted_time: null
      end_time: \(end.map(String.init) ?? "null")
      entry_point_name: ''
      experiment_id: \(yaml(experimentID))
      lifecycle_stage: active
      run_id: \(id)
      run_name: \(yaml(name))
      run_uuid: \(id)
      source_name: ''
      source_type: 4
      source_version: ''
      start_time: \(start)
      status: \(code)
      tags: []
      user_id: oneshot-bench

      """
    return Data(text.utf8)
  }

  /// A YAML double-quoted scalar (JSON's string escapes are a subset of YAML's).
  static func yaml(_ text: String) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: [text], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
    return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
  }

  /// A metric value as Python's `float()` reads it back exactly.
  static func number(_ value: Double) -> String {
    if value.isNaN { return "nan" }
    if value.isInfinite { return value > 0 ? "inf" : "-inf" }
    return "\(value)"
  }

  /// Milliseconds since 1970 of the store's `YYYY-MM-DDTHH:MM:SS(.fff)Z` times.
  static func milliseconds(_ text: String) -> Int64? {
    let bytes = Array(text.utf8)
    guard bytes.count >= 20, bytes[4] == UInt8(ascii: "-"), bytes[10] == UInt8(ascii: "T") else { return nil }
    func int(_ range: Range<Int>) -> Int? { Int(String(decoding: bytes[range], as: UTF8.self)) }
    guard let y = int(0..<4), let mo = int(5..<7), let d = int(8..<10), let h = int(11..<13), let mi = int(14..<16), let s = int(17..<19) else { return nil }
    var fraction = 0
    if bytes.count > 20, bytes[19] == UInt8(ascii: ".") {
      let digits = bytes[20...].prefix { $0 >= 48 && $0 <= 57 }.prefix(3)
      fraction = (Int(String(decoding: digits, as: UTF8.self)) ?? 0) * [1, 100, 10, 1][digits.count]
    }
    var t = tm()
    t.tm_year = Int32(y - 1900)
    t.tm_mon = Int32(mo - 1)
    t.tm_mday = Int32(d)
    t.tm_hour = Int32(h)
    t.tm_min = Int32(mi)
    t.tm_sec = Int32(s)
    return Int64(timegm(&t)) * 1000 + Int64(fraction)
  }

  // MARK: - the folder

  /// The folder must be new, empty, or an earlier export of this harness.
  static func prepare(_ root: URL) throws {
    let fm = FileManager.default
    var isDirectory: ObjCBool = false
    if fm.fileExists(atPath: root.path, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else { throw ReportError("\(root.path) is not a folder; nothing written: give export mlflow a new or empty folder (or an earlier export)") }
      let entries = (try? fm.contentsOfDirectory(atPath: root.path)) ?? []
      if !entries.isEmpty && !entries.contains(markerName) {
        throw ReportError(
          "\(root.path) holds \(entries.count) entr\(entries.count == 1 ? "y" : "ies") that an earlier `oneshot-bench export mlflow` did not write (e.g. \(entries.sorted().first!)); nothing written: choose a new or empty folder")
      }
    } else {
      do { try fm.createDirectory(at: root, withIntermediateDirectories: true) } catch {
        throw ReportError("cannot create the folder \(root.path) (\(failureReason(error, creatingFolder: root.path))); choose a writable folder")
      }
    }
  }

  /// Writes files whose bytes differ, counts what it left alone, and removes the files an earlier
  /// export wrote in a run's folder that the run no longer has (a tag deleted since); files it
  /// did not write (a user's tag, metric or artifact added with MLflow's client) stay.
  struct Writer {
    var written = 0
    var unchanged = 0

    mutating func write(_ url: URL, _ data: Data) throws {
      if let old = try? Data(contentsOf: url), old == data { unchanged += 1; return }
      do {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: url, options: .atomic)
      } catch {
        throw ReportError("cannot write \(url.path) (\(failureReason(error))); the files written so far stay, run the export again when the folder is writable")
      }
      written += 1
    }

    mutating func sync(_ dir: URL, _ files: [String: Data], previous: Set<String>) throws {
      // First what the run no longer has (a file where a folder now goes, e.g. after a tag `p`
      // gave way to `p/q`), then what it has.
      let fm = FileManager.default
      for relative in previous.subtracting(files.keys).sorted() where !relative.split(separator: "/").contains("..") {
        try? fm.removeItem(at: dir.appendingPathComponent(relative))
      }
      for (relative, data) in files.sorted(by: { $0.key < $1.key }) { try write(dir.appendingPathComponent(relative), data) }
    }
  }
}
