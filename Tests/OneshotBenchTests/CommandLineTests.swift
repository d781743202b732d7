import Foundation
import Experiments
import XCTest

/// The built executable, next to the test bundle.
let executable: URL = {
  var url = Bundle.main.bundleURL
  if url.pathExtension == "xctest" { url.deleteLastPathComponent() }
  return url.appendingPathComponent("oneshot-bench")
}()

/// Runs the executable as a user would; returns its exit code, standard output and error.
/// Output goes through temporary files, so a large output cannot block the child.
/// A run started in the background and held at a checkpoint (the test hook
/// ONESHOT_TEST_HOLD_AT_STEP): alive, heartbeating and doing nothing until a signal arrives, so
/// tests of ownership, interruption and resumption need no wall-clock training.
struct HeldRun {
  let process: Process
  let runID: String
  /// The run's standard error so far.
  let errors: URL
  var errorText: String { (try? String(contentsOf: errors, encoding: .utf8)) ?? "" }
}

/// Starts the harness in the background with the run held at its checkpoint of step
/// `holdAtStep`, and waits until it holds there (the checkpoint is on disk, its metrics
/// recorded); returns the held run, whose id is found under `runs`.
func startHeldRun(
  _ arguments: [String], runs: URL, holdAtStep: Int = 10, currentDirectory: URL? = nil, environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line
) throws -> HeldRun {
  let process = Process()
  process.executableURL = executable
  process.arguments = arguments
  process.environment = ProcessInfo.processInfo.environment.merging(environment.merging(["ONESHOT_TEST_HOLD_AT_STEP": String(holdAtStep)]) { $1 }) { $1 }
  if let currentDirectory { process.currentDirectoryURL = currentDirectory }
  process.standardOutput = FileHandle.nullDevice
  // Beside the runs folder, inside the test's own folder, so the test's clean-up removes it.
  let errors = runs.deletingLastPathComponent().appendingPathComponent("held-err-\(UUID().uuidString)")
  _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
  process.standardError = try FileHandle(forWritingTo: errors)
  try process.run()
  let deadline = Date().addingTimeInterval(300)
  while Date() < deadline && process.isRunning {
    if ((try? String(contentsOf: errors, encoding: .utf8)) ?? "").contains("held at step \(holdAtStep)"),
      let id = try? FileManager.default.contentsOfDirectory(atPath: runs.path).first(where: { !$0.hasPrefix(".") })
    {
      return HeldRun(process: process, runID: id, errors: errors)
    }
    usleep(20_000)
  }
  XCTFail("the run did not hold at step \(holdAtStep) under \(runs.path): \((try? String(contentsOf: errors, encoding: .utf8)) ?? "")", file: file, line: line)
  throw CocoaError(.fileNoSuchFile)
}

/// Writes `folder/<name>.json`: a tiny network (28x28, blocks [[4], [8]], batch norm) trained for
/// `steps` steps of 8 pairs on the bundled data, validated every 10 steps on two 5-way episodes,
/// scored on Lake's runs; returns its path. The experiment most end-to-end tests run.
func writeTinyExperiment(in folder: URL, name: String, seed: Int = 3, steps: Int) throws -> String {
  let json = """
    {"name": "\(name)", "seed": \(seed), "threads": 2,
     "data": {"path": "\(repositoryRoot.appendingPathComponent("dataset/omniglot").path)"},
     "model": {"backbone": "vgg16", "inputSize": 28, "batchNorm": true, "blocks": [[4], [8]], "headHidden": 8},
     "training": {"steps": \(steps), "pairsPerStep": 8, "optimizer": {"kind": "adam", "learningRate": 0.003},
                  "validation": {"every": 10, "episodes": 2, "spec": {"ways": 5}}, "logEvery": 5},
     "evaluation": [{"protocol": "lake20"}]}
    """
  let path = folder.appendingPathComponent("\(name).json").path
  try Data(json.utf8).write(to: URL(fileURLWithPath: path))
  return path
}

func runCLI(_ arguments: [String], environment: [String: String] = [:], currentDirectory: URL? = nil) -> (code: Int32, output: String, error: String) {
  let process = Process()
  process.executableURL = executable
  process.arguments = arguments
  if let currentDirectory { process.currentDirectoryURL = currentDirectory }
  process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
  let folder = FileManager.default.temporaryDirectory
  let outURL = folder.appendingPathComponent("cli-out-\(UUID().uuidString)")
  let errURL = folder.appendingPathComponent("cli-err-\(UUID().uuidString)")
  _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
  _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
  defer {
    try? FileManager.default.removeItem(at: outURL)
    try? FileManager.default.removeItem(at: errURL)
  }
  guard let out = try? FileHandle(forWritingTo: outURL), let err = try? FileHandle(forWritingTo: errURL) else { return (-1, "", "cannot create output files") }
  process.standardOutput = out
  process.standardError = err
  do { try process.run() } catch { return (-1, "", "\(error)") }
  process.waitUntilExit()
  try? out.close()
  try? err.close()
  let output = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
  let error = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
  return (process.terminationStatus, output, error)
}

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let dataArguments = ["--data", repositoryRoot.appendingPathComponent("dataset/omniglot").path]

