import Episodes
import Experiments
import Foundation
import ResultsStore
import TestSupport
import XCTest

/// Training on a folder of your own images (`data.folder`): the exported background split
/// trains exactly as the zips do; a folder of made-up glyphs trains with every pairing, in PNG
/// and JPEG; what is held out is recorded; a folder changed under an interrupted run is refused
/// on resume; every mistake is one line, exit 2 and no run row.
final class FolderTrainingTests: TemporaryFolderTestCase {



  var omniglot: String { repositoryRoot.appendingPathComponent("dataset/omniglot").path }

  /// A tiny experiment whose `data` section is `data` (JSON), `steps` steps of `pairing`.
  func experiment(_ name: String, data: String, steps: Int = 20, pairing: String = "groups", ways: Int = 5) throws -> String {
    let json = """
      {"name": "\(name)", "seed": 3, "threads": 2, "data": \(data),
       "model": {"backbone": "vgg16", "inputSize": 28, "batchNorm": true, "blocks": [[4], [8]], "headHidden": 8},
       "training": {"steps": \(steps), "pairsPerStep": 24, "pairing": "\(pairing)", "optimizer": {"kind": "adam", "learningRate": 0.003},
                    "augmentation": {"probability": 0.5},
                    "validation": {"every": 10, "episodes": 3, "spec": {"ways": \(ways)}}, "logEvery": 5},
       "evaluation": [{"protocol": "lake20"}]}
      """
    let path = folder.appendingPathComponent("\(name).json").path
    try Data(json.utf8).write(to: URL(fileURLWithPath: path))
    return path
  }

  /// The tensor bytes of a safetensors file (its header, which names the run's configuration, left out).
  func tensorBytes(_ path: String) throws -> Data {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
    return data.dropFirst(8 + headerLength)
  }

