import Episodes
import Experiments
import Foundation
import Model
import ResultsStore
import TestSupport
import XCTest

/// End to end through the executable, as a user: a tiny network trained for a few steps on
/// the bundled data, recorded, reported, checked, interrupted and resumed.
final class RunTests: TemporaryFolderTestCase {



  func experiment(steps: Int, validateEvery: Int = 10, logEvery: Int = 5) throws -> String {
    let json = """
      {"name": "tiny", "seed": 3, "threads": 2,
       "data": {"path": "\(repositoryRoot.appendingPathComponent("dataset/omniglot").path)"},
       "model": {"backbone": "vgg16", "inputSize": 28, "batchNorm": true, "blocks": [[4], [8]], "headHidden": 8, "headActivation": "relu"},
       "training": {"steps": \(steps), "pairsPerStep": 8, "pairing": "groups",
                    "optimizer": {"kind": "adam", "learningRate": 0.003},
                    "augmentation": {"probability": 0.5},
                    "validation": {"every": \(validateEvery), "episodes": 4, "spec": {"ways": 5, "shots": 1, "queries": 1}}, "logEvery": \(logEvery)},
       "evaluation": [{"protocol": "lake20"},
                      {"protocol": "episodes", "split": "evaluation", "episodes": 10, "seed": 7, "spec": {"ways": 5, "shots": 1, "queries": 2, "alphabetMode": "within"}}]}
      """
    let path = folder.appendingPathComponent("tiny.json").path
    try Data(json.utf8).write(to: URL(fileURLWithPath: path))
    return path
  }

  override var storePath: String { folder.appendingPathComponent("results/oneshot.sqlite").path }

