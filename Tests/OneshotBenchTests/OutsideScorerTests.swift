import Foundation
import ResultsStore
import TestSupport
import XCTest

/// Models outside the harness, scored through the outside-scorer protocol
/// (docs/SCORER_PROTOCOL.md): the no-dependency example reproduces the harness's pixel baseline,
/// and every way a scorer can fail is one line, exit 2, the child ended and the run failed.
final class OutsideScorerTests: TemporaryFolderTestCase {



  let experiment = repositoryRoot.appendingPathComponent("examples/scorers/lake20-105.json").path

  func score(_ command: String, environment: [String: String] = [:]) -> (code: Int32, output: String, error: String) {
    runCLI(["run", experiment, "--eval-only", "--scorer", command, "--store", storePath] + dataArguments, environment: environment, currentDirectory: repositoryRoot)
  }

  /// How many running processes' command lines match `pattern` (a grep pattern).
  func processesMatching(_ pattern: String) throws -> Int {
    let ps = Process()
    ps.executableURL = URL(fileURLWithPath: "/bin/sh")
    ps.arguments = ["-c", "ps -eo args | grep -c '\(pattern)' || true"]
    let pipe = Pipe()
    ps.standardOutput = pipe
    try ps.run()
    ps.waitUntilExit()
    return Int(String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
  }

  /// A scorer written in Python that says hello and then does `body` (the request loop).
  func scorer(_ name: String, hello: String = "oneshot-scorer 1 input=105 output=embeddings distance=euclidean model=test", body: String) throws -> String {
    let script = """
      import base64, struct, sys, time
      sys.stdout.write("\(hello)\\n"); sys.stdout.flush()
      \(body)
      """
    let path = folder.appendingPathComponent("\(name).py").path
    try Data(script.utf8).write(to: URL(fileURLWithPath: path))
    return "python3 \(path)"
  }

  func testThePixelExampleReproducesTheHarnessBaselineAndIsRecordedAsExternal() throws {
    let result = score("python3 examples/scorers/pixel_scorer.py")
    XCTAssertEqual(result.code, 0, result.error)
    let store = try ResultsStore(path: storePath)
    let run = try XCTUnwrap(try store.listRuns().first)
    let lake = try XCTUnwrap(try store.results(runID: run.id).first)
    // `oneshot-bench baseline lake20 --scorer pixel`: 19.00% (RESULTS.md).
    XCTAssertEqual(lake.accuracy, 0.19, accuracy: 1e-12)
    let tags = Dictionary(try store.run(run.id).tags.map { ($0.key, $0.value) }) { $1 }
    XCTAssertEqual(tags[TagKey.mode], "external")
    XCTAssertEqual(tags["scorer.model"], "pixels-105")
    XCTAssertEqual(tags["scorer.command"], "python3 examples/scorers/pixel_scorer.py")
    let report = runCLI(["report", "--store", storePath])
    XCTAssert(report.output.contains("external"), report.output)
  }

  func testEveryScorerFailureIsOneLineAndNothingElseIsLost() throws {
    let loop = "for line in sys.stdin:\n    n = int(line.split()[1])\n    rows = [sys.stdin.readline() for _ in range(n)]\n"
    let vector = "base64.b64encode(struct.pack('<2f', 1.0, 2.0)).decode()"
    let cases: [(command: String, expected: String, recorded: Bool)] = [
      ("/nonexistent/scorer", "exited with status 127 while the harness waited for its hello line", false),
      (try scorer("nohello", hello: "hello there", body: ""), "began with 'hello there', not a hello line", false),
      (try scorer("size", hello: "oneshot-scorer 1 input=28 output=scores model=m", body: ""), "takes 28x28 images, the experiment's model.inputSize is 105", false),
      (try scorer("dies", body: "sys.stdin.readline()\nsys.exit(3)"), "exited with status 3 while the harness waited for embedding 1 of", true),
      (try scorer("hangs", body: "time.sleep(60)"), "no answer within 2 s while waiting for embedding 1 of", true),
      (try scorer("garbage", body: loop + "    print('not base64!', flush=True)"), "is not base64 of little-endian float32 values", true),
      (try scorer("short", body: loop + "    print(\(vector)); print('done', flush=True)"), "wrote 1 embeddings for", true),
      (try scorer("nan", body: loop + "    print(base64.b64encode(struct.pack('<2f', float('nan'), 1.0)).decode(), flush=True)"), "holds NaN or infinity", true),
      (try scorer("long", body: loop + "    [print(\(vector)) for _ in range(n + 1)]; print('done', flush=True)"), "(a reply ends with a line 'done')", true),
    ]
    for (i, item) in cases.enumerated() {
      let before = (try? ResultsStore(path: storePath).listRuns().count) ?? 0
      let result = score(item.command, environment: ["ONESHOT_SCORER_TIMEOUT": "2"])
      XCTAssertEqual(result.code, 2, "\(item.command): \(result.error)")
      XCTAssert(result.error.contains(item.expected), "\(item.command): \(result.error)")
      XCTAssertEqual(result.error.split(separator: "\n").filter { $0.hasPrefix("error") }.count, 1, result.error)
      let runs = (try? ResultsStore(path: storePath).listRuns()) ?? []
      if item.recorded {
        XCTAssertEqual(runs.count, before + 1, "case \(i)")
        XCTAssertEqual(runs.first?.status, .failed, "case \(i)")
        XCTAssert(runs.first?.error?.contains(item.expected) ?? false, "\(runs.first?.error ?? "")")
      } else {
        XCTAssertEqual(runs.count, before, "case \(i): a scorer that never started records nothing")
      }
    }
    // No scorer process outlives its run.
    XCTAssertEqual(try processesMatching("[\(folder.lastPathComponent.prefix(1))]\(folder.lastPathComponent.dropFirst())"), 0)
  }

  /// Issue #45, causes B and C: a scorer that leaves a background process holding its output,
  /// or closes its output and lives on, fails at once (not after the timeout, never hanging),
  /// with nothing of it left running; SIGTERM while waiting for an answer ends the run within
  /// seconds, interrupted (143).
  func testAScorerThatLingersOrASignalNeverHangsTheHarness() throws {
    let orphan = folder.appendingPathComponent("orphan.sh")
    try Data("printf 'oneshot-scorer 1 input=105 output=embeddings distance=euclidean model=t\\n'\nsleep 37.25 &\nexit 0\n".utf8).write(to: orphan)
    let cases = [
      ("sh \(orphan.path)", "leaving a process it started holding its output"),
      // `exec`: the shell that runs a command otherwise holds the output open itself.
      ("exec " + (try scorer("closes", body: "import os; sys.stdout.flush(); os.close(1); time.sleep(30)")), "closed its output while the harness waited for embedding 1 of"),
    ]
    for (command, expected) in cases {
      let started = Date()
      let result = score(command, environment: ["ONESHOT_SCORER_TIMEOUT": "600"])
      XCTAssertEqual(result.code, 2, result.error)
      XCTAssert(result.error.contains(expected), result.error)
      XCTAssertLessThan(Date().timeIntervalSince(started), 60, "not the 600 s timeout")
      XCTAssertEqual(try ResultsStore(path: storePath).listRuns().first?.status, .failed)
    }
    XCTAssertEqual(try processesMatching("[s]leep 37.25"), 0, "the background process was ended")

    let process = Process()
    process.executableURL = executable
    process.arguments = ["run", experiment, "--eval-only", "--scorer", try scorer("silent", body: "time.sleep(60)"), "--store", storePath] + dataArguments
    process.currentDirectoryURL = repositoryRoot
    process.environment = ProcessInfo.processInfo.environment.merging(["ONESHOT_SCORER_TIMEOUT": "600"]) { $1 }
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    sleep(4)
    XCTAssert(process.isRunning)
    let signalled = Date()
    kill(process.processIdentifier, SIGTERM)
    process.waitUntilExit()
    XCTAssertLessThan(Date().timeIntervalSince(signalled), 10)
    XCTAssertEqual(process.terminationStatus, 143)
    XCTAssertEqual(try ResultsStore(path: storePath).listRuns().first?.status, .interrupted)
  }

  func testScorerOptionsAreCheckedBeforeAnything() throws {
    let both = runCLI(["run", experiment, "--eval-only", "--scorer", "x", "--checkpoint", "y", "--store", storePath])
    XCTAssertEqual(both.code, 2)
    XCTAssert(both.error.contains("--scorer and --checkpoint exclude each other"), both.error)
    let training = runCLI(["run", experiment, "--scorer", "x", "--store", storePath])
    XCTAssert(training.error.contains("--scorer is only used with --eval-only"), training.error)
    XCTAssertFalse(FileManager.default.fileExists(atPath: storePath))
  }
}
