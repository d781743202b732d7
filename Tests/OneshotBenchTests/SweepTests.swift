import Foundation
import ResultsStore
import XCTest

@testable import oneshot_bench

/// Sweeps: a fixed expansion, job-array shares, re-submission that skips what is done and
/// resumes what was cut short.
final class SweepTests: XCTestCase {
  var folder: URL!

  override func setUpWithError() throws {
    folder = FileManager.default.temporaryDirectory.appendingPathComponent("sweep-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

  var storePath: String { folder.appendingPathComponent("store.sqlite").path }

  func experiment(steps: Int) throws -> String {
    let json = """
      {"name": "sweep", "seed": 3, "threads": 2,
       "data": {"path": "\(repositoryRoot.appendingPathComponent("dataset/omniglot").path)"},
       "model": {"backbone": "vgg16", "inputSize": 28, "batchNorm": true, "blocks": [[4], [8]], "headHidden": 8},
       "training": {"steps": \(steps), "pairsPerStep": 8, "optimizer": {"kind": "adam", "learningRate": 0.003},
                    "validation": {"every": 10, "episodes": 2, "spec": {"ways": 5}}, "logEvery": 5},
       "evaluation": [{"protocol": "lake20"}]}
      """
    let path = folder.appendingPathComponent("sweep.json").path
    try Data(json.utf8).write(to: URL(fileURLWithPath: path))
    return path
  }

  func testExpansionOrderIsFixedAndChecked() throws {
    let file = try experiment(steps: 10)
    let items = try Sweep(file: file, axes: [try SweepAxis("training.optimizer.learningRate=0.003,0.001"), try SweepAxis("model.blocks=[[4]],[[4],[8]]")], seeds: [1, 2]).items()
    XCTAssertEqual(items.count, 8)
    XCTAssertEqual(items.map { $0.overrides.map(\.text) }.prefix(3).map { $0 }, [
      ["training.optimizer.learningRate=0.003", "model.blocks=[[4]]", "seed=1"], ["training.optimizer.learningRate=0.003", "model.blocks=[[4]]", "seed=2"],
      ["training.optimizer.learningRate=0.003", "model.blocks=[[4],[8]]", "seed=1"],
    ])
    XCTAssertEqual(Set(items.map(\.config.hash)).count, 8)
    // Each configuration is the file with those --set assignments: the same hash.
    XCTAssertEqual(items[5].config.hash, try ExperimentConfig.load(file, overrides: items[5].overrides).hash)
    XCTAssertEqual(taskShare(count: 8, task: 1, tasks: 3), [1, 4, 7])
    XCTAssertEqual(try parseSeeds("1-3,7"), [1, 2, 3, 7])
    XCTAssertThrowsError(try SweepAxis("model.blocks=[[4],[8]")) { XCTAssert("\($0)".contains("do not close"), "\($0)") }
    XCTAssertThrowsError(try Sweep(file: file, axes: [try SweepAxis("training.stepz=1,2")], seeds: nil).items()) { XCTAssert("\($0)".contains("unknown key 'stepz'"), "\($0)") }
  }

  func testTasksShareTheGridAndResubmissionSkipsOrResumes() throws {
    let file = try experiment(steps: 20)
    let grid = ["--grid", "training.optimizer.learningRate=0.003,0.001", "--seeds", "1-2", "--store", storePath, "--runs", folder.appendingPathComponent("runs").path]
    let listing = runCLI(["sweep", file, "--list"] + grid)
    XCTAssertEqual(listing.code, 0, listing.error)
    XCTAssertEqual(listing.output.split(separator: "\n").count, 5, listing.output)
    XCTAssertEqual(runCLI(["sweep", file, "--list"] + grid).output, listing.output, "the same list every time")
    XCTAssertFalse(FileManager.default.fileExists(atPath: storePath), "--list records nothing")
    // Bad input: one line, exit 2, nothing recorded.
    for bad in [["--grid", "training.stepz=1,2"], ["--grid", "training.steps=ten"], ["--task", "4", "--tasks", "2"]] {
      let refused = runCLI(["sweep", file] + grid + bad)
      XCTAssertEqual(refused.code, 2, "\(bad): \(refused.error)")
      XCTAssertEqual(refused.error.split(separator: "\n").count, 1, refused.error)
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: storePath))
    // Task 0 of 2 (the flag), then task 1 of 2 (Slurm's variables).
    let first = runCLI(["sweep", file, "--task", "0", "--tasks", "2"] + grid)
    XCTAssertEqual(first.code, 0, first.error)
    let second = runCLI(["sweep", file] + grid, environment: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"])
    XCTAssertEqual(second.code, 0, second.error)
    XCTAssert(second.error.contains("this task runs 2: 1,3"), second.error)
    let store = try ResultsStore(path: storePath)
    XCTAssertEqual(try store.listRuns(status: .completed).count, 4)
    XCTAssertEqual(Set(try store.listRuns().map(\.configHash)).count, 4, "every configuration once")
    // Submitted again: everything is skipped.
    let again = runCLI(["sweep", file] + grid)
    XCTAssertEqual(again.code, 0, again.error)
    XCTAssertEqual(again.error.components(separatedBy: "skipped").count - 1, 4, again.error)
    XCTAssertEqual(try store.listRuns().count, 4)
  }

  func testAKilledTaskIsResumedWithoutDuplicates() throws {
    let file = try experiment(steps: 4000)
    let runs = folder.appendingPathComponent("runs")
    let arguments = ["sweep", file, "--grid", "training.optimizer.learningRate=0.003", "--store", storePath, "--runs", runs.path]
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(120)
    var id: String? = nil
    while id == nil && Date() < deadline && process.isRunning {
      if let found = try? FileManager.default.contentsOfDirectory(atPath: runs.path).first(where: { !$0.hasPrefix(".") }),
        FileManager.default.fileExists(atPath: runs.appendingPathComponent("\(found)/last.safetensors").path)
      {
        id = found
      } else {
        usleep(20_000)
      }
    }
    let runID = try XCTUnwrap(id)
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    let store = try ResultsStore(path: storePath)
    XCTAssertEqual(try store.run(runID).summary.status, .running, "a killed run is left running, never completed")
    let rerun = runCLI(arguments)
    XCTAssertEqual(rerun.code, 0, rerun.error)
    XCTAssert(rerun.error.contains("resuming run \(runID)"), rerun.error)
    XCTAssertEqual(try store.listRuns().map(\.id), [runID], "no duplicate run")
    XCTAssertEqual(try store.run(runID).summary.status, .completed)
    let steps = try store.metrics(runID: runID, key: "train.loss").map(\.step)
    XCTAssertEqual(steps.count, Set(steps).count)
  }
}
