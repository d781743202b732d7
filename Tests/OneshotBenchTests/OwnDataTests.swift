import Episodes
import Experiments
import Foundation
import ResultsStore
import TestSupport
import XCTest

/// A user's own characters: a folder of made-up glyphs (3 groups x 5 classes x 4 images),
/// evaluated by the shipped model through an experiment file and through `evaluate`.
final class OwnDataTests: TemporaryFolderTestCase {
  func testShippedModelOnAFolderThroughTheFileAndTheShortcut() throws {
    let glyphs = folder.appendingPathComponent("glyphs")
    try makeGlyphFolder(at: glyphs)
    // The experiment file: the shipped model's network, no training section, one folder protocol.
    let shipped = try JSONSerialization.jsonObject(with: try Data(contentsOf: repositoryRoot.appendingPathComponent("experiments/omniglot52-long.json"))) as! [String: Any]
    let experiment: [String: Any] = [
      "name": "glyphs", "model": shipped["model"]!,
      "evaluation": [["protocol": "episodes", "split": "folder", "path": glyphs.path, "episodes": 40, "seed": 0, "spec": ["ways": 5, "shots": 1, "queries": 1]]],
    ]
    let file = folder.appendingPathComponent("glyphs.json")
    try JSONSerialization.data(withJSONObject: experiment).write(to: file)
    let model = repositoryRoot.appendingPathComponent("models/omniglot-siamese.safetensors").path
    let viaFile = runCLI(["run", file.path, "--eval-only", "--checkpoint", model, "--store", storePath], currentDirectory: repositoryRoot)
    XCTAssertEqual(viaFile.code, 0, viaFile.error)
    XCTAssert(viaFile.output.contains("folder-5way-1shot-within"), viaFile.output)
    let viaShortcut = runCLI(
      ["evaluate", "--folder", glyphs.path, "--ways", "5", "--episodes", "40", "--checkpoint", model, "--store", storePath, "--name", "glyphs"], currentDirectory: repositoryRoot)
    XCTAssertEqual(viaShortcut.code, 0, viaShortcut.error)
    let store = try ResultsStore(path: storePath)
    let runs = try store.listRuns().map { try store.run($0.id) }
    XCTAssertEqual(runs.count, 2)
    let fingerprint = FolderDataset(root: glyphs).scan().fingerprint
    for run in runs {
      XCTAssertEqual(run.summary.status, .completed)
      XCTAssertEqual(run.results.map(\.split), ["folder"])
      XCTAssertEqual(run.results[0].episodes, 40)
      XCTAssertEqual(run.provenance.first { $0.key == "dataset_fingerprint" }?.value, fingerprint, "the folder is the run's dataset")
      XCTAssertEqual(run.tags.first { $0.key == "dataset.folder" }?.value, "\(glyphs.path) \(fingerprint)")
      XCTAssertEqual(run.tags.first { $0.key == "mode" }?.value, "eval-only")
      // Far above chance (20%) on characters it never saw.
      XCTAssertGreaterThan(run.results[0].accuracy, 0.5, "accuracy on made-up glyphs")
    }
    // The same episodes through both ways: the same outcome, episode by episode.
    let rows = try runs.map { try store.episodeRows(runID: $0.summary.id, protocolName: $0.results[0].protocolName) }
    XCTAssertEqual(rows[0], rows[1])
    XCTAssertEqual(Set(rows[0].compactMap(\.alphabet)), ["script0", "script1", "script2"])
    let report = runCLI(["report", "--store", storePath])
    XCTAssert(report.output.contains("glyphs") && report.output.contains("eval") && report.output.contains("folder 5w1s"), report.output)
    // episodes --folder lists the same episodes the runs scored.
    let listed = runCLI(["episodes", "--folder", glyphs.path, "--ways", "5", "--count", "2", "--format", "text"])
    XCTAssertEqual(listed.code, 0, listed.error)
    XCTAssert(listed.output.contains("script"), listed.output)
    // Images are named by their files (0.png ... 3.png), not by 1-based positions that match no file.
    let lines = listed.output.split(separator: "\n")
    XCTAssertEqual(lines.first, "episode\tclass\tsupport (files)\tqueries (files)")
    XCTAssert(lines.dropFirst().allSatisfy { $0.split(separator: "\t").dropFirst(2).allSatisfy { $0.hasSuffix(".png") } }, listed.output)
    let verified = runCLI(["dataset", "verify", "--folder", glyphs.path, "--ways", "5"])
    XCTAssertEqual(verified.code, 0, verified.error)
    XCTAssert(verified.output.contains("3 groups, 15 classes, 60 images") && verified.output.contains("5-way 1-shot episodes"), verified.output)
  }

