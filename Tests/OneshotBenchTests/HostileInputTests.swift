import Episodes
import Experiments
import Foundation
import Model
import Reports
import ResultsStore
import TestSupport
import XCTest

/// Inputs crafted to crash the harness or fool the gate: each is refused with one line and
/// exit 2, and nothing refused leaves a row.
final class HostileInputTests: TemporaryFolderTestCase {



  func testAHundredThousandCopiesOfAProtocolGetAShortLine() throws {
    let path = folder.appendingPathComponent("copies.json").path
    let copies = Array(repeating: "{\"protocol\": \"lake20\"}", count: 100_000).joined(separator: ",")
    try Data("{\"name\": \"t\", \"model\": {\"backbone\": \"vgg16\", \"inputSize\": 28, \"blocks\": [[4]]}, \"evaluation\": [\(copies)]}".utf8).write(to: URL(fileURLWithPath: path))
    let result = runCLI(["run", path, "--eval-only", "--store", folder.appendingPathComponent("s.sqlite").path])
    XCTAssertEqual(result.code, 2)
    XCTAssert(result.error.contains("repeated: lake20 (100000 times)"), String(result.error.prefix(500)))
    XCTAssertLessThan(result.error.utf8.count, 400, "one short line, not 800 KB of names")
  }

  func testDevicesPipesAndFoldersWhereAFileBelongsAreRefusedWithoutReading() throws {
    // A FIFO nobody writes would block a read forever; /dev/zero never ends.
    let fifo = folder.appendingPathComponent("fifo").path
    XCTAssertEqual(mkfifo(fifo, 0o600), 0)
    let store = folder.appendingPathComponent("s.sqlite").path
    for path in [fifo, "/dev/zero", folder.path] {
      let commands: [([String], String)] = [
        (["run", path, "--store", store], "give the path of an experiment JSON"),
        (["run", path, "--set", "seed=2", "--store", store], "give the path of an experiment JSON"),
        (["run", repositoryRoot.appendingPathComponent("experiments/omniglot52-eval.json").path, "--eval-only", "--checkpoint", path, "--store", store], "safetensors checkpoint"),
        (["predict", path, path], "give PNG or JPEG files"),
      ]
      for (arguments, expected) in commands {
        let result = runCLI(arguments)
        XCTAssertEqual(result.code, 2, "\(arguments): \(result.error)")
        XCTAssert(result.error.contains(expected) && (result.error.contains("not a regular file") || result.error.contains("is a folder")), "\(arguments): \(result.error)")
      }
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: store))
  }

  let valid = """
    {"name": "t", "model": {"backbone": "vgg16", "inputSize": 28, "blocks": [[4]]},
     "training": {"steps": 10, "optimizer": {"kind": "adam", "learningRate": 0.001}}}
    """

  func message(_ json: String) -> String {
    let url = folder.appendingPathComponent("e-\(UUID().uuidString).json")
    try? Data(json.utf8).write(to: url)
    do {
      _ = try ExperimentConfig.load(url.path)
      return "no error"
    } catch let error as ConfigError {
      return error.keyPath + " | " + error.message
    } catch {
      return "\(error)"
    }
  }

  func testValuesWithoutUpperBoundsAreRefusedBeforeAnyRow() {
    let cases: [(String, String, String)] = [
      ("\"steps\": 10", "\"pairs\": 9223372036854775000", "training.pairs | between 0 and"),
      ("\"steps\": 10", "\"steps\": 1000000000000", "training.steps | between 1 and 100000000"),
      ("\"blocks\": [[4]]", "\"blocks\": [[4]], \"headHidden\": 1000000000000", "model.headHidden | at most 65536"),
      ("\"blocks\": [[4]]", "\"blocks\": [[1000000000]]", "model.blocks | at most 4096 channels"),
      ("\"blocks\": [[4]]", "\"blocks\": [[4096, 4096, 4096, 4096]]", "model | the network would have"),
      ("\"steps\": 10", "\"steps\": 10, \"validation\": {\"episodes\": 10000000000000}", "training.validation.episodes | between 1 and 100000"),
      ("}}}", "}}, \"evaluation\": [{\"protocol\": \"episodes\", \"episodes\": 10000000000000, \"spec\": {\"ways\": 5}}]}", "evaluation[0].episodes | between 1 and 1000000"),
      ("}}}", "}}, \"evaluation\": [{\"protocol\": \"episodes\", \"episodes\": 1000000, \"spec\": {\"ways\": 10000, \"shots\": 10, \"queries\": 10}}]}", "evaluation[0].episodes | episodes x ways"),
      ("\"steps\": 10", "\"steps\": 10, \"steps\": 11", "training.steps | this key is given twice"),
      ("\"learningRate\": 0.001", "\"learningRate\": 1e309", "training.optimizer.learningRate | the number 1e309"),
      ("\"name\": \"t\"", "\"name\": \"ci-smoke\\u0000evil\"", "name | a non-empty name"),
      ("}}}", "}}, \"evaluation\": [{\"protocol\": \"lake20\", \"name\": \"lake20\\u0000x\"}]}", "evaluation[0].name | a non-empty protocol name"),
    ]
    for (old, new, expected) in cases {
      let text = valid.replacingOccurrences(of: old, with: new)
      XCTAssertNotEqual(text, valid, "case \(expected) did not apply")
      XCTAssert(message(text).hasPrefix(expected), "\(expected): got \(message(text))")
    }
    let wide = valid.replacingOccurrences(of: "\"inputSize\": 28, \"blocks\": [[4]]", with: "\"inputSize\": 105, \"blocks\": [[256, 256], [256], [256], [256]]")
      .replacingOccurrences(of: "\"steps\": 10", with: "\"steps\": 10, \"pairsPerStep\": 8000")
    XCTAssert(message(wide).hasPrefix("training.pairsPerStep | a step of 16000 images"), message(wide))
    // On the command line too: nothing is recorded for any of them.
    let store = folder.appendingPathComponent("store.sqlite").path
    let file = folder.appendingPathComponent("big.json")
    try? Data(valid.replacingOccurrences(of: "\"blocks\": [[4]]", with: "\"blocks\": [[4]], \"headHidden\": 1000000000000").utf8).write(to: file)
    let refused = runCLI(["run", file.path, "--store", store])
    XCTAssertEqual(refused.code, 2)
    XCTAssertEqual(refused.error.split(separator: "\n").count, 1, refused.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: store))
    let runsRefused = runCLI(["run", repositoryRoot.appendingPathComponent("experiments/ci-smoke.json").path, "--store", store, "--runs", "/etc/passwd/runs"])
    XCTAssertEqual(runsRefused.code, 2)
    XCTAssert(runsRefused.error.contains("cannot write checkpoints into /etc/passwd/runs"), runsRefused.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: store), "the runs folder is checked before the run row")
    XCTAssertEqual(runCLI(["predict", "a.png", "b.png", "--threads", "0"]).code, 2)
  }

  /// Numbers and key paths from the command line are bounded where they enter (they crashed:
  /// an allocation of petabytes, an overflow of start + count, a stack overflow of a key path
  /// 5,000 parts deep): each is one line and exit 2, and nothing is created.
  func testCommandLineNumbersAndKeyPathsAreBoundedWhereTheyEnter() {
    let data = ["--data", repositoryRoot.appendingPathComponent("dataset/omniglot").path]
    let store = folder.appendingPathComponent("never.sqlite").path
    let deep = String(repeating: "a.", count: 5000) + "b"
    let cases: [([String], String)] = [
      (["episodes", "--count", "100000000000000"] + data, "--count must be between 1 and"),
      (["episodes", "--start", "9223372036854775000", "--count", "1000"] + data, "--start must be between 0 and"),
      (["run", repositoryRoot.appendingPathComponent("experiments/ci-smoke.json").path, "--store", store, "--set", deep + "=1"], "a key path of 5001 parts"),
      (["sweep", repositoryRoot.appendingPathComponent("experiments/ci-smoke.json").path, "--store", store, "--grid", deep + "=1,2"], "a key path of 5001 parts"),
    ]
    for (arguments, expected) in cases {
      let result = runCLI(arguments)
      XCTAssertEqual(result.code, 2, "\(arguments.prefix(3)): \(result.error.prefix(300))")
      XCTAssert(result.error.contains(expected), String(result.error.prefix(300)))
    }
    XCTAssertEqual(runCLI(["episodes", "--start", "1000000000000", "--count", "1", "--format", "text"] + data).code, 0, "the largest start works")
    XCTAssertFalse(FileManager.default.fileExists(atPath: store))
  }

  func testCraftedCheckpointsAreRefusedNotTrapped() throws {
    func safetensors(_ header: String, dataBytes: Int = 16) -> Data {
      var json = Array(header.utf8)
      while json.count % 8 != 0 { json.append(0x20) }
      var out = Data()
      var length = UInt64(json.count).littleEndian
      withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
      out.append(contentsOf: json)
      out.append(Data(count: dataBytes))
      return out
    }
    let crafted = [
      #"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4611686018427387904]}}"#,
      #"{"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 16]}}"#,
      #"{"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}"#,
      #"{"w": {"dtype": "F32", "shape": [3037000500, 3037000500], "data_offsets": [0, 16]}}"#,
      #"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [9223372036854775800, 9223372036854775807]}}"#,
    ]
    for header in crafted {
      XCTAssertThrowsError(try SafeTensors.decode(safetensors(header), path: "x")) { error in
        guard case CheckpointError.malformed = error else { return XCTFail("\(header): \(error)") }
      }
    }
    // Metadata asking for an enormous network: refused by the configuration's bounds.
    let huge = #"{"__metadata__": {"format": "oneshot-bench/1", "model_config": "{\"backbone\":\"vgg16\",\"headHidden\":1000000000,\"inputSize\":105}"}}"#
    let url = folder.appendingPathComponent("huge.safetensors")
    try safetensors(huge).write(to: url)
    XCTAssertThrowsError(try Checkpoint.readModel(url))
    let predicted = runCLI(["predict", "a.png", "b.png", "--checkpoint", url.path])
    XCTAssertEqual(predicted.code, 2, predicted.error)
  }

  func testAZipEntryClaimingGigabytesIsRefusedBeforeAllocating() throws {
    // The committed fuzz seed (a well-formed images_evaluation.zip), its entries' sizes patched
    // to ~4 GB in the central directory and the local headers.
    var bytes = [UInt8](try Data(contentsOf: repositoryRoot.appendingPathComponent("Tests/Fuzz/zip/tiny.zip")))
    XCTAssertTrue(fuzz(.zip, bytes), "the seed itself is a valid archive")
    var patched = 0
    for i in 0..<(bytes.count - 30) {
      if bytes[i] == 0x50, bytes[i + 1] == 0x4B, bytes[i + 2] == 0x01, bytes[i + 3] == 0x02 {
        for k in 0..<4 { bytes[i + 24 + k] = 0xFF }
        patched += 1
      } else if bytes[i] == 0x50, bytes[i + 1] == 0x4B, bytes[i + 2] == 0x03, bytes[i + 3] == 0x04 {
        for k in 0..<4 { bytes[i + 22 + k] = 0xFF }
      }
    }
    XCTAssertEqual(patched, 8)
    let folder = self.folder.appendingPathComponent("bomb")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try Data(bytes).write(to: folder.appendingPathComponent("images_evaluation.zip"))
    XCTAssertThrowsError(try OmniglotDataset(root: folder).load(.evaluation, size: 28)) { error in
      XCTAssert("\(error)".contains("more than an image may have") || "\(error)".contains("cannot read entry"), "\(error)")
    }
  }

  func testStoreKeepsTextWithNULWhole() throws {
    let store = try ResultsStore(path: ":memory:")
    let id = try store.beginRun(NewRun(experiment: "ci-smoke\u{0}evil", configJSON: "{}", configHash: "h"))
    XCTAssertEqual(try store.run(id).summary.experiment, "ci-smoke\u{0}evil")
    XCTAssertNil(try store.latestCompletedRun(experiment: "ci-smoke"))
    let result = ProtocolResult(protocolName: "lake20\u{0}x", split: "lake20", ways: 20, shots: 1, queries: 1, episodes: 1, accuracy: 0.5, ciLow: 0.4, ciHigh: 0.6, seconds: 1)
    try store.recordResult(run: id, result, episodes: [EpisodeRow(episode: 0, alphabet: nil, correct: 1, total: 2)])
    try store.recordResult(run: id, ProtocolResult(protocolName: "lake20", split: "lake20", ways: 20, shots: 1, queries: 1, episodes: 1, accuracy: 0.9, ciLow: 0.8, ciHigh: 1, seconds: 1), episodes: [])
    XCTAssertEqual(Set(try store.results(runID: id).map(\.protocolName)), ["lake20\u{0}x", "lake20"], "the NUL name did not overwrite lake20")
    XCTAssertEqual(visible("a\u{1B}[2Jb"), "a\\u{1B}[2Jb")
  }

  /// A store with one completed run and a result, for the commands that write files from it.
  func storeWithARun() throws -> (path: String, run: String) {
    let path = folder.appendingPathComponent("runs.sqlite").path
    let store = try ResultsStore(path: path)
    let id = try store.beginRun(NewRun(experiment: "e|<b>x</b>", configJSON: "{\"seed\": 1}", configHash: "h", params: [(key: "seed", value: "1"), (key: "weird key@[0]", value: "v")]))
    try store.logMetric(run: id, MetricPoint(key: "train.loss", step: 10, value: 0.5, time: "2026-12-05T00:00:01.250Z"))
    try store.logMetric(run: id, MetricPoint(key: "target@0.8.wall_s", step: 10, value: 12, time: "2026-12-05T00:00:02.000Z"))
    try store.flushMetrics()
    try store.recordResult(
      run: id, ProtocolResult(protocolName: "lake20", split: "lake20", ways: 20, shots: 1, queries: 1, episodes: 1, accuracy: 0.9, ciLow: 0.8, ciHigh: 1, seconds: 1),
      episodes: [EpisodeRow(episode: 0, alphabet: "Tengwar", correct: 18, total: 20)])
    try store.finishRun(id, status: .completed, durationSeconds: 3)
    return (path, id)
  }

  func testOutputsThatAreInputsDevicesPipesOrLinksAreNeverReplaced() throws {
    let (store, _) = try storeWithARun()
    let storeBytes = try Data(contentsOf: URL(fileURLWithPath: store))
    // The output is the store the report reads: refused, the store untouched.
    var result = runCLI(["report", "--store", store, "--output", store])
    XCTAssertEqual(result.code, 2, result.error)
    XCTAssert(result.error.contains("is one of the command's inputs"), result.error)
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: store)), storeBytes)
    // A hard link to it is the same file.
    let hard = folder.appendingPathComponent("hard.sqlite").path
    XCTAssertEqual(link(store, hard), 0)
    result = runCLI(["check", "--latest", "e|<b>x</b>", "--store", store, "--write-baseline", hard])
    XCTAssertEqual(result.code, 2, result.error)
    XCTAssert(result.error.contains("is one of the command's inputs"), result.error)
    // A FIFO, a device and a folder at the output path: refused, not replaced, no hang.
    let fifo = folder.appendingPathComponent("fifo").path
    XCTAssertEqual(mkfifo(fifo, 0o600), 0)
    for path in [fifo, "/dev/null", folder.path] {
      for arguments in [["report", "--store", store, "--output", path], ["check", "--latest", "e|<b>x</b>", "--store", store, "--write-baseline", path]] {
        result = runCLI(arguments)
        XCTAssertEqual(result.code, 2, "\(arguments): \(result.error)")
        XCTAssert(result.error.contains("nothing written"), "\(arguments): \(result.error)")
        XCTAssertEqual(result.error.split(separator: "\n").count, 1, result.error)
      }
    }
    var info = stat()
    XCTAssertEqual(lstat(fifo, &info), 0)
    XCTAssertEqual(info.st_mode & S_IFMT, S_IFIFO, "the FIFO is still a FIFO")
    // A symbolic link is written through: its target gets the report, the link stays a link.
    let target = folder.appendingPathComponent("target.md").path
    try Data("old".utf8).write(to: URL(fileURLWithPath: target))
    let symlinkPath = folder.appendingPathComponent("link.md").path
    XCTAssertEqual(symlink(target, symlinkPath), 0)
    result = runCLI(["report", "--store", store, "--format", "markdown", "--output", symlinkPath])
    XCTAssertEqual(result.code, 0, result.error)
    XCTAssertEqual(lstat(symlinkPath, &info), 0)
    XCTAssertEqual(info.st_mode & S_IFMT, S_IFLNK, "the link is still a link")
    XCTAssert(try String(contentsOfFile: target, encoding: .utf8).contains("lake20"))
    // A link that loops is one line.
    let loop = folder.appendingPathComponent("loop").path
    XCTAssertEqual(symlink(loop, loop), 0)
    result = runCLI(["report", "--store", store, "--output", loop])
    XCTAssertEqual(result.code, 2, result.error)
    XCTAssert(result.error.contains("loops"), result.error)
  }

  func testEnsembleRefusesToWriteOverAMember() throws {
    let member = folder.appendingPathComponent("a.safetensors").path
    let other = folder.appendingPathComponent("b.safetensors").path
    let fixture = repositoryRoot.appendingPathComponent("Tests/ModelTests/Fixtures/vgg_bn.safetensors").path
    try FileManager.default.copyItem(atPath: fixture, toPath: member)
    try FileManager.default.copyItem(atPath: fixture, toPath: other)
    let before = try Data(contentsOf: URL(fileURLWithPath: member))
    let alias = folder.appendingPathComponent("alias.safetensors").path
    XCTAssertEqual(symlink(member, alias), 0)
    for output in [member, alias, folder.path + "/./a.safetensors"] {
      let result = runCLI(["ensemble", member, other, "--output", output])
      XCTAssertEqual(result.code, 2, result.error)
      XCTAssert(result.error.contains("is one of the command's inputs"), result.error)
    }
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: member)), before, "member A unchanged")
  }

  /// Issue #45, cause E: a password in a tag or a scorer command is hidden in the JSON reports
  /// (which write `/` as `\/`) and in every file `export mlflow` writes.
  func testPasswordsStayHiddenInJSONAndMLflowExports() throws {
    let (store, run) = try storeWithARun()
    XCTAssertEqual(runCLI(["run", "tag", run, "store.url=postgresql://u:t0psecret@h/d", "--store", store]).code, 0)
    try ResultsStore(path: store).setTag(run: run, key: "scorer.command", value: "PGPASSWORD=t0psecret python3 s.py")  // as a scorer run records it
    for arguments in [["report", "--format", "json"], ["report", "--run", run, "--format", "json"], ["report", "--run", run], ["report", "--run", run, "--format", "markdown"]] {
      let result = runCLI(arguments + ["--store", store])
      XCTAssertEqual(result.code, 0, result.error)
      XCTAssertFalse(result.output.contains("t0psecret"), "\(arguments): \(result.output)")
    }
    let export = folder.appendingPathComponent("mlruns").path
    XCTAssertEqual(runCLI(["export", "mlflow", export, "--store", store]).code, 0)
    let files = FileManager.default.enumerator(atPath: export)!.compactMap { $0 as? String }
    for file in files {
      guard let text = try? String(contentsOfFile: "\(export)/\(file)", encoding: .utf8) else { continue }
      XCTAssertFalse(text.contains("t0psecret"), "\(file): \(text.prefix(300))")
    }
  }

  /// Issue #45, causes S and V: the tags an outside scorer's run records (and MLflow's own) are
  /// not a user's to set; a libpq keyword string is refused as a store, creating no file and
  /// printing no password.
  func testReservedTagsAndKeywordStringStores() throws {
    let (store, run) = try storeWithARun()
    for key in ["scorer.model", "scorer.command", "scorer.output", "mlflow.runName"] {
      let result = runCLI(["run", "tag", run, "\(key)=forged", "--store", store])
      XCTAssertEqual(result.code, 2, "\(key): \(result.error)")
      XCTAssert(result.error.contains("is written by the harness"), result.error)
    }
    let keyword = "host=127.0.0.1 port=1 dbname=x password=kw0secret"
    for arguments in [["report", "--store", keyword], ["run", "tag", run, "a=b", "--store", keyword]] {
      let result = runCLI(arguments, currentDirectory: folder)
      XCTAssertEqual(result.code, 2, result.error)
      XCTAssert(result.error.contains("libpq keyword string"), result.error)
      XCTAssertFalse(result.error.contains("kw0secret"), result.error)
    }
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.contains("kw0secret") || $0.contains("host=") }, [])
  }

  /// Issue #45, cause W: standard error closed by its reader (`2>&1 | head -3`) neither kills nor
  /// crashes a run: training and an outside scorer's run both complete and are recorded.
  func testARunWhoseStandardErrorIsClosedCompletes() throws {
    let file = try writeTinyExperiment(in: folder, name: "closed", seed: 3, steps: 20)
    let scorer = "python3 \(repositoryRoot.appendingPathComponent("examples/scorers/pixel_scorer.py").path)"
    let store = folder.appendingPathComponent("closed.sqlite").path
    for arguments in [["run", file, "--store", store, "--runs", folder.appendingPathComponent("runs").path],
                      ["run", repositoryRoot.appendingPathComponent("examples/scorers/lake20-105.json").path, "--eval-only", "--scorer", scorer, "--store", store]] {
      let process = Process()
      process.executableURL = executable
      process.arguments = arguments
      process.currentDirectoryURL = repositoryRoot
      let errors = Pipe()
      process.standardError = errors
      process.standardOutput = FileHandle.nullDevice
      try errors.fileHandleForReading.close()  // the reader is gone before the first line
      try process.run()
      process.waitUntilExit()
      XCTAssertEqual(process.terminationStatus, 0, "\(arguments[1])")
      XCTAssertEqual(process.terminationReason, .exit)
    }
    XCTAssertEqual(try ResultsStore(path: store).listRuns().map(\.status), [.completed, .completed])
  }

  func testMLflowExportIsIdempotentAndRefusesAForeignFolder() throws {
    let (store, run) = try storeWithARun()
    let export = folder.appendingPathComponent("mlruns").path
    var result = runCLI(["export", "mlflow", export, "--store", store])
    XCTAssertEqual(result.code, 0, result.error)
    let experiment = MLflowExport.experimentID("e|<b>x</b>")
    let runFolder = "\(export)/\(experiment)/\(run.replacingOccurrences(of: "-", with: ""))"
    XCTAssertEqual(try String(contentsOfFile: "\(runFolder)/metrics/train.loss", encoding: .utf8), "1796428801250 0.5 10\n")
    XCTAssertEqual(try String(contentsOfFile: "\(runFolder)/metrics/target_0.8.wall_s", encoding: .utf8), "1796428802000 12.0 10\n")
    XCTAssertEqual(try String(contentsOfFile: "\(runFolder)/metrics/result.lake20.accuracy", encoding: .utf8).split(separator: " ")[1], "0.9")
    XCTAssertEqual(try String(contentsOfFile: "\(runFolder)/params/weird key__0_", encoding: .utf8), "v")
    XCTAssert(try String(contentsOfFile: "\(runFolder)/meta.yaml", encoding: .utf8).contains("status: 3"))
    XCTAssert(try String(contentsOfFile: "\(export)/\(experiment)/meta.yaml", encoding: .utf8).contains(#"name: "e|<b>x</b>""#))
    let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(runFolder)/artifacts/run.json"))) as! [String: Any]
    XCTAssertEqual(((json["episodes"] as! [String: Any])["lake20"] as! [[String: Any]]).first?["correct"] as? Int, 18)
    // Again: nothing rewritten.
    result = runCLI(["export", "mlflow", export, "--store", store])
    XCTAssertEqual(result.code, 0, result.error)
    XCTAssert(result.error.contains("(0 files written"), result.error)
    // A folder holding anything else, or a file: one line, exit 2, nothing written.
    let foreign = folder.appendingPathComponent("thesis").path
    try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: true)
    try Data("mine".utf8).write(to: URL(fileURLWithPath: foreign + "/chapter1.tex"))
    for path in [foreign, foreign + "/chapter1.tex"] {
      result = runCLI(["export", "mlflow", path, "--store", store])
      XCTAssertEqual(result.code, 2, result.error)
      XCTAssertEqual(result.error.split(separator: "\n").count, 1, result.error)
    }
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: foreign), ["chapter1.tex"])
    result = runCLI(["export", "mlflow", export, "--store", store, "--experiment", "nothing-like-it"])
    XCTAssertEqual(result.code, 2, result.error)
  }

  /// Issue #45, causes H and I: tag keys where one is a folder of the other (`p` and `p/q`) or
  /// climbs (`..`, `../../x`) export, and keep exporting; a re-export removes what the run no
  /// longer has but leaves what a user added in MLflow (a tag, a metric, an artifact).
  func testMLflowExportTakesAnyTagKeysAndKeepsWhatAUserAdded() throws {
    let (store, run) = try storeWithARun()
    let results = try ResultsStore(path: store)
    for (key, value) in [("p", "1"), ("p/q", "2"), ("..", "3"), ("../../x", "4")] { try results.setTag(run: run, key: key, value: value) }
    try results.finishRun(run, status: .failed, error: "boom")  // exported as the tag oneshot.error
    let export = folder.appendingPathComponent("mlruns").path
    var result = runCLI(["export", "mlflow", export, "--store", store])
    XCTAssertEqual(result.code, 0, result.error)
    let runFolder = "\(export)/\(MLflowExport.experimentID("e|<b>x</b>"))/\(run.replacingOccurrences(of: "-", with: ""))"
    let tags = try FileManager.default.subpathsOfDirectory(atPath: runFolder + "/tags")
    let values = Set(try tags.compactMap { path -> String? in
      var isFolder: ObjCBool = false
      _ = FileManager.default.fileExists(atPath: runFolder + "/tags/" + path, isDirectory: &isFolder)
      return isFolder.boolValue ? nil : try String(contentsOfFile: runFolder + "/tags/" + path, encoding: .utf8)
    })
    XCTAssert(["1", "2", "3", "4", "boom"].allSatisfy(values.contains), "\(tags)")
    XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("x").path), "nothing written outside the export")
    // What a user added with MLflow's client, then a tag deleted in the store.
    try Data("mine".utf8).write(to: URL(fileURLWithPath: runFolder + "/tags/reviewed_by"))
    try Data("1796428801250 0.7 0\n".utf8).write(to: URL(fileURLWithPath: runFolder + "/metrics/my.metric"))
    try FileManager.default.createDirectory(atPath: runFolder + "/artifacts/mine", withIntermediateDirectories: true)
    try Data("plot".utf8).write(to: URL(fileURLWithPath: runFolder + "/artifacts/mine/plot.png"))
    try results.finishRun(run, status: .completed)  // resumed and completed since: no error
    result = runCLI(["export", "mlflow", export, "--store", store])
    XCTAssertEqual(result.code, 0, result.error)
    for added in ["tags/reviewed_by", "metrics/my.metric", "artifacts/mine/plot.png"] {
      XCTAssert(FileManager.default.fileExists(atPath: runFolder + "/" + added), "\(added) was removed")
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: runFolder + "/tags/oneshot.error"), "what the run no longer has is removed")
    result = runCLI(["export", "mlflow", export, "--store", store])
    XCTAssert(result.error.contains("(0 files written"), result.error)
  }

  /// Issue #45, cause T: an argument error is one line with where the help is, a negative number
  /// after an option is named as such, and an echoed value is clipped.
  func testArgumentErrorsAreOneLine() {
    let experiment = repositoryRoot.appendingPathComponent("experiments/ci-smoke.json").path
    let long = String(repeating: "x", count: 500)
    let cases: [([String], String)] = [
      (["run", experiment, "--seed", "-1"], "--seed does not take a negative number (-1); see 'oneshot-bench run experiment --help'"),
      (["run", experiment, "--threads", "0"], "--threads"),
      (["run", "tag", "abcd"], "Missing expected argument '<key=value> ...'; see 'oneshot-bench run tag --help'"),
      (["export", "mlflow", "out", "--last", "0"], "--last must be at least 1"),
      (["report", "--format", long], "characters)"),
      (["run", experiment, "--set", String(repeating: "a.", count: 300) + "b=1"], "a key path of 301 parts"),
    ]
    for (arguments, expected) in cases {
      let result = runCLI(arguments)
      XCTAssertEqual(result.code, 2, "\(arguments)")
      let lines = result.error.split(separator: "\n")
      XCTAssertEqual(lines.count, 1, result.error)
      XCTAssert(result.error.contains(expected), result.error)
      XCTAssertLessThan(result.error.count, 500, result.error)
    }
  }

  /// Issue #45, cause U: `run --resume` of an evaluation says that an evaluation has nothing to
  /// resume; one left `running` by a process that ended is closed as failed, so no row stays
  /// `running` for good.
  func testResumingAnEvaluationClosesAnOrphanedRowAndSaysWhy() throws {
    let store = try ResultsStore(path: storePath)
    let config = try String(contentsOf: repositoryRoot.appendingPathComponent("examples/scorers/lake20-105.json"), encoding: .utf8)
    // The row an eval-only process left when it was killed: this host, a pid that is gone.
    let id = try store.beginRun(NewRun(experiment: "outside-lake20-105", configJSON: config, configHash: "h"), owner: "\(ProcessInfo.processInfo.hostName):999999:0badf00d")
    try store.setTag(run: id, key: TagKey.mode, value: RunMode.evalOnly.rawValue)
    let first = runCLI(["run", "--resume", id, "--store", storePath])
    XCTAssertEqual(first.code, 2, first.error)
    XCTAssert(first.error.contains("is an evaluation (eval-only), which keeps no checkpoint to resume (it was left running by a process that ended, and is now marked failed)"), first.error)
    XCTAssertEqual(try store.run(id).summary.status, .failed)
    let again = runCLI(["run", "--resume", id, "--store", storePath])
    XCTAssertEqual(again.code, 2)
    XCTAssert(again.error.contains("which keeps no checkpoint to resume: evaluate again"), again.error)
    XCTAssertFalse(again.error.contains("training"), again.error)
  }

  /// Issue #45, causes J and K: `dataset export` lands whole or not at all (SIGINT mid-way leaves
  /// no folder and no litter; of two exports into one folder exactly one lands, the other says
  /// so), and a target that is a file, a device or under a file is named as such.
  func testDatasetExportIsAllOrNothingAndNamesWhatIsInTheWay() throws {
    let omniglot = repositoryRoot.appendingPathComponent("dataset/omniglot").path
    let target = folder.appendingPathComponent("exported")
    // Interrupted: nothing at the target, nothing hidden beside it.
    let process = Process()
    process.executableURL = executable
    process.arguments = ["dataset", "export", "--split", "evaluation", "--to", target.path, "--data", omniglot]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    usleep(500_000)  // reading the archive alone takes longer (13,180 images)
    kill(process.processIdentifier, SIGINT)
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 130)
    XCTAssertFalse(FileManager.default.fileExists(atPath: target.path), "an interrupted export left a partial folder")
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.contains(".partial-") }, [], "the partial copy was removed")
    XCTAssertNotEqual(runCLI(["dataset", "verify", "--folder", target.path]).code, 0)
    try? FileManager.default.removeItem(at: target)
    // Two at once into one folder: one lands whole (13,180 images), the other reports it kept nothing.
    let runs = (0..<2).map { _ -> Process in
      let p = Process()
      p.executableURL = executable
      p.arguments = ["dataset", "export", "--split", "evaluation", "--to", target.path, "--data", omniglot]
      p.standardOutput = FileHandle.nullDevice
      p.standardError = Pipe()
      return p
    }
    for p in runs { try p.run() }
    for p in runs { p.waitUntilExit() }
    XCTAssertEqual(runs.filter { $0.terminationStatus == 0 }.count, 1)
    let loser = try XCTUnwrap(runs.first { $0.terminationStatus != 0 })
    let message = String(decoding: (loser.standardError as! Pipe).fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    XCTAssert(message.contains("another export filled it first") || message.contains("not empty"), message)
    let pngs = FileManager.default.enumerator(atPath: target.path)!.compactMap { $0 as? String }.filter { $0.hasSuffix(".png") }
    XCTAssertEqual(pngs.count, 13180)
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.contains(".partial-") }, [], "no staging folder left")
    // What is in the way is named.
    let file = folder.appendingPathComponent("a-file")
    try Data("x".utf8).write(to: file)
    for (to, expected) in [(file.path, "it is a file, not a folder"), ("/dev/null", "it is not a regular file (a device, a pipe or a socket), not a folder"), (file.path + "/below", "is a file, not a folder")] {
      let result = runCLI(["dataset", "export", "--split", "evaluation", "--to", to, "--data", omniglot])
      XCTAssertEqual(result.code, 2, to)
      XCTAssert(result.error.contains(expected), result.error)
      XCTAssertFalse(result.error.contains("NSCocoaErrorDomain"), result.error)
    }
  }
}