  func testRunReportAndCheck() throws {
    let config = try experiment(steps: 20)
    let run = runCLI(["run", config, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(run.code, 0, run.error)
    XCTAssert(run.output.contains("lake20"), run.output)
    XCTAssert(run.error.contains("elapsed ") && run.error.contains("eta "), "the progress line shows elapsed and remaining time: \(run.error)")
    let store = try ResultsStore(path: storePath)
    let runs = try store.listRuns()
    XCTAssertEqual(runs.map(\.status), [.completed])
    let id = runs[0].id
    XCTAssertEqual(try store.metrics(runID: id, key: "validation.accuracy").map(\.step), [10, 20])
    XCTAssertEqual(try store.episodeRows(runID: id, protocolName: "lake20").count, 20)
    let detail = try store.run(id)
    XCTAssert(detail.params.contains { $0.key == "model.inputSize" && $0.value == "28" })
    XCTAssert(detail.provenance.contains { $0.key == "dataset_fingerprint" })
    XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("runs/\(id)/best.safetensors").path))

    // report --format csv parses back: a header and one row with as many fields.
    let csv = runCLI(["report", "--store", storePath, "--format", "csv"])
    XCTAssertEqual(csv.code, 0)
    let lines = csv.output.components(separatedBy: "\r\n").filter { !$0.isEmpty }
    XCTAssertEqual(lines.count, 2)
    let header = lines[0].split(separator: ",", omittingEmptySubsequences: false), row = lines[1].split(separator: ",", omittingEmptySubsequences: false)
    XCTAssertEqual(header.count, row.count)
    let accuracy = Double(row[header.firstIndex(of: "lake20.accuracy")!])!
    XCTAssertEqual(accuracy, try store.results(runID: id).first { $0.protocolName == "lake20" }!.accuracy, accuracy: 1e-4)
    // The selection metric sits beside the test metrics: best validation and its step.
    let history = try store.metrics(runID: id, key: "validation.accuracy")
    let bestAccuracy = history.map(\.value).max()!
    XCTAssertEqual(Double(row[header.firstIndex(of: "validation.best")!])!, bestAccuracy, accuracy: 1e-4)
    XCTAssertEqual(Int(row[header.firstIndex(of: "validation.best_step")!])!, history.first { $0.value == bestAccuracy }!.step)
    let json = runCLI(["report", "--store", storePath, "--format", "json"])
    XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [Any])?.count, 1)
    XCTAssertEqual(runCLI(["report", "--store", storePath, "--run", String(id.prefix(8))]).code, 0)

    // check: 0 against itself, 1 against a baseline that did better on every episode.
    let baseline = folder.appendingPathComponent("baseline.json").path
    XCTAssertEqual(runCLI(["check", "--latest", "tiny", "--store", storePath, "--write-baseline", baseline]).code, 0)
    let same = runCLI(["check", "--latest", "tiny", "--store", storePath, "--baseline", baseline])
    XCTAssertEqual(same.code, 0, same.output + same.error)
    XCTAssert(same.output.contains("accuracy check: passed"))
    XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: baseline))) as? [String: Any])?["mode"] as? String, "train")
    // An eval-only run of the same experiment, newer: --latest still takes the newest run of
    // the baseline's mode, unless --mode says otherwise; every format labels the mode.
    let best = folder.appendingPathComponent("runs/\(id)/best.safetensors").path
    XCTAssertEqual(runCLI(["run", config, "--store", storePath, "--eval-only", "--checkpoint", best]).code, 0)
    let evalID = try store.listRuns().first { $0.id != id }!.id
    XCTAssert(runCLI(["check", "--latest", "tiny", "--store", storePath, "--baseline", baseline]).output.contains("Run `\(id)`"))
    XCTAssert(runCLI(["check", "--latest", "tiny", "--mode", "eval-only", "--store", storePath, "--baseline", baseline]).output.contains("Run `\(evalID)`"))
    let modes = runCLI(["report", "--store", storePath, "--format", "csv"]).output.components(separatedBy: "\r\n").dropFirst().filter { !$0.isEmpty }.map { $0.split(separator: ",")[2] }
    XCTAssertEqual(modes, ["eval-only", "train"])
    let evalDetail = runCLI(["report", "--store", storePath, "--run", evalID]).output
    XCTAssert(evalDetail.contains("eval-only") && !evalDetail.contains("training.optimizer"), evalDetail)
    // --exact: the summary and the exit code agree both ways.
    let exact = runCLI(["check", "--latest", "tiny", "--store", storePath, "--baseline", baseline, "--exact"])
    XCTAssertEqual(exact.code, 0, exact.output + exact.error)
    XCTAssert(exact.output.contains("accuracy check: passed") && exact.output.contains("exact: every accuracy"), exact.output)
    var lower = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: baseline))) as! [String: Any]
    lower["protocols"] = (lower["protocols"] as! [[String: Any]]).map { entry -> [String: Any] in
      var entry = entry
      var episodes = entry["episodes"] as! [[Int]]
      guard entry["result"].flatMap({ ($0 as? [String: Any])?["protocolName"] as? String }) == "lake20", episodes[0][1] > 0 else { return entry }
      episodes[0][1] -= 1  // the baseline did one trial worse: this run is better, not equal
      entry["episodes"] = episodes
      // Its summary restated from its episodes, as a baseline file must be.
      let summary = EvaluationSummary(episodes: episodes.map { EpisodeOutcome(index: $0[0], group: nil, correct: $0[1], total: $0[2]) }, seconds: 0, embeddedImages: 0)
      var result = entry["result"] as! [String: Any]
      result["accuracy"] = summary.accuracy
      result["ciLow"] = summary.interval95.low
      result["ciHigh"] = summary.interval95.high
      entry["result"] = result
      return entry
    }
    let lowerPath = folder.appendingPathComponent("lower.json").path
    try JSONSerialization.data(withJSONObject: lower).write(to: URL(fileURLWithPath: lowerPath))
    XCTAssertEqual(runCLI(["check", "--latest", "tiny", "--store", storePath, "--baseline", lowerPath]).code, 0, "better is no regression")
    let notExact = runCLI(["check", "--latest", "tiny", "--store", storePath, "--baseline", lowerPath, "--exact"])
    XCTAssertEqual(notExact.code, 1, notExact.output + notExact.error)
    XCTAssert(notExact.output.contains("accuracy check: failed: not exact") && notExact.output.contains("**changed**"), notExact.output)
    XCTAssert(notExact.error.contains("run \(id) does not reproduce baseline \(lowerPath) exactly"), notExact.error)
    var better = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: baseline))) as! [String: Any]
    better["protocols"] = (better["protocols"] as! [[String: Any]]).map { entry -> [String: Any] in
      var entry = entry
      let perfect = (entry["episodes"] as! [[Int]]).map { [$0[0], $0[2], $0[2]] }
      entry["episodes"] = perfect
      let summary = EvaluationSummary(episodes: perfect.map { EpisodeOutcome(index: $0[0], group: nil, correct: $0[1], total: $0[2]) }, seconds: 0, embeddedImages: 0)
      var result = entry["result"] as! [String: Any]
      result["accuracy"] = 1.0
      result["ciLow"] = summary.interval95.low
      result["ciHigh"] = summary.interval95.high
      entry["result"] = result
      return entry
    }
    try JSONSerialization.data(withJSONObject: better).write(to: URL(fileURLWithPath: baseline))
    let worse = runCLI(["check", "--run", id, "--store", storePath, "--baseline", baseline])
    XCTAssertEqual(worse.code, 1, worse.output + worse.error)
    XCTAssert(worse.output.contains("REGRESSION"))
    // predict: two images of any size and colour against the run's best checkpoint.
    var pixels = [UInt8](repeating: 255, count: 60 * 40)
    for y in 10..<30 { for x in 20..<24 { pixels[y * 60 + x] = 0 } }
    let a = folder.appendingPathComponent("a.png"), b = folder.appendingPathComponent("b.png")
    try Data(try GrayImage(width: 60, height: 40, pixels: pixels).encodePNG()).write(to: a)
    try Data(try GrayImage(width: 60, height: 40, pixels: pixels.reversed()).encodePNG()).write(to: b)
    let predicted = runCLI(["predict", a.path, b.path, "--checkpoint", best])
    XCTAssertEqual(predicted.code, 0, predicted.error)
    let similarity = try XCTUnwrap(Double(predicted.output.trimmingCharacters(in: .whitespacesAndNewlines)))
    XCTAssert((0...1).contains(similarity))
    XCTAssertEqual(runCLI(["predict", a.path, "/nonexistent.png", "--checkpoint", best]).code, 2)
    XCTAssertEqual(runCLI(["predict", a.path, b.path, "--checkpoint", "/nonexistent.safetensors"]).code, 2)

    // Harness errors exit 2.
    XCTAssertEqual(runCLI(["check", "--run", "nonexistent", "--store", storePath, "--baseline", baseline]).code, 2)
    XCTAssertEqual(runCLI(["check", "--run", id, "--store", storePath, "--baseline", "/nonexistent.json"]).code, 2)
  }

  func testInterruptAndResumeGiveTheUninterruptedResult() throws {
    // The checkpoint (step 25) falls between log points (20, 40): the loss logged at 40 must
    // still be the mean over steps 21-40.
    let config = try experiment(steps: 60, validateEvery: 25, logEvery: 20)
    let runs = folder.appendingPathComponent("checkpoints")
    let held = try startHeldRun(["run", config, "--store", storePath, "--runs", runs.path, "--threads", "2"], runs: runs, holdAtStep: 25, currentDirectory: folder)
    let (process, id) = (held.process, held.runID)
    kill(process.processIdentifier, SIGINT)
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 130)
    let store = try ResultsStore(path: storePath)
    XCTAssertEqual(try store.run(id).summary.status, .interrupted)
    // The hint names every option the run used.
    let hint = held.errorText
    // The binary as it was started (a path: not on PATH), so that the hint pastes as it is.
    XCTAssert(hint.contains("Continue with: \(executable.path) run --resume \(id) --store \(storePath) --runs \(runs.path) --threads 2"), hint)
    XCTAssertFalse(hint.contains("error:"), "a Ctrl-C is no error: \(hint)")
    // A resume that cannot find the checkpoint says where it looked, and changes nothing.
    let lost = runCLI(["run", "--resume", id, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(lost.code, 2)
    XCTAssert(lost.error.contains("\(folder.path)/runs/\(id)/last.safetensors") && lost.error.contains("pass the same --runs DIR"), lost.error)
    XCTAssertEqual(try store.run(id).summary.status, .interrupted, "a failed resume leaves the run resumable")
    XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("runs").path), "nothing is written into another runs folder")

    // Another run's checkpoint put in its place is refused, naming both runs (issue #45, cause O).
    let mine = runs.appendingPathComponent(id).appendingPathComponent("last.safetensors")
    let kept = try Data(contentsOf: mine)
    let second = try startHeldRun(["run", config, "--store", storePath, "--runs", runs.path, "--threads", "2"], runs: runs, holdAtStep: 25, currentDirectory: folder)
    kill(second.process.processIdentifier, SIGINT)
    second.process.waitUntilExit()
    let otherID = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: runs.path).first { $0 != id && !$0.hasPrefix(".") })
    try Data(contentsOf: runs.appendingPathComponent(otherID).appendingPathComponent("last.safetensors")).write(to: mine)
    let swapped = runCLI(["run", "--resume", id, "--store", storePath, "--runs", runs.path], currentDirectory: folder)
    XCTAssertEqual(swapped.code, 2, swapped.error)
    XCTAssert(swapped.error.contains("was written by run \(otherID), not by run \(id)"), swapped.error)
    XCTAssertEqual(try store.run(id).summary.status, .interrupted)
    try kept.write(to: mine)

    let resumed = runCLI(["run", "--resume", id, "--store", storePath, "--runs", runs.path], currentDirectory: folder)
    XCTAssertEqual(resumed.code, 0, resumed.error)
    XCTAssert(resumed.error.contains("resuming at step"), resumed.error)
    XCTAssertEqual(try store.run(id).summary.status, .completed)

    // The same experiment uninterrupted gives the same numbers: training is a pure function
    // of (seed, step).
    let straight = runCLI(["run", config, "--store", storePath, "--runs", runs.path], currentDirectory: folder)
    XCTAssertEqual(straight.code, 0, straight.error)
    let other = try store.listRuns().first { $0.id != id && $0.status == .completed }!.id
    XCTAssertEqual(try store.results(runID: id).map(\.accuracy), try store.results(runID: other).map(\.accuracy))
    for key in [MetricKey.trainingLoss, MetricKey.validationAccuracy, MetricKey.learningRate] {
      let resumedHistory = try store.metrics(runID: id, key: key), straightHistory = try store.metrics(runID: other, key: key)
      XCTAssertEqual(resumedHistory.map(\.step), straightHistory.map(\.step), key)
      XCTAssertEqual(resumedHistory.map(\.value), straightHistory.map(\.value), key)
    }
  }

  func testARunIsOwnedWhileItTrainsAndAKilledRunResumesWithoutDuplicates() throws {
    let config = try experiment(steps: 30, validateEvery: 10)
    let held = try startHeldRun(["run", config, "--store", storePath], runs: folder.appendingPathComponent("runs"), currentDirectory: folder)
    let (process, runID) = (held.process, held.runID)
    XCTAssertTrue(process.isRunning)
    // A second process cannot take a run that a live one trains.
    let stolen = runCLI(["run", "--resume", runID, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(stolen.code, 2, stolen.error)
    XCTAssert(stolen.error.contains("is being worked on by") && stolen.error.contains(":\(process.processIdentifier)"), stolen.error)
    // Nor can it be deleted from under it.
    let deleted = runCLI(["run", "delete", runID, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(deleted.code, 2, deleted.error)
    XCTAssert(deleted.error.contains("is being worked on by"), deleted.error)
    // Killed without a word: the run stays `running` with the time of its last heartbeat.
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    let store = try ResultsStore(path: storePath)
    XCTAssertEqual(try store.run(runID).summary.status, .running)
    let before = try XCTUnwrap(try store.run(runID).summary.durationSeconds)
    XCTAssertGreaterThan(before, 0)
    // Its owner is gone, so it can be resumed at once; nothing logged twice; the time adds up.
    let resumed = runCLI(["run", "--resume", runID, "--store", storePath, "--set", "x=1"], currentDirectory: folder)
    XCTAssertEqual(resumed.code, 2, "a resume takes no --set")
    let finished = runCLI(["run", "--resume", runID, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(finished.code, 0, finished.error)
    XCTAssertEqual(try store.run(runID).summary.status, .completed)
    for key in ["train.loss", "validation.accuracy"] {
      let steps = try store.metrics(runID: runID, key: key).map(\.step)
      XCTAssertEqual(steps, Array(Set(steps)).sorted(), "\(key): one point per step")
      XCTAssertEqual(steps.last, 30)
    }
    XCTAssertGreaterThan(try XCTUnwrap(try store.run(runID).summary.durationSeconds), before, "the wall time counts the killed sitting too")
    try tagNoteAndDelete(runID, store: store)
  }

  /// `run tag`, `run note` and `run delete` on a finished run, as MLflow users expect: tags and
  /// the note show in the reports; the harness's own tags cannot be set by hand; a deleted run
  /// leaves no row in any table, and --files removes its checkpoint folder and nothing else.
  func tagNoteAndDelete(_ runID: String, store: ResultsStore) throws {
    XCTAssertEqual(runCLI(["run", "tag", String(runID.prefix(8)), "reviewed=yes", "lr=too-high", "--store", storePath]).code, 0)
    XCTAssertEqual(runCLI(["run", "note", runID, "diverged after step 20", "--store", storePath]).code, 0)
    let reserved = runCLI(["run", "tag", runID, "mode=train", "--store", storePath])
    XCTAssertEqual(reserved.code, 2)
    XCTAssert(reserved.error.contains("written by the harness"), reserved.error)
    XCTAssertEqual(runCLI(["run", "tag", runID, "novalue", "--store", storePath]).code, 2)
    let detail = runCLI(["report", "--run", runID, "--store", storePath]).output
    XCTAssert(detail.contains("tag reviewed: yes") && detail.contains("tag note: diverged after step 20"), detail)
    let listing = try JSONSerialization.jsonObject(with: Data(runCLI(["report", "--format", "json", "--store", storePath]).output.utf8)) as? [[String: Any]]
    XCTAssertEqual((listing?.first?["tags"] as? [String: String])?["reviewed"], "yes")
    // A run that scored a checkpoint outside runs/<id>/ (the shipped model, say) loses its row, never that file.
    let outside = folder.appendingPathComponent("outside.safetensors")
    try Data([1, 2, 3]).write(to: outside)
    let other = try store.beginRun(NewRun(experiment: "eval", configJSON: "{}", configHash: "h", params: []))
    try store.setCheckpoint(run: other, path: outside.path, hash: "x")
    try store.finishRun(other, status: .completed)
    XCTAssertEqual(runCLI(["run", "delete", other, "--files", "--store", storePath]).code, 0)
    XCTAssert(FileManager.default.fileExists(atPath: outside.path))
    let checkpointFolder = URL(fileURLWithPath: try XCTUnwrap(store.run(runID).provenance.first { $0.key == "checkpoint_path" }?.value)).deletingLastPathComponent()
    XCTAssert(FileManager.default.fileExists(atPath: checkpointFolder.path))
    // A run interrupted before its first best checkpoint records no path; its folder under
    // --runs (here the default, runs/) goes all the same (issue #45, cause N).
    let early = try store.beginRun(NewRun(experiment: "early", configJSON: "{}", configHash: "h2", params: []))
    try store.finishRun(early, status: .interrupted)
    let earlyFolder = folder.appendingPathComponent("runs").appendingPathComponent(early)
    try FileManager.default.createDirectory(at: earlyFolder, withIntermediateDirectories: true)
    for name in ["last.safetensors", "config.json"] { try Data([1]).write(to: earlyFolder.appendingPathComponent(name)) }
    let earlyGone = runCLI(["run", "delete", early, "--files", "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(earlyGone.code, 0, earlyGone.error)
    XCTAssert(earlyGone.error.contains("removed"), earlyGone.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: earlyFolder.path))
    let gone = runCLI(["run", "delete", runID, "--files", "--store", storePath])
    XCTAssertEqual(gone.code, 0, gone.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: checkpointFolder.path))
    XCTAssertEqual(try store.listRuns().count, 0)
    XCTAssertEqual(try store.metrics(runID: runID, key: "train.loss").count, 0)
    XCTAssertEqual(try store.results(runID: runID).count, 0)
    XCTAssertEqual(try store.episodeRows(runID: runID, protocolName: "lake20").count, 0)
    XCTAssertEqual(runCLI(["run", "delete", runID, "--store", storePath]).code, 2, "deleting twice: no such run")
  }

  /// SIGTERM while a run scores its protocols (here an eval-only run of the shipped model) ends
  /// it within seconds as interrupted, exit 143, keeping the results it had; a scheduler's grace
  /// period is never spent on evaluation.
  func testASignalDuringEvaluationEndsTheRunInterrupted() throws {
    let process = Process()
    process.executableURL = executable
    process.arguments = [
      "run", repositoryRoot.appendingPathComponent("experiments/omniglot52-eval.json").path, "--eval-only", "--checkpoint",
      repositoryRoot.appendingPathComponent("models/omniglot-siamese.safetensors").path, "--store", storePath, "--data", repositoryRoot.appendingPathComponent("dataset/omniglot").path,
    ]
    let log = folder.appendingPathComponent("eval.log")
    _ = FileManager.default.createFile(atPath: log.path, contents: nil)
    process.standardError = try FileHandle(forWritingTo: log)
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(120)
    while Date() < deadline, process.isRunning, !((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("evaluating evaluation-20way") { usleep(50_000) }
    XCTAssert(process.isRunning, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    let signalled = Date()
    kill(process.processIdentifier, SIGTERM)
    process.waitUntilExit()
    XCTAssertLessThan(Date().timeIntervalSince(signalled), 10, "stopped within seconds")
    XCTAssertEqual(process.terminationStatus, 143)
    let store = try ResultsStore(path: storePath)
    let run = try XCTUnwrap(store.listRuns().first)
    XCTAssertEqual(run.status, .interrupted)
    XCTAssertEqual(try store.results(runID: run.id).map(\.protocolName), ["lake20"], "the protocol scored before the signal is kept")
    XCTAssert(try String(contentsOf: log, encoding: .utf8).contains("interrupted while evaluating"))
  }

  func testTheGateRefusesBaselinesThatDoNotDescribeTheRun() throws {
    let config = try experiment(steps: 10)
    XCTAssertEqual(runCLI(["run", config, "--store", storePath], currentDirectory: folder).code, 0)
    let baseline = folder.appendingPathComponent("b.json").path
    XCTAssertEqual(runCLI(["check", "--latest", "tiny", "--store", storePath, "--write-baseline", baseline]).code, 0)
    let frozen = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: baseline))) as! [String: Any]
    func check(_ edit: (inout [String: Any]) -> Void, _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
      var copy = frozen
      edit(&copy)
      let path = folder.appendingPathComponent("edited.json").path
      try JSONSerialization.data(withJSONObject: copy).write(to: URL(fileURLWithPath: path))
      let result = runCLI(["check", "--latest", "tiny", "--store", storePath, "--baseline", path])
      XCTAssertEqual(result.code, 2, result.output + result.error, file: file, line: line)
      XCTAssert(result.error.contains(expected) && result.error.split(separator: "\n").count == 1, result.error, file: file, line: line)
      XCTAssertFalse(result.output.contains("passed"), file: file, line: line)
    }
    try check({ $0["protocols"] = [] as [Any] }, "lists no protocol, so it would pass any run")
    try check({ $0["formatVersion"] = 1 }, "format version 1")
    // A protocol deleted from the baseline: the rest would pass while the run's configuration
    // (the same hash) evaluates one the baseline no longer judges.
    try check({ $0["protocols"] = Array(($0["protocols"] as! [Any]).dropFirst()) }, "the baseline has no entry for protocol")
    try check(
      { b in
        var protocols = b["protocols"] as! [[String: Any]]
        protocols[0]["episodes"] = [[0, 1]] + (protocols[0]["episodes"] as! [[Int]]).dropFirst()
        b["protocols"] = protocols
      }, "is not [episode, correct, total]")
    // An edited summary or episode list must not show one baseline and test another.
    func editFirstProtocol(_ edit: @escaping (inout [String: Any]) -> Void) -> (inout [String: Any]) -> Void {
      { b in
        var protocols = b["protocols"] as! [[String: Any]]
        edit(&protocols[0])
        b["protocols"] = protocols
      }
    }
    try check(editFirstProtocol { $0["episodes"] = ($0["episodes"] as! [[Int]]).map { [$0[0], 0, $0[2]] } }, "but its episodes add up to 0.0000%")
    func editResult(_ key: String, _ value: Double) -> (inout [String: Any]) -> Void {
      editFirstProtocol { p in
        var result = p["result"] as! [String: Any]
        result[key] = value
        p["result"] = result
      }
    }
    try check(editResult("accuracy", 0.999), "says accuracy 99.9000%")
    try check(editResult("ciLow", 0.0), "says 95% interval [0.0000%")
    try check(editFirstProtocol { $0["episodes"] = ($0["episodes"] as! [[Int]]).map { [$0[0] + 1000, $0[1], $0[2]] } }, "do not line up with the baseline's")
    try check(
      editFirstProtocol { $0["episodes"] = [[0, 1.5, 20] as [Any]] + ($0["episodes"] as! [[Int]]).dropFirst().map { $0 as [Any] } }, "protocols[0].episodes[0][1]: the number 1.5 does not fit this key")
    try check({ $0["experiment"] = "other" }, "is of experiment tiny, the baseline of other")
    try check({ $0["configHash"] = "0000" }, "has another configuration")
    try check(
      { b in
        var protocols = b["protocols"] as! [[String: Any]]
        protocols[0]["episodesDigest"] = "another-seed"
        b["protocols"] = protocols
      }, "scored other episodes than the baseline's")
    try check({ $0["protocols"] = "nonsense" }, "is not a oneshot-bench baseline")
    let duplicate = folder.appendingPathComponent("dup.json").path
    try Data(try String(contentsOfFile: baseline, encoding: .utf8).replacingOccurrences(of: "\"mode\" : \"train\",", with: "\"mode\" : \"train\", \"mode\" : \"eval-only\",").utf8)
      .write(to: URL(fileURLWithPath: duplicate))
    let dup = runCLI(["check", "--latest", "tiny", "--store", storePath, "--baseline", duplicate])
    XCTAssertEqual(dup.code, 2)
    XCTAssert(dup.error.contains("mode: this key is given twice"), dup.error)
    // compare pairs only protocols scored on the same episodes, says which it skipped and why,
    // and pairs the episodes two runs share when one scored more of the same sequence.
    let other = runCLI(["run", config, "--store", storePath, "--set", "evaluation.1.seed=8"], currentDirectory: folder)
    XCTAssertEqual(other.code, 0, other.error)
    let fewer = runCLI(["run", config, "--store", storePath, "--set", "evaluation.1.episodes=6"], currentDirectory: folder)
    XCTAssertEqual(fewer.code, 0, fewer.error)
    let ids = try ResultsStore(path: storePath).listRuns().map(\.id)
    let (newest, otherSeed, first) = (ids[0], ids[1], ids.last!)
    let compared = runCLI(["compare", first, otherSeed, "--store", storePath])
    XCTAssertEqual(compared.code, 0, compared.error)
    XCTAssert(compared.output.contains("| lake20 |"), compared.output)
    XCTAssert(compared.output.contains("Not compared: evaluation-5way-1shot-within: the runs drew different episodes"), compared.output)
    let prefix = runCLI(["compare", first, newest, "--store", storePath])
    XCTAssertEqual(prefix.code, 0, prefix.error)
    XCTAssert(prefix.output.contains("6 shared episodes") && !prefix.output.contains("Not compared"), prefix.output)
    let itself = runCLI(["compare", first, first, "--store", storePath])
    XCTAssert(itself.output.contains("the same run") && !itself.output.contains("differ only by seed"), itself.output)
    let unwritable = runCLI(["check", "--latest", "tiny", "--store", storePath, "--write-baseline", "/etc/passwd/b.json"])
    XCTAssertEqual(unwritable.code, 2)
    XCTAssert(unwritable.error.hasPrefix("error: cannot write baseline /etc/passwd/b.json"), unwritable.error)
  }

  func testAutoPrecisionIsMeasuredCachedAndRecorded() throws {
    let config = try experiment(steps: 4)
    let cache = folder.appendingPathComponent("cache")
    let first = runCLI(["run", config, "--store", storePath, "--set", "training.precision=auto"], environment: ["ONESHOT_CACHE": cache.path], currentDirectory: folder)
    XCTAssertEqual(first.code, 0, first.error)
    // The network has batch norm before pooling, so fusing them is timed too. Where the kernels
    // have no bf16 dot products (AVX2-only CPUs, or ONEDNN_MAX_CPU_ISA=AVX2), bf16 is not timed:
    // fp32, fused or not, and the reason said.
    let timesBF16 = KernelISA.bf16
    XCTAssert(first.error.contains("precision auto: ") && first.error.contains("fp32 fused ") && first.error.contains("fp32 unfused "), first.error)
    XCTAssert(first.error.contains(", batch norm + pooling fused (") || first.error.contains(", batch norm + pooling unfused ("), first.error)
    if timesBF16 {
      XCTAssert(first.error.contains("bf16 fused ") && first.error.contains("bf16 unfused "), first.error)
    } else {
      XCTAssert(first.error.contains("precision auto: fp32, batch norm + pooling "), first.error)
      XCTAssert(first.error.contains("bf16 not timed: this CPU's kernels (\(KernelISA.description)) have no bf16 dot products"), first.error)
    }
    let cached = try JSONSerialization.jsonObject(with: Data(contentsOf: cache.appendingPathComponent("precision.json"))) as? [String: Any]
    XCTAssertEqual(cached?.count, 1)
    let second = runCLI(["run", config, "--store", storePath, "--set", "training.precision=auto", "--seed", "4"], environment: ["ONESHOT_CACHE": cache.path], currentDirectory: folder)
    XCTAssertEqual(second.code, 0, second.error)
    XCTAssert(second.error.contains("cached in"), second.error)
    if !timesBF16 { XCTAssert(second.error.contains("bf16 not timed"), second.error) }
    let store = try ResultsStore(path: storePath)
    let resolved = try store.listRuns().map { try store.run($0.id).tags.first { $0.key == "precision.resolved" }?.value }
    XCTAssertEqual(resolved.count, 2)
    XCTAssert(resolved.allSatisfy { $0 == "fp32" || $0 == "bf16" } && resolved[0] == resolved[1], "\(resolved)")
    if !timesBF16 { XCTAssertEqual(resolved[0], "fp32") }
    let fusion = try store.listRuns().map { try store.run($0.id).tags.first { $0.key == "fusion.resolved" }?.value }
    XCTAssert(fusion.allSatisfy { $0 == "fused" || $0 == "unfused" } && fusion[0] == fusion[1], "\(fusion)")
    XCTAssert(runCLI(["report", "--store", storePath, "--wide"]).output.contains("auto (\(resolved[0]!))"))
  }

  /// With 16 channels the convolutions leave nChw16c outputs and batch norm + pooling run fused
  /// (checked with ONEDNN_VERBOSE: no batch-norm or pooling primitive runs): an interrupted and resumed
  /// run still equals the straight one.
  func testFusedTrainingResumesExactly() throws {
    let settings = ["--set", "model.blocks=[[16], [16]]", "--set", "training.fusion=fused"]
    let (resumed, straight) = try interruptedAndStraight(settings: settings, runs: folder.appendingPathComponent("checkpoints"))
    let store = try ResultsStore(path: storePath)
    for id in [resumed, straight] {
      XCTAssertEqual(try store.run(id).tags.first { $0.key == "fusion.resolved" }?.value, "fused")
      XCTAssertNil(try store.run(id).tags.first { $0.key == "fusion.unfused" }, "every pair fused")
    }
  }

  /// A run of 40 steps (validated at 25 and 40) with `settings`, interrupted at step 25 and
  /// resumed, then run again straight through: asserts the two recorded the same training loss,
  /// validation and test figures, and returns their ids.
  func interruptedAndStraight(settings: [String], runs: URL, file: StaticString = #filePath, line: UInt = #line) throws -> (resumed: String, straight: String) {
    let config = try experiment(steps: 40, validateEvery: 25, logEvery: 20)
    let store = try ResultsStore(path: storePath)
    let before = Set(try store.listRuns().map(\.id))
    let held = try startHeldRun(["run", config, "--store", storePath, "--runs", runs.path] + settings, runs: runs, holdAtStep: 25, currentDirectory: folder)
    kill(held.process.processIdentifier, SIGINT)
    held.process.waitUntilExit()
    XCTAssertEqual(held.process.terminationStatus, 130, held.errorText, file: file, line: line)
    let resumed = runCLI(["run", "--resume", held.runID, "--store", storePath, "--runs", runs.path], currentDirectory: folder)
    XCTAssertEqual(resumed.code, 0, resumed.error, file: file, line: line)
    let straight = runCLI(["run", config, "--store", storePath, "--runs", runs.path] + settings, currentDirectory: folder)
    XCTAssertEqual(straight.code, 0, straight.error, file: file, line: line)
    let other = try XCTUnwrap(try store.listRuns().first { !before.contains($0.id) && $0.id != held.runID && $0.status == .completed }, file: file, line: line).id
    XCTAssertEqual(try store.results(runID: held.runID).map(\.accuracy), try store.results(runID: other).map(\.accuracy), file: file, line: line)
    for key in [MetricKey.trainingLoss, MetricKey.validationAccuracy] {
      XCTAssertEqual(try store.metrics(runID: held.runID, key: key).map(\.value), try store.metrics(runID: other, key: key).map(\.value), key, file: file, line: line)
    }
    return (held.runID, other)
  }

  /// `training.emaDecay`: the moving average of the weights is what is validated and kept as the
  /// best checkpoint (the last checkpoint holds the current weights and the average, for
  /// --resume), and a run interrupted and resumed ends exactly as one that never stopped.
  func testWeightAverageIsScoredAndResumesExactly() throws {
    let runs = folder.appendingPathComponent("checkpoints")
    let averaging = ["--set", "training.emaDecay=0.9"]
    // One validation, at the last step: the best checkpoint is the average at that step.
    let once = runCLI(["run", try experiment(steps: 12, validateEvery: 12), "--store", storePath, "--runs", runs.path] + averaging, currentDirectory: folder)
    XCTAssertEqual(once.code, 0, once.error)
    let store = try ResultsStore(path: storePath)
    let onceID = try XCTUnwrap(store.listRuns().first).id
    let last = try Checkpoint.read(runs.appendingPathComponent("\(onceID)/last.safetensors"))
    let best = try Checkpoint.read(runs.appendingPathComponent("\(onceID)/best.safetensors"))
    let average = try XCTUnwrap(last.average)
    XCTAssertEqual(average.decay, 0.9)
    XCTAssertNil(best.average)
    XCTAssertEqual(average.steps, 12)
    let averaged = average.applied(to: last.network.store)
    XCTAssertEqual(best.network.store.parameters.map(\.value), averaged.parameters.map(\.value))
    XCTAssertEqual(best.network.store.buffers.map(\.value), averaged.buffers.map(\.value))
    XCTAssertNotEqual(best.network.store.parameters.map(\.value), last.network.store.parameters.map(\.value), "the average is not the last weights")
    XCTAssertEqual(try store.run(onceID).params.first { $0.key == "training.emaDecay" }?.value, "0.9")
    // The last checkpoint scores as any checkpoint does (its average is training state).
    let scored = runCLI(["run", try experiment(steps: 12), "--eval-only", "--checkpoint", runs.appendingPathComponent("\(onceID)/last.safetensors").path, "--store", storePath], currentDirectory: folder)
    XCTAssertEqual(scored.code, 0, scored.error)

    // A folder of its own: the held run is found as the first run folder to appear.
    let resumeRuns = folder.appendingPathComponent("resume-checkpoints")
    let (resumedID, straightID) = try interruptedAndStraight(settings: averaging, runs: resumeRuns)
    let bestAfterResume = try Checkpoint.read(resumeRuns.appendingPathComponent("\(resumedID)/best.safetensors")).network.store.parameters.map(\.value)
    XCTAssertEqual(bestAfterResume, try Checkpoint.read(resumeRuns.appendingPathComponent("\(straightID)/best.safetensors")).network.store.parameters.map(\.value))
  }

  /// Koch et al.'s optimizer end to end: each layer's own SGD settings, the momentum ramp (not
  /// over by the interruption at step 25) and Koch's initialisation; a run interrupted and resumed
  /// ends exactly as one that never stopped, records the settings, and trains otherwise than the
  /// same file without them.
  func testLayerwiseSGDWithAMomentumRampResumesExactly() throws {
    let layers = #"[{"layer": "backbone.features.0", "learningRate": 0.05, "momentum": 0.8, "weightDecay": 0.001}, {"layer": "head.0", "learningRate": 0.002, "momentum": 0.6, "weightDecay": 0}]"#
    let optimizer = #"{"kind": "sgd", "learningRate": 0.01, "nesterov": false, "momentum": 0.9, "weightDecay": 0.0005, "layers": LAYERS, "momentumRamp": {"start": 0.5, "steps": 30}}"#
    let settings = [
      "--set", "training.optimizer=" + optimizer.replacingOccurrences(of: "LAYERS", with: layers), "--set", "training.schedule={\"kind\": \"step\", \"every\": 10, \"factor\": 0.99}",
      "--set", "model.initialization=koch",
    ]
    let runs = folder.appendingPathComponent("checkpoints")
    let (resumed, _) = try interruptedAndStraight(settings: settings, runs: runs)
    let store = try ResultsStore(path: storePath)
    let params = try store.run(resumed).params
    XCTAssertTrue(params.contains { $0.key.hasPrefix("training.optimizer.layers") && $0.value.contains("0.05") }, "\(params.map(\.key))")
    XCTAssertTrue(params.contains { $0.key.hasPrefix("training.optimizer.momentumRamp") }, "\(params.map(\.key))")
    let last = try Checkpoint.read(runs.appendingPathComponent("\(resumed)/last.safetensors"))
    guard case .sgd(_, _, _, _, let kept?, let ramp?) = last.optimizer?.config else { return XCTFail("the checkpoint lost the per-layer settings") }
    XCTAssertEqual(kept.map(\.layer), ["backbone.features.0", "head.0"])
    XCTAssertEqual(ramp.steps, 30)
    // Without the layers' own settings the same file trains otherwise.
    let plain = settings.map { $0.replacingOccurrences(of: #", "layers": "# + layers, with: "") }
    XCTAssertNotEqual(plain, settings)
    let before = Set(try store.listRuns().map(\.id))
    let other = runCLI(["run", try experiment(steps: 40, validateEvery: 25, logEvery: 20), "--store", storePath, "--runs", runs.path] + plain, currentDirectory: folder)
    XCTAssertEqual(other.code, 0, other.error)
    let otherID = try XCTUnwrap(try store.listRuns().first { !before.contains($0.id) }).id
    XCTAssertNotEqual(try store.metrics(runID: otherID, key: MetricKey.trainingLoss).map(\.value), try store.metrics(runID: resumed, key: MetricKey.trainingLoss).map(\.value))
  }

  func testPinnedFusionIsRecordedWithoutAProbe() throws {
    let config = try experiment(steps: 3)
    let cache = folder.appendingPathComponent("cache")
    let run = runCLI(["run", config, "--store", storePath, "--set", "training.fusion=unfused"], environment: ["ONESHOT_CACHE": cache.path], currentDirectory: folder)
    XCTAssertEqual(run.code, 0, run.error)
    XCTAssertFalse(run.error.contains("probe"), "fp32 and unfused, both pinned: nothing to time\n\(run.error)")
    XCTAssertFalse(FileManager.default.fileExists(atPath: cache.appendingPathComponent("precision.json").path))
    let store = try ResultsStore(path: storePath)
    let id = try XCTUnwrap(store.listRuns().first).id
    XCTAssertEqual(try store.run(id).tags.first { $0.key == "fusion.resolved" }?.value, "unfused")
    XCTAssertEqual(try store.run(id).params.first { $0.key == "training.fusion" }?.value, "unfused")
    XCTAssertNil(try store.run(id).tags.first { $0.key == "fusion.unfused" }, "nothing was asked to fuse")
    // Asked to fuse, this network's 4- and 8-channel convolutions leave plain outputs: each pair
    // is named as not fused, in a note and a tag, so "fused" is never read as "fused everywhere".
    let pinned = runCLI(["run", config, "--store", storePath, "--set", "training.fusion=fused"], environment: ["ONESHOT_CACHE": cache.path], currentDirectory: folder)
    XCTAssertEqual(pinned.code, 0, pinned.error)
    XCTAssert(pinned.error.contains("note: batch norm + pooling at 4 x 28 x 28 not fused: "), pinned.error)
    let fusedID = try XCTUnwrap(try store.listRuns().first { $0.id != id }).id
    XCTAssertEqual(try store.run(fusedID).tags.first { $0.key == "fusion.resolved" }?.value, "fused")
    XCTAssert(try XCTUnwrap(try store.run(fusedID).tags.first { $0.key == "fusion.unfused" }?.value).contains("8 x 14 x 14 not fused"))
  }

  func testAutoConvolutionsAreChosenPrintedAndRecorded() throws {
    let config = try experiment(steps: 3)
    let run = runCLI(["run", config, "--store", storePath, "--set", "training.convolutions=auto"], currentDirectory: folder)
    XCTAssertEqual(run.code, 0, run.error)
    XCTAssert(run.error.contains("convolutions auto (forward/backward-data/backward-weights; d direct, w winograd): features.0 "), run.error)
    let store = try ResultsStore(path: storePath)
    let detail = try store.run(try XCTUnwrap(store.listRuns().first).id)
    let chosen = try XCTUnwrap(detail.tags.first { $0.key == "convolutions.chosen" }?.value)
    // One entry per convolution, three directions each, every one direct or Winograd.
    for entry in chosen.split(separator: ",") {
      let parts = entry.split(separator: " ")
      XCTAssertEqual(parts.count, 2, chosen)
      XCTAssert(parts.last!.split(separator: "/").allSatisfy { $0 == "d" || $0 == "w" }, chosen)
    }
    XCTAssertEqual(detail.params.first { $0.key == "training.convolutions" }?.value, "auto")
    let bad = runCLI(["run", config, "--store", storePath, "--set", "training.convolutions=fast"], currentDirectory: folder)
    XCTAssertEqual(bad.code, 2)
    XCTAssert(bad.error.contains("training.convolutions"), bad.error)
    // A user's tag cannot stand in for the harness's record.
    XCTAssertEqual(runCLI(["run", "tag", detail.summary.id, "convolutions.chosen.from-step-2=d/d/d", "--store", storePath]).code, 2)
  }

  func testEachSittingOfAResumedRunRecordsItsConvolutionChoice() throws {
    // A resumed sitting times the convolutions again and may choose otherwise: the first
    // sitting's choice is kept (it once was overwritten by the last sitting's).
    let config = try experiment(steps: 30, validateEvery: 25, logEvery: 10)
    let runs = folder.appendingPathComponent("checkpoints")
    let held = try startHeldRun(["run", config, "--store", storePath, "--runs", runs.path, "--set", "training.convolutions=auto"], runs: runs, holdAtStep: 25, currentDirectory: folder)
    kill(held.process.processIdentifier, SIGINT)
    held.process.waitUntilExit()
    XCTAssertEqual(held.process.terminationStatus, 130, held.errorText)
    let resumed = runCLI(["run", "--resume", held.runID, "--store", storePath, "--runs", runs.path], currentDirectory: folder)
    XCTAssertEqual(resumed.code, 0, resumed.error)
    let tags = Dictionary(try ResultsStore(path: storePath).run(held.runID).tags.map { ($0.key, $0.value) }) { $1 }
    let first = try XCTUnwrap(tags["convolutions.chosen"], "\(tags)")
    let second = try XCTUnwrap(tags["convolutions.chosen.from-step-25"], "\(tags)")
    XCTAssert(held.errorText.contains("winograd): \(first)"), held.errorText)
    XCTAssert(resumed.error.contains("winograd): \(second)"), resumed.error)
    XCTAssertEqual(tags.keys.filter { $0.hasPrefix("convolutions.chosen") }.count, 2, "\(tags)")
  }

  func testWithinBatchPairingTrainsAndIsChecked() throws {
    let config = try experiment(steps: 3)
    let run = runCLI(["run", config, "--store", storePath, "--set", "training.pairing=batch", "--set", "training.pairsPerStep=48"], currentDirectory: folder)
    XCTAssertEqual(run.code, 0, run.error)
    let store = try ResultsStore(path: storePath)
    let id = try XCTUnwrap(store.listRuns().first).id
    XCTAssertEqual(try store.run(id).params.first { $0.key == "training.pairing" }?.value, "batch")
    let odd = runCLI(["run", config, "--store", storePath, "--set", "training.pairing=batch"], currentDirectory: folder)
    XCTAssertEqual(odd.code, 2)
    XCTAssert(odd.error.contains("training.pairsPerStep") && odd.error.contains("a multiple of 24 with pairing batch"), odd.error)
  }

  func testSeedOptionReplacesTheFilesSeedAndIsRecorded() throws {
    let config = try experiment(steps: 10)
    XCTAssertEqual(runCLI(["run", config, "--store", storePath], currentDirectory: folder).code, 0)
    let seeded = runCLI(["run", config, "--store", storePath, "--seed", "5"], currentDirectory: folder)
    XCTAssertEqual(seeded.code, 0, seeded.error)
    let store = try ResultsStore(path: storePath)
    let details = try store.listRuns().map { try store.run($0.id) }
    XCTAssertEqual(Set(details.compactMap { $0.params.first { $0.key == "seed" }?.value }), ["3", "5"])
    XCTAssertEqual(Set(details.map(\.summary.configHash)).count, 2, "another seed is another configuration")
    let table = runCLI(["report", "--store", storePath])
    XCTAssert(table.output.contains("seed"), table.output)
    // Seeds of one recipe form a group; another learning rate (through --set) is another.
    let other = runCLI(["run", config, "--store", storePath, "--set", "training.optimizer.learningRate=0.002"], currentDirectory: folder)
    XCTAssertEqual(other.code, 0, other.error)
    let lr = try store.listRuns().map { try store.run($0.id) }.first { $0.configJSON.contains("0.002") }
    XCTAssertEqual(lr?.params.first { $0.key == "training.optimizer.learningRate" }?.value, "0.002")
    let groups = runCLI(["report", "--store", storePath, "--group-seeds", "--format", "csv"])
    XCTAssertEqual(groups.code, 0, groups.error)
    let lines = groups.output.split(separator: "\r\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    XCTAssertEqual(lines.count, 3, groups.output)
    XCTAssertEqual(lines.dropFirst().map { $0[2] }.sorted(), ["3", "3 5"], "seeds per group")
    let pair = lines.first { $0[2] == "3 5" }!, single = lines.first { $0[2] == "3" }!
    let byGroups = runCLI(["compare", pair[0], single[0], "--store", storePath])
    XCTAssertEqual(byGroups.code, 0, byGroups.error)
    XCTAssert(byGroups.output.contains("A = group \(pair[0]) (tiny, seeds 3,5)") && byGroups.output.contains("mean over a group's seeds"), byGroups.output)
    let ambiguous = runCLI(["compare", "tiny", single[0], "--store", storePath])
    XCTAssertEqual(ambiguous.code, 2)
    XCTAssert(ambiguous.error.contains("matches 2 seed groups"), ambiguous.error)
    let seedsOnly = runCLI(["compare", details[0].summary.id, details[1].summary.id, "--store", storePath])
    XCTAssertEqual(seedsOnly.code, 0, seedsOnly.error)
    XCTAssert(seedsOnly.output.contains("differ only by seed"), seedsOnly.output)
    // The HTML report of the store, written to a file; a filter matching nothing writes nothing.
    let page = folder.appendingPathComponent("report.html").path
    let html = runCLI(["report", "--store", storePath, "--format", "html", "--output", page])
    XCTAssertEqual(html.code, 0, html.error)
    XCTAssert(try String(contentsOfFile: page, encoding: .utf8).contains("<svg id=\"validation-by-pairs\""))
    let none = runCLI(["report", "--store", storePath, "--format", "html", "--experiment", "nothing", "--output", page + ".2"])
    XCTAssertEqual(none.code, 2)
    XCTAssert(none.error.hasPrefix("error: no runs match experiment nothing"), none.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: page + ".2"))
    // Every format alike: nothing matched is one line and exit 2, never an `error:` with exit 0.
    for format in ["table", "csv", "json", "markdown"] {
      let empty = runCLI(["report", "--store", storePath, "--format", format, "--experiment", "nothing"])
      XCTAssertEqual(empty.code, 2, format)
      XCTAssertEqual(empty.error.split(separator: "\n").count, 1, empty.error)
    }
    let unwritable = runCLI(["report", "--store", storePath, "--format", "html", "--output", "/nonexistent/folder/report.html"])
    XCTAssertEqual(unwritable.code, 2)
    XCTAssert(unwritable.error.contains("cannot write /nonexistent/folder/report.html") && unwritable.error.split(separator: "\n").count == 1, unwritable.error)
    // A resumed run keeps the seed it was started with.
    let resume = runCLI(["run", "--resume", details[0].summary.id, "--store", storePath, "--seed", "2"])
    XCTAssertNotEqual(resume.code, 0)
    XCTAssert(resume.error.contains("keeps its recorded configuration") && resume.error.contains("drop --set and --seed"), resume.error)
  }

  func testEnsembleOfTwoRunsIsEvaluatedAsTheMeanOfTheirLogits() throws {
    let config = try experiment(steps: 10)
    XCTAssertEqual(runCLI(["run", config, "--store", storePath], currentDirectory: folder).code, 0)
    XCTAssertEqual(runCLI(["run", config, "--store", storePath, "--seed", "5"], currentDirectory: folder).code, 0)
    let store = try ResultsStore(path: storePath)
    let ids = try store.listRuns().map(\.id).sorted()
    let members = ids.map { folder.appendingPathComponent("runs/\($0)/best.safetensors").path }
    let output = folder.appendingPathComponent("ensemble.safetensors").path
    let made = runCLI(["ensemble", members[0], members[1], "--output", output])
    XCTAssertEqual(made.code, 0, made.error)
    XCTAssert(made.output.contains("an ensemble of 2 networks"), made.output)

    // The scorer's similarities are the mean of the two networks' logits.
    let loaded = try members.map { try Model.Checkpoint.read(URL(fileURLWithPath: $0)).network }
    let ensemble = try Model.Checkpoint.readModel(URL(fileURLWithPath: output)).model
    let images: [UInt8] = (0..<(4 * 28 * 28)).map { UInt8(($0 * 37) % 256) }
    let (single0, single1, both) = (NetworkScorer(network: loaded[0], method: SiamesePairs.self), NetworkScorer(network: loaded[1], method: SiamesePairs.self), NetworkScorer(model: ensemble, method: SiamesePairs.self))
    func similarities(_ scorer: NetworkScorer) throws -> [[Double]] {
      let embedded = try images.withUnsafeBufferPointer { try scorer.embed($0, count: 4, size: 28) }
      return try scorer.similarities(queries: Array(embedded[0..<1]), support: Array(embedded[1...]))
    }
    let (s0, s1, s) = (try similarities(single0), try similarities(single1), try similarities(both))
    for j in 0..<3 { XCTAssertEqual(s[0][j], (s0[0][j] + s1[0][j]) / 2, accuracy: 1e-4 * max(1, abs(s0[0][j]) + abs(s1[0][j]))) }

    // Evaluated like any checkpoint, recorded with its member count; predict reads it too.
    let eval = runCLI(["run", config, "--store", storePath, "--eval-only", "--checkpoint", output], currentDirectory: folder)
    XCTAssertEqual(eval.code, 0, eval.error)
    let evalID = try XCTUnwrap(try store.listRuns().first { !ids.contains($0.id) }?.id)
    XCTAssertEqual(try store.results(runID: evalID).count, 2)
    let tags = try store.run(evalID).tags
    XCTAssert(tags.contains { $0.key == "ensemble_members" && $0.value == "2" }, "\(tags)")
    XCTAssert(tags.contains { $0.key == "ensemble_runs" && $0.value == ids.joined(separator: ",") }, "\(tags)")
    let png = folder.appendingPathComponent("a.png")
    try Data(try GrayImage(width: 28, height: 28, pixels: Array(images[0..<784])).encodePNG()).write(to: png)
    let predicted = runCLI(["predict", png.path, png.path, "--checkpoint", output])
    XCTAssertEqual(predicted.code, 0, predicted.error)

    // Mistakes: one line each, exit 2, nothing written.
    let one = runCLI(["ensemble", members[0], "--output", output])
    XCTAssertEqual(one.code, 2)
    XCTAssert(one.error.contains("two or more"), one.error)
    let twice = runCLI(["ensemble", members[0], members[0], "--output", output])
    XCTAssert(twice.error.contains("listed twice"), twice.error)
    let nested = runCLI(["ensemble", output, members[0], "--output", folder.appendingPathComponent("nested.safetensors").path])
    XCTAssertEqual(nested.code, 2)
    XCTAssert(nested.error.contains("already an ensemble"), nested.error)
    XCTAssertEqual(runCLI(["ensemble", members[0], "/nonexistent.safetensors", "--output", output]).code, 2)
    var otherConfig = loaded[0].config
    otherConfig.headHidden = 6
    let otherPath = folder.appendingPathComponent("other.safetensors")
    try Model.Checkpoint.write(network: EmbeddingNetwork(config: otherConfig, seed: 1), optimizer: nil, metadata: [:], to: otherPath)
    let mixed = runCLI(["ensemble", members[0], otherPath.path, "--output", folder.appendingPathComponent("mixed.safetensors").path])
    XCTAssertEqual(mixed.code, 2)
    XCTAssert(mixed.error.contains("another model configuration"), mixed.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appendingPathComponent("mixed.safetensors").path))
    let resumeFromEnsemble = Result { try Model.Checkpoint.read(URL(fileURLWithPath: output)) }
    XCTAssertThrowsError(try resumeFromEnsemble.get())
  }

  func testBadInputExitsWithTwoAndRecordsNothing() throws {
    let config = try experiment(steps: 5)
    let broken = folder.appendingPathComponent("broken.json").path
    try Data(try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "\"learningRate\"", with: "\"learningrate\"").utf8).write(
      to: URL(fileURLWithPath: broken))
    let result = runCLI(["run", broken, "--store", storePath])
    XCTAssertEqual(result.code, 2)
    XCTAssert(result.error.contains("broken.json: training.optimizer.learningrate: unknown key"), result.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: storePath), "nothing is written for a bad file")
    XCTAssertEqual(runCLI(["run", "/nonexistent.json", "--store", storePath]).code, 2)
    XCTAssertEqual(runCLI(["run", config, "--store", storePath, "--data", "/nonexistent"]).code, 2)
    XCTAssertFalse(FileManager.default.fileExists(atPath: storePath))
    // --set is checked like the file: unknown key, wrong type, impossible value, bad syntax.
    for (assignment, expected) in [
      ("training.stepz=5", "training.stepz: unknown key 'stepz'"), ("training.steps=many", "training.steps: wrong type; expected an integer"),
      ("threads=0", "threads: between 1 and 256; got 0"), ("training.steps", "write it as key.path=value"),
    ] {
      let refused = runCLI(["run", config, "--store", storePath, "--set", assignment])
      XCTAssertEqual(refused.code, 2, assignment)
      XCTAssert(refused.error.contains(expected) && refused.error.split(separator: "\n").count == 1, refused.error)
    }
    XCTAssertEqual(runCLI(["run", config, "--store", storePath, "--threads", "0"]).code, 2)
    XCTAssertFalse(FileManager.default.fileExists(atPath: storePath), "nothing is written for a refused --set")
    // A store that is not a database.
    try Data(String(repeating: "not a database ", count: 20).utf8).write(to: URL(fileURLWithPath: folder.appendingPathComponent("bad.sqlite").path))
    let badStore = runCLI(["report", "--store", folder.appendingPathComponent("bad.sqlite").path])
    XCTAssertEqual(badStore.code, 2)
    XCTAssert(badStore.error.contains("is not a SQLite database"), badStore.error)
    // A checkpoint that does not match the configuration.
    let eval = runCLI(["run", config, "--store", storePath, "--eval-only", "--checkpoint", "/nonexistent.safetensors"])
    XCTAssertEqual(eval.code, 2)
    XCTAssertEqual(runCLI(["run", config, "--eval-only"]).code, 2)
  }

  /// A disk that fills up mid-run: the run ends `failed` with the reason (the store's reserve
  /// gives the row the room to say so), nothing recorded before is lost, exit 2. Needs a small
  /// file system of its own (a tmpfs, mounted as root); skipped where mounting is not allowed.
  func testADiskThatFillsUpMidRunEndsTheRowFailedWithTheReason() throws {
    let disk = folder.appendingPathComponent("disk")
    try FileManager.default.createDirectory(at: disk, withIntermediateDirectories: true)
    let mount = runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", disk.path])
    guard mount == 0 else { throw XCTSkip("cannot mount a tmpfs here (not root, or no mount permission)") }
    defer { _ = runProcess("/bin/umount", ["-l", disk.path]) }
    let store = disk.appendingPathComponent("s.sqlite").path
    let runs = disk.appendingPathComponent("runs")
    let held = try startHeldRun(["run", try experiment(steps: 400), "--store", store, "--runs", runs.path], runs: runs)
    XCTAssert(FileManager.default.fileExists(atPath: store + ".reserve"), "the reserve is held while the run records")
    // Fill the disk to the last byte, then let the run go on: its next checkpoint cannot be written.
    let ballastPath = disk.appendingPathComponent("ballast").path
    XCTAssert(FileManager.default.createFile(atPath: ballastPath, contents: nil))
    let ballast = try XCTUnwrap(FileHandle(forWritingAtPath: ballastPath))
    while (try? ballast.write(contentsOf: Data(count: 16 << 10))) != nil {}
    try? ballast.close()
    kill(held.process.processIdentifier, SIGUSR1)
    held.process.waitUntilExit()
    XCTAssertEqual(held.process.terminationStatus, 2, held.errorText)
    XCTAssert(held.errorText.contains("space") || held.errorText.contains("full"), held.errorText)
    let detail = try ResultsStore(path: store).run(held.runID)
    XCTAssertEqual(detail.summary.status, .failed, "not left running")
    XCTAssert(["space", "full"].contains { detail.summary.error?.contains($0) == true }, detail.summary.error ?? "")
    XCTAssertFalse(try ResultsStore(path: store).metrics(runID: held.runID, key: MetricKey.trainingLoss).isEmpty, "the loss logged before is kept")
  }
}

/// Runs a program to its end; its exit code (-1 if it could not start).
func runProcess(_ path: String, _ arguments: [String]) -> Int32 {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: path)
  process.arguments = arguments
  process.standardOutput = FileHandle.nullDevice
  process.standardError = FileHandle.nullDevice
  do { try process.run() } catch { return -1 }
  process.waitUntilExit()
  return process.terminationStatus
}