  func testPredictScoresManyImagesInOneProcess() throws {
    let glyphs = folder.appendingPathComponent("glyphs")
    try makeGlyphFolder(at: glyphs, groups: 1, classes: 3, images: 3)
    let model = repositoryRoot.appendingPathComponent("models/omniglot-siamese.safetensors").path
    let paths = ["glyph0/0.png", "glyph0/1.png", "glyph1/0.png"].map { glyphs.appendingPathComponent("script0/\($0)").path }
    let pair = runCLI(["predict", paths[0], paths[1], "--checkpoint", model])
    XCTAssertEqual(pair.code, 0, pair.error)
    let similarity = try XCTUnwrap(Double(pair.output.trimmingCharacters(in: .whitespacesAndNewlines)))
    // The matrix: symmetric, the pair's figure where it belongs, CSV that parses.
    let matrix = runCLI(["predict"] + paths + ["--checkpoint", model, "--format", "csv"])
    XCTAssertEqual(matrix.code, 0, matrix.error)
    let rows = matrix.output.components(separatedBy: "\r\n").filter { !$0.isEmpty }.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    XCTAssertEqual(rows.count, 4)
    let values = rows.dropFirst().map { $0.dropFirst().map { Double($0)! } }
    XCTAssertEqual(values[0][1], similarity, accuracy: 1e-5)
    for i in 0..<3 { for j in 0..<3 { XCTAssertEqual(values[i][j], values[j][i], accuracy: 1e-5) } }
    XCTAssertGreaterThan(values[0][1], values[0][2], "another drawing of the same glyph is closer than another glyph")
    // Row by row (a block of one row's pair features): the same matrix, bytes and all.
    let blocked = runCLI(["predict"] + paths + ["--checkpoint", model, "--format", "csv"], environment: ["ONESHOT_PREDICT_BLOCK_BYTES": "1"])
    XCTAssertEqual(blocked.code, 0, blocked.error)
    XCTAssertEqual(blocked.output, matrix.output)
    // More images than a matrix takes: refused before one is read (they need not exist).
    let many = runCLI(["predict"] + (0...1000).map { "missing-\($0).png" } + ["--checkpoint", model])
    XCTAssertEqual(many.code, 2)
    XCTAssert(many.error.contains("at most 1000 images"), many.error)
    // A folder ranked against a query: the query's own glyph first.
    let ranked = runCLI(["predict", "--query", paths[0], "--support", glyphs.path, "--checkpoint", model])
    XCTAssertEqual(ranked.code, 0, ranked.error)
    let lines = ranked.output.split(separator: "\n").dropFirst()
    XCTAssertEqual(lines.count, 9)
    XCTAssert(lines.prefix(3).allSatisfy { $0.contains("glyph0/") }, ranked.output)
    XCTAssertEqual(runCLI(["predict", paths[0], "--checkpoint", model]).code, 2)
    XCTAssertEqual(runCLI(["predict", "--query", paths[0], "--support", "/nonexistent", "--checkpoint", model]).code, 2)
    XCTAssert(runCLI(["predict", "--help"]).output.contains("not a calibrated probability"))
  }

  func testAMisspeltCommandGetsASuggestionAndOneErrorPrefix() {
    let misspelt = runCLI(["reprot"])
    XCTAssertEqual(misspelt.code, 2)
    XCTAssert(misspelt.error.hasPrefix("error: unknown command 'reprot'; did you mean 'report'?"), misspelt.error)
    let option = runCLI(["report", "--formt", "csv"])
    XCTAssertEqual(option.code, 2)
    XCTAssert(option.error.hasPrefix("error: Unknown option '--formt'") && !option.error.contains("Error: Unknown"), option.error)
  }

