import Episodes
import Foundation
import Model
import Reports
import Support

// Fuzz entry points: each feeds untrusted bytes to one reader of the harness. A thrown error is
// the expected answer to bad input; a crash, a trap or a hang is a bug. The same function runs
// under libFuzzer (`scripts/fuzz TARGET SECONDS`, a build with -DFUZZING and
// -sanitize=fuzzer,address) and in `swift test`, which replays every committed corpus input and
// every input that once crashed (Tests/Fuzz/<target>/).

/// What a fuzz target reads.
package enum FuzzTarget: String, CaseIterable {
  /// An experiment file: JSON scan, strict decoding, every value's checks, canonical form.
  case experiment
  /// A baseline file for the CI gate.
  case baseline
  /// A checkpoint: safetensors header and offsets, model_config metadata, tensor shapes.
  case checkpoint
  /// A PNG image, decoded and resized as image folders are.
  case png
  /// A zip archive read as the Omniglot catalog reads images_evaluation.zip.
  case zip
  /// An argument vector (NUL-separated) parsed by every subcommand with its bounds; read by
  /// OneshotCLI's `fuzzInput`, which knows the commands.
  case cli
  /// What an outside scorer writes (lines): a hello line, then embedding and class-score lines.
  case scorer
  /// Folder names (LF-separated raw bytes) made into an image folder's groups and classes, then
  /// scanned as `dataset verify --folder` and a run do.
  case names
  /// A tag's key and value (NUL-separated) through every path a report or export takes:
  /// MLflow's key mapping, terminal, markdown, CSV and HTML escaping, password redaction.
  case tags
}

/// A scratch folder of this process for readers that take files.
package let fuzzScratch: URL = {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("oneshot-fuzz-\(getpid())")
  try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}()

/// Feeds `bytes` to `target`'s reader; returns whether it accepted them.
@discardableResult
package func fuzz(_ target: FuzzTarget, _ bytes: [UInt8]) -> Bool {
  switch target {
  case .experiment:
    guard let config = try? ExperimentConfig.decode(Data(bytes), source: "fuzz") else { return false }
    // What a run does next with an accepted file: its canonical form, hash and parameters.
    return !config.hash.isEmpty && !flattenJSON(config.canonicalJSON).isEmpty
  case .baseline:
    return (try? Baseline.decode(Data(bytes), path: "fuzz")) != nil
  case .checkpoint:
    let url = fuzzScratch.appendingPathComponent("input.safetensors")
    guard (try? Data(bytes).write(to: url)) != nil else { return false }
    return (try? Checkpoint.readModel(url)) != nil
  case .png:
    guard bytes.count <= 1 << 20, let image = try? GrayImage.decodePNG(bytes, name: "fuzz") else { return false }
    return image.resized(width: 52, height: 52).pixels.count == 52 * 52
  case .zip:
    let url = fuzzScratch.appendingPathComponent("images_evaluation.zip")
    guard (try? Data(bytes).write(to: url)) != nil else { return false }
    return (try? OmniglotDataset(root: fuzzScratch).load(.evaluation, size: 28)) != nil
  case .cli:
    return false  // the commands live above this module: OneshotCLI's fuzzInput reads it
  case .scorer:
    return fuzzScorerLines(bytes)
  case .names:
    return fuzzFolderNames(bytes)
  case .tags:
    return fuzzTag(bytes)
  }
}

/// A fuzz finding that is not a crash of its own: a promise of the code broken (`check` traps).
private func check(_ condition: Bool, _ what: @autoclosure () -> String) {
  if !condition { fatalError("fuzz: \(what())") }
}

