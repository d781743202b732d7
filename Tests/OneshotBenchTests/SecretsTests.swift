import Foundation
import TestSupport
import XCTest

@testable import ResultsStore

/// No output of the harness ever contains a store URL's password: errors for an unreachable
/// server, and (against the PostgreSQL server CI starts) an interrupted run's resume hint and
/// every report format, including what is written to a file.
final class SecretsInOutputTests: TemporaryFolderTestCase {
  let secret = "s3cret-pw"



  func assertNoSecret(_ result: (code: Int32, output: String, error: String), _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertFalse(result.output.contains(secret) || result.error.contains(secret), "\(what) printed the password:\n\(result.output)\n\(result.error)", file: file, line: line)
    XCTAssertFalse(result.error.contains("ss/w:rd"), "\(what) printed part of the password", file: file, line: line)
  }

  func experiment() throws -> String {
    try writeTinyExperiment(in: folder, name: "secret", seed: 3, steps: 30)
  }


  func testAnUnreachableServerIsNamedWithoutItsPassword() throws {
    let file = try experiment()
    for url in ["postgresql://oneshot:\(secret)@127.0.0.1:1/results", "postgresql://oneshot:p@ss/w:rd\(secret)@127.0.0.1:1/results", "postgresql://127.0.0.1:1/results?password=\(secret)",
      // Issue #46: a percent-encoded key libpq accepts, characters that end a URL in running
      // text, and an unencoded `%` (libpq quotes the token it cannot decode).
      "postgresql://127.0.0.1:1/results?pass%77ord=\(secret)", "postgresql://oneshot:a;b'c (\(secret)@127.0.0.1:1/results", "postgresql://oneshot:50%\(secret)@127.0.0.1:1/results"] {
      for arguments in [
        ["report", "--store", url], ["report", "--format", "html", "--output", folder.appendingPathComponent("r.html").path, "--store", url],
        ["check", "--latest", "secret", "--baseline", "x.json", "--store", url], ["run", file, "--store", url], ["store", "copy", "--from", url, "--to", folder.appendingPathComponent("c.sqlite").path],
        ["sweep", file, "--list", "--store", url],
      ] {
        let result = runCLI(arguments, environment: ["ONESHOT_STORE_OUTAGE_SECONDS": "0.3"])
        XCTAssertNotEqual(result.code, 0, "\(arguments)")
        assertNoSecret(result, arguments.joined(separator: " "))
      }
    }
  }

  func testAResumeHintAndEveryReportHideThePassword() throws {
    guard let admin = ProcessInfo.processInfo.environment["ONESHOT_TEST_POSTGRES"] else {
      throw XCTSkip("set ONESHOT_TEST_POSTGRES=postgresql://user@host:port/postgres (.ci/run starts a server)")
    }
    let name = "oneshot_secrets_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "_"))"
    try PostgresConnection(url: admin).execute("CREATE DATABASE \(name)")
    addTeardownBlock { try? PostgresConnection(url: admin).execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
    // The CI server trusts loopback, so a password in the URL is accepted and never checked.
    let plain = String(admin[..<admin.range(of: "/", options: .backwards)!.upperBound]) + name
    let url = plain.replacingOccurrences(of: "://postgres@", with: "://postgres:\(secret)@")
    XCTAssertNotEqual(url, plain, "the test URL carries a password")
    let runs = folder.appendingPathComponent("runs")
    let held = try startHeldRun(["run", try experiment(), "--store", url, "--runs", runs.path], runs: runs)
    kill(held.process.processIdentifier, SIGINT)
    held.process.waitUntilExit()
    XCTAssertEqual(held.process.terminationStatus, 130, held.errorText)
    XCTAssert(held.errorText.contains("Continue with:") && held.errorText.contains("$ONESHOT_STORE"), held.errorText)
    assertNoSecret((held.process.terminationStatus, "", held.errorText), "the interrupted run")
    let page = folder.appendingPathComponent("report.html")
    for arguments in [
      ["report"], ["report", "--format", "csv"], ["report", "--format", "json"], ["report", "--format", "markdown"], ["report", "--run", held.runID],
      ["report", "--format", "html", "--output", page.path], ["report", "--experiment", "nothing-like-it"], ["check", "--latest", "nothing-like-it", "--baseline", "x.json"],
    ] {
      let result = runCLI(arguments + ["--store", url])
      assertNoSecret(result, arguments.joined(separator: " "))
    }
    XCTAssertFalse(try String(contentsOf: page, encoding: .utf8).contains(secret), "the HTML page names the store without its password")
    // Resumed from the store the environment names, as the hint says.
    let resumed = runCLI(["run", "--resume", held.runID, "--runs", runs.path], environment: ["ONESHOT_STORE": url])
    XCTAssertEqual(resumed.code, 0, resumed.error)
    assertNoSecret(resumed, "the resumed run")
  }
}