  func testBadFoldersAreListedByVerifyAndRefusedByRun() throws {
    let model = repositoryRoot.appendingPathComponent("models/omniglot-siamese.safetensors").path
    func evaluate(_ root: URL, ways: Int = 2) -> (code: Int32, output: String, error: String) {
      runCLI(["evaluate", "--folder", root.path, "--ways", String(ways), "--episodes", "5", "--checkpoint", model, "--store", storePath])
    }
    // No classes at all.
    let empty = folder.appendingPathComponent("empty")
    try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
    let refused = evaluate(empty)
    XCTAssertEqual(refused.code, 2)
    XCTAssert(refused.error.contains("holds no readable images") && refused.error.split(separator: "\n").count == 1, refused.error)
    // A folder with several problems at once: a class with one image, a text file, a corrupt
    // PNG, an image too large to decode; a 1x1 image is fine (it is only resized).
    let messy = folder.appendingPathComponent("messy")
    try makeGlyphFolder(at: messy, groups: 2, classes: 2, images: 3)
    let one = messy.appendingPathComponent("script0/lonely")
    try FileManager.default.createDirectory(at: one, withIntermediateDirectories: true)
    try Data(try GrayImage(width: 1, height: 1, pixels: [0]).encodePNG()).write(to: one.appendingPathComponent("dot.png"))
    try Data("notes".utf8).write(to: messy.appendingPathComponent("script0/glyph0/notes.txt"))
    try Data([0x89, 0x50, 0x4E, 0x47, 1, 2, 3]).write(to: messy.appendingPathComponent("script1/glyph0/broken.png"))
    try Data(try GrayImage(width: 9000, height: 8000, pixels: [UInt8](repeating: 255, count: 72_000_000)).encodePNG()).write(to: messy.appendingPathComponent("script1/glyph1/huge.png"))
    let verify = runCLI(["dataset", "verify", "--folder", messy.path])
    XCTAssertEqual(verify.code, 1, verify.output + verify.error)
    let problems = verify.output.split(separator: "\n").filter { $0.contains("PROBLEM") }
    XCTAssertEqual(problems.count, 4, verify.output)
    for expected in ["script0/lonely: 1 readable image", "notes.txt: not a .png, .jpg or .jpeg image", "broken.png", "huge.png"] {
      XCTAssert(problems.contains { $0.contains(expected) }, "\(expected) in \(verify.output)")
    }
    let messyRun = evaluate(messy)
    XCTAssertEqual(messyRun.code, 2)
    XCTAssert(messyRun.error.contains("and 3 more") && messyRun.error.split(separator: "\n").count == 1, messyRun.error)
    // More ways than the folder has classes: refused before anything is recorded.
    let small = folder.appendingPathComponent("small")
    try makeGlyphFolder(at: small, groups: 2, classes: 2, images: 2)
    let tooMany = evaluate(small, ways: 5)
    XCTAssertEqual(tooMany.code, 2)
    XCTAssert(tooMany.error.contains("5-way episodes need 5 classes"), tooMany.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: storePath), "no refused run is recorded")
    // Fewer classes in each group than ways, enough in all: episodes across groups.
    XCTAssertEqual(evaluate(small, ways: 3).code, 0)
  }

  /// Issue #45, causes L and M: class folders whose names differ only in Unicode normalisation
  /// (`café` composed and decomposed) are refused, not merged into one class; a name that is not
  /// valid UTF-8 is said to be one, not blamed on permissions or called a file.
  func testNamesThatAreOneInUnicodeOrNotUTF8AreRefused() throws {
    let root = folder.appendingPathComponent("names")
    try makeGlyphFolder(at: root, groups: 1, classes: 3, images: 3)
    let group = root.appendingPathComponent("script0")
    let composed = "caf\u{00E9}", decomposed = "cafe\u{0301}"
    for name in [composed, decomposed] {
      // Through raw bytes: Foundation would treat the two names as one path.
      let path = Array((group.path + "/" + name).utf8) + [0]
      XCTAssertEqual(path.withUnsafeBufferPointer { mkdir(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), 0o755) }, 0)
      for n in 0..<2 {
        let file = Array((group.path + "/" + name + "/\(n).png").utf8) + [0]
        let png = try GrayImage(width: 8, height: 8, pixels: [UInt8](repeating: UInt8(100 + n), count: 64)).encodePNG()
        let fd = file.withUnsafeBufferPointer { open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), O_WRONLY | O_CREAT, 0o644) }
        XCTAssertGreaterThanOrEqual(fd, 0)
        _ = png.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
      }
    }
    // A class folder whose name is not UTF-8 (Latin-1 "caf\xe9").
    let latin1 = Array((group.path + "/").utf8) + [0x63, 0x61, 0x66, 0xE9, 0]
    XCTAssertEqual(latin1.withUnsafeBufferPointer { mkdir(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), 0o755) }, 0)
    let verify = runCLI(["dataset", "verify", "--folder", root.path])
    XCTAssertEqual(verify.code, 1, verify.output + verify.error)
    let problems = verify.output.split(separator: "\n").filter { $0.contains("PROBLEM") }
    XCTAssert(problems.contains { $0.contains("differ only in Unicode normalisation") && $0.contains("636166c3a9") && $0.contains("636166 65cc81".replacingOccurrences(of: " ", with: "")) }, verify.output)
    XCTAssert(problems.contains { $0.contains("the name is not valid UTF-8") }, verify.output)
    XCTAssertFalse(verify.output.contains("permissions") || verify.output.contains("only class folders"), verify.output)
    XCTAssertEqual(problems.count, 2, verify.output)
  }
}