  func testTheExportedBackgroundSplitTrainsExactlyAsTheZips() throws {
    let exported = folder.appendingPathComponent("background")
    let export = runCLI(["dataset", "export", "--split", "background", "--to", exported.path, "--data", omniglot])
    XCTAssertEqual(export.code, 0, export.error)
    XCTAssert(export.output.contains("wrote 19280 images"), export.output)
    let again = runCLI(["dataset", "export", "--split", "background", "--to", exported.path, "--data", omniglot])
    XCTAssertEqual(again.code, 2, "an export never writes into a folder that holds something")
    XCTAssert(again.error.contains("not empty"), again.error)
    let groups = OmniglotAlphabets.defaultValidation.map { "\"\($0)\"" }.joined(separator: ", ")
    let zips = try experiment("from-zips", data: #"{"path": "\#(omniglot)"}"#)
    let own = try experiment("from-folder", data: #"{"path": "\#(omniglot)", "folder": "\#(exported.path)", "validationGroups": [\#(groups)]}"#)
    for (file, runs) in [(zips, "runs-zips"), (own, "runs-folder")] {
      let result = runCLI(["run", file, "--store", storePath, "--runs", folder.appendingPathComponent(runs).path])
      XCTAssertEqual(result.code, 0, result.error)
    }
    let store = try ResultsStore(path: storePath)
    let a = try XCTUnwrap(store.listRuns(experiment: "from-zips").first), b = try XCTUnwrap(store.listRuns(experiment: "from-folder").first)
    for key in ["train.loss", "validation.accuracy"] {
      let curve = { (id: String) in try store.metrics(runID: id, key: key).map { "\($0.step) \($0.value)" } }
      XCTAssertEqual(try curve(a.id), try curve(b.id), key)
    }
    XCTAssertEqual(try store.results(runID: a.id).map(\.accuracy), try store.results(runID: b.id).map(\.accuracy))
    let checkpoint = { (id: String) in try XCTUnwrap(store.run(id).provenance.first { $0.key == "checkpoint_path" }?.value) }
    XCTAssertEqual(try tensorBytes(try checkpoint(a.id)), try tensorBytes(try checkpoint(b.id)), "the same weights, bit for bit")
    // The folder run records the folder as its dataset and what it held out.
    let detail = try store.run(b.id)
    let fingerprint = FolderDataset(root: exported).scan().fingerprint
    XCTAssertEqual(detail.provenance.first { $0.key == "dataset_fingerprint" }?.value, fingerprint)
    XCTAssertEqual(detail.tags.first { $0.key == "data.held_out" }?.value, OmniglotAlphabets.defaultValidation.sorted().joined(separator: ","))
  }

  func testAFolderOfGlyphsTrainsWithEveryPairingInPNGAndJPEG() throws {
    let glyphs = folder.appendingPathComponent("glyphs")
    try makeGlyphFolder(at: glyphs, groups: 3, classes: 5, images: 4, side: 48)
    // Half of one group's images as JPEG: both decoders feed one split.
    for file in try FileManager.default.contentsOfDirectory(atPath: glyphs.appendingPathComponent("script1/glyph0").path) {
      let png = glyphs.appendingPathComponent("script1/glyph0/\(file)")
      let image = try GrayImage.decodePNG([UInt8](try Data(contentsOf: png)), name: file)
      try Data(try image.encodeJPEG()).write(to: png.deletingPathExtension().appendingPathExtension("jpg"))
      try FileManager.default.removeItem(at: png)
    }
    for pairing in ["independent", "groups", "batch"] {
      let file = try experiment("glyphs-\(pairing)", data: #"{"path": "\#(omniglot)", "folder": "\#(glyphs.path)"}"#, steps: 10, pairing: pairing)
      let result = runCLI(["run", file, "--store", storePath, "--runs", folder.appendingPathComponent("runs").path])
      XCTAssertEqual(result.code, 0, "\(pairing): \(result.error)")
    }
    let store = try ResultsStore(path: storePath)
    let runs = try store.listRuns(status: .completed)
    XCTAssertEqual(runs.count, 3)
    // Validation fraction 0.15 of 3 groups: one group, the same for every run of seed 3.
    let held = try Set(runs.map { try store.run($0.id).tags.first { $0.key == "data.held_out" }?.value ?? "" })
    XCTAssertEqual(held.count, 1)
    XCTAssert(["script0", "script1", "script2"].contains(held.first!), "\(held)")
    XCTAssert(try runs.allSatisfy { try !store.metrics(runID: $0.id, key: "validation.accuracy").isEmpty })
  }

  func testAFolderChangedUnderAnInterruptedRunIsRefusedOnResume() throws {
    let glyphs = folder.appendingPathComponent("glyphs")
    try makeGlyphFolder(at: glyphs, groups: 3, classes: 5, images: 4, side: 32)
    let file = try experiment("glyphs", data: #"{"path": "\#(omniglot)", "folder": "\#(glyphs.path)", "validationGroups": ["script2"]}"#, steps: 40)
    let runs = folder.appendingPathComponent("runs")
    let held = try startHeldRun(["run", file, "--store", storePath, "--runs", runs.path], runs: runs)
    kill(held.process.processIdentifier, SIGINT)
    held.process.waitUntilExit()
    XCTAssertEqual(held.process.terminationStatus, 130, held.errorText)
    let image = glyphs.appendingPathComponent("script0/glyph0/0.png")
    try Data(try GrayImage(width: 32, height: 32, pixels: [UInt8](repeating: 200, count: 32 * 32)).encodePNG()).write(to: image)
    let resumed = runCLI(["run", "--resume", held.runID, "--store", storePath, "--runs", runs.path])
    XCTAssertEqual(resumed.code, 2, resumed.error)
    let errors = resumed.error.split(separator: "\n").filter { $0.hasPrefix("error:") }
    XCTAssert(errors.count == 1 && errors[0].contains("the folder \(glyphs.path) changed"), resumed.error)
    XCTAssertEqual(try ResultsStore(path: storePath).run(held.runID).summary.status, .interrupted, "nothing recorded is lost")
  }

  func testEveryMistakeIsOneLineAndRecordsNothing() throws {
    let glyphs = folder.appendingPathComponent("glyphs")
    try makeGlyphFolder(at: glyphs, groups: 2, classes: 3, images: 4, side: 32)
    let single = folder.appendingPathComponent("single")
    try makeGlyphFolder(at: single, groups: 1, classes: 1, images: 4, side: 32)
    let broken = folder.appendingPathComponent("broken")
    try makeGlyphFolder(at: broken, groups: 2, classes: 3, images: 4, side: 32)
    let png = broken.appendingPathComponent("script0/glyph0/0.png")
    try FileManager.default.moveItem(at: png, to: png.deletingPathExtension().appendingPathExtension("jpg"))
    let jpeg = try GrayImage(width: 32, height: 32, pixels: [UInt8](repeating: 255, count: 1024)).encodeJPEG()
    try Data(jpeg.prefix(jpeg.count / 2)).write(to: broken.appendingPathComponent("script1/glyph0/9.jpg"))
    let cases: [(String, String)] = [
      (#"{"folder": "\#(glyphs.path)", "validationGroups": ["nope"]}"#, "nope"),
      (#"{"folder": "\#(glyphs.path)", "validationGroups": ["script0"], "validationFraction": 0.5}"#, "not both"),
      (#"{"folder": "\#(glyphs.path)", "validationFraction": 1.5}"#, "validationFraction"),
      (#"{"folder": "\#(glyphs.path)", "validationAlphabets": ["Bengali"]}"#, "validationAlphabets"),
      (#"{"validationGroups": ["script0"]}"#, "only with data.folder"),
      (#"{"folder": "\#(single.path)"}"#, "one group with 1 class"),
      (#"{"folder": "\#(broken.path)"}"#, "a PNG file with a JPEG name"),
      (#"{"folder": "\#(folder.appendingPathComponent("missing").path)"}"#, "is not a folder"),
    ]
    for (data, expected) in cases {
      let file = try experiment("bad", data: data.replacingOccurrences(of: "{", with: #"{"path": "\#(omniglot)", "#, options: [], range: data.startIndex..<data.index(after: data.startIndex)), ways: 3)
      let result = runCLI(["run", file, "--store", storePath, "--runs", folder.appendingPathComponent("runs").path])
      XCTAssertEqual(result.code, 2, "\(data): \(result.error)")
      XCTAssert(result.error.contains(expected) && result.error.split(separator: "\n").count == 1, "\(data): \(result.error)")
    }
    // 20-way validation from a held-out group of 3 classes.
    let tooFew = try experiment("bad", data: #"{"path": "\#(omniglot)", "folder": "\#(glyphs.path)"}"#, ways: 20)
    let result = runCLI(["run", tooFew, "--store", storePath, "--runs", folder.appendingPathComponent("runs").path])
    XCTAssertEqual(result.code, 2, result.error)
    XCTAssert(result.error.contains("hold out more") && result.error.split(separator: "\n").count == 1, result.error)
    XCTAssertEqual(try ResultsStore(path: storePath).listRuns().count, 0, "no run row for any mistake")
    // verify --folder lists every problem of the broken folder, the truncated JPEG among them.
    let verify = runCLI(["dataset", "verify", "--folder", broken.path])
    XCTAssertEqual(verify.code, 1, "verify found problems")
    let problems = verify.output.split(separator: "\n").filter { $0.contains("PROBLEM") }
    XCTAssert(problems.contains { $0.contains("9.jpg") && $0.contains("libjpeg-turbo") }, verify.output)
    XCTAssert(problems.contains { $0.contains("0.jpg") && $0.contains("a PNG file with a JPEG name") }, verify.output)
  }

  /// A folder whose names hold a line break and a terminal escape is listed with both made
  /// visible: no forged line, no coloured text.
  func testFolderNamesCannotForgeLinesOrDriveTheTerminal() throws {
    let glyphs = folder.appendingPathComponent("glyphs")
    try makeGlyphFolder(at: glyphs, groups: 2, classes: 2, images: 2, side: 32)
    try FileManager.default.moveItem(at: glyphs.appendingPathComponent("script0"), to: glyphs.appendingPathComponent("evil\n  ok       forged\u{1B}[31m"))
    let verify = runCLI(["dataset", "verify", "--folder", glyphs.path])
    XCTAssertEqual(verify.code, 0, verify.error)
    XCTAssertFalse(verify.output.contains("\u{1B}") || verify.output.contains("\n  ok       forged"), verify.output)
    XCTAssert(verify.output.contains("evil\\u{A}"), verify.output)
    let listed = runCLI(["episodes", "--folder", glyphs.path, "--ways", "2", "--count", "1", "--format", "text"])
    XCTAssertEqual(listed.code, 0, listed.error)
    XCTAssertFalse(listed.output.contains("\u{1B}"), listed.output)
    XCTAssertEqual(listed.output.split(separator: "\n").count, 3, "a header and one line per class: \(listed.output)")
  }
}