private func fuzzScorerLines(_ bytes: [UInt8]) -> Bool {
  guard bytes.count <= 1 << 16 else { return false }
  let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).prefix(512).map(String.init)
  guard let first = lines.first else { return false }
  let hello = ExternalScorer.parseHello(first)
  if let hello {
    check((8...512).contains(hello.inputSize) && !hello.model.isEmpty && hello.model.count <= 200, "hello accepted out of bounds: \(first)")
    check(hello.output != .episodes || hello.version == 2, "episodes under version 1")
    check(!hello.transductive || hello.output == .episodes, "transductive without episodes")
  }
  for line in lines.dropFirst() {
    if let vector = ExternalScorer.parseEmbedding(line) { check(!vector.isEmpty, "an empty embedding accepted") }
    for ways in [1, 5, 20] {
      if case .success(let row) = ExternalScorer.parseClassScores(line, ways: ways) { check(row.count == ways && row.allSatisfy(\.isFinite), "class scores accepted: \(line)") }
    }
  }
  return hello != nil
}

/// Two 4x4 PNGs, the images of every fuzzed class.
private let fuzzPNGs: [[UInt8]] = [0, 255].map { value in (try? GrayImage(width: 4, height: 4, pixels: [UInt8](repeating: value, count: 16)).encodePNG()) ?? [] }

private func fuzzFolderNames(_ bytes: [UInt8]) -> Bool {
  guard bytes.count <= 4096 else { return false }
  let names = bytes.split(separator: 0x0A).prefix(12).map { Array($0.filter { $0 != 0 && $0 != 0x2F }) }.filter { !$0.isEmpty && $0 != [0x2E] && $0 != [0x2E, 0x2E] }
  let root = fuzzScratch.appendingPathComponent("names")
  try? FileManager.default.removeItem(at: root)
  defer { try? FileManager.default.removeItem(at: root) }
  func make(_ parts: [[UInt8]]) -> [UInt8] { Array(root.path.utf8) + parts.flatMap { [0x2F] + $0 } }
  func mkdirRaw(_ path: [UInt8]) { _ = (path + [0]).withUnsafeBufferPointer { mkdir(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), 0o755) } }
  func writeRaw(_ path: [UInt8], _ data: [UInt8]) {
    let fd = (path + [0]).withUnsafeBufferPointer { open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
    guard fd >= 0 else { return }
    _ = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
  }
  mkdirRaw(Array(root.path.utf8))
  mkdirRaw(make([Array("g".utf8)]))
  for name in names {
    // The name as a class (in group g) and as a group (with a class c), two images in each.
    for folder in [[Array("g".utf8), name], [name], [name, Array("c".utf8)]] { mkdirRaw(make(folder)) }
    for (i, png) in fuzzPNGs.enumerated() {
      writeRaw(make([Array("g".utf8), name, Array("\(i).png".utf8)]), png)
      writeRaw(make([name, Array("c".utf8), Array("\(i).png".utf8)]), png)
    }
  }
  let scan = FolderDataset(root: root).scan(resizeTo: 8)
  // No two classes of the scan share a name, and every image is where its path says.
  var seen = Set<[UInt8]>()
  for image in scan.images { seen.insert(Array((image.group + "/" + image.className).utf8)) }
  check(scan.images.count <= 2 * (seen.count), "classes merged: \(scan.images.count) images in \(seen.count) classes")
  return scan.problems.isEmpty
}

private func fuzzTag(_ bytes: [UInt8]) -> Bool {
  guard bytes.count <= 1 << 14 else { return false }
  let parts = bytes.split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
  let key = String(decoding: parts[0], as: UTF8.self), value = String(decoding: parts.count > 1 ? parts[1] : [], as: UTF8.self)
  let mlflow = MLflowExport.key(key)
  check(mlflow.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "_-./: ".unicodeScalars.contains($0)) }, "MLflow key \(mlflow)")
  check(!mlflow.split(separator: "/", omittingEmptySubsequences: false).contains { $0.isEmpty || $0 == "." || $0 == ".." }, "MLflow key path \(mlflow)")
  for text in [key, value] {
    let shown = visible(text)
    check(!shown.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F || (0x80..<0xA0).contains($0.value) }, "visible() kept a control character")
    let cell = markdownCell(text)
    check(!cell.contains("\n") && !cell.contains("\r") && !cell.contains("<"), "markdown cell \(cell)")
    let csv = csvDocument(["k"], [[text]])
    check(csv.hasSuffix("\r\n") && csv.filter { $0 == "\"" }.count % 2 == 0, "CSV field")
  }
  return !key.isEmpty
}