final class CommandLineTests: XCTestCase {
  /// `bench` prints each network's training and embedding throughput in its own unit (no
  /// timing is asserted: these machines are shared): pairs for the Siamese networks, images for
  /// the prototypical episode.
  func testBenchPrintsEachNetworksUnit() {
    for (model, unit, detail) in [("protonet", "images/s", "a 4-way 1-shot 5-query episode of 24 images"), ("speedrun", "pairs/s", "batch 8 pairs on 8 images")] {
      let result = runCLI(["bench", "--model", model, "--pairs", model == "protonet" ? "4" : "8", "--images", "8", "--reps", "1", "--no-peak"])
      XCTAssertEqual(result.code, 0, result.error)
      let train = result.output.split(separator: "\n").first { $0.hasPrefix("  train") }.map(String.init) ?? ""
      XCTAssert(train.contains(unit) && train.contains(detail) && train.contains("GFLOP/s"), "\(model): \(result.output)")
      XCTAssert(result.output.contains("  embed ") && result.output.contains("images/s"), result.output)
      // The input a step prepares, timed as its own share (#44: is overlapping it worth it?).
      let input = result.output.split(separator: "\n").first { $0.hasPrefix("  input") }.map(String.init) ?? ""
      XCTAssert(input.contains(" ms a step  (\(model == "protonet" ? 24 : 8) images distorted") && input.contains("% of a step with its input)"), result.output)
    }
  }

  func testEpisodesOutputIsByteIdentical() {
    let arguments = ["episodes", "--split", "evaluation", "--ways", "20", "--shots", "1", "--queries", "1", "--count", "5", "--seed", "7", "--format", "json"] + dataArguments
    let first = runCLI(arguments)
    let second = runCLI(arguments)
    XCTAssertEqual(first.code, 0)
    XCTAssertEqual(first.output, second.output)
    XCTAssert(first.output.contains("\"spec\": \"ways=20;shots=1;queries=1;alphabets=within;disjointDrawers=false\""))
    let decoded = try? JSONSerialization.jsonObject(with: Data(first.output.utf8)) as? [String: Any]
    XCTAssertEqual((decoded?["episodes"] as? [Any])?.count, 5)
    // Episode 3 alone is episode 3 of the sequence.
    let alone = runCLI(["episodes", "--start", "3", "--count", "1", "--seed", "7", "--format", "text"] + dataArguments)
    let all = runCLI(["episodes", "--count", "5", "--seed", "7", "--format", "text"] + dataArguments)
    let aloneLines = alone.output.split(separator: "\n")
    XCTAssertEqual(aloneLines.count, 21, "a header row and one line per class")
    XCTAssertEqual(aloneLines.first, "episode\tclass\tsupport (drawers)\tqueries (drawers)")
    XCTAssertTrue(all.output.contains(aloneLines.dropFirst().joined(separator: "\n")))
  }

  func testImpossibleSpecExitsWithTwo() {
    XCTAssertEqual(runCLI(["episodes", "--ways", "60"] + dataArguments).code, 2)
    XCTAssertEqual(runCLI(["episodes", "--shots", "15", "--queries", "6"] + dataArguments).code, 2)
    XCTAssertEqual(runCLI(["episodes", "--split", "nonsense"] + dataArguments).code, 2)
    XCTAssertEqual(runCLI(["episodes", "--count", "0"] + dataArguments).code, 2)
  }

  func testMissingDatasetExitsWithTwo() {
    XCTAssertEqual(runCLI(["baseline", "lake20", "--data", "/nonexistent/omniglot"]).code, 2)
  }

  /// ONESHOT_DATA reaches every command that reads the dataset (and replaces an experiment
  /// file's data.path, as --data does); --data still wins over it.
  func testTheDataEnvironmentVariableReachesEveryCommandThatReadsData() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("data-env-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let experiment = folder.appendingPathComponent("tiny.json").path
    try Data(
      """
      {"name": "tiny", "data": {"path": "\(repositoryRoot.appendingPathComponent("dataset/omniglot").path)"},
       "model": {"backbone": "vgg16", "inputSize": 28, "blocks": [[4]], "headHidden": 8},
       "training": {"steps": 2, "pairsPerStep": 8, "optimizer": {"kind": "adam", "learningRate": 0.001}, "validation": {"every": 2, "episodes": 1, "spec": {"ways": 5}}}}
      """.utf8
    ).write(to: URL(fileURLWithPath: experiment))
    let missing = folder.appendingPathComponent("no-omniglot-here").path
    let store = folder.appendingPathComponent("store.sqlite").path
    let commands: [[String]] = [
      ["run", experiment, "--store", store], ["sweep", experiment, "--seeds", "1", "--store", store], ["dataset", "verify"], ["episodes", "--count", "1"],
      ["baseline", "lake20"],
    ]
    for command in commands {
      let result = runCLI(command, environment: ["ONESHOT_DATA": missing], currentDirectory: folder)
      XCTAssertEqual(result.code, 2, "\(command): \(result.error)")
      XCTAssert(result.error.contains(missing), "\(command) did not read ONESHOT_DATA: \(result.error)")
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: store), "nothing recorded")
    XCTAssertEqual(runCLI(["episodes", "--count", "1"] + dataArguments, environment: ["ONESHOT_DATA": missing]).code, 0, "--data wins over ONESHOT_DATA")
  }

  func testBaselineCommandPrintsLakeFigure() {
    let result = runCLI(["baseline", "lake20", "--scorer", "mhd"] + dataArguments)
    XCTAssertEqual(result.code, 0)
    XCTAssert(result.output.contains("mean error 38.75%"), result.output)
    XCTAssert(result.output.contains("run 20  Tibetan"), result.output)
  }

  func testHelpListsSubcommands() {
    let help = runCLI(["--help"])
    XCTAssertEqual(help.code, 0)
    for name in ["dataset", "episodes", "baseline"] { XCTAssert(help.output.contains(name), help.output) }
  }
}
