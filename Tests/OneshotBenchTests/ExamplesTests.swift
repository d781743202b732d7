import Foundation
import XCTest

/// The cluster examples and the Containerfile run as written, as far as a machine without a
/// scheduler or a container daemon can tell: the files they copy and mount exist, the sweep
/// they start parses and has as many configurations as the array or Job has tasks, the image
/// installs the runtime of every library the build links, and the gather step's listing works.
final class ExamplesTests: XCTestCase {
  func text(_ path: String) throws -> String { try String(contentsOf: repositoryRoot.appendingPathComponent(path), encoding: .utf8) }

  /// The sweep's `--grid` and `--seeds` as the example writes them.
  let sweep = ["sweep", "experiments/ci-smoke.json", "--grid", "training.optimizer.learningRate=0.0005,0.001,0.002", "--seeds", "1-4"]

  func configurations() throws -> Int {
    let listed = runCLI(sweep + ["--list", "--store", FileManager.default.temporaryDirectory.appendingPathComponent("none-\(UUID().uuidString).sqlite").path], currentDirectory: repositoryRoot)
    XCTAssertEqual(listed.code, 0, listed.error)
    return listed.output.split(separator: "\n").count - 1
  }

  func testTheSlurmAndKubernetesExamplesMatchTheirSweep() throws {
    let count = try configurations()
    XCTAssertEqual(count, 12)
    let sbatch = try text("examples/slurm/sweep.sbatch")
    XCTAssert(sbatch.contains("#SBATCH --array=0-\(count - 1)"), "the array covers every configuration")
    for part in sweep.dropFirst(2) { XCTAssert(sbatch.contains(part), part) }
    XCTAssert(sbatch.contains("mkdir -p logs") && sbatch.contains("gather.sbatch"), "the logs folder and the gathering step")
    let gather = try text("examples/slurm/gather.sbatch")
    XCTAssert(gather.contains("--list") && gather.contains("--group-seeds"))
    let job = try text("examples/kubernetes/sweep-job.yaml")
    XCTAssert(job.contains("completions: \(count)") && job.contains("\"--tasks\", \"\(count)\""), "completions and --tasks agree with the grid")
    XCTAssert(job.contains("backoffLimitPerIndex"))
    let claim = try XCTUnwrap(job.range(of: "claimName: ").map { job[$0.upperBound...].prefix { $0.isLetter || $0 == "-" } })
    XCTAssert(try text("examples/kubernetes/runs-pvc.yaml").contains("name: \(claim)"), "the claim the Job mounts is defined")
    XCTAssert(job.contains("Containerfile"))
  }

  func testTheContainerfileCopiesWhatExistsAndInstallsEveryRuntime() throws {
    let file = try text("Containerfile")
    for line in file.split(separator: "\n") where line.hasPrefix("COPY ") && !line.contains("--from=") {
      let source = String(line.split(separator: " ")[1])
      XCTAssert(FileManager.default.fileExists(atPath: repositoryRoot.appendingPathComponent(source).path), "COPY \(source)")
    }
    // The build installs what scripts/setup installs; the runtime stage a runtime for each.
    let setup = try text("scripts/setup")
    let packages = try XCTUnwrap(setup.range(of: "packages=(").map { setup[$0.upperBound...].prefix { $0 != ")" } }).split(separator: " ").map(String.init)
    for package in packages where package != "pkg-config" { XCTAssert(file.contains(package), "the build installs \(package)") }
    let runtimes = ["libdnnl-dev": "libdnnl2", "libpng-dev": "libpng16-16", "libturbojpeg0-dev": "libturbojpeg0", "libsqlite3-dev": "libsqlite3-0", "libpq-dev": "libpq5"]
    for package in packages where package != "pkg-config" { XCTAssert(file.contains(try XCTUnwrap(runtimes[package], package)), "the image has \(package)'s runtime") }
    XCTAssert(file.contains("ONESHOT_GIT_COMMIT"), "the commit is recorded without .git")
  }

  /// Without a repository, the commit the image was built from is recorded.
  func testTheBuildCommitIsRecordedWithoutARepository() throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("no-git-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = folder.appendingPathComponent("s.sqlite").path
    let commit = String(repeating: "ab", count: 20)
    let run = runCLI(
      ["run", repositoryRoot.appendingPathComponent("experiments/omniglot52-lake20.json").path, "--eval-only", "--checkpoint", repositoryRoot.appendingPathComponent("models/omniglot-siamese.safetensors").path, "--store", store, "--data", repositoryRoot.appendingPathComponent("dataset/omniglot").path],
      environment: ["ONESHOT_GIT_COMMIT": commit], currentDirectory: folder)
    XCTAssertEqual(run.code, 0, run.error)
    XCTAssert(runCLI(["report", "--format", "html", "--output", folder.appendingPathComponent("r.html").path, "--store", store]).code == 0)
    XCTAssert(try String(contentsOf: folder.appendingPathComponent("r.html"), encoding: .utf8).contains("git_commit: \(commit)"))
  }
}
